"""Real rosbag2 bags for the conversion / bag-evaluation tests, written two ways:

- `recorder_episode()`: with the LARA recorder's own writer (recorder_node._Segmenter: split
  MCAP segments, per-segment metadata, episode_meta.json), CDR as on the wire, the
  topics and conventions of lara_bringup/config/sim.yaml (what `lara bringup sim` records);
- `foreign_bag()`: with a plain `rosbags` Writer (MCAP or sqlite3), other topic names, a
  CompressedImage camera, a JointState gripper, no project metadata at all.

The scene is a square that moves with the commanded end-effector motion, so actions, state and
frames agree (an episode has idle lead-in and tail: zero twists).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATE = 30.0
SCALE = 0.01     # ee_delta_scale_m


def scene(x: float, y: float, size: int = 32) -> np.ndarray:
    img = np.full((size, size, 3), 40, np.uint8)
    cx = int(np.clip(size / 2 + x * 200, 3, size - 4))
    cy = int(np.clip(size / 2 + y * 200, 3, size - 4))
    img[cy - 3:cy + 3, cx - 3:cx + 3] = (230, 80, 30)
    return img


def plan(steps: int = 40, idle_lead: int = 5, idle_tail: int = 5, seed: int = 0):
    """Per-step (action in units (4,), hand xyz after the action) of a scripted episode."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(-1, 1, 3)
    d /= np.linalg.norm(d)
    acts = []
    for k in range(idle_lead + steps + idle_tail):
        a = np.zeros(4)
        if idle_lead <= k < idle_lead + steps:
            a[:3] = 0.5 * d
            a[3] = -1.0 if k < idle_lead + steps // 2 else 1.0
        else:
            a[3] = -1.0 if k < idle_lead else 1.0
        acts.append(a)
    return np.array(acts)


def recorder_episode(out_dir: Path, episode_id: str = "episode_test_0", *, steps: int = 40, seed: int = 0,
                     t0: float = 1000.0, instruction: str = "reach the red goal", task: str = "reach-v3",
                     success: bool = True, flush_every: int = 15, image_size: int = 32,
                     kill_after_segments: int | None = None, lose_metadata: bool = False) -> Path:
    """A recorder episode bag as `lara bringup sim` writes it: per control tick the sim's image,
    joint_states, ee_pose, goal, task_success (stamped t), then command_node's twist + gripper
    for the next tick; instruction at the start. With kill_after_segments the writer stops like
    a SIGKILL: later data stays in .partial (lost), episode_meta.json says 'recording';
    lose_metadata also removes metadata.yaml (kill between a segment's move and its rewrite)."""
    from lara_policy.ros.recorder_node import _Segmenter, writer_typestore

    ts = writer_typestore()
    M = ts.types
    Time, Header = M["builtin_interfaces/msg/Time"], M["std_msgs/msg/Header"]
    P3, Vec = M["geometry_msgs/msg/Point"], M["geometry_msgs/msg/Vector3"]

    def hdr(t, frame=""):
        return Header(stamp=Time(sec=int(np.floor(t)), nanosec=int(round((t - np.floor(t)) * 1e9)) % 10**9),
                      frame_id=frame)

    seg = _Segmenter(Path(out_dir), episode_id, ts)
    acts = plan(steps, seed=seed)
    hand = np.array([0.0, 0.6, 0.2])
    goal = hand + 0.5 * SCALE * steps * (acts[5, :3] / max(np.linalg.norm(acts[5, :3]), 1e-9)) * 0.5
    ns = lambda t: int(round(t * 1e9))  # noqa: E731

    def w(topic, mtype, t, msg):   # serialized as on the wire (rclpy's serialize_message pads the end)
        seg.write(topic, mtype, ns(t), ts.serialize_cdr(msg, mtype))

    w("/lara/instruction", "std_msgs/msg/String", t0 - 0.01, M["std_msgs/msg/String"](data=instruction))
    grip = 1.0
    closed = 0
    for k, a in enumerate(acts):
        t = t0 + k / RATE
        rgb = scene(hand[0] - 0.0, hand[1] - 0.6, image_size)
        w("/camera/image_raw", "sensor_msgs/msg/Image", t + 0.002, M["sensor_msgs/msg/Image"](
            header=hdr(t, "corner4_camera"), height=image_size, width=image_size, encoding="rgb8",
            is_bigendian=0, step=image_size * 3, data=rgb.reshape(-1)))
        w("/joint_states", "sensor_msgs/msg/JointState", t + 0.002, M["sensor_msgs/msg/JointState"](
            header=hdr(t, "base"), name=["right_j0", "right_j1", "gripper"],
            position=np.array([0.1 * k, -0.2, grip]), velocity=np.zeros(0), effort=np.zeros(0)))
        pose = M["geometry_msgs/msg/Pose"](position=P3(x=hand[0], y=hand[1], z=hand[2]),
                                           orientation=M["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        w("/lara/ee_pose", "geometry_msgs/msg/PoseStamped", t + 0.002,
          M["geometry_msgs/msg/PoseStamped"](header=hdr(t, "base"), pose=pose))
        w("/lara/goal", "geometry_msgs/msg/PointStamped", t + 0.002,
          M["geometry_msgs/msg/PointStamped"](header=hdr(t, "base"), point=P3(x=goal[0], y=goal[1], z=goal[2])))
        w("/lara/task_success", "std_msgs/msg/Bool", t + 0.002,
          M["std_msgs/msg/Bool"](data=bool(success and k >= len(acts) - 3)))
        # command_node: the twist for the next tick, published between the two frames
        tc = t + 0.5 / RATE
        lin = a[:3] * SCALE * RATE
        w("/servo_node/delta_twist_cmds", "geometry_msgs/msg/TwistStamped", tc, M["geometry_msgs/msg/TwistStamped"](
            header=hdr(tc, "base"), twist=M["geometry_msgs/msg/Twist"](linear=Vec(x=lin[0], y=lin[1], z=lin[2]),
                                                                     angular=Vec(x=0.0, y=0.0, z=0.0))))
        w("/lara/gripper_command", "std_msgs/msg/Float64", tc, M["std_msgs/msg/Float64"](data=float(a[3])))
        hand = hand + a[:3] * SCALE
        grip = 1.0 - max(a[3], 0.0)
        if (k + 1) % flush_every == 0:
            seg.close_segment()
            closed += 1
            if kill_after_segments is not None and closed >= kill_after_segments:
                break
    ep_dir = seg.ep_dir
    meta = {"episode_id": episode_id, "instruction": instruction, "task": task, "success": success,
            "model_id": "test-model", "dynamics_checks": 0, "dynamics_not_accepted": 0,
            "state": "recording" if kill_after_segments is not None else "closed", "stop_reason": "",
            "notes": f"lara bringup episode 1 seed {1000 + seed} steps {steps}"}
    if kill_after_segments is None:
        seg.finish()
    else:
        for k2 in range(3):     # the in-flight segment: written but never closed (lost at a kill)
            t = t0 + (len(acts) + k2) / RATE
            w("/camera/image_raw", "sensor_msgs/msg/Image", t, M["sensor_msgs/msg/Image"](
                header=hdr(t, "corner4_camera"), height=image_size, width=image_size, encoding="rgb8",
                is_bigendian=0, step=image_size * 3, data=scene(0, 0, image_size).reshape(-1)))
        if lose_metadata:
            (ep_dir / "metadata.yaml").unlink()
    (ep_dir / "episode_meta.json").write_text(json.dumps(meta))
    return ep_dir


def foreign_bag(path: Path, *, storage: str = "mcap", steps: int = 40, seed: int = 1, t0: float = 500.0,
                episodes: int = 1, image_size: int = 48, compressed: bool = True,
                bad_frames: dict[int, str] | None = None) -> Path:
    """A bag as `ros2 bag record` on someone else's arm would leave it: /wrist_cam/image/compressed
    (CompressedImage, jpeg) or /wrist_cam/image (bgr8), /tcp_pose (PoseStamped), /joint_states
    with finger_joint, /arm/servo/cmd (TwistStamped, m/s), /gripper/cmd (Float64),
    /episode_marker (std_msgs/String 'start' at every episode start). No project metadata.
    bad_frames {step: 'short' | 'size'} (uncompressed only): that step's Image is malformed (data
    cut short) or of another size (a glitching driver, a stray publisher on the topic)."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    M = {n: ts.types[n] for n in ts.types}
    Time = M["builtin_interfaces/msg/Time"]
    Header = M["std_msgs/msg/Header"]

    def hdr(t):
        return Header(stamp=Time(sec=int(np.floor(t)), nanosec=int(round((t - np.floor(t)) * 1e9)) % 10**9),
                      frame_id="wrist")

    Vec = M["geometry_msgs/msg/Vector3"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as wr:
        cam_topic = "/wrist_cam/image/compressed" if compressed else "/wrist_cam/image"
        cam_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        c = {
            "cam": wr.add_connection(cam_topic, cam_type, typestore=ts),
            "pose": wr.add_connection("/tcp_pose", "geometry_msgs/msg/PoseStamped", typestore=ts),
            "js": wr.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts),
            "cmd": wr.add_connection("/arm/servo/cmd", "geometry_msgs/msg/TwistStamped", typestore=ts),
            "grip": wr.add_connection("/gripper/cmd", "std_msgs/msg/Float64", typestore=ts),
            "mark": wr.add_connection("/episode_marker", "std_msgs/msg/String", typestore=ts),
        }
        ns = lambda t: int(round(t * 1e9))  # noqa: E731
        t = t0
        for e in range(episodes):
            acts = plan(steps, seed=seed + e)
            hand = np.array([0.3, 0.0, 0.4])
            wr.write(c["mark"], ns(t - 0.001), ts.serialize_cdr(M["std_msgs/msg/String"](data="start"),
                                                              "std_msgs/msg/String"))
            for k, a in enumerate(acts):
                rgb = scene(hand[0] - 0.3, hand[1], image_size)
                if compressed:
                    ok, enc = cv2.imencode(".png", rgb[:, :, ::-1])
                    msg = M["sensor_msgs/msg/CompressedImage"](header=hdr(t), format="png",
                                                               data=np.frombuffer(enc.tobytes(), np.uint8))
                else:
                    bad = (bad_frames or {}).get(k, "")
                    bgr = np.ascontiguousarray(rgb[:, :, ::-1] if bad != "size" else rgb[:20, :30, ::-1])
                    data = bgr.reshape(-1)[: 100 if bad == "short" else None]
                    msg = M["sensor_msgs/msg/Image"](header=hdr(t), height=bgr.shape[0], width=bgr.shape[1],
                                                     encoding="bgr8", is_bigendian=0, step=bgr.shape[1] * 3,
                                                     data=data)
                wr.write(c["cam"], ns(t + 0.003), ts.serialize_cdr(msg, cam_type))
                P = M["geometry_msgs/msg/Pose"](position=M["geometry_msgs/msg/Point"](x=hand[0], y=hand[1], z=hand[2]),
                                                orientation=M["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
                wr.write(c["pose"], ns(t + 0.003), ts.serialize_cdr(M["geometry_msgs/msg/PoseStamped"](header=hdr(t), pose=P),
                                                                  "geometry_msgs/msg/PoseStamped"))
                js = M["sensor_msgs/msg/JointState"](header=hdr(t), name=["shoulder", "finger_joint"],
                                                     position=np.array([0.1, 0.04 * (1 - max(a[3], 0))]),
                                                     velocity=np.zeros(0), effort=np.zeros(0))
                wr.write(c["js"], ns(t + 0.003), ts.serialize_cdr(js, "sensor_msgs/msg/JointState"))
                tc = t + 0.5 / RATE
                lin = a[:3] * SCALE * RATE
                tw = M["geometry_msgs/msg/TwistStamped"](header=hdr(tc), twist=M["geometry_msgs/msg/Twist"](
                    linear=Vec(x=lin[0], y=lin[1], z=lin[2]), angular=Vec(x=0.0, y=0.0, z=0.0)))
                wr.write(c["cmd"], ns(tc), ts.serialize_cdr(tw, "geometry_msgs/msg/TwistStamped"))
                wr.write(c["grip"], ns(tc), ts.serialize_cdr(M["std_msgs/msg/Float64"](data=float(a[3])),
                                                           "std_msgs/msg/Float64"))
                hand = hand + a[:3] * SCALE
                t += 1 / RATE
            t += 1.0
    return path


FOREIGN_MAPPING = """\
# a foreign bag: other topic names, CompressedImage camera, no project metadata
rate_hz: 30
cameras:
  wrist: /wrist_cam/image/compressed
state:
  - {name: hand_x, topic: /tcp_pose, field: pose.position.x}
  - {name: hand_y, topic: /tcp_pose, field: pose.position.y}
  - {name: hand_z, topic: /tcp_pose, field: pose.position.z}
  - {name: gripper, topic: /joint_states, joint: finger_joint}
action:
  topic: /arm/servo/cmd
  type: twist
  ee_delta_scale_m: 0.01
gripper: {topic: /gripper/cmd, field: data}
instruction: {text: "move the gripper to the target"}
task: wrist-reach
episodes: {split: topic, topic: /episode_marker, field: data, value: start}
"""
