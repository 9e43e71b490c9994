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
                     kill_after_segments: int | None = None, lose_metadata: bool = False,
                     extra_cameras: dict[str, float] | None = None, extra_until: int | None = None) -> Path:
    """A recorder episode bag as `lara bringup sim` writes it: per control tick the sim's image,
    joint_states, ee_pose, goal, task_success (stamped t), then command_node's twist + gripper
    for the next tick; instruction at the start. With kill_after_segments the writer stops like
    a SIGKILL: later data stays in .partial (lost), episode_meta.json says 'recording';
    lose_metadata also removes metadata.yaml (kill between a segment's move and its rewrite).
    extra_cameras {name: stamp offset s}: more cameras on /camera/<name>/image_raw (a multi-camera
    sim_node), each frame 255 - the first camera's of its tick (so a pair can be checked), stamped
    t + offset; extra_until: they stop after that many ticks (a camera that died)."""
    from lara_policy.formats.rosbag.writer import EpisodeBagWriter as _Segmenter, writer_typestore

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
        for cam, off in (extra_cameras or {}).items():
            if extra_until is None or k < extra_until:
                w(f"/camera/{cam}/image_raw", "sensor_msgs/msg/Image", t + off + 0.003, M["sensor_msgs/msg/Image"](
                    header=hdr(t + off, f"{cam}_camera"), height=image_size, width=image_size, encoding="rgb8",
                    is_bigendian=0, step=image_size * 3, data=(255 - rgb).reshape(-1)))
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


# ------------------------------------------------------------------------------ a lab's own bag
LAB_RATE = 15.0           # camera (and control) rate of lab_bag
LAB_SCALE = 0.01          # ee_delta_scale_m of lab_bag's mapping
TOOL_IN_FLANGE = ([0.0, 0.02, 0.15], [0.3826834, 0.0, 0.0, 0.9238795])   # static flange -> tool0 (xyz, xyzw)
BASE_IN_WORLD = ([1.0, 2.0, 0.0], [0.0, 0.0, 0.7071068, 0.7071068])     # static world -> base_link


def _qmul(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def _qrot(q, v):
    return _qmul(_qmul(q, [*v, 0.0]), [-q[0], -q[1], -q[2], q[3]])[:3]


def lab_bag(path: Path, *, storage: str = "sqlite3", episodes: int = 3, frames: int = 24, gap_s: float = 3.0,
            t0: float = 700.0, grip_start_s: float = 0.2, image_size: int = 48, seed: int = 3,
            twist_start_s: float = 0.0) -> tuple[Path, dict]:
    """A lab's own recording as `ros2 bag record` leaves it (metadata 8; sqlite3 or MCAP): a
    CompressedImage camera at 15 Hz, the arm's JointState and /tcp_pose and /tf at 60 Hz, the
    gripper's JointState on its own topic, Servo twists at 30 Hz, a Float64 gripper command at
    15 Hz starting grip_start_s into the bag (late), /tf_static (world -> base_link, flange ->
    tool0); `episodes` episodes of `frames` camera frames split by camera gaps of gap_s with no
    command sent in the gaps. The arm moves until each episode's last frame (full speed at the
    end). Every /tf message carries several transforms (distractors too) in a shuffled order;
    the tool pose is only there as base_link -> flange (dynamic) + flange -> tool0 (static).
    Returns (path, truth): per episode the frame times, the tool pose (xyz, quaternion xyzw) in
    base_link at each frame, the commanded action after each frame (units) and the gripper
    command after each frame (nan before the first). twist_start_s > 0: no twist is published
    before then (Servo idle; the truth's action is 0 there)."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    M = ts.types
    rng = np.random.default_rng(seed)

    def hdr(t, frame=""):
        n = int(round(t * 1e9))
        return M["std_msgs/msg/Header"](stamp=M["builtin_interfaces/msg/Time"](
            sec=n // 10**9, nanosec=n % 10**9), frame_id=frame)

    def tfs(t, parent, child, xyz, q):
        return M["geometry_msgs/msg/TransformStamped"](header=hdr(t, parent), child_frame_id=child,
                                                        transform=M["geometry_msgs/msg/Transform"](
            translation=M["geometry_msgs/msg/Vector3"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
            rotation=M["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    ns = lambda t: int(round(t * 1e9))  # noqa: E731
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    truth = {"episodes": []}
    msgs = []                                   # (t_receive, key, msg)
    P = 1.0 / LAB_RATE
    tool_t, tool_q = np.array(TOOL_IN_FLANGE[0]), np.array(TOOL_IN_FLANGE[1])
    inv_tq = np.array([-tool_q[0], -tool_q[1], -tool_q[2], tool_q[3]])
    t_ep = t0
    first_grip = t0 + grip_start_s
    for e in range(episodes):
        d = rng.uniform(-1, 1, 3)
        d /= np.linalg.norm(d)
        speed = 0.4 + 0.5 * np.linspace(0, 1, frames)           # action units, fastest at the end
        act = speed[:, None] * d[None]                          # (frames, 3) action after frame k
        grip = np.where(np.arange(frames) < frames // 2, -1.0, 1.0) * (1 if e % 2 == 0 else -1)
        ft = t_ep + np.arange(frames) * P
        pos = np.array([0.4, 0.0, 0.3]) + 0.02 * e
        poses, quats = [], []
        # 60 Hz samples: pose integrates the twist in force (velocity act[k] * scale * rate from
        # 1/60 s after frame k), orientation turns about a tilted axis
        for j in range(frames * 4):
            t = t_ep + j / 60.0
            k = j // 4
            v = act[k] * LAB_SCALE * LAB_RATE if j % 4 >= 1 else (act[k - 1] * LAB_SCALE * LAB_RATE if k else 0 * d)
            if j:
                pos = pos + v / 60.0
            ang = 0.3 + 0.4 * (t - t0)
            q = _qmul([0.0, 0.0, np.sin(ang / 2), np.cos(ang / 2)], [np.sin(0.2), 0.0, 0.0, np.cos(0.2)])
            if j % 4 == 0:
                poses.append(pos.copy())
                quats.append(q)
            # tool pose -> flange pose: T_base_flange = T_base_tool * inv(T_flange_tool)
            fq = _qmul(q, inv_tq)
            fpos = pos - _qrot(fq, tool_t)
            msgs.append((t, "tcp", M["geometry_msgs/msg/PoseStamped"](header=hdr(t, "base_link"),
                         pose=M["geometry_msgs/msg/Pose"](position=M["geometry_msgs/msg/Point"](
                             x=pos[0], y=pos[1], z=pos[2]), orientation=M["geometry_msgs/msg/Quaternion"](
                             x=q[0], y=q[1], z=q[2], w=q[3])))))
            tr = [tfs(t, "base_link", "flange", fpos, fq), tfs(t, "odom", "base_footprint", [0.1 * j, 0, 0], [0, 0, 0, 1]),
                  tfs(t, "base_link", "camera_link", [0.5, 0, 0.8], [0, 0.38268343, 0, 0.92387953]),
                  tfs(t, "flange", "finger", [0, 0, 0.1 + 0.01 * np.sin(j)], [0, 0, 0, 1])]
            order = rng.permutation(len(tr))
            msgs.append((t + 0.001, "tf", M["tf2_msgs/msg/TFMessage"](transforms=[tr[i] for i in order])))
            msgs.append((t + 0.001, "arm", M["sensor_msgs/msg/JointState"](
                header=hdr(t), name=[f"j{i}" for i in range(6)], position=np.full(6, 0.01 * j),
                velocity=np.zeros(0), effort=np.zeros(0))))
        for k in range(frames):
            t = ft[k]
            rgb = scene(poses[k][0] - 0.4, poses[k][1], image_size)
            ok, enc = cv2.imencode(".png", rgb[:, :, ::-1])
            msgs.append((t + 0.004, "cam", M["sensor_msgs/msg/CompressedImage"](header=hdr(t, "cam"), format="png",
                         data=np.frombuffer(enc.tobytes(), np.uint8))))
            msgs.append((t + 0.002, "gjs", M["sensor_msgs/msg/JointState"](
                header=hdr(t), name=["finger_joint"], position=np.array([0.04 * (grip[k - 1] > 0 if k else 0)]),
                velocity=np.zeros(0), effort=np.zeros(0))))
            for h in (1, 3):                                   # Servo twists at 30 Hz
                tc = t + h / 60.0
                if tc < t0 + twist_start_s:
                    continue
                lin = act[k] * LAB_SCALE * LAB_RATE
                msgs.append((tc, "twist", M["geometry_msgs/msg/TwistStamped"](header=hdr(tc, "base_link"),
                             twist=M["geometry_msgs/msg/Twist"](linear=M["geometry_msgs/msg/Vector3"](
                                 x=lin[0], y=lin[1], z=lin[2]), angular=M["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)))))
            tg = t + 0.5 * P
            if tg >= first_grip:
                msgs.append((tg, "grip", M["std_msgs/msg/Float64"](data=float(grip[k]))))
        gcmd = np.where(ft + 0.5 * P >= first_grip, grip, np.nan)
        act = np.where((ft + 3 / 60.0 < t0 + twist_start_s)[:, None], 0.0, act)   # no twist yet: no motion
        truth["episodes"].append({"frame_t": ft, "pos": np.array(poses), "quat": np.array(quats),
                                  "action": np.concatenate([act, gcmd[:, None]], axis=1)})
        t_ep = ft[-1] + gap_s
    types = {"cam": ("/camera/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
             "arm": ("/joint_states", "sensor_msgs/msg/JointState"),
             "gjs": ("/gripper/joint_states", "sensor_msgs/msg/JointState"),
             "tcp": ("/tcp_pose", "geometry_msgs/msg/PoseStamped"), "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
             "tfs": ("/tf_static", "tf2_msgs/msg/TFMessage"),
             "twist": ("/servo_node/delta_twist_cmds", "geometry_msgs/msg/TwistStamped"),
             "grip": ("/gripper/command", "std_msgs/msg/Float64")}
    msgs.append((t0 - 0.5, "tfs", M["tf2_msgs/msg/TFMessage"](transforms=[
        tfs(t0 - 0.5, "flange", "tool0", *TOOL_IN_FLANGE), tfs(t0 - 0.5, "world", "base_link", *BASE_IN_WORLD)])))
    msgs.sort(key=lambda m: m[0])
    with Writer(path, version=8, storage_plugin=plugin) as wr:
        conns = {k: wr.add_connection(topic, mt, typestore=ts) for k, (topic, mt) in types.items()}
        for t, key, msg in msgs:
            wr.write(conns[key], ns(t), ts.serialize_cdr(msg, types[key][1]))
    return path, truth


LAB_MAPPING = """\
# a lab's own bag (docs/bag_conversion.md): camera gaps split the episodes
rate_hz: 15
cameras:
  front: /camera/color/image_raw/compressed
state:
  - {name: hand_x, topic: /tcp_pose, field: pose.position.x}
  - {name: hand_y, topic: /tcp_pose, field: pose.position.y}
  - {name: hand_z, topic: /tcp_pose, field: pose.position.z}
  - {name: gripper, topic: /gripper/joint_states, joint: finger_joint}
action: {topic: /servo_node/delta_twist_cmds, type: twist, ee_delta_scale_m: 0.01}
gripper: {topic: /gripper/command, field: data}
instruction: {text: "put the block in the bowl"}
episodes: {split: gap, gap_s: 1.0}
"""
