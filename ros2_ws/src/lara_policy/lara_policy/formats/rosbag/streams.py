"""One bag -> timed streams: every topic the mapping names, read once, as (stamp, value) series
per camera, state entry, action, gripper, instruction, boundary and success (formats/rosbag/align.py
turns them into steps)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lara_policy.common.errors import ConvertError
from lara_policy.formats.rosbag.fields import (ACTION_CHUNK, COMPRESSED, IMAGE, JOINT_TRAJECTORY, TWIST, TWIST_STAMPED,
                                               _scalar, _stamp_ns, decode_image, get_field, resize)
from lara_policy.formats.rosbag.layout import META_NAME
from lara_policy.formats.rosbag.mapping import ActionSpec, Mapping
from lara_policy.formats.rosbag.reader import OpenBag, _storage_hint, typestore_for


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
    action_frames: list = field(default_factory=list)   # header.frame_id of the twists (their command frame)
    note: str = ""


def _typestore(reader):
    return typestore_for(reader.connections)


def read_streams(path: Path, mapping: Mapping, action_free: bool = False) -> Streams:
    """Read every topic the mapping names from one bag (ConvertError on bad input)."""
    path = Path(path)
    opened = OpenBag(path)
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
            from lara_policy.formats.rosbag.tf import TF_STATIC_TOPIC, TfBuffer
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
        act_t, act_v, act_frames, grip, instr, succ, events = [], [], [], ([], []), ([], []), ([], []), []
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
                    if kind == "twist" and hasattr(msg, "header") and msg.header.frame_id not in act_frames:
                        act_frames.append(msg.header.frame_id)
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

    s = Streams(path=path, topics=topics, action_kind=kind, action_space=action_space, action_frames=act_frames)
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
            from lara_policy.formats.rosbag.tf import tf_value_index
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
