"""policy_node's cameras: which topic feeds which of the checkpoint's cameras, and the pairing of
their frames by stamp.

- `image_topics` (a list parameter) maps topics to the checkpoint's cameras in order (the first
  topic feeds the checkpoint's first camera, ...); each topic is raw (sensor_msgs/Image) or
  compressed (sensor_msgs/CompressedImage, a topic ending in /compressed with image_transport
  auto). Empty: the one-camera shorthand `image_topic` feeds the checkpoint's only camera (or the
  one named by `camera_name`). A count that differs from the checkpoint's cameras is refused at
  start-up with both named.
- FrameSync keeps the last frames of every camera and gives the newest SET: one frame per camera,
  anchored on a frame of the first camera, each other camera's frame the nearest in stamp and
  within `image_sync_slop_s` of it (what message_filters' ApproximateTimeSynchronizer does with a
  slop; its wheel is not on PyPI, so this is the project's own). The set's stamp is the first
  camera's frame's: the ActionChunk stamp, and the stamp state is synchronised to.

ROS-free apart from declare_camera_params and silence_reason (they take the node).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

HISTORY = 8            # frames kept per camera (sets are looked for among them)


@dataclass(frozen=True)
class CameraInput:
    name: str          # the checkpoint's camera name
    topic: str
    transport: str     # raw | compressed


def declare_string_list(node, name: str, description: str) -> list[str]:
    """A read-only string-list parameter whose default is [] (an empty list has no ROS type, so it is
    typed by its value: dynamic typing), checked here: ValueError unless every item is a string."""
    from rcl_interfaces.msg import ParameterDescriptor
    node.declare_parameter(name, [], ParameterDescriptor(description=description, read_only=True,
                                                         dynamic_typing=True))
    value = node.get_parameter(name).value
    value = [] if value is None else list(value)
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{node.get_name()}: parameter '{name}' must be a list of non-empty strings, got {value!r}")
    return [v.strip() for v in value]


def declare_camera_params(node) -> None:
    """image_topics and image_sync_slop_s, with descriptors like the node's other parameters."""
    from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
    declare_string_list(node, "image_topics", "camera topics, one per checkpoint camera in the checkpoint's order "
                        "(each raw, or compressed: a topic ending in /compressed); [] = the one-camera shorthand "
                        "image_topic")
    node.declare_parameter("image_sync_slop_s", 0.05, ParameterDescriptor(
        description="several cameras: frames of the cameras whose stamps are at most this far apart make one "
                    "observation (the first camera's stamp is the observation's)",
        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=10.0, step=0.0)]))


def transport_of(topic: str, transport: str) -> str:
    if transport == "auto":
        return "compressed" if topic.rstrip("/").endswith("/compressed") else "raw"
    if transport not in ("raw", "compressed"):
        raise ValueError(f"policy_node: image_transport must be raw, compressed or auto, got '{transport}'")
    return transport


def resolve_cameras(image_topics, image_topic: str, camera_name: str, policy_cameras: list[str],
                    transport: str = "auto", model_id: str = "") -> list[CameraInput]:
    """The camera inputs of policy_node (ValueError naming both sides when they do not fit)."""
    cams = list(policy_cameras) or ["camera"]
    what = f"the checkpoint{f' {model_id!r}' if model_id else ''}"
    topics = list(image_topics or [])
    if topics:
        bad = [t for t in topics if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"policy_node: image_topics must be a list of topic names, got {topics!r}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"policy_node: image_topics {topics} lists a topic twice")
        if len(topics) != len(cams):
            raise ValueError(f"policy_node: image_topics lists {len(topics)} topic(s) {topics} but {what} reads "
                             f"{len(cams)} camera(s) {cams}: give one topic per camera, in that order")
        if camera_name and camera_name != cams[0]:
            raise ValueError(f"policy_node: camera_name '{camera_name}' is for the one-camera image_topic; with "
                             f"image_topics the cameras are {what}'s {cams} (leave camera_name empty)")
        return [CameraInput(c, t, transport_of(t, transport)) for c, t in zip(cams, topics)]
    if len(cams) > 1:
        raise ValueError(f"policy_node: {what} reads {len(cams)} cameras {cams} but only image_topic "
                         f"({image_topic}) is set: list one topic per camera in image_topics, in that order")
    return [CameraInput(camera_name or cams[0], image_topic, transport_of(image_topic, transport))]


def silence_reason(node, topic: str, reliability: str) -> str:
    """Why nothing arrives on a camera topic: no publisher, or a QoS that cannot match, or unknown."""
    from rclpy.qos import ReliabilityPolicy
    pubs = node.get_publishers_info_by_topic(topic)
    if not pubs:
        return f"no publisher on {topic}"
    if reliability == "reliable" and all(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in pubs):
        return (f"the publisher(s) on {topic} offer BEST_EFFORT and this subscription is RELIABLE: DDS will "
                "never deliver; set camera_qos_reliability: best_effort (or auto)")
    types = sorted({i.topic_type for i in pubs})
    return f"{len(pubs)} publisher(s) on {topic} ({', '.join(types)}) but nothing arrives"


class FrameSync:
    """The last HISTORY frames (rgb, stamp s) per camera, in arrival order (a camera clock that jumps
    back is followed at once, as with one camera), and the newest set within a slop.
    Not thread-safe: the caller (ObservationAssembler) holds its lock."""

    def __init__(self, names: list[str], history: int = HISTORY):
        self.names = list(names)
        self._history = history
        self.clear()

    def clear(self) -> None:
        self.frames: dict[str, deque] = {n: deque(maxlen=self._history) for n in self.names}

    def add(self, name: str, rgb, stamp: float) -> None:
        self.frames[name].append((rgb, stamp))      # arrival order: the latest is the last to arrive

    def drop(self, name: str) -> None:
        """Forget a camera's frames (a bad frame: never act on an older one while it is bad)."""
        self.frames[name].clear()

    def latest(self, name: str):
        q = self.frames[name]
        return q[-1] if q else None

    def missing(self) -> list[str]:
        return [n for n in self.names if not self.frames[n]]

    def newest_set(self, slop: float) -> dict | None:
        """{camera: (rgb, stamp)} anchored on the newest frame of the first camera that has a frame
        of every other camera within slop (nearest in stamp), or None."""
        if self.missing():
            return None
        first, others = self.names[0], self.names[1:]
        for rgb, t in reversed(self.frames[first]):
            chosen = {first: (rgb, t)}
            for n in others:
                best = min(self.frames[n], key=lambda f: abs(f[1] - t))
                if abs(best[1] - t) > slop + 1e-9:
                    break
                chosen[n] = best
            else:
                return chosen
        return None

    def period(self, name: str) -> float | None:
        """The camera's frame period from the spacing of its recent stamps (None: fewer than 2)."""
        ts = sorted(f[1] for f in self.frames[name])
        gaps = sorted(b - a for a, b in zip(ts, ts[1:]) if b - a > 1e-6)
        return gaps[len(gaps) // 2] if gaps else None

    def partner_may_come(self, slop: float) -> bool:
        """True when another camera's frame of the moment of the first camera's newest frame (t) may
        still be in flight: its newest frame is older than t by more than half its frame period (its
        next one would be nearer t) and that next one is due within t + slop. Worth a short wait."""
        if self.missing():
            return False
        t = self.frames[self.names[0]][-1][1]
        for n in self.names[1:]:
            last = max(f[1] for f in self.frames[n])
            period = self.period(n) or 2.0 * max(slop, 1e-3)
            if last < t and t - last > 0.5 * period and last + period <= t + slop + 1e-9:
                return True
        return False


def checkpoint_cameras(checkpoint: str) -> list[str]:
    """The cameras a checkpoint reads (config.json model.vla.cameras; [] when unreadable: the node
    that loads it reports that)."""
    import json
    import os
    try:
        with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        return [str(c) for c in cfg.get("model", cfg)["vla"]["cameras"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def sim_camera_overrides(checkpoint: str, params: dict[str, dict]) -> dict[str, dict]:
    """`lara bringup` of a sim graph with a checkpoint that reads several cameras: sim_node renders
    them (cameras), policy_node subscribes to them (image_topics) and recorder_node records them
    (topics), on topics.camera_topics' names; whatever the config sets itself is kept. params: the
    config's parameters per node (sim_node, policy_node, recorder_node)."""
    from lara_policy.ros import topics as T
    cams = checkpoint_cameras(checkpoint)
    sim, pol, rec = (params.get(n, {}) for n in ("sim_node", "policy_node", "recorder_node"))
    if len(cams) < 2 or "sim_node" not in params:
        return {}
    cams = list(sim.get("cameras") or cams)
    names = list(sim.get("image_topics") or T.camera_topics(cams, sim.get("image_topic") or T.CAMERA_IMAGE))
    out = {"sim_node": {"cameras": cams}, "policy_node": {}, "recorder_node": {}}
    if not pol.get("image_topics"):
        out["policy_node"]["image_topics"] = names
    recorded = list(rec.get("topics") or [])
    if recorded:
        out["recorder_node"]["topics"] = recorded + [t for t in names if t not in recorded]
    return out
