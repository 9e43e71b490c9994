"""Reading values out of deserialized ROS messages: a field path (`pose.position.x`,
`position[2]`), header stamps, and images (raw and compressed) decoded to RGB."""
from __future__ import annotations

import re

import numpy as np

from lara_policy.common.errors import ConvertError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
TWIST = "geometry_msgs/msg/Twist"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
ACTION_CHUNK = "lara_msgs/msg/ActionChunk"
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
ACTION_TYPES = ("twist", "joint_trajectory", "action_chunk", "fields")


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
