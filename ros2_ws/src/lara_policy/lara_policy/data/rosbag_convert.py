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
for messages without a header) in lara_policy.data.bag_align, the one alignment of `lara
convert` and `lara eval bag`: per camera segment (split at camera gaps with `split: gap`) step
k is at t_k = first frame + k / rate_hz; the camera frame of step k is the latest frame stamped
<= t_k + half a period, each state entry the latest value stamped <= that frame, and the action
of step k the command in effect when the NEXT frame of the segment was taken (one period after
the segment's last frame); steps before every mapped stream has started are dropped. Velocity
commands (Servo twists) become per-step deltas at the store's rate. State may also come from
/tf + /tf_static by frame (lara_policy.data.bag_tf).

Errors in the input (a topic that is not in the bag, a type with no definition, an image
encoding the nodes do not accept, a mapping field that does not exist, a truncated bag) raise
ConvertError with the bag, topic and field named; `lara convert` prints it and exits 2.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lara_policy.data.store import Episode, StoreMeta

META_NAME = "episode_meta.json"
SEGMENTS_DIR = ".segments"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
TWIST = "geometry_msgs/msg/Twist"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
ACTION_CHUNK = "lara_msgs/msg/ActionChunk"
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
ACTION_TYPES = ("twist", "joint_trajectory", "action_chunk", "fields")

# policy_node's state conventions (lara_policy.ros.policy_node): hand_* from the EE pose,
# goal_* from the goal point, anything else a joint of /joint_states (gripper -> 'gripper').
_EE = {"hand_x": "pose.position.x", "hand_y": "pose.position.y", "hand_z": "pose.position.z"}
_GOAL = {"goal_x": "point.x", "goal_y": "point.y", "goal_z": "point.z"}


from lara_policy.errors import ConvertError  # noqa: E402,F401  (re-exported: one error base for the CLI)
from lara_policy.data.bag_align import (Aligned, _latest, align, boundaries, idle_mask,  # noqa: E402,F401
                                        trim_range)


# ------------------------------------------------------------------------------ mapping
@dataclass
class FieldSpec:
    topic: str
    field: str = ""                 # dotted path with [i] indexing, e.g. pose.position.x, data[2]
    joint: str = ""                 # sensor_msgs/JointState: value of this joint in `field` (position)
    tf: tuple[str, str] | None = None   # (parent, child) frames: a pose from /tf + /tf_static (bag_tf)

    def label(self) -> str:
        if self.tf:
            return f"tf '{self.tf[0]}' -> '{self.tf[1]}' field '{self.field}' ({self.topic} and /tf_static)"
        what = f"joint '{self.joint}' of " if self.joint else ""
        return f"{what}field '{self.field or '(message)'}' of topic {self.topic}"


@dataclass
class ActionSpec:
    topic: str
    type: str = ""                  # twist | joint_trajectory | action_chunk | fields ('' = from the msg type)
    ee_delta_scale_m: float = 0.01  # twist: metres per action unit per step (command_node's parameter)
    ee_rot_scale_rad: float = 0.0   # twist: > 0 adds angular x,y,z (radians per unit per step)
    joints: list[str] = field(default_factory=list)   # joint_trajectory: joints to keep (default all)
    fields: list[str] = field(default_factory=list)   # fields: one path per action dimension
    command_timeout_s: float = 0.25  # twist older than this at the next frame = zero motion (Servo)


@dataclass
class SplitSpec:
    mode: str = "none"              # none | recorder | topic | gap
    topic: str = ""                 # topic: every message here starts an episode ...
    field: str = ""                 # ... where this field ...
    value: Any = None               # ... equals this value (None: any message)
    gap_s: float = 2.0              # gap: a camera gap longer than this ends an episode


@dataclass
class Mapping:
    cameras: dict[str, str]                         # store camera name -> topic
    state: list[tuple[str, FieldSpec]] = field(default_factory=list)
    action: ActionSpec | None = None
    gripper: FieldSpec | None = None
    instruction_text: str = ""
    instruction: FieldSpec | None = None
    task: str = ""
    success: FieldSpec | None = None
    split: SplitSpec = field(default_factory=SplitSpec)
    rate_hz: float = 30.0
    stamps: str = "header"                           # header | receive
    image_size: tuple[int, int] | None = None
    action_space: str = ""
    action_clip: tuple[float, float] | None = None
    env: str = "rosbag"
    max_age_s: float = 1.0                           # state older than this vs its frame: step dropped
    frames: str = "unique"                           # unique: a grid step whose frame repeats the previous
                                                     # step's is dropped | grid: keep every grid step
    source: dict = field(default_factory=dict)       # the mapping as given (stored in the store's extra)


_TOP_KEYS = {"cameras", "state", "action", "gripper", "instruction", "task", "success", "episodes",
             "rate_hz", "stamps", "image_size", "action_space", "action_clip", "env", "max_age_s", "frames"}


def _field_spec(value, where: str, allow_tf: bool = False) -> FieldSpec:
    if isinstance(value, str):
        return FieldSpec(topic=value)
    if allow_tf and isinstance(value, dict) and "tf" in value:
        return _tf_spec(value, where)
    if not isinstance(value, dict) or "topic" not in value:
        raise ConvertError(f"mapping: '{where}' must be a topic name or {{topic: ..., field: ...}}"
                           + (" or {tf: {parent: ..., child: ...}, field: ...}" if allow_tf else "") + f", got {value!r}")
    extra = set(value) - {"topic", "field", "joint"}
    if extra:
        raise ConvertError(f"mapping: '{where}' has unknown key(s) {sorted(extra)} (known: topic, field, joint"
                           + (", tf" if allow_tf else "") + ")")
    return FieldSpec(str(value["topic"]), str(value.get("field", "") or ""), str(value.get("joint", "") or ""))


def _tf_spec(value: dict, where: str) -> FieldSpec:
    from lara_policy.data.bag_tf import TF_TOPIC, tf_value_index
    tf = value["tf"]
    extra = set(value) - {"tf", "field", "topic"}
    if extra or not isinstance(tf, dict) or set(tf) != {"parent", "child"}:
        raise ConvertError(f"mapping: '{where}': a tf entry is {{tf: {{parent: FRAME, child: FRAME}}, field: "
                           f"translation.x}} (optionally topic: /tf), got {value!r}")
    field_ = str(value.get("field", "") or "")
    tf_value_index(field_, f"mapping: '{where}'")
    return FieldSpec(str(value.get("topic", TF_TOPIC)), field_, tf=(str(tf["parent"]), str(tf["child"])))


def parse_mapping(data: dict, where: str = "mapping") -> Mapping:
    """A Mapping from the YAML dict (docs/bag_conversion.md); ConvertError on any bad key."""
    if not isinstance(data, dict):
        raise ConvertError(f"{where}: expected a YAML mapping at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConvertError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")
    cams = data.get("cameras") or {}
    if isinstance(cams, str):
        cams = {"camera": cams}
    if not isinstance(cams, dict) or not cams:
        raise ConvertError(f"{where}: 'cameras' must map a camera name to an image topic, e.g. "
                           "{front: /camera/image_raw}")
    cameras = {}
    for name, v in cams.items():
        cameras[str(name)] = str(v["topic"] if isinstance(v, dict) else v)
    state = []
    for i, s in enumerate(data.get("state") or []):
        if not isinstance(s, dict) or "name" not in s:
            raise ConvertError(f"{where}: state[{i}] needs a 'name' and a 'topic'")
        state.append((str(s["name"]), _field_spec({k: v for k, v in s.items() if k != "name"}, f"state[{i}]",
                                                  allow_tf=True)))
    action = None
    if data.get("action") is not None:
        a = data["action"]
        if isinstance(a, str):
            a = {"topic": a}
        known = {"topic", "type", "ee_delta_scale_m", "ee_rot_scale_rad", "joints", "fields", "command_timeout_s"}
        if not isinstance(a, dict) or "topic" not in a or set(a) - known:
            raise ConvertError(f"{where}: 'action' needs a 'topic' (known keys: {', '.join(sorted(known))}), got {a!r}")
        if a.get("type", "") and a["type"] not in ACTION_TYPES:
            raise ConvertError(f"{where}: action type '{a['type']}' unknown (one of {', '.join(ACTION_TYPES)})")
        action = ActionSpec(str(a["topic"]), str(a.get("type", "") or ""), float(a.get("ee_delta_scale_m", 0.01)),
                            float(a.get("ee_rot_scale_rad", 0.0)), [str(j) for j in a.get("joints", []) or []],
                            [str(f) for f in a.get("fields", []) or []], float(a.get("command_timeout_s", 0.25)))
        if action.ee_delta_scale_m <= 0:
            raise ConvertError(f"{where}: action.ee_delta_scale_m must be > 0")
    gripper = _field_spec(data["gripper"], "gripper") if data.get("gripper") is not None else None
    ins = data.get("instruction")
    ins_text, ins_spec = "", None
    if isinstance(ins, dict) and "text" in ins:
        ins_text = str(ins["text"])
    elif isinstance(ins, dict):
        ins_spec = _field_spec(ins, "instruction")
    elif ins is not None:
        ins_text = str(ins)
    ep = data.get("episodes") or {}
    if isinstance(ep, str):
        ep = {"split": ep}
    split = SplitSpec(str(ep.get("split", "none")), str(ep.get("topic", "") or ""), str(ep.get("field", "") or ""),
                      ep.get("value"), float(ep.get("gap_s", 2.0)))
    if split.mode not in ("none", "recorder", "topic", "gap"):
        raise ConvertError(f"{where}: episodes.split '{split.mode}' unknown (none | recorder | topic | gap)")
    if split.mode == "topic" and not split.topic:
        raise ConvertError(f"{where}: episodes.split 'topic' needs episodes.topic")
    size = data.get("image_size")
    if size is not None:
        size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(x) for x in size)
        if len(size) != 2 or min(size) < 2:
            raise ConvertError(f"{where}: image_size must be [H, W] or one int, got {data['image_size']!r}")
    clip = data.get("action_clip")
    stamps = str(data.get("stamps", "header"))
    if stamps not in ("header", "receive"):
        raise ConvertError(f"{where}: stamps must be 'header' or 'receive', got '{stamps}'")
    frames = str(data.get("frames", "unique"))
    if frames not in ("unique", "grid"):
        raise ConvertError(f"{where}: frames must be 'unique' or 'grid', got '{frames}'")
    rate = float(data.get("rate_hz", 30.0))
    if not rate > 0:
        raise ConvertError(f"{where}: rate_hz must be > 0")
    return Mapping(cameras=cameras, state=state, action=action, gripper=gripper, instruction_text=ins_text,
                   instruction=ins_spec, task=str(data.get("task", "") or ""),
                   success=_field_spec(data["success"], "success") if data.get("success") is not None else None,
                   split=split, rate_hz=rate, stamps=stamps, image_size=size,
                   action_space=str(data.get("action_space", "") or ""),
                   action_clip=(float(clip[0]), float(clip[1])) if clip else None,
                   env=str(data.get("env", "rosbag")), max_age_s=float(data.get("max_age_s", 1.0)), frames=frames,
                   source=dict(data))


def load_mapping(path: str | Path) -> Mapping:
    from ruamel.yaml import YAML, YAMLError
    p = Path(path)
    if not p.is_file():
        raise ConvertError(f"mapping file {p} does not exist")
    try:
        data = YAML(typ="safe").load(p.read_text())
    except YAMLError as exc:
        raise ConvertError(f"mapping file {p}: {yaml_error_line(exc)}") from None
    return parse_mapping(data, f"mapping {p}")


def yaml_error_line(exc) -> str:
    """A ruamel YAMLError as one line: where (line, column of the problem) and what; a '[' in a
    plain value inside {...} (a field path such as position[2]) gets the fix: quote it."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(str(getattr(exc, "problem", "") or exc).split())
    context = " ".join(str(getattr(exc, "context", "") or "").split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    hint = ""
    if "'['" in problem or "'[" in problem:
        hint = " (a field path with [i] inside {...} or [...] must be quoted: field: \"position[2]\")"
    return f"not valid YAML at {where}{problem}" + (f" ({context})" if context else "") + hint


def recorder_mapping(topics: dict[str, str], camera_name: str = "corner4", rate_hz: float = 30.0,
                     ee_delta_scale_m: float = 0.01) -> dict:
    """The mapping a recorder episode needs (the graph of lara_bringup/config/sim.yaml), as the
    YAML dict `--print-mapping` shows: entries only for topics present in the bag."""
    m: dict = {"cameras": {camera_name: "/camera/image_raw"}, "rate_hz": rate_hz, "episodes": {"split": "recorder"},
               "state": [], "env": "lara-recorder"}
    if "/lara/ee_pose" in topics:
        m["state"] += [{"name": n, "topic": "/lara/ee_pose", "field": f} for n, f in _EE.items()]
    if "/joint_states" in topics:
        m["state"].append({"name": "gripper", "topic": "/joint_states", "joint": "gripper"})
    if "/lara/goal" in topics:
        m["state"] += [{"name": n, "topic": "/lara/goal", "field": f} for n, f in _GOAL.items()]
    if "/servo_node/delta_twist_cmds" in topics:
        m["action"] = {"topic": "/servo_node/delta_twist_cmds", "type": "twist", "ee_delta_scale_m": ee_delta_scale_m}
        m["action_clip"] = [-1.0, 1.0]
        if "/lara/gripper_command" in topics:
            m["gripper"] = {"topic": "/lara/gripper_command", "field": "data"}
    elif "/arm_controller/joint_trajectory" in topics:
        m["action"] = {"topic": "/arm_controller/joint_trajectory", "type": "joint_trajectory"}
    elif "/lara/action_chunk" in topics:
        m["action"] = {"topic": "/lara/action_chunk", "type": "action_chunk"}
    if "/lara/instruction" in topics:
        m["instruction"] = {"topic": "/lara/instruction", "field": "data"}
    if "/lara/task_success" in topics:
        m["success"] = {"topic": "/lara/task_success", "field": "data"}
    return m


def policy_mapping(topics: dict[str, str], state_names: list[str], camera_name: str, rate_hz: float,
                   ee_delta_scale_m: float = 0.01, gripper_joint: str = "gripper") -> dict:
    """The mapping that rebuilds a policy's observation from a recorder bag exactly as policy_node
    does (its state_names: hand_* <- /lara/ee_pose, goal_* <- /lara/goal, others joints)."""
    m = recorder_mapping(topics, camera_name, rate_hz, ee_delta_scale_m)
    state = []
    for n in state_names:
        if n in _EE:
            state.append({"name": n, "topic": "/lara/ee_pose", "field": _EE[n]})
        elif n in _GOAL:
            state.append({"name": n, "topic": "/lara/goal", "field": _GOAL[n]})
        else:
            state.append({"name": n, "topic": "/joint_states", "joint": gripper_joint if n == "gripper" else n})
    m["state"] = state
    m.pop("action_clip", None)
    return m


# ------------------------------------------------------------------------------ opening bags
def is_recorder_episode(path: Path) -> bool:
    return path.is_dir() and ((path / META_NAME).is_file() or (path / SEGMENTS_DIR).is_dir())


def is_rosbag(path: Path) -> bool:
    """A rosbag2 folder, a bare .mcap/.db3 file, a recorder episode, or a folder of those."""
    path = Path(path)
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    if not path.is_dir():
        return False
    if (path / "metadata.yaml").is_file() or is_recorder_episode(path):
        return True
    if any(path.glob("*.mcap")) or any(path.glob("*.db3")):
        return True
    return any(is_rosbag(c) for c in sorted(path.iterdir()) if c.is_dir() and not c.name.startswith("."))


def expand_sources(paths: list[Path]) -> list[Path]:
    """Each source path -> the bags in it (a folder of recorder episodes -> each episode)."""
    out = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConvertError(f"{p}: no such file or folder")
        if p.is_file() or (p / "metadata.yaml").is_file() or is_recorder_episode(p):
            out.append(p)
        elif p.is_dir() and (any(p.glob("*.mcap")) or any(p.glob("*.db3"))):
            raise ConvertError(f"{p}: rosbag2 folder without metadata.yaml (a writer killed before it closed "
                               "the bag?); its storage files can be converted one by one: "
                               + ", ".join(str(f) for f in sorted(p.glob("*.mcap")) + sorted(p.glob("*.db3"))))
        else:
            subs = [c for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".") and is_rosbag(c)]
            if not subs:
                raise ConvertError(f"{p}: not a rosbag2 bag (no metadata.yaml, .mcap or .db3) and holds none")
            out.extend(expand_sources(subs))
    return out


class _OpenBag:
    """Context manager: a rosbags Reader over a bag; a recorder episode whose metadata.yaml is
    missing or lists fewer segments than are complete on disk is read from its complete
    segments (merged in a temporary folder; the source is never modified)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = None
        self.note = ""

    def __enter__(self):
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError
        target = self.path
        if is_recorder_episode(self.path):
            target = self._recorder_target()
        try:
            self.reader = Reader(target)
            self.reader.open()
        except (ReaderError, FileNotFoundError, OSError, KeyError, ValueError, IndexError) as exc:
            self._cleanup()
            files = sorted(f.name for f in self.path.glob("*") if f.suffix in (".mcap", ".db3")) \
                if self.path.is_dir() else [self.path.name]
            hint = _storage_hint(files)
            where = f" (storage file(s): {', '.join(files)})" if files else ""
            raise ConvertError(f"{self.path}: cannot open as a rosbag2 bag{where}: {exc}{hint}") from None
        return self.reader

    def _recorder_target(self) -> Path:
        from lara_policy.ros.bag_tools import load_yaml, merge_segment_metadata, segment_index, dump_yaml
        d = self.path
        seg_dir = d / SEGMENTS_DIR
        seg_meta = sorted(seg_dir.glob("*.yaml"), key=segment_index) if seg_dir.is_dir() else []
        complete = []
        for m in seg_meta:
            meta = load_yaml(m)
            files = meta["rosbag2_bagfile_information"]["relative_file_paths"]
            if all((d / f).is_file() for f in files):
                complete.append(meta)
        listed = 0
        if (d / "metadata.yaml").is_file():
            listed = len(load_yaml(d / "metadata.yaml")["rosbag2_bagfile_information"]["relative_file_paths"])
        if not complete or listed >= sum(len(m["rosbag2_bagfile_information"]["files"]) for m in complete):
            if not (d / "metadata.yaml").is_file():
                raise ConvertError(f"{d}: recorder episode with no metadata.yaml and no complete segment "
                                   "(killed before its first flush): nothing to convert")
            return d
        self.tmp = Path(tempfile.mkdtemp(prefix="lara_convert_"))
        merged = merge_segment_metadata(complete)
        for f in merged["rosbag2_bagfile_information"]["relative_file_paths"]:
            (self.tmp / f).symlink_to((d / f).resolve())
        (self.tmp / "metadata.yaml").write_text(dump_yaml(merged))
        self.note = f"read from {len(complete)} complete segment(s) (metadata.yaml listed {listed} file(s))"
        return self.tmp

    def _cleanup(self):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __exit__(self, *exc):
        try:
            self.reader.close()
        finally:
            self._cleanup()


def _storage_hint(files: list[str]) -> str:
    """What a cut-short storage file means, for the storage at hand (MCAP or sqlite3)."""
    kinds = {Path(f).suffix for f in files}
    parts = []
    if ".mcap" in kinds:
        parts.append("an MCAP file cut short (a writer killed before it closed it) has no footer/summary; "
                     "recorder episodes avoid this by closing a segment every flush period")
    if ".db3" in kinds:
        parts.append("a sqlite3 .db3 file cut short (copied or written only in part, or a disk full) reads as a "
                     "malformed database; sqlite3 commits as it writes, so a bag whose writer was killed normally "
                     "still opens")
    if not parts:
        return ""
    return " (" + "; ".join(parts) + ")"


def bag_topics(path: Path) -> dict[str, str]:
    with _OpenBag(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


# ------------------------------------------------------------------------------ field access
_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]")


def _fields_of(obj) -> list[str]:
    names = getattr(obj, "__dataclass_fields__", None) or getattr(obj, "__slots__", None) or []
    return [n for n in names if not n.startswith("_")]


def get_field(msg, path: str, where: str):
    """msg.<path> (dotted, with [i]); ConvertError naming `where` and the fields that exist."""
    if not path:
        return msg
    obj, done = msg, ""
    pos = 0
    for m in _TOKEN.finditer(path):
        if m.start() != pos and path[pos:m.start()] != ".":
            break
        pos = m.end()
        name, idx = m.group(1), m.group(2)
        if name is not None:
            if not hasattr(obj, name) or name.startswith("_"):
                raise ConvertError(f"{where}: field '{path}' does not exist ('{name}' is not a field of "
                                   f"{done or 'the message'}; fields there: {', '.join(_fields_of(obj)) or 'none'})")
            obj = getattr(obj, name)
            done = f"{done}.{name}" if done else name
        else:
            i = int(idx)
            try:
                obj = obj[i]
            except (IndexError, TypeError):
                n = len(obj) if hasattr(obj, "__len__") else "no"
                raise ConvertError(f"{where}: field '{path}': index [{i}] out of range ({done} has {n} elements)") from None
            done = f"{done}[{i}]"
    if pos != len(path):
        raise ConvertError(f"{where}: cannot parse field path '{path}' (use e.g. pose.position.x or data[2])")
    return obj


def _scalar(value, where: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConvertError(f"{where}: value {type(value).__name__} is not a number; name a numeric field") from None


def _stamp_ns(msg) -> int | None:
    h = getattr(msg, "header", None)
    st = getattr(h, "stamp", None)
    if st is None:
        return None
    ns = int(st.sec) * 1_000_000_000 + int(st.nanosec)
    return ns if ns > 0 else None


# ------------------------------------------------------------------------------ images
def decode_image(msg, msgtype: str, where: str) -> np.ndarray:
    """sensor_msgs/Image (rgb8/bgr8/rgba8/bgra8/mono8, the encodings the nodes accept) or
    sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    if msgtype == COMPRESSED:
        import cv2
        buf = np.frombuffer(bytes(msg.data), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if img is None:
            raise ConvertError(f"{where}: CompressedImage (format '{msg.format}') could not be decoded "
                               "(jpeg and png are supported)")
        return np.ascontiguousarray(img[:, :, ::-1])
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise ConvertError(f"{where}: unsupported image encoding '{msg.encoding}' (supported: "
                           f"{', '.join(_CHANNELS)}; the same as policy_node)")
    ch = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if h <= 0 or w <= 0 or step < w * ch or data.size < step * h:
        raise ConvertError(f"{where}: image data too short or empty ({data.size} bytes for {w}x{h} {enc}, step {step})")
    img = data[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(size):
        return img
    import cv2
    interp = cv2.INTER_AREA if img.shape[0] >= size[0] else cv2.INTER_LINEAR
    return cv2.resize(img, (size[1], size[0]), interpolation=interp)


# ------------------------------------------------------------------------------ streams
@dataclass
class Streams:
    """Time-stamped values of every mapped input of one bag (times in seconds)."""
    path: Path
    topics: dict[str, str]
    cameras: dict[str, tuple[np.ndarray, list]] = field(default_factory=dict)   # name -> (t, frames)
    state: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    action: tuple[np.ndarray, list] | None = None      # (t, per-message payload)
    gripper: tuple[np.ndarray, np.ndarray] | None = None
    instruction: tuple[np.ndarray, list] | None = None
    success: tuple[np.ndarray, np.ndarray] | None = None
    events: np.ndarray | None = None
    meta: dict = field(default_factory=dict)           # episode_meta.json of recorder episodes
    action_kind: str = ""
    action_space: str = ""
    note: str = ""


def _typestore(reader):
    from lara_policy.ros.bag_tools import typestore_for
    return typestore_for(reader.connections)


def read_streams(path: Path, mapping: Mapping, action_free: bool = False) -> Streams:
    """Read every topic the mapping names from one bag (ConvertError on bad input)."""
    path = Path(path)
    opened = _OpenBag(path)
    with opened as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        ts = _typestore(reader)
        wanted: dict[str, list] = {}

        def need(topic: str, role: str):
            if topic not in topics:
                raise ConvertError(f"{path}: {role} topic '{topic}' is not in the bag (topics: "
                                   f"{', '.join(sorted(topics)) or 'none'})")
            if topics[topic] not in ts.fielddefs:
                raise ConvertError(f"{path}: topic '{topic}' has type '{topics[topic]}', which has no message "
                                   "definition in the bag or in the standard ROS 2 types: cannot deserialize it")
            wanted.setdefault(topic, []).append(role)

        for name, topic in mapping.cameras.items():
            need(topic, f"camera '{name}'")
            if topics[topic] not in (IMAGE, COMPRESSED):
                raise ConvertError(f"{path}: camera '{name}' topic '{topic}' has type {topics[topic]}, not "
                                   f"{IMAGE} or {COMPRESSED}")
        for name, spec in mapping.state:
            need(spec.topic, f"state '{name}'")
        tf_buf = None
        if any(spec.tf for _, spec in mapping.state):
            from lara_policy.data.bag_tf import TF_STATIC_TOPIC, TfBuffer
            tf_buf = TfBuffer()
            if TF_STATIC_TOPIC in topics:
                need(TF_STATIC_TOPIC, "tf (static)")
        kind = ""
        # action-free: the action is still read where it exists (the store keeps its action_dim /
        # action_space, as `lara demos --action-free` does, so it trains beside labelled stores)
        read_action = mapping.action is not None and (not action_free or mapping.action.topic in topics)
        read_gripper = mapping.gripper is not None and (not action_free or mapping.gripper.topic in topics)
        if read_action:
            need(mapping.action.topic, "action")
            kind = mapping.action.type or {TWIST_STAMPED: "twist", TWIST: "twist", JOINT_TRAJECTORY: "joint_trajectory",
                                           ACTION_CHUNK: "action_chunk"}.get(topics[mapping.action.topic], "")
            if not kind:
                raise ConvertError(f"{path}: action topic '{mapping.action.topic}' has type "
                                   f"{topics[mapping.action.topic]}: give action.type: fields and action.fields")
            if kind == "fields" and not mapping.action.fields:
                raise ConvertError(f"{path}: action type 'fields' needs action.fields (one field path per dimension)")
        if read_gripper:
            need(mapping.gripper.topic, "gripper")
        if mapping.instruction is not None:
            need(mapping.instruction.topic, "instruction")
        if mapping.success is not None:
            need(mapping.success.topic, "success")
        if mapping.split.mode == "topic":
            need(mapping.split.topic, "episode split")

        cams = {n: ([], []) for n in mapping.cameras}
        bad_frames: dict[str, list[str]] = {}    # camera -> reasons of the frames skipped
        state = {n: ([], []) for n, _ in mapping.state}
        act_t, act_v, grip, instr, succ, events = [], [], ([], []), ([], []), ([], []), []
        conns = [c for c in reader.connections if c.topic in wanted]
        action_space = ""
        try:
            for conn, t_bag, raw in reader.messages(connections=conns):
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - corrupt payload
                    raise ConvertError(f"{path}: message on '{conn.topic}' ({conn.msgtype}) does not deserialize: "
                                       f"{type(exc).__name__}: {exc}") from None
                st = _stamp_ns(msg) if mapping.stamps == "header" else None
                t = (st if st is not None else int(t_bag)) * 1e-9
                topic = conn.topic
                for name, ctopic in mapping.cameras.items():
                    if ctopic == topic:
                        img = _camera_frame(msg, conn.msgtype, f"{path}: camera '{name}' ({topic})",
                                            mapping.image_size, cams[name][1], bad_frames.setdefault(name, []))
                        if img is not None:
                            cams[name][0].append(t)
                            cams[name][1].append(img)
                if tf_buf is not None and (topic == TF_STATIC_TOPIC or any(sp.tf and sp.topic == topic
                                                                           for _, sp in mapping.state)):
                    tf_buf.add(msg, topic == TF_STATIC_TOPIC, int(t_bag) * 1e-9, mapping.stamps == "header")
                for name, spec in mapping.state:
                    if spec.topic == topic and not spec.tf:
                        where = f"{path}: state '{name}' ({spec.label()})"
                        if spec.joint:
                            names = list(get_field(msg, "name", where))
                            if spec.joint not in names:
                                raise ConvertError(f"{where}: joint '{spec.joint}' is not in the message "
                                                   f"(joints: {', '.join(names)})")
                            vals = get_field(msg, spec.field or "position", where)
                            v = _scalar(vals[names.index(spec.joint)], where) if len(vals) > names.index(spec.joint) \
                                else float("nan")
                        else:
                            v = _scalar(get_field(msg, spec.field, where), where)
                        state[name][0].append(t)
                        state[name][1].append(v)
                if kind and topic == mapping.action.topic:
                    act_t.append(t)
                    act_v.append(_action_payload(msg, kind, mapping.action, f"{path}: action ({topic})"))
                    if kind == "action_chunk" and not action_space:
                        action_space = str(msg.action_space)
                if read_gripper and topic == mapping.gripper.topic:
                    where = f"{path}: gripper ({mapping.gripper.label()})"
                    grip[0].append(t)
                    grip[1].append(_scalar(get_field(msg, mapping.gripper.field, where), where))
                if mapping.instruction is not None and topic == mapping.instruction.topic:
                    where = f"{path}: instruction ({mapping.instruction.label()})"
                    instr[0].append(t)
                    instr[1].append(str(get_field(msg, mapping.instruction.field, where)))
                if mapping.success is not None and topic == mapping.success.topic:
                    where = f"{path}: success ({mapping.success.label()})"
                    succ[0].append(t)
                    succ[1].append(bool(get_field(msg, mapping.success.field, where)))
                if mapping.split.mode == "topic" and topic == mapping.split.topic:
                    where = f"{path}: episode split ({mapping.split.topic} field '{mapping.split.field}')"
                    v = get_field(msg, mapping.split.field, where)
                    if mapping.split.value is None or v == mapping.split.value or str(v) == str(mapping.split.value):
                        events.append(t)
        except ConvertError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated / corrupt storage file
            files = sorted(f.name for f in path.glob("*") if f.suffix in (".mcap", ".db3")) \
                if path.is_dir() else [path.name]
            raise ConvertError(f"{path}: reading the bag failed ({type(exc).__name__}: {exc}); the file is "
                               f"truncated or corrupt{_storage_hint(files)}") from None
        note = opened.note

    s = Streams(path=path, topics=topics, action_kind=kind, action_space=action_space)
    skipped = []
    for name, (t, frames) in cams.items():
        bad = bad_frames.get(name) or []
        if not frames and bad:
            raise ConvertError(f"{bad[0]} (and every other frame of the camera: {len(bad)} malformed, none usable)")
        if not frames:
            raise ConvertError(f"{path}: camera '{name}' topic '{mapping.cameras[name]}' has no messages")
        if bad:
            skipped.append(f"skipped {len(bad)} malformed frame(s) of {len(bad) + len(frames)} on camera "
                           f"'{name}'; first: {bad[0].removeprefix(f'{path}: ')}")
        order = np.argsort(np.asarray(t), kind="stable")
        s.cameras[name] = (np.asarray(t)[order], [frames[i] for i in order])
    for name, spec in mapping.state:
        if spec.tf:
            from lara_policy.data.bag_tf import tf_value_index
            tt, tv = tf_buf.series(*spec.tf, f"{path}: state '{name}' ({spec.label()})")
            state[name] = (list(tt), list(tv[:, tf_value_index(spec.field, name)]))
    for name, (t, v) in state.items():
        if not v:
            raise ConvertError(f"{path}: state '{name}' topic has no messages")
        order = np.argsort(np.asarray(t), kind="stable")
        s.state[name] = (np.asarray(t)[order], np.asarray(v, np.float64)[order])
    if kind:
        if not act_t:
            raise ConvertError(f"{path}: action topic '{mapping.action.topic}' has no messages (use --action-free "
                               "for a bag without actions)")
        order = np.argsort(np.asarray(act_t), kind="stable")
        s.action = (np.asarray(act_t)[order], [act_v[i] for i in order])
    if grip[0]:
        order = np.argsort(np.asarray(grip[0]), kind="stable")
        s.gripper = (np.asarray(grip[0])[order], np.asarray(grip[1])[order])
    if instr[0]:
        s.instruction = (np.asarray(instr[0]), instr[1])
    if succ[0]:
        s.success = (np.asarray(succ[0]), np.asarray(succ[1], bool))
    s.events = np.sort(np.asarray(events)) if events else None
    meta_path = path / META_NAME if path.is_dir() else None
    if meta_path is not None and meta_path.is_file():
        try:
            s.meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            s.meta = {}
    s.note = "; ".join(x for x in (note, *skipped) if x)
    return s


def _camera_frame(msg, msgtype: str, where: str, image_size, frames: list, bad: list) -> np.ndarray | None:
    """One camera frame as RGB, or None (its reason appended to `bad`) when it is malformed (too
    short, an encoding the nodes reject, undecodable) or, without image_size, another size than
    the camera's first good frame: one glitching message (a driver hiccup, a stray publisher on
    the topic) costs that frame, not the whole bag. The caller refuses a camera with no good frame."""
    try:
        img = decode_image(msg, msgtype, where)
    except ConvertError as exc:
        bad.append(str(exc))
        return None
    if image_size is not None:
        return resize(img, image_size)
    if frames and img.shape != frames[0].shape:
        bad.append(f"{where}: frame of {img.shape[1]}x{img.shape[0]} px where the camera's frames are "
                   f"{frames[0].shape[1]}x{frames[0].shape[0]} (give image_size in a mapping to resize every frame)")
        return None
    return img


def _action_payload(msg, kind: str, spec: ActionSpec, where: str):
    if kind == "twist":
        tw = msg.twist if hasattr(msg, "twist") else msg
        lin = np.array([tw.linear.x, tw.linear.y, tw.linear.z], np.float64)
        ang = np.array([tw.angular.x, tw.angular.y, tw.angular.z], np.float64)
        return np.concatenate([lin, ang])
    if kind == "joint_trajectory":
        names = list(msg.joint_names)
        if not len(msg.points):
            return None                                   # an empty trajectory ("stop"): hold
        pos = np.asarray(msg.points[0].positions, np.float64)
        if spec.joints:
            missing = [j for j in spec.joints if j not in names]
            if missing:
                raise ConvertError(f"{where}: joint(s) {missing} not in joint_names ({', '.join(names)})")
            return pos[[names.index(j) for j in spec.joints]]
        return pos
    if kind == "action_chunk":
        h, d = int(msg.horizon), int(msg.action_dim)
        vals = np.asarray(msg.actions, np.float64)
        if vals.size != h * d or h <= 0:
            raise ConvertError(f"{where}: ActionChunk horizon {h} x dim {d} != {vals.size} values")
        t0 = int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9
        return (t0, float(msg.dt), vals.reshape(h, d))
    return np.array([_scalar(get_field(msg, f, where), f"{where} field '{f}'") for f in spec.fields], np.float64)


# ------------------------------------------------------------------------------ alignment
# lara_policy.data.bag_align: the one alignment / episode split of convert and eval bag


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
        "twist": "ee_delta_6d_gripper" if first_m.action and first_m.action.ee_rot_scale_rad > 0 else "ee_delta_xyz_gripper",
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
