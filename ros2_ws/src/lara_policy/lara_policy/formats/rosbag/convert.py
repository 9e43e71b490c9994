"""rosbag2 (MCAP or sqlite3) -> LARA episodes, ROS-free (pure `rosbags`).

Two kinds of source, one code path:
- bags written by this project's recorder (`lara_policy.ros.recorder_node`: one split bag per
  episode with `episode_meta.json`). They need no mapping file: `recorder_mapping()` builds one
  from the topics present (the names and conventions of lara_bringup/config/sim.yaml and
  policy_node). A recorder episode left by a SIGKILL (no or stale `metadata.yaml`) is read from
  its complete segments (`.segments/*.yaml`); the segment in flight at the kill is lost.
- any other rosbag2 bag (`ros2 bag record`, a bare `.mcap` / `.db3` file, no project metadata)
  through a topic-mapping YAML (docs/bag_conversion.md): which topic/field gives each camera,
  state entry, the action, the gripper, the instruction, episode boundaries and success.

Samples are aligned to a control rate (`rate_hz`) by header stamps (the bag's receive time
for messages without a header) in lara_policy.formats.rosbag.align, the one alignment of `lara
convert` and `lara eval bag`: per camera segment (split at camera gaps with `split: gap`) step
k is at t_k = first frame + k / rate_hz; the camera frame of step k is the latest frame stamped
<= t_k + half a period, each state entry the latest value stamped <= that frame, and the action
of step k the command in effect when the NEXT frame of the segment was taken (one period after
the segment's last frame); steps before every mapped stream has started are dropped. Velocity
commands (Servo twists) become per-step deltas at the store's rate. State may also come from
/tf + /tf_static by frame (lara_policy.formats.rosbag.tf).

Errors in the input (a topic that is not in the bag, a type with no definition, an image
encoding the nodes do not accept, a mapping field that does not exist, a truncated bag) raise
ConvertError with the bag, topic and field named; `lara convert` prints it and exits 2.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lara_policy.common.errors import ConvertError  # noqa: F401  (re-exported: one error base for the CLI)
from lara_policy.formats.rosbag.align import align, boundaries, idle_mask, trim_range
from lara_policy.formats.rosbag.fields import resize
from lara_policy.formats.rosbag.layout import META_NAME, is_recorder_episode
from lara_policy.formats.rosbag.mapping import Mapping, parse_mapping, recorder_mapping
from lara_policy.formats.rosbag.reader import bag_topics, expand_sources
from lara_policy.formats.rosbag.streams import Streams, read_streams
from lara_policy.formats.store import Episode, StoreMeta


# ------------------------------------------------------------------------------ alignment
# lara_policy.formats.rosbag.align: the one alignment / episode split of convert and eval bag


@dataclass
class BagEpisode:
    episode: Episode
    times: np.ndarray
    action_dims: list[str]
    source: str


def bag_episodes(path: Path, mapping: Mapping, action_free: bool = False, trim_idle: bool = False,
                 idle_eps: float = 1e-3, min_steps: int = 2) -> tuple[list[BagEpisode], Streams]:
    """The episodes of one bag (split, optionally idle-trimmed) as store Episodes."""
    s = read_streams(path, mapping, action_free)
    al = align(s, mapping, action_free)
    out = []
    for a, b in boundaries(s, al, mapping):
        acts = None if al.actions is None else al.actions[a:b]
        cam0 = next(iter(al.images))
        if trim_idle:
            lo, hi = trim_range(idle_mask(acts, al.images[cam0][a:b], idle_eps, has_gripper=mapping.gripper is not None))
            a, b = a + lo, a + hi
            acts = None if al.actions is None else al.actions[a:b]
        if b - a < min_steps:
            continue
        instrs = [i for i in al.instruction[a:b] if i.strip()]
        instruction = max(set(instrs), key=instrs.count) if instrs else ""
        if not instruction:
            raise ConvertError(f"{path}: no instruction: map an instruction topic, or give instruction: TEXT "
                               "in the mapping (or --instruction)")
        task = mapping.task or str(s.meta.get("task", "") or "") or instruction
        ss = None if al.step_success is None else al.step_success[a:b]
        if s.meta and mapping.split.mode in ("recorder", "none") and s.meta.get("success") is not None:
            success = bool(s.meta["success"])
        else:
            success = bool(ss.any()) if ss is not None else False
        extra = {"bag": str(path), "t_start": float(al.times[a]), "t_end": float(al.times[b - 1]),
                 "rate_hz": mapping.rate_hz,
                 "action_dims": al.action_dims if acts is not None else []}
        if s.action_kind == "twist" and len(s.action_frames) == 1:
            extra["action_frame"] = s.action_frames[0]      # the twists' (and the rotation deltas') frame
        for k in ("episode_id", "model_id", "dynamics_checks", "dynamics_not_accepted", "stop_reason", "notes"):
            if k in s.meta:
                extra[k] = s.meta[k]
        if s.note:
            extra["conversion_note"] = s.note
        # `lara bringup` writes "... seed N ..." into the recorder's notes: keep the layout seed, so
        # the seed checks of training / evaluation see it (-1 = unknown)
        m_seed = re.search(r"\bseed (\d+)\b", str(s.meta.get("notes", "")))
        ep = Episode(images={n: v[a:b] for n, v in al.images.items()}, state=al.state[a:b], actions=acts,
                     instruction=instruction, task=task, seed=int(m_seed.group(1)) if m_seed else -1,
                     success=success, source="rosbag",
                     step_success=ss, extra=extra)
        out.append(BagEpisode(ep, al.times[a:b], al.action_dims, str(path)))
    return out, s


def resolve_mapping(path: Path, mapping: Mapping | None, rate_hz: float | None, instruction: str = "",
                    camera_name: str = "corner4", ee_delta_scale_m: float = 0.01) -> Mapping:
    """The mapping for one bag: the given one, or (recorder episodes) the built-in one."""
    if mapping is None:
        if not is_recorder_episode(Path(path)):
            raise ConvertError(f"{path}: not a bag written by the LARA recorder (no {META_NAME}): give a topic "
                               "mapping with --mapping MAP.yaml (docs/bag_conversion.md)")
        topics = bag_topics(path)
        if "/camera/image_raw" not in topics:
            raise ConvertError(f"{path}: recorder episode without /camera/image_raw (topics: "
                               f"{', '.join(sorted(topics))}); give a --mapping")
        mapping = parse_mapping(recorder_mapping(topics, camera_name, rate_hz or 30.0, ee_delta_scale_m),
                                "built-in recorder mapping")
    if rate_hz:
        mapping.rate_hz = float(rate_hz)
    if instruction:
        mapping.instruction_text, mapping.instruction = instruction, None
    return mapping


def convert_bags(sources: list[Path], mapping: Mapping | None = None, *, action_free: bool = False,
                 rate_hz: float | None = None, trim_idle: bool = False, instruction: str = "",
                 camera_name: str = "corner4", ee_delta_scale_m: float = 0.01,
                 log=print) -> tuple[StoreMeta, Iterator[Episode]]:
    """(StoreMeta, iterator of Episodes) over every bag of `sources` (the `lara convert` reader).
    The first episode is read eagerly to fix the store's dimensions; later ones must match."""
    bags = expand_sources([Path(p) for p in sources])
    if not bags:
        raise ConvertError("no bags to convert")

    def episodes_of(bag: Path):
        m = resolve_mapping(bag, None if mapping is None else _copy_mapping(mapping), rate_hz, instruction,
                            camera_name, ee_delta_scale_m)
        eps, s = bag_episodes(bag, m, action_free=action_free, trim_idle=trim_idle)
        if s.note:
            log(f"lara convert: {bag}: {s.note}")
        if not eps:
            log(f"lara convert: {bag}: no episode with >= 2 steps after alignment"
                + (" and idle trimming" if trim_idle else ""))
        return m, eps, s

    it = iter(bags)
    first_m, first_eps, first_s = None, [], None
    for bag in it:
        first_m, first_eps, first_s = episodes_of(bag)
        if first_eps:
            break
    if not first_eps:
        raise ConvertError(f"no episode found in {', '.join(str(b) for b in bags)}")
    e0 = first_eps[0].episode
    cams = list(e0.images)
    size = tuple(e0.images[cams[0]].shape[1:3])
    kind = first_s.action_kind
    action_space = first_m.action_space or first_s.action_space or {
        "twist": "ee_delta_6d_gripper" if first_m.action and (first_m.action.ee_rot_scale_rad or 0) > 0
        else "ee_delta_xyz_gripper",
        "joint_trajectory": "joint_position", "action_chunk": "", "fields": "custom"}.get(kind, "none")
    if kind == "twist" and first_m.gripper is None:
        action_space = action_space.replace("_gripper", "")
    if action_free and not first_eps[0].action_dims:
        action_space = "none"
    meta = StoreMeta(env=first_m.env, action_space=action_space,
                     action_dim=len(first_eps[0].action_dims) if action_free else int(e0.actions.shape[1]),
                     state_dim=int(e0.state.shape[1]), cameras=cams, image_size=size, dt=1.0 / first_m.rate_hz,
                     state_names=[n for n, _ in first_m.state], phrasings={},
                     created_by="lara convert (rosbag2)",
                     extra={"mapping": first_m.source, "rate_hz": first_m.rate_hz,
                            "action_dims": first_eps[0].action_dims, "action_free": bool(action_free),
                            "trim_idle": bool(trim_idle)})
    if "action_frame" in e0.extra:
        meta.extra["action_frame"] = e0.extra["action_frame"]

    def fit(ep: Episode, bag: str) -> Episode:
        if list(ep.images) != cams:
            raise ConvertError(f"{bag}: cameras {list(ep.images)} differ from the first bag's {cams}")
        for n in cams:
            if ep.images[n].shape[1:3] != size:
                ep.images[n] = np.stack([resize(f, size) for f in ep.images[n]])
        if ep.state.shape[1] != meta.state_dim:
            raise ConvertError(f"{bag}: {ep.state.shape[1]} state entries, the first bag has {meta.state_dim}")
        if not action_free and (ep.actions is None or ep.actions.shape[1] != meta.action_dim):
            raise ConvertError(f"{bag}: action width differs from the first bag's ({meta.action_dim})")
        if meta.action_space.startswith("ee_delta_6d") and ep.extra.get("action_frame") != meta.extra.get("action_frame"):
            raise ConvertError(f"{bag}: twists in frame {ep.extra.get('action_frame')!r}, the first bag's are in "
                               f"{meta.extra.get('action_frame')!r}: rotation deltas of one store share one frame")
        return ep

    def gen():
        for be in first_eps:
            yield fit(be.episode, be.source)
        for bag in it:
            _, eps, _ = episodes_of(bag)
            for be in eps:
                yield fit(be.episode, be.source)

    return meta, gen()


def _copy_mapping(m: Mapping) -> Mapping:
    import copy
    return copy.deepcopy(m)
