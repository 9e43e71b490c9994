"""policy_node's observation assembly: the latest camera frame and the stamped samples of every
state source, checked as they arrive, and the snapshot that pairs them into the Observation the
policy is called with (see policy_node's docstring for which state goes with an image and what is
rejected).

ObservationAssembler is owned by the node: its input methods are the node's subscription
callbacks (executor thread), snapshot() runs on the inference worker. The node shares its lock
(`lock`, and `cond`, which state arrivals notify) for the episode state it keeps itself.
"""
from __future__ import annotations

import math
import threading
import time
import unicodedata
from collections import deque

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped
from sensor_msgs.msg import CompressedImage, JointState

from lara_policy.common.policy_api import Observation
from lara_policy.ros.cameras import FrameSync
from lara_policy.ros.codec import ImageConversionError, stamp_to_sec

EE_NAMES = {"hand_x": 0, "hand_y": 1, "hand_z": 2}
GOAL_NAMES = {"goal_x": 0, "goal_y": 1, "goal_z": 2}
_HISTORY = 64          # samples kept per state source (pick by stamp)
_STAMP_EPS = 1e-6      # stamps equal within a microsecond (float seconds)


class _Series:
    """Recent samples (stamp s, value) of one state source, in arrival order."""

    __slots__ = ("samples",)

    def __init__(self):
        self.samples: deque = deque(maxlen=_HISTORY)

    def add(self, stamp: float, value) -> None:
        self.samples.append((stamp, value))

    def pick(self, t: float):
        """(stamp, value): the latest sample stamped <= t, else the earliest later one; None if empty."""
        before = [s for s in self.samples if s[0] <= t + _STAMP_EPS]
        if before:
            return max(before, key=lambda s: s[0])
        return min(self.samples, key=lambda s: s[0]) if self.samples else None

    def pending(self, t: float, horizon: float) -> bool:
        """True when no sample stamped >= t has arrived yet but the source's next one is due by
        t + horizon (from the spacing of its last stamps): worth waiting for."""
        if len(self.samples) < 2:
            return False
        last = max(s[0] for s in self.samples)
        if last >= t - _STAMP_EPS:
            return False
        recent = sorted(s[0] for s in list(self.samples)[-8:])
        gaps = [b - a for a, b in zip(recent, recent[1:]) if b - a > _STAMP_EPS]
        if not gaps:
            return False
        period = sorted(gaps)[len(gaps) // 2]
        return last + period <= t + horizon + _STAMP_EPS


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_dims(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding (None: unknown format or no
    size found in the first bytes): lets a decompression bomb be refused before OpenCV allocates it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                       # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:   # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def stamp_problem(stamp) -> str:
    """'' for a usable header stamp, else why not (invalid nanosec, zero = never stamped)."""
    if not 0 <= int(stamp.nanosec) < 1_000_000_000:
        return f"header.stamp.nanosec {stamp.nanosec} is not in [0, 1e9) (invalid builtin_interfaces/Time)"
    if int(stamp.sec) == 0 and int(stamp.nanosec) == 0:
        return "header.stamp is zero (the driver does not stamp its messages)"
    return ""


def instruction_problem(text: str, max_chars: int) -> tuple[str, str]:
    """('', '') for an acceptable (stripped) instruction, else (cause, why it is refused)."""
    if not text:
        return "empty", "empty instruction refused"
    if len(text) > max_chars:
        return "too_long", (f"instruction of {len(text)} characters refused (> max_instruction_chars {max_chars}; "
                f"starts '{text[:40]}...'): the language model reads only its first tokens, and a huge text "
                "stalls tokenisation and travels in every ActionChunk")
    if "\ufffd" in text:
        return "utf8", "instruction refused: it is not valid UTF-8 (decoded with replacement characters)"
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"})
    if bad:
        return "control", f"instruction refused: it holds control characters ({', '.join(bad[:5])})"
    if not any(c.isalpha() for c in text):
        return "no_letter", f"instruction refused: '{text[:40]}' has no letter"
    return "", ""


class ObservationAssembler:
    """Buffered inputs of one policy_node and the synchronised snapshot built from them.

    param(name) reads a (run-time settable) node parameter, now() the node clock in seconds,
    reject(key, message, cause='') counts and logs a rejection, decode(msg) turns an image message
    into RGB (raising ImageConversionError); topics is the node's topic table. cameras: (camera
    name, topic) per camera, the first the primary (default: camera_name on topics['image_topic']);
    with several, frames are paired by stamp (cameras.FrameSync, parameter image_sync_slop_s)."""

    def __init__(self, *, param, now, reject, decode, topics: dict, state_names: list[str], camera_name: str,
                 gripper_joint_name: str, gripper_open: float, gripper_closed: float, frame_id: str, frame_map,
                 cameras: list[tuple[str, str]] | None = None):
        self._param, self._now, self._reject, self._decode = param, now, reject, decode
        self.topics = topics
        self.state_names = list(state_names)
        self.cameras = list(cameras) if cameras else [(camera_name, topics["image_topic"])]
        self.camera_topic = dict(self.cameras)
        self.camera_name = self.cameras[0][0]
        self.frames = FrameSync([c for c, _ in self.cameras])
        self.gripper_joint_name = gripper_joint_name
        self.gripper_open, self.gripper_closed = gripper_open, gripper_closed
        self.frame_id, self.frame_map = frame_id, frame_map
        # latest buffered inputs (written by the executor, read by the worker)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)   # state arrivals wake a worker waiting for them
        self.instruction = ""
        self.sync_waits = 0           # snapshots that waited for a state sample of the image's tick
        self.sync_timeouts = 0        # ... and gave up after state_sync_timeout_s
        self.state_stamps_used: deque = deque(maxlen=1000)   # (image stamp, {state name: sample stamp})
        self.clear()

    def clear(self) -> None:
        """Forget every buffered frame and state sample (a new episode; the caller holds the lock)."""
        self.frames.clear()           # per camera: the last frames (rgb, stamp_s)
        self.ee = None                # (xyz, stamp_s)
        self.goal = None              # (xyz, stamp_s)
        self.joints: dict = {}        # {name: (pos, stamp_s)}, merged over JointState messages
        self.ee_hist, self.goal_hist = _Series(), _Series()
        self.joint_hist: dict[str, _Series] = {}

    # -- inputs (executor thread) --------------------------------------------------------
    def image_precheck(self, msg) -> tuple[str, str]:
        """(cause, problem) found from the message fields alone (before any decoding), or ('', '')."""
        why = stamp_problem(msg.header.stamp)
        if why:
            return "stamp", why
        max_px = int(self._param("max_image_pixels"))
        if isinstance(msg, CompressedImage):
            if len(msg.data) > 3 * max_px:
                return "size", (f"compressed image of {len(msg.data)} bytes is larger than an uncompressed "
                                f"max_image_pixels {max_px} frame")
            dims = compressed_dims(bytes(msg.data[:65536]))
            if dims is not None and dims[0] * dims[1] > max_px:
                return "size", (f"compressed image declares {dims[0]}x{dims[1]} ({dims[0] * dims[1] / 1e6:.1f} MP), "
                                f"more than max_image_pixels {max_px}: refused before decoding")
            return "", ""
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        if h * w > max_px:
            return "size", (f"image {w}x{h} ({h * w / 1e6:.1f} MP) has more than max_image_pixels {max_px}: "
                            "lower the camera resolution (the policy uses ~100 px) or raise max_image_pixels")
        if h > 0 and w > 0 and len(msg.data) != step * h:
            return "data", (f"image data is {len(msg.data)} bytes but step x height = {step} x {h} = "
                            f"{step * h} ({w}x{h} '{msg.encoding}'): a malformed message")
        return "", ""

    @property
    def image(self):
        """(rgb, stamp_s) of the primary camera's latest frame, or None."""
        return self.frames.latest(self.camera_name)

    def _where(self, camera: str) -> str:
        topic = self.camera_topic[camera]
        return topic if len(self.cameras) == 1 else f"{topic} (camera '{camera}')"

    def add_image(self, msg, camera: str | None = None) -> bool:
        """Check, decode and buffer a frame of `camera` (default: the primary) (True), or reject it and
        drop that camera's buffered frames (False)."""
        camera = camera or self.camera_name
        cause, why = self.image_precheck(msg)
        try:
            if why:
                raise ImageConversionError(why)
            cause = "decode"
            rgb = self._decode(msg)
            cause = "size"
            ew = int(self._param("expected_image_width"))
            eh = int(self._param("expected_image_height"))
            if (ew and rgb.shape[1] != ew) or (eh and rgb.shape[0] != eh):
                raise ImageConversionError(f"image size {rgb.shape[1]}x{rgb.shape[0]} != expected "
                                           f"{ew or rgb.shape[1]}x{eh or rgb.shape[0]}")
            max_px = int(self._param("max_image_pixels"))
            if rgb.shape[0] * rgb.shape[1] > max_px:     # a compressed image decodes to its real size
                raise ImageConversionError(f"image {rgb.shape[1]}x{rgb.shape[0]} has more than "
                                           f"max_image_pixels {max_px}")
        except ImageConversionError as exc:
            with self.lock:
                self.frames.drop(camera)     # never act on an older frame while the camera is bad
            self._reject("image", f"bad image on {self._where(camera)}: {exc}", cause=cause)
            return False
        with self.cond:
            self.frames.add(camera, rgb, stamp_to_sec(msg.header.stamp))
            self.cond.notify_all()
        return True

    def _state_stamp(self, msg, key: str, topic: str):
        """The message's stamp in seconds, or None (and a rejection) when it is unusable."""
        why = stamp_problem(msg.header.stamp)
        if why:
            self._reject(key, f"{topic}: {why}; message ignored", cause="stamp")
            return None
        return stamp_to_sec(msg.header.stamp)

    def on_ee(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id
        if frame and frame.lstrip("/") != str(self.frame_id).lstrip("/"):
            with self.lock:
                self.ee = None
                self.ee_hist = _Series()       # never fall back on a pose from before the bad frame
            self._reject("ee_frame", f"end-effector pose on {self.topics['ee_pose_topic']} is in frame '{frame}', "
                                     f"not frame_id '{self.frame_id}' (publish it in the base frame)")
            return
        stamp = self._state_stamp(msg, "ee_pose", self.topics["ee_pose_topic"])
        if stamp is None:
            return
        p, q = msg.pose.position, msg.pose.orientation
        xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
        if not all(math.isfinite(v) for v in (q.x, q.y, q.z, q.w)):
            xyz[:] = np.nan            # a pose with a NaN orientation is not trusted: the tick says why
            self._reject("ee_pose", f"end-effector pose on {self.topics['ee_pose_topic']} has a non-finite "
                         "orientation; treated as NaN", cause="orientation")
        with self.cond:
            self.ee = (xyz, stamp)
            self.ee_hist.add(stamp, xyz)
            self.cond.notify_all()

    def on_goal(self, msg: PointStamped) -> None:
        stamp = self._state_stamp(msg, "goal", self.topics["goal_topic"])
        if stamp is None:
            return
        p = msg.point
        xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
        with self.cond:
            self.goal = (xyz, stamp)
            self.goal_hist.add(stamp, xyz)
            self.cond.notify_all()

    def on_joints(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            self._reject("joint_states", f"joint_states has {len(msg.name)} names but "
                         f"{len(msg.position)} positions", cause="length")
            return
        stamp = self._state_stamp(msg, "joint_states", self.topics["joint_states_topic"])
        if stamp is None:
            return
        with self.cond:
            # merged by name: the arm's broadcaster and a separate gripper driver usually publish
            # different joints on the same topic
            for name, v in zip(msg.name, msg.position):
                self.joints[name] = (float(v), stamp)
                series = self.joint_hist.get(name)
                if series is None:
                    if len(self.joint_hist) >= 1024:     # a flood of made-up joint names
                        continue
                    series = self.joint_hist[name] = _Series()
                series.add(stamp, float(v))
            self.cond.notify_all()

    # -- observation (worker thread) -----------------------------------------------------
    def _sources(self) -> list[tuple[str, _Series | None]]:
        """(state name, its series) for every state entry (caller holds the lock)."""
        out = []
        for name in self.state_names:
            if name in EE_NAMES:
                out.append((name, self.ee_hist))
            elif name in GOAL_NAMES:
                out.append((name, self.goal_hist))
            else:
                out.append((name, self.joint_hist.get(self.gripper_joint_name if name == "gripper" else name)))
        return out

    def synced_state(self, t_img: float):
        """(ee, goal, joints) as (value, stamp) picked for the image stamped t_img: per source the
        latest sample stamped <= t_img, after waiting (bounded) for samples of that tick that are due."""
        timeout = float(self._param("state_sync_timeout_s"))
        deadline = time.monotonic() + timeout
        waited = False
        with self.cond:
            while timeout > 0:
                due = [n for n, s in self._sources() if s is not None and s.pending(t_img, timeout)]
                left = deadline - time.monotonic()
                if not due:
                    break
                if left <= 0:
                    self.sync_timeouts += 1
                    break
                waited = True
                self.cond.wait(left)
            if waited:
                self.sync_waits += 1

            def swap(pick):
                return None if pick is None else (pick[1], pick[0])
            ee, goal = swap(self.ee_hist.pick(t_img)), swap(self.goal_hist.pick(t_img))
            joints = {}
            for name, series in self._sources():
                if series is not None and name not in EE_NAMES and name not in GOAL_NAMES:
                    key = self.gripper_joint_name if name == "gripper" else name
                    joints[key] = swap(series.pick(t_img))
        return ee, goal, joints

    def frame_set(self) -> tuple[dict | None, str, str]:
        """({camera: (rgb, stamp)}, '', '') for the newest set of frames, or (None, cause, why): a camera
        without a valid frame (no_image), one whose latest frame is too old (stale_image), or no
        frames within image_sync_slop_s of each other (unsynced_images). When the primary camera's
        newest frame waits for another camera's frame of that moment, waits for it at most the slop."""
        slop = float(self._param("image_sync_slop_s")) if len(self.cameras) > 1 else 0.0
        deadline = time.monotonic() + min(slop, 0.1)
        with self.cond:
            while True:
                missing = self.frames.missing()
                chosen = None if missing else self.frames.newest_set(slop)
                if missing or len(self.cameras) == 1 or not self.frames.partner_may_come(slop):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            latest = {c: self.frames.latest(c) for c, _ in self.cameras}
        if missing:
            return None, "no_image", f"no valid image on {self._where(missing[0])}"
        now = self._now()
        max_age = float(self._param("max_image_age_s"))
        if len(self.cameras) > 1:
            for c, _ in self.cameras:
                age = now - latest[c][1]
                if max_age > 0 and age > max_age:
                    return None, "stale_image", (f"latest image on {self._where(c)} is {age:.2f} s old "
                                                 f"(> {max_age:.2f} s)")
        if chosen is None:
            stamps = ", ".join(f"{c} {latest[c][1]:.3f}" for c, _ in self.cameras)
            return None, "unsynced_images", (f"no frames of the cameras within image_sync_slop_s {slop:.3f} s of "
                                             f"each other (latest stamps: {stamps})")
        return chosen, "", ""

    def snapshot(self) -> tuple[Observation | None, str, str]:
        """(observation, "", "") or (None, cause key, message)."""
        with self.lock:
            instr = self.instruction
        if not instr:
            return None, "no_instruction", "no instruction yet (topic or service)"
        chosen, key, why = self.frame_set()
        if chosen is None:
            return None, key, why
        rgb, t_img = chosen[self.camera_name]
        now = self._now()
        max_age = float(self._param("max_image_age_s"))
        oldest = min(chosen, key=lambda c: chosen[c][1])
        if max_age > 0 and now - chosen[oldest][1] > max_age:
            age = now - chosen[oldest][1]
            if len(self.cameras) == 1:
                return None, "stale_image", f"latest image is {age:.2f} s old (> {max_age:.2f} s)"
            return None, "stale_image", f"image on {self._where(oldest)} is {age:.2f} s old (> {max_age:.2f} s)"
        max_future = float(self._param("max_future_stamp_s"))
        newest = max(chosen, key=lambda c: chosen[c][1])
        if chosen[newest][1] - now > max_future:
            return None, "future_image", (
                f"latest image on {self._where(newest)} is stamped {chosen[newest][1] - now:.2f} s in the future "
                f"(> {max_future:.2f} s): the camera's clock is ahead of this node's (sync the hosts' clocks, "
                "or the sim clock jumped back)")
        ee, goal, joints = self.synced_state(t_img)
        used = {"ee": None if ee is None else ee[1], "goal": None if goal is None else goal[1]}
        used.update({k: None if v is None else v[1] for k, v in joints.items()})
        self.state_stamps_used.append((t_img, used))
        skew = float(self._param("max_state_skew_s"))
        state = np.zeros(len(self.state_names), dtype=np.float64)
        for i, name in enumerate(self.state_names):
            if name in EE_NAMES:
                src, what = ee, self.topics["ee_pose_topic"]
                value = None if ee is None else self.frame_map.position_to_policy(ee[0])[EE_NAMES[name]]
            elif name in GOAL_NAMES:
                src, what = goal, self.topics["goal_topic"]
                value = None if goal is None else self.frame_map.position_to_policy(goal[0])[GOAL_NAMES[name]]
            else:
                key = self.gripper_joint_name if name == "gripper" else name
                what = f"{self.topics['joint_states_topic']}[{key}]"
                src = joints.get(key)
                value = None if src is None else src[0]
                if name == "gripper" and value is not None:    # driver units -> 0 closed .. 1 open
                    value = (value - self.gripper_closed) / (self.gripper_open - self.gripper_closed)
            if src is None or value is None:
                return None, f"missing_state:{name}", f"state '{name}' missing (no message on {what})"
            if skew > 0 and abs(src[1] - t_img) > skew:
                return None, f"stale_state:{name}", (f"state '{name}' from {what} is {abs(src[1] - t_img):.2f} s "
                                             f"away from the image (> {skew:.2f} s)")
            if not math.isfinite(value):
                return None, f"nan_state:{name}", f"state '{name}' from {what} is {value} (NaN/inf)"
            state[i] = value
        obs = Observation(images={c: f[0] for c, f in chosen.items()}, state=state.astype(np.float32),
                          instruction=instr, stamp=t_img)
        return obs, "", ""
