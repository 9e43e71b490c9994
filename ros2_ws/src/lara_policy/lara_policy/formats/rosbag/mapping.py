"""The topic mapping of a rosbag2 bag (docs/bag_conversion.md): which topic and field gives each
camera, state entry, the action, the gripper, the instruction, episode boundaries and success;
parsed and validated in one place, with one-line errors naming the position."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lara_policy.common.errors import ConvertError
from lara_policy.formats.rosbag.fields import ACTION_TYPES


# policy_node's state conventions (lara_policy.ros.policy_node): hand_* from the EE pose,
# goal_* from the goal point, anything else a joint of /joint_states (gripper -> 'gripper').
_EE = {"hand_x": "pose.position.x", "hand_y": "pose.position.y", "hand_z": "pose.position.z"}
_GOAL = {"goal_x": "point.x", "goal_y": "point.y", "goal_z": "point.z"}


# ------------------------------------------------------------------------------ mapping
@dataclass
class FieldSpec:
    topic: str
    field: str = ""                 # dotted path with [i] indexing, e.g. pose.position.x, data[2]
    joint: str = ""                 # sensor_msgs/JointState: value of this joint in `field` (position)
    tf: tuple[str, str] | None = None   # (parent, child) frames: a pose from /tf + /tf_static (tf.py)

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
    ee_rot_scale_rad: float | None = None   # twist: > 0 adds the angular velocity as a rotation vector
                                    # (radians per unit per step; command_node's ee_rot_scale_rad); 0 drops it
                                    # knowingly; None (not given) refuses twists that rotate
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
    from lara_policy.formats.rosbag.tf import TF_TOPIC, tf_value_index
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
                            None if a.get("ee_rot_scale_rad") is None else float(a["ee_rot_scale_rad"]),
                            [str(j) for j in a.get("joints", []) or []],
                            [str(f) for f in a.get("fields", []) or []], float(a.get("command_timeout_s", 0.25)))
        if action.ee_delta_scale_m <= 0:
            raise ConvertError(f"{where}: action.ee_delta_scale_m must be > 0")
        if action.ee_rot_scale_rad is not None and not action.ee_rot_scale_rad >= 0:
            raise ConvertError(f"{where}: action.ee_rot_scale_rad must be >= 0 (0 drops the rotation)")
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


def extra_cameras(topics: dict[str, str]) -> dict[str, str]:
    """The cameras of a multi-camera graph beside /camera/image_raw (lara_policy.ros.topics.camera_topics:
    /camera/<name>/image_raw, raw or /compressed), sorted by name: camera name -> topic."""
    out = {}
    for topic in sorted(topics):
        parts = topic.strip("/").split("/")
        if len(parts) in (3, 4) and parts[0] == "camera" and parts[2] == "image_raw" and \
                parts[3:] in ([], ["compressed"]) and parts[1] not in out:
            out[parts[1]] = topic
    return out


def recorder_mapping(topics: dict[str, str], camera_name: str = "corner4", rate_hz: float = 30.0,
                     ee_delta_scale_m: float = 0.01) -> dict:
    """The mapping a recorder episode needs (the graph of lara_bringup/config/sim.yaml), as the
    YAML dict `--print-mapping` shows: entries only for topics present in the bag. camera_name is
    the camera of /camera/image_raw; every /camera/<name>/image_raw in the bag is camera <name>
    after it (a multi-camera graph: sim_node `cameras`)."""
    cams = {camera_name: "/camera/image_raw"}
    cams.update({n: t for n, t in extra_cameras(topics).items() if n != camera_name})
    m: dict = {"cameras": cams, "rate_hz": rate_hz, "episodes": {"split": "recorder"},
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


def policy_mapping(topics: dict[str, str], state_names: list[str], camera_name: str | list[str], rate_hz: float,
                   ee_delta_scale_m: float = 0.01, gripper_joint: str = "gripper") -> dict:
    """The mapping that rebuilds a policy's observation from a recorder bag exactly as policy_node
    does (its state_names: hand_* <- /lara/ee_pose, goal_* <- /lara/goal, others joints).
    camera_name: the camera of /camera/image_raw, or a list of the policy's cameras (the first on
    /camera/image_raw, the others on /camera/<name>/image_raw; ConvertError when one is missing)."""
    names = [camera_name] if isinstance(camera_name, str) else list(camera_name)
    m = recorder_mapping(topics, names[0], rate_hz, ee_delta_scale_m)
    if len(names) > 1:
        missing = [n for n in names[1:] if n not in m["cameras"]]
        if missing:
            raise ConvertError(f"the policy reads cameras {names}, but the bag has no /camera/<name>/image_raw for "
                               f"{missing} (topics: {', '.join(sorted(topics))})")
    m["cameras"] = {n: m["cameras"][n] for n in names}
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
