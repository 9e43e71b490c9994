"""A rosbag2 bag of an arm that ROTATES its end effector, with the ground truth (Meta-World has no
rotation task): what `lara convert` must turn into ee_delta_6d_gripper actions and what
command_node must turn back into the same twists (tests/data/test_rotation_actions.py,
tests/ros/test_command_node_rotation.py).

The convention it follows is MoveIt Servo's (moveit_servo, command_in_type: speed_units):
a geometry_msgs/TwistStamped in the robot base frame (header.frame_id), linear m/s, angular rad/s
about the base frame's axes, applied about the end-effector point; over one period dt the tool
orientation becomes R_new = exp(omega * dt) * R (rotation vector omega*dt composed on the LEFT,
in the base frame) and the position p + v * dt (rotation does not move the tool point).

Written with a plain `rosbags` Writer (MCAP, metadata version 8, as `ros2 bag record` on Humble):
/cam/image (Image rgb8), /tcp_pose (PoseStamped of the tool in base_link, at every frame),
/servo_node/delta_twist_cmds (TwistStamped, base_link, between two frames: the command after
frame k), /gripper/cmd (Float64). The pose stream is integrated here with scipy's Rotation
(independent of the project's quaternion code)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bagmaker import scene

RATE = 30.0          # camera and control rate (Hz)
SCALE = 0.01         # ee_delta_scale_m: metres per action unit per step
ROT_SCALE = 0.05     # ee_rot_scale_rad: radians per action unit per step (command_node's default)
FRAME = "base_link"

ROT_MAPPING = f"""\
# an arm that rotates its tool: Servo twists with angular velocity -> ee_delta_6d_gripper
rate_hz: {RATE:g}
cameras:
  front: /cam/image
state:
  - {{name: hand_x, topic: /tcp_pose, field: pose.position.x}}
  - {{name: hand_y, topic: /tcp_pose, field: pose.position.y}}
  - {{name: hand_z, topic: /tcp_pose, field: pose.position.z}}
  - {{name: quat_x, topic: /tcp_pose, field: pose.orientation.x}}
  - {{name: quat_y, topic: /tcp_pose, field: pose.orientation.y}}
  - {{name: quat_z, topic: /tcp_pose, field: pose.orientation.z}}
  - {{name: quat_w, topic: /tcp_pose, field: pose.orientation.w}}
action: {{topic: /servo_node/delta_twist_cmds, type: twist, ee_delta_scale_m: {SCALE:g}, ee_rot_scale_rad: {ROT_SCALE:g}}}
gripper: {{topic: /gripper/cmd, field: data}}
instruction: {{text: "turn the handle"}}
task: turn-handle
"""


def rotation_plan(steps: int = 60, idle_lead: int = 4, seed: int = 0) -> np.ndarray:
    """(steps, 7) actions in units: xyz, a rotation vector about all three axes that changes
    direction and size (within [-0.9, 0.9]), gripper -1 then +1; idle (no motion) lead-in."""
    rng = np.random.default_rng(seed)
    k = np.arange(steps)
    phase = rng.uniform(0, 2 * np.pi, 6)
    acts = np.zeros((steps, 7))
    for j in range(3):
        acts[:, j] = 0.4 * np.sin(2 * np.pi * k / 40 + phase[j])
        acts[:, 3 + j] = 0.9 * np.sin(2 * np.pi * k / (25 + 7 * j) + phase[3 + j])
    acts[:, 6] = np.where(k < steps // 2, -1.0, 1.0)
    acts[:idle_lead, :6] = 0.0
    return acts


def rotation_bag(path: Path, *, steps: int = 60, seed: int = 0, t0: float = 300.0, image_size: int = 32,
                 q0=(0.0, 0.7071068, 0.0, 0.7071068), frame: str = FRAME) -> tuple[Path, dict]:
    """The bag and its truth: frame times, the twists (linear, angular) commanded after each frame,
    the actions (units) they stand for, and the tool pose (xyz, quaternion xyzw) at each frame.
    `frame`: header.frame_id of the twists and poses."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from scipy.spatial.transform import Rotation

    ts = get_typestore(Stores.LATEST)
    M = ts.types
    acts = rotation_plan(steps, seed=seed)
    dt = 1.0 / RATE

    def hdr(t, frame=""):
        n = int(round(t * 1e9))
        return M["std_msgs/msg/Header"](stamp=M["builtin_interfaces/msg/Time"](sec=n // 10**9, nanosec=n % 10**9),
                                        frame_id=frame)

    def vec(v):
        return M["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))

    ns = lambda t: int(round(t * 1e9))  # noqa: E731
    pos, rot = np.array([0.4, 0.1, 0.3]), Rotation.from_quat(q0)
    frame_t, poses, quats, lin_v, ang_v = [], [], [], [], []
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as wr:
        c = {"cam": wr.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts),
             "pose": wr.add_connection("/tcp_pose", "geometry_msgs/msg/PoseStamped", typestore=ts),
             "cmd": wr.add_connection("/servo_node/delta_twist_cmds", "geometry_msgs/msg/TwistStamped", typestore=ts),
             "grip": wr.add_connection("/gripper/cmd", "std_msgs/msg/Float64", typestore=ts)}
        for k, a in enumerate(acts):
            t = t0 + k * dt
            q = rot.as_quat()
            frame_t.append(t)
            poses.append(pos.copy())
            quats.append(q)
            rgb = scene(pos[0] - 0.4, pos[1] - 0.1, image_size)
            rgb[:4, :4] = np.uint8(np.clip((q[:3] + 1) * 127, 0, 255))   # the orientation shows in the frame
            wr.write(c["cam"], ns(t + 0.003), ts.serialize_cdr(M["sensor_msgs/msg/Image"](
                header=hdr(t, "cam"), height=image_size, width=image_size, encoding="rgb8", is_bigendian=0,
                step=image_size * 3, data=rgb.reshape(-1)), "sensor_msgs/msg/Image"))
            pose = M["geometry_msgs/msg/Pose"](
                position=M["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2]),
                orientation=M["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
            wr.write(c["pose"], ns(t + 0.003), ts.serialize_cdr(M["geometry_msgs/msg/PoseStamped"](
                header=hdr(t, frame), pose=pose), "geometry_msgs/msg/PoseStamped"))
            # the command after frame k (Servo speed units): v = a * scale / dt, omega = a_rot * rot_scale / dt
            v, w = a[:3] * SCALE / dt, a[3:6] * ROT_SCALE / dt
            lin_v.append(v)
            ang_v.append(w)
            tc = t + 0.5 * dt
            wr.write(c["cmd"], ns(tc), ts.serialize_cdr(M["geometry_msgs/msg/TwistStamped"](
                header=hdr(tc, frame), twist=M["geometry_msgs/msg/Twist"](linear=vec(v), angular=vec(w))),
                "geometry_msgs/msg/TwistStamped"))
            wr.write(c["grip"], ns(tc), ts.serialize_cdr(M["std_msgs/msg/Float64"](data=float(a[6])),
                                                         "std_msgs/msg/Float64"))
            # Servo over one period: about the tool point, in the base frame (left composition)
            pos = pos + v * dt
            rot = Rotation.from_rotvec(w * dt) * rot
    return path, {"frame_t": np.array(frame_t), "actions": acts, "linear": np.array(lin_v),
                  "angular": np.array(ang_v), "pos": np.array(poses), "quat": np.array(quats)}
