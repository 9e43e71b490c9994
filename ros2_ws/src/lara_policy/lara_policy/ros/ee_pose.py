"""End-effector pose from tf2, and the mapping between the policy's frame and the robot's.

TfPoseRelay: looks up `base_frame -> ee_link` (tf2_ros.Buffer.lookup_transform(target=base_frame,
source=ee_link, time=latest)) at a fixed rate and hands each NEW transform (its stamp advanced)
to a callback as a geometry_msgs/PoseStamped in base_frame, stamped with the transform's stamp.
policy_node and command_node feed it into the same path as the /lara/ee_pose topic, so the age
(by arrival), NaN and frame checks apply unchanged: a dead robot_state_publisher stops new
transforms, the pose goes stale, motion stops.

tf2_ros is imported lazily (it is part of every ROS 2 install, but not installable on the
project's dev machines: there the relay is tested against a double of Buffer/TransformListener
with the documented call signatures, `tf_factory`).

FrameMap: the policy's action/state frame vs the robot's base frame (ROS-free):
  axes    the base-frame direction of the policy's +x, +y, +z, e.g. ["-y", "x", "z"]
  origin  the policy frame's origin in the base frame (m)
  base_delta = R @ policy_delta;  policy_position = R^T @ (base_position - origin)
"""
from __future__ import annotations

import numpy as np

_AXES = {"x": 0, "y": 1, "z": 2}


class FrameMap:
    def __init__(self, axes=("x", "y", "z"), origin=(0.0, 0.0, 0.0)):
        axes = [str(a).strip().lower() for a in axes]
        if len(axes) != 3:
            raise ValueError(f"policy_axes_in_base must have 3 entries, got {axes}")
        R = np.zeros((3, 3))
        for col, a in enumerate(axes):
            sign = -1.0 if a.startswith("-") else 1.0
            name = a.lstrip("+-")
            if name not in _AXES:
                raise ValueError(f"policy_axes_in_base entry '{a}' must be one of x, y, z, -x, -y, -z")
            R[_AXES[name], col] = sign
        if abs(abs(np.linalg.det(R)) - 1.0) > 1e-9:
            raise ValueError(f"policy_axes_in_base {axes} repeats an axis")
        o = np.asarray(list(origin), dtype=np.float64)
        if o.shape != (3,) or not np.all(np.isfinite(o)):
            raise ValueError(f"policy_origin_in_base must be 3 finite values, got {list(origin)}")
        self.R, self.origin, self.axes = R, o, axes
        self._identity = bool(np.allclose(R, np.eye(3)) and np.allclose(o, 0.0))

    @property
    def identity(self) -> bool:
        return self._identity

    def delta_to_base(self, d) -> np.ndarray:
        d = np.asarray(d, dtype=np.float64)
        return d.copy() if self.identity else self.R @ d

    def position_to_policy(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.identity:
            return p.copy()
        # signed permutation: index instead of a product, so a NaN stays in its own component
        idx, sign = np.argmax(np.abs(self.R), axis=0), self.R[np.argmax(np.abs(self.R), axis=0), range(3)]
        return sign * (p - self.origin)[idx]


def resolve_source(source: str, tf_factory=None) -> str:
    """'topic' / 'tf' as given; 'auto': 'tf' where tf2_ros is importable (or a double is given), else 'topic'."""
    source = str(source).strip().lower()
    if source not in ("auto", "tf", "topic"):
        raise ValueError(f"ee_pose_source must be 'topic', 'tf' or 'auto', got '{source}'")
    if source != "auto":
        return source
    if tf_factory is not None:
        return "tf"
    try:
        import tf2_ros  # noqa: F401, PLC0415
    except ImportError:
        return "topic"
    return "tf"


def default_tf_factory(node):
    """(buffer, listener) from tf2_ros (lazy import: only ROS installs have it)."""
    try:
        import tf2_ros  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise ValueError("ee_pose_source 'tf' needs tf2_ros (part of every ROS 2 install; not installable "
                         "here): use ee_pose_source 'topic'") from e
    buf = tf2_ros.Buffer()
    return buf, tf2_ros.TransformListener(buf, node)


class TfPoseRelay:
    def __init__(self, node, base_frame: str, ee_link: str, callback, rate_hz: float = 50.0, tf_factory=None):
        from rclpy.time import Time

        if not base_frame or not ee_link:
            raise ValueError("ee_pose_source 'tf' needs base_frame and ee_link")
        self.node, self.base_frame, self.ee_link, self.callback = node, base_frame, ee_link, callback
        self.buffer, self.listener = (tf_factory or default_tf_factory)(node)
        self._latest = Time()          # time 0 = "the latest available transform"
        self._last_stamp = None
        self.last_error = ""
        self.timer = node.create_timer(1.0 / float(rate_hz), self.poll)

    def poll(self) -> bool:
        """Look the transform up once; True when a new one was handed on."""
        from geometry_msgs.msg import PoseStamped

        try:
            tf = self.buffer.lookup_transform(self.base_frame, self.ee_link, self._latest)
        except Exception as e:  # noqa: BLE001 - tf2_ros Lookup/Connectivity/Extrapolation exceptions
            self.last_error = f"tf {self.base_frame} -> {self.ee_link}: {type(e).__name__}: {e}"
            return False
        stamp = (tf.header.stamp.sec, tf.header.stamp.nanosec)
        if stamp == self._last_stamp:
            return False               # no new transform: the pose ages, it is not refreshed
        self._last_stamp = stamp
        msg = PoseStamped()
        msg.header.stamp = tf.header.stamp
        msg.header.frame_id = self.base_frame
        t, q = tf.transform.translation, tf.transform.rotation
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = t.x, t.y, t.z
        msg.pose.orientation = q
        self.last_error = ""
        self.callback(msg)
        return True

    def close(self) -> None:
        self.node.destroy_timer(self.timer)
