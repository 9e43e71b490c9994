"""Conversions between ROS messages and the core's numpy types. One place, used by every node.

Images: rgb8, bgr8, rgba8, bgra8, mono8 are converted with numpy (fast, no dependency). Other
colour encodings (yuv422 / yuv422_yuy2 from usb_cam, bayer_*) go through the ROS install's
cv_bridge where it is importable (not on the dev machines: the PyPI cv-bridge is a stale ROS 1
build that breaks on numpy 2, ENVIRONMENT.md). Depth images (16UC1, 32FC1, mono16, ...) are
refused with a message that says so. sensor_msgs/CompressedImage (image_transport
"compressed": jpeg / png) is decoded with OpenCV; compressedDepth is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from lara_msgs.msg import ActionChunk, DynamicsCheck
from lara_policy.common.policy_api import DynamicsCheckResult

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_DEPTH = {"16uc1", "32fc1", "mono16", "16sc1", "32sc1", "64fc1"}


def _cv_bridge():
    """A cv_bridge.CvBridge from the ROS install, or None where it is not importable."""
    try:
        from cv_bridge import CvBridge  # noqa: PLC0415 (optional: ROS installs have it)
    except Exception:  # noqa: BLE001 - ImportError, or a binary built for another numpy
        return None
    return CvBridge()


class ImageConversionError(ValueError):
    """An Image message that cannot be turned into an RGB array (encoding, size, step)."""


def sec_to_stamp(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB view of a sensor_msgs/Image; raises ImageConversionError."""
    enc = msg.encoding.lower()
    if enc in _DEPTH:
        raise ImageConversionError(f"depth image (encoding '{msg.encoding}'): the policy needs the colour "
                                   "stream (e.g. /camera/camera/color/image_raw, not a depth topic)")
    if enc not in _CHANNELS:
        bridge = _cv_bridge()
        if bridge is not None:
            try:
                return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
            except Exception as e:  # noqa: BLE001 - cv_bridge raises CvBridgeError and others
                raise ImageConversionError(f"cv_bridge cannot convert encoding '{msg.encoding}': {e}") from e
        raise ImageConversionError(f"unsupported image encoding '{msg.encoding}' "
                                   f"(supported: {', '.join(_CHANNELS)}; others need the ROS install's "
                                   "cv_bridge); set the camera driver to rgb8")
    ch = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"empty image {w}x{h}")
    if step < w * ch or len(msg.data) < step * h:
        raise ImageConversionError(f"image data too short: {len(msg.data)} bytes for {w}x{h} {enc} "
                                   f"with step {step}")
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=step * h)  # array('B') / bytes: no copy
    img = buf.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def compressed_msg_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (jpeg / png); raises ImageConversionError."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt or fmt.split(";")[0].strip() in _DEPTH:
        raise ImageConversionError(f"compressed depth image (format '{msg.format}'): the policy needs the "
                                   "colour stream's compressed topic")
    if len(msg.data) == 0:
        raise ImageConversionError("empty compressed image")
    try:
        import cv2  # noqa: PLC0415 (opencv-python-headless, requirements)
    except ImportError as e:
        raise ImageConversionError("CompressedImage needs OpenCV (opencv-python-headless)") from e
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)     # BGR, 3 channels (grey is expanded)
    if img is None:
        raise ImageConversionError(f"cannot decode compressed image (format '{msg.format}', "
                                   f"{len(msg.data)} bytes)")
    # image_transport's compressed plugin encodes colour as bgr8 (format "rgb8; jpeg compressed bgr8"),
    # so the decoded image is BGR whatever the original encoding was
    return np.ascontiguousarray(img[:, :, ::-1])


def rgb_to_image_msg(rgb: np.ndarray, stamp: float, frame_id: str = "camera") -> Image:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    msg = Image()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


@dataclass
class DecodedChunk:
    actions: np.ndarray   # (H, D) float32
    t0: float             # time the first action is meant for (seconds)
    dt: float
    action_space: str
    instruction: str
    model_id: str


def chunk_to_msg(actions: np.ndarray, stamp: float, dt: float, action_space: str,
                 instruction: str = "", model_id: str = "", frame_id: str = "base") -> ActionChunk:
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2:
        raise ValueError(f"actions must be (H, D), got {actions.shape}")
    msg = ActionChunk()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.horizon, msg.action_dim = int(actions.shape[0]), int(actions.shape[1])
    msg.actions = actions.reshape(-1).tolist()
    msg.dt = float(dt)
    msg.action_space = action_space
    msg.instruction = instruction
    msg.model_id = model_id
    return msg


def msg_to_chunk(msg: ActionChunk) -> DecodedChunk:
    """Decode and validate an ActionChunk; raises ValueError on any inconsistency or NaN/inf."""
    h, d = int(msg.horizon), int(msg.action_dim)
    values = np.asarray(msg.actions, dtype=np.float32)
    if h <= 0 or d <= 0 or values.size != h * d:
        raise ValueError(f"action chunk size mismatch: horizon {h} x dim {d} != {values.size} values")
    if not np.all(np.isfinite(values)):
        raise ValueError("action chunk contains NaN/inf")
    if not (msg.dt > 0 and math.isfinite(msg.dt)):
        raise ValueError(f"action chunk dt must be > 0, got {msg.dt}")
    return DecodedChunk(values.reshape(h, d), stamp_to_sec(msg.header.stamp), float(msg.dt),
                        msg.action_space, msg.instruction, msg.model_id)


def check_to_msg(check: DynamicsCheckResult, stamp: float, surprise: float = float("nan"),
                 frame_id: str = "base") -> DynamicsCheck:
    msg = DynamicsCheck()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.num_candidates = int(check.num_candidates)
    msg.chosen_index = int(check.chosen_index)
    msg.predicted_effect = np.asarray(check.predicted_effect, dtype=np.float32).reshape(-1).tolist()
    msg.plausibility = np.asarray(check.plausibility, dtype=np.float32).reshape(-1).tolist()
    msg.surprise = float(surprise)
    msg.accepted = bool(check.accepted)
    msg.reason = check.reason
    return msg
