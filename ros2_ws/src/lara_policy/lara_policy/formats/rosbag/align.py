"""Bag streams -> control-rate steps -> episodes: the ONE alignment used by `lara convert` and
`lara eval bag` (lara_policy.formats.rosbag.bag_episodes calls it; nothing else aligns).

Rules (docs/bag_conversion.md, "Alignment"):
- The bag's first camera is cut into camera segments: with `episodes: {split: gap}` a camera gap
  longer than gap_s ends a segment (and an episode); otherwise the bag is one segment. The
  control-rate grid is laid over each segment separately, so no step ever falls inside a gap
  (in `frames: grid` mode too).
- A step's action is the command in force when the NEXT frame of its segment was taken; the last
  frame of a segment has no next frame, so (as for the bag's last frame) its action is the
  command in force one period after it. The next segment's first frame never stands in.
- Several cameras: the first camera's frames are the steps; every other camera gives the frame
  nearest in stamp (stamped at most half a period after the step's frame: what policy_node pairs
  within its slop); a step whose frame of another camera is older than max_age_s (that camera
  stopped) is dropped.
- A step is kept only when every mapped stream has started (cameras, state entries, the action
  and the gripper command): steps before the first message of any of them are dropped, never
  filled with 0. The one stream whose silence has a meaning is a Servo twist: no twist (before
  the first, or older than command_timeout_s at the next frame) is zero motion, what Servo does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lara_policy.common.errors import ConvertError


def _latest(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the latest time <= t (-1 where none)."""
    return np.searchsorted(times, t, side="right") - 1


@dataclass
class Aligned:
    """One bag's samples on the control-rate grid (before episode splitting)."""
    times: np.ndarray                       # (T,) frame times of the steps (s)
    images: dict[str, np.ndarray]           # camera -> (T, H, W, 3)
    state: np.ndarray                       # (T, S)
    actions: np.ndarray | None              # (T, A)
    instruction: list[str]
    step_success: np.ndarray | None
    action_dims: list[str] = field(default_factory=list)
    segment: np.ndarray | None = None       # (T,) camera segment of each step (gap split)


def camera_segments(t_cam: np.ndarray, mapping) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of the first camera's frames: split at gaps > gap_s (split: gap)."""
    if mapping.split.mode == "gap" and len(t_cam) > 1:
        cut = (np.nonzero(np.diff(t_cam) > mapping.split.gap_s)[0] + 1).tolist()
    else:
        cut = []
    edges = [0, *cut, len(t_cam)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def stream_starts(s, mapping, action_free: bool) -> list[float]:
    """The time each mapped stream starts to give a value for a step (the latest is when the
    first step can begin): frames and state at their first message; commands (action, gripper)
    one period before theirs (the step whose NEXT frame sees the first command). A twist stream
    has no start: before its first message the arm is commanded nothing, i.e. zero motion."""
    period = 1.0 / mapping.rate_hz
    starts = [s.cameras[n][0][0] for n in s.cameras] + [v[0][0] for v in s.state.values()]
    if not action_free:
        if s.action is not None and s.action_kind != "twist":
            starts.append(s.action[0][0] - period)
        if s.gripper is not None and mapping.gripper is not None:
            starts.append(s.gripper[0][0] - period)
    return starts


def align(s, mapping, action_free: bool = False) -> Aligned:
    """Streams (formats.rosbag.streams.read_streams) -> Aligned steps, segment by segment."""
    period = 1.0 / mapping.rate_hz
    half = 0.5 * period
    cam0 = next(iter(mapping.cameras))
    t_cam0 = s.cameras[cam0][0]
    t_begin = max(stream_starts(s, mapping, action_free))
    if t_cam0[-1] < t_begin:
        raise ConvertError(f"{s.path}: the mapped topics never overlap in time (camera ends at "
                           f"{t_cam0[-1]:.3f} s, the last stream starts at {t_begin:.3f} s)")
    frame_parts, next_parts, seg_parts = [], [], []
    for si, (lo, hi) in enumerate(camera_segments(t_cam0, mapping)):
        tc = t_cam0[lo:hi]
        if tc[-1] < t_begin:
            continue
        # the grid is anchored on the segment's first frame (never half a period off a frame);
        # steps before every stream has started are dropped below, step by step
        grid = tc[0] + np.arange(int(np.floor((tc[-1] - tc[0]) / period + 1e-6)) + 1) * period
        idx = _latest(tc, grid + half)
        if mapping.frames == "unique":      # a camera slower than rate_hz: one step per new frame
            idx = idx[np.concatenate([[True], np.diff(idx) != 0])]
        ft = tc[idx]
        frame_parts.append(ft)
        # the command in force when the next frame OF THIS SEGMENT was taken; after the
        # segment's last frame (end of the bag, or a gap), one period later
        next_parts.append(np.append(ft[1:], ft[-1] + period))
        seg_parts.append(np.full(len(ft), si))
    frame_t = np.concatenate(frame_parts)
    next_t = np.concatenate(next_parts)
    segment = np.concatenate(seg_parts)
    T = len(frame_t)
    images = {}
    keep = np.ones(T, bool)
    for name, (tc, frames) in s.cameras.items():
        ii = _latest(tc, frame_t + 1e-6)
        if name != cam0:
            # another camera: its frame nearest the first camera's (stamped at most half a period
            # after it: what policy_node pairs), and dropped when older than max_age_s (it stopped)
            later = _latest(tc, frame_t + half)
            nearer = (later > ii) & (np.abs(tc[np.maximum(later, 0)] - frame_t) < np.abs(frame_t - tc[np.maximum(ii, 0)]))
            ii = np.where(nearer | (ii < 0), later, ii)
            keep &= np.abs(frame_t - tc[np.maximum(ii, 0)]) <= mapping.max_age_s
        keep &= ii >= 0                     # a camera that has not started yet
        images[name] = np.stack([frames[max(i, 0)] for i in ii]).astype(np.uint8)
    state = np.zeros((T, len(mapping.state)), np.float32)
    for j, (name, _) in enumerate(mapping.state):
        ts_, vs = s.state[name]
        ii = _latest(ts_, frame_t + 1e-6)
        ok = ii >= 0
        ok &= frame_t - ts_[np.maximum(ii, 0)] <= mapping.max_age_s
        keep &= ok
        state[:, j] = vs[np.maximum(ii, 0)]
    keep &= np.all(np.isfinite(state), axis=1)
    actions, dims = None, []
    if s.action is not None and (not action_free or s.gripper is not None or mapping.gripper is None):
        actions, dims, ok = _actions(s, mapping, frame_t, next_t, period, action_free)
        if action_free:
            actions = None                  # dims kept for the store's action_dim
        else:
            keep &= ok
    if s.instruction is not None:
        ii = _latest(s.instruction[0], frame_t)
        instr = [s.instruction[1][max(i, 0)] for i in ii]
    else:
        text = mapping.instruction_text or str(s.meta.get("instruction", "") or "")
        instr = [text] * T
    step_success = None
    if s.success is not None:
        ii = _latest(s.success[0], frame_t + 1e-6)
        step_success = np.where(ii >= 0, s.success[1][np.maximum(ii, 0)], False)
    sel = np.nonzero(keep)[0]
    return Aligned(frame_t[sel], {n: v[sel] for n, v in images.items()}, state[sel],
                   None if actions is None else actions[sel], [instr[i] for i in sel],
                   None if step_success is None else step_success[sel], dims, segment[sel])


def _actions(s, mapping, frame_t, next_t, period, action_free: bool = False):
    """(T, A) actions, dim names, valid-mask: the command in force when the next frame was taken.
    Invalid (dropped): no command of the action or the gripper stream yet (the stream has not
    started; a twist excepted: no twist is zero motion), a chunk that ran out."""
    spec, kind = mapping.action, s.action_kind
    at, payload = s.action
    ii = _latest(at, next_t - 1e-6)
    T = len(frame_t)
    ok = (ii >= 0) | (kind == "twist")
    if kind == "twist":
        rot = (spec.ee_rot_scale_rad or 0.0) > 0
        if spec.ee_rot_scale_rad is None and any(np.any(np.abs(v[3:6]) > 1e-9) for v in payload):
            raise ConvertError(f"{s.path}: the twists on '{spec.topic}' rotate the end effector (angular velocity "
                               "!= 0) but the mapping has no action.ee_rot_scale_rad: set it (command_node's "
                               "ee_rot_scale_rad, radians per action unit per step) for ee_delta_6d_gripper "
                               "actions, or 0 to drop the rotation knowingly")
        frames = sorted(set(getattr(s, "action_frames", []) or []))
        if rot and len(frames) > 1:
            raise ConvertError(f"{s.path}: the twists on '{spec.topic}' are in several frames {frames}: a rotation "
                               "delta needs one command frame (the robot base frame command_node publishes in)")
        # rotation: the twist's angular velocity (rad/s, about the axes of the twist's header.frame_id,
        # MoveIt Servo's convention) x period = the rotation vector of one step in that frame
        dims = ["dx", "dy", "dz"] + (["drot_x", "drot_y", "drot_z"] if rot else [])
        a = np.zeros((T, len(dims)), np.float64)
        for k, i in enumerate(ii):
            if i < 0 or next_t[k] - at[i] > spec.command_timeout_s:
                continue                                   # no fresh command: zero motion (Servo)
            v = payload[i]
            a[k, :3] = v[:3] * period / spec.ee_delta_scale_m
            if rot:
                a[k, 3:6] = v[3:6] * period / spec.ee_rot_scale_rad
    elif kind == "action_chunk":
        first = payload[0][2]
        dims = [f"a{j}" for j in range(first.shape[1])]
        a = np.zeros((T, first.shape[1]), np.float64)
        for k, i in enumerate(ii):
            if i < 0:
                continue
            t0, dt, vals = payload[i]
            step = int(round((frame_t[k] - t0) / dt))
            if step < 0 or step >= vals.shape[0]:
                ok[k] = False                              # chunk run out: nothing commanded
                continue
            a[k] = vals[step]
    else:
        width = next((len(p) for p in payload if p is not None), None)
        if width is None:
            raise ConvertError(f"{s.path}: action topic '{spec.topic}' holds no usable command")
        dims = (spec.joints or [f"j{j}" for j in range(width)]) if kind == "joint_trajectory" else list(spec.fields)
        a = np.zeros((T, width), np.float64)
        for k, i in enumerate(ii):
            # an empty JointTrajectory is a "stop": hold the last target
            while i >= 0 and payload[i] is None:
                i -= 1
            if i < 0:
                ok[k] = False
                continue
            if len(payload[i]) != width:
                raise ConvertError(f"{s.path}: action topic '{spec.topic}': commands change width "
                                   f"({width} -> {len(payload[i])})")
            a[k] = payload[i]
    if mapping.gripper is not None:
        if s.gripper is None:
            if not action_free:
                raise ConvertError(f"{s.path}: gripper topic '{mapping.gripper.topic}' has no messages")
            g, gi = np.zeros(T), np.zeros(T, int)
        else:
            gi = _latest(s.gripper[0], next_t - 1e-6)
            g = np.where(gi >= 0, s.gripper[1][np.maximum(gi, 0)], 0.0)
        ok &= gi >= 0                                      # before the first gripper command: dropped
        a = np.concatenate([a, g[:, None]], axis=1)
        dims = dims + ["gripper"]
    if mapping.action_clip is not None:
        a = np.clip(a, *mapping.action_clip)
    return a.astype(np.float32), dims, ok


def boundaries(s, al: Aligned, mapping) -> list[tuple[int, int]]:
    """[a, b) step ranges of the episodes of one aligned bag."""
    T = len(al.times)
    if T == 0:
        return []
    if mapping.split.mode == "topic":
        if s.events is None:
            raise ConvertError(f"{s.path}: episode split topic '{mapping.split.topic}' has no matching message "
                               f"(field '{mapping.split.field}' == {mapping.split.value!r})")
        starts = sorted(set(int(np.searchsorted(al.times, e, side="left")) for e in s.events))
        ends = starts[1:] + [T]
        return [(a, b) for a, b in zip(starts, ends) if b > a]
    if mapping.split.mode == "gap":
        cut = (np.nonzero(np.diff(al.segment) != 0)[0] + 1).tolist()
        edges = [0, *cut, T]
        return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return [(0, T)]


def idle_mask(actions: np.ndarray | None, images: np.ndarray, eps: float, pixel_eps: float = 0.5,
              has_gripper: bool = True) -> np.ndarray:
    """True where a step is idle: no motion commanded (and the gripper command unchanged), or for
    action-free data, a frame that hardly differs from the previous one."""
    T = images.shape[0]
    if actions is not None:
        motion = actions[:, :-1] if has_gripper and actions.shape[1] > 1 else actions
        idle = np.max(np.abs(motion), axis=1) <= eps
        if has_gripper:
            g = actions[:, -1]
            idle &= np.concatenate([[True], np.abs(np.diff(g)) <= eps])
        return idle
    diff = np.zeros(T)
    if T > 1:
        diff[1:] = np.abs(images[1:].astype(np.int16) - images[:-1].astype(np.int16)).mean(axis=(1, 2, 3))
    return diff <= pixel_eps


def trim_range(idle: np.ndarray) -> tuple[int, int]:
    active = np.nonzero(~idle)[0]
    if active.size == 0:
        return 0, 0
    return int(active[0]), int(active[-1]) + 1
