"""policy_node: the LARA policy as a ROS node (a thin adapter over lara_policy.core).

In:  camera image(s) (sensor_msgs/Image or CompressedImage, QoS from parameters; one topic per
     checkpoint camera in `image_topics`, or the one-camera shorthand `image_topic`; several
     cameras are paired by stamp within image_sync_slop_s: ros/cameras.py), instruction (std_msgs/String
     topic and lara_msgs/srv/SetInstruction service), end-effector pose
     (geometry_msgs/PoseStamped), joint states (sensor_msgs/JointState, incl. the gripper
     joint), task goal (geometry_msgs/PointStamped).
Out: lara_msgs/ActionChunk (stamp = capture time of the image it was predicted from,
     dt = control period) and, when the policy has a LAM, lara_msgs/DynamicsCheck with the
     same stamp: the dynamics check's outcome when num_candidates > 1 (num_candidates = 1:
     no check, always accepted), and the surprise of an earlier chunk (below).

Surprise pairs the frames the LAM was trained on: for each published chunk (stamp t, predicted
latent f_psi(h)) the worker waits for the first camera frame at t + C control periods (C = the
LAM's chunk offset), computes 1 - cos(z(I_t, I_{t+C}), f_psi(h)), and reports it on the next
DynamicsCheck (NaN when no chunk has completed its C steps since the last report, or when the
frame came more than C/4 periods late). With replanning every k < C periods that chunk was
only partly executed (its first k actions, then the next chunk's): the surprise then measures
the executed motion against the motion predicted for the whole chunk.

The executor thread only buffers the latest observation. Inference runs in a worker
thread: it waits for a new camera frame, and once `replan_period_steps` control periods
have passed since the last chunk it snapshots the latest synchronized observation, calls
`policy.predict_chunk`, and publishes. Control (command_node) therefore never waits.

Which state goes with an image: for the image stamped t, each state source (end-effector
pose, goal, each joint) gives its LATEST sample stamped <= t (the earliest later one only when
none is, and only within max_state_skew_s). When a source's next sample is due at or before
t + state_sync_timeout_s (from its recent rate, known once it has sent two samples) and has not
arrived yet, the worker waits for it, at most state_sync_timeout_s: a robot driver that publishes the image a moment before the state
of the same tick (sim_node, bag replay) no longer gets the previous tick's state.

Bad input is rejected with a log line (throttled per cause) and nothing is published:
unsupported image encoding, a size other than expected_image_width/height, more than
max_image_pixels, 0x0, data shorter or longer than step x height, an invalid or zero header
stamp; an instruction that is empty, longer than max_instruction_chars, not valid UTF-8,
holds control characters or no letter (the previous instruction stays); missing / stale /
NaN state (a pose with a non-finite orientation counts as NaN); an image stamped in the future
(clocks disagree) or too old; a policy that raises ValueError or returns non-finite actions.
Joint states are merged by joint name (arm and gripper drivers may publish separate
JointState messages on the same topic).

This file is the node shell (parameters, topics, services, the inference worker); the buffered
inputs, their checks and the synchronised snapshot are ObservationAssembler's (observation.py).
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict, deque

import numpy as np
import rclpy
import rclpy.executors
import rclpy.logging
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from lara_msgs.msg import ActionChunk, DynamicsCheck
from lara_msgs.srv import SetInstruction
from lara_policy.common.policy_api import DynamicsCheckResult, Observation
from lara_policy.ros import topics
from lara_policy.core.rtc import rtc_guide
from lara_policy.ros.cameras import declare_camera_params, resolve_cameras, silence_reason
from lara_policy.ros.chunk_timing import ChunkTimings
from lara_policy.ros.codec import check_to_msg, chunk_to_msg, compressed_msg_to_rgb, image_msg_to_rgb, stamp_to_sec
from lara_policy.ros.ee_pose import FrameMap, TfPoseRelay, resolve_source
from lara_policy.ros.params import declare, match_publisher_reliability, qos_from_params, resolve_path
from lara_policy.ros.node_main import build_or_exit, spin_node
# observation assembly lives beside this shell; its names stay importable from here
from lara_policy.ros.observation import (EE_NAMES, GOAL_NAMES, ObservationAssembler, _Series,  # noqa: F401
                                         compressed_dims, instruction_problem, stamp_problem)



class PolicyLoadError(ValueError):
    """The checkpoint exists but cannot be loaded (corrupt, wrong version, LAM-only, ...)."""


def load_policy(checkpoint: str, device: str = "", threads: int = 0, runtime: str = "torch"):
    """LaraPolicy from a checkpoint directory (clear error when missing); runtime torch |
    onnxruntime (the exported graphs in CKPT/onnx, exported on first use: core/export.py)."""
    import os

    if not checkpoint:
        raise ValueError("policy_node: parameter 'checkpoint' is empty; give a LARA checkpoint directory")
    checkpoint = resolve_path(checkpoint)
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"policy_node: checkpoint not found: {checkpoint} (train one with "
                                "`lara train`, or set the 'checkpoint' parameter / --checkpoint)")
    from lara_policy.core.policy import LaraPolicy
    kwargs = {"threads": threads} if threads > 0 else {}
    if runtime != "torch":
        kwargs["runtime"] = runtime
    try:
        return LaraPolicy.from_checkpoint(checkpoint, device=device or None, **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:   # CheckpointError is a RuntimeError
        raise PolicyLoadError(f"policy_node: cannot load checkpoint {checkpoint}: {exc}") from exc


def _assembler_attr(name: str) -> property:
    """A read-only node attribute that is the ObservationAssembler's `name`."""
    return property(lambda self: getattr(self.assembler, name), doc=f"ObservationAssembler.{name} (read-only)")


class PolicyNode(Node):
    def __init__(self, node_name: str = "policy_node", policy=None, tf_factory=None, **kwargs):
        super().__init__(node_name, **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        self.checkpoint = p("checkpoint", "", "LARA checkpoint directory", read_only=True)
        self.device = p("device", "", "torch device: '' (auto: cuda if present) | cpu | cuda[:i]",
                        read_only=True)
        self.torch_threads = p("torch_threads", 1, "CPU threads for inference (0 = the library default); "
                               "1 leaves cores to the control loop and the camera", read_only=True,
                               min_value=0, max_value=256)
        self.runtime = p("runtime", "torch", "inference runtime: torch | onnxruntime (the exported graphs in "
                         "CKPT/onnx, exported on first use; `lara export`) | onnxruntime-int8 (`lara export "
                         "--quantize int8` first); real-time chunking (rtc) needs torch",
                         read_only=True)
        p("rtc", False, "real-time chunking: each chunk is sampled with inpainting guidance toward what the "
          "executing chunk will still do during the inference delay (core/rtc.py); runtime torch only")
        p("rtc_delay_steps", -1, "the inference delay in control periods that rtc keeps exactly (-1 = the "
          "measured camera -> publish p50 of the last chunks, rounded up)", min_value=-1, max_value=1000)
        self.inference_nice = p("inference_nice", 0, "nice increment of the inference thread (Linux; 0 = "
                                "unchanged): control and camera threads of the process win", read_only=True,
                                min_value=0, max_value=19)
        p("num_candidates", 1, "candidate chunks per step; > 1 runs the LAM dynamics check",
          min_value=1, max_value=256)
        p("replan_period_steps", 8, "control periods executed between two predictions",
          min_value=1, max_value=1000)
        self.control_rate_hz = p("control_rate_hz", 30.0,
                                 "control rate; published chunks have dt = 1 / control_rate_hz",
                                 read_only=True, min_value=0.1, max_value=1000.0)
        p("seed", -1, "sampling seed for predict_chunk (-1 = random)")
        p("enabled", True, "publish chunks (false = keep buffering, predict nothing)")
        p("instruction", "", "initial instruction ('' = wait for the topic/service)", read_only=True)
        p("max_state_skew_s", 0.5, "max |image stamp - state stamp| for a synchronized observation",
          min_value=0.0, max_value=60.0)
        p("max_image_age_s", 1.0, "images older than this (vs. the node clock) are not used",
          min_value=0.0, max_value=60.0)
        p("max_future_stamp_s", 0.1, "images stamped more than this ahead of the node clock are not used "
          "(camera and policy clocks must agree: chrony/PTP between hosts)", min_value=0.0, max_value=60.0)
        p("expected_image_width", 0, "reject images of another width (0 = any)", min_value=0)
        p("expected_image_height", 0, "reject images of another height (0 = any)", min_value=0)
        p("max_image_pixels", 2_500_000, "reject images with more pixels than this before decoding (default: "
          "1920x1200 passes, 4000x3000 does not; the policy resizes to ~100 px, a huge frame only costs "
          "latency and memory: set the camera's resolution lower)", min_value=1)
        p("max_instruction_chars", 500, "refuse longer instructions (the previous one stays): the language "
          "model reads only its first tokens", min_value=1, max_value=1_000_000)
        p("state_sync_timeout_s", 0.02, "wait at most this long for a state sample stamped at or after the "
          "image when one is due (0 = never wait: latest state stamped <= the image)", min_value=0.0,
          max_value=1.0)
        p("camera_name", "", "policy camera the image topic feeds ('' = the policy's first)",
          read_only=True)
        declare_camera_params(self)     # image_topics (one topic per checkpoint camera), image_sync_slop_s
        self.gripper_joint_name = p("gripper_joint_name", "gripper",
                                    "joint in joint_states holding the gripper state (default: LARA's sim_node; "
                                    "Robotiq 2F-85 robotiq_85_left_knuckle_joint, Franka fr3_finger_joint1: "
                                    "lara_bringup/config/ur5e_robotiq.yaml, franka_fr3.yaml)", read_only=True)
        self.frame_id = p("frame_id", "base", "frame_id of published chunks (the robot base frame)",
                          read_only=True)
        ee_source = p("ee_pose_source", "auto", "end-effector pose from 'topic' (ee_pose_topic), 'tf' (tf2 "
                      "lookup frame_id -> ee_link) or 'auto' (tf where tf2_ros is installed, else the topic)",
                      read_only=True)
        ee_link = p("ee_link", "tool0", "end-effector link for ee_pose_source 'tf'", read_only=True)
        axes = p("policy_axes_in_base", ["x", "y", "z"], "base-frame direction of the policy's +x, +y, +z "
                 "(e.g. ['-y', 'x', 'z']); same value as command_node's", read_only=True)
        origin = p("policy_origin_in_base", [0.0, 0.0, 0.0], "policy frame origin in the base frame (m): "
                   "hand/goal state = R^T (position - origin)", read_only=True)
        self.frame_map = FrameMap(list(axes), list(origin))
        self.gripper_open = p("gripper_open_position", 1.0, "gripper joint position when open (driver units: "
                              "m, rad, ...; sim_node 1.0, Robotiq knuckle 0.0 rad, Franka finger 0.04 m); "
                              "mapped to the policy's 1", read_only=True)
        self.gripper_closed = p("gripper_closed_position", 0.0, "gripper joint position when closed (sim_node "
                                "0.0, Robotiq 0.7929 rad, Franka 0.0); mapped to the policy's 0", read_only=True)
        if not math.isfinite(self.gripper_open - self.gripper_closed) or self.gripper_open == self.gripper_closed:
            raise ValueError("policy_node: gripper_open_position and gripper_closed_position must differ")
        p("fault_monitor", True, "LAM fault monitor: alarm on /diagnostics and /lara/monitor_alarm when the observed "
          "latent action disagrees with the predicted one for fault_monitor_debounce chunks in a row (needs a "
          "LAM and a threshold: the checkpoint's monitor.json or fault_monitor_threshold)", read_only=True)
        p("fault_monitor_threshold", -1.0, "surprise threshold (-1 = the checkpoint's monitor.json)", read_only=True)
        p("fault_monitor_debounce", 0, "chunks in a row over the threshold that raise the alarm (0 = monitor.json's)",
          read_only=True, min_value=0)
        self.log_throttle_s = p("log_throttle_s", 2.0, "min seconds between repeated rejection logs",
                                min_value=0.0)
        qos_rel = p("camera_qos_reliability", "reliable", "camera QoS: reliable | best_effort | auto (match "
                    "the publishers found at start: best_effort if any offers it)", read_only=True)
        transport = p("image_transport", "auto", "raw (sensor_msgs/Image) | compressed (sensor_msgs/"
                      "CompressedImage, jpeg/png) | auto (per topic: compressed when it ends in /compressed)",
                      read_only=True)
        qos_depth = p("camera_qos_depth", 2, "camera QoS history depth", read_only=True, min_value=1)
        t = {k: p(k, v, d, read_only=True) for k, v, d in [
            ("image_topic", topics.CAMERA_IMAGE, "camera image in: the one-camera shorthand of image_topics"),
            ("instruction_topic", topics.INSTRUCTION, "instruction in (std_msgs/String)"),
            ("set_instruction_service", topics.SET_INSTRUCTION, "SetInstruction service"),
            ("joint_states_topic", topics.JOINT_STATES, "joint states in"),
            ("ee_pose_topic", topics.EE_POSE, "end-effector pose in"),
            ("goal_topic", topics.GOAL, "task goal in"),
            ("action_chunk_topic", topics.ACTION_CHUNK, "ActionChunk out"),
            ("dynamics_check_topic", topics.DYNAMICS_CHECK, "DynamicsCheck out"),
            ("reset_service", "~/reset", "forget the episode (policy.reset, buffers) (std_srvs/Trigger)"),
        ]}
        if t["reset_service"].startswith("~/"):
            t["reset_service"] = self.get_fully_qualified_name().rstrip("/") + t["reset_service"][1:]
        self.topics = t
        self.control_period = 1.0 / self.control_rate_hz

        from lara_policy.core.policy import RUNTIMES
        if self.runtime not in RUNTIMES:
            raise ValueError(f"policy_node: runtime must be one of {', '.join(RUNTIMES)}, got '{self.runtime}'")
        self.policy = policy if policy is not None else load_policy(self.checkpoint, self.device, self.torch_threads,
                                                                     self.runtime)
        meta = self.policy.meta
        self.meta = meta
        self.camera_inputs = resolve_cameras(self.get_parameter("image_topics").value, t["image_topic"],
                                             self.get_parameter("camera_name").value, list(meta.cameras),
                                             transport, meta.model_id)
        self.camera_name = self.camera_inputs[0].name     # the primary camera (surprise, the chunk's stamp)
        self.state_names = list(meta.state_names) if meta.state_names else []
        if len(self.state_names) != int(meta.state_dim):
            raise ValueError(f"policy_node: policy state_names {self.state_names} do not match "
                             f"state_dim {meta.state_dim}")

        # latest buffered inputs (written by the executor, read by the worker) and the snapshot
        self.assembler = ObservationAssembler(
            param=lambda name: self.get_parameter(name).value, now=lambda: self.get_clock().now().nanoseconds * 1e-9,
            reject=self._reject, decode=self._decode_image, topics=t, state_names=self.state_names,
            camera_name=self.camera_name, gripper_joint_name=self.gripper_joint_name,
            gripper_open=self.gripper_open, gripper_closed=self.gripper_closed, frame_id=self.frame_id,
            frame_map=self.frame_map, cameras=[(c.name, c.topic) for c in self.camera_inputs])
        self._lock = self.assembler.lock    # one lock: buffered inputs, instruction, episode and surprise state
        instruction = self.assembler.instruction = str(self.get_parameter("instruction").value).strip()
        if instruction:
            _, why = instruction_problem(instruction, int(self.get_parameter("max_instruction_chars").value))
            if why:
                raise ValueError(f"policy_node: parameter 'instruction': {why}")
        # surprise (worker thread): chunks waiting for their frame t + C, and the latest value
        self._surprise_pending: deque = deque()   # (target stamp, chunk stamp, latent, image_t)
        self._surprise_last = float("nan")
        self.surprises: list[tuple[float, float, float]] = []   # (chunk stamp, frame lag s, surprise)
        lam_offset = getattr(getattr(self.policy, "config", None), "offset", None)
        self.surprise_offset_steps = int(lam_offset) if lam_offset else int(self.policy.meta.horizon)
        self._new_image = threading.Event()
        self._stop = threading.Event()
        self._epoch = 0               # bumped by reset / new instruction

        # statistics (read by tests and the bench)
        self.rejections: dict[str, int] = defaultdict(int)
        self.last_rejection = ""
        self._last_log: dict[str, float] = {}
        self.chunks_published = 0
        self.checks_published = 0
        self.inference_ms: list[float] = []
        self.timings = ChunkTimings()   # where camera -> chunk time goes (ros/chunk_timing.py; lara bench ros)
        self._last_chunk: tuple[float, np.ndarray] | None = None    # (stamp, actions): rtc's executing chunk

        self.monitor = None
        if self.get_parameter("fault_monitor").value and hasattr(self.policy, "surprise"):
            from lara_policy.ros.fault_monitor import FaultMonitorPublisher
            self.monitor = FaultMonitorPublisher(self, self.checkpoint,
                                                 float(self.get_parameter("fault_monitor_threshold").value),
                                                 int(self.get_parameter("fault_monitor_debounce").value), meta.model_id)
            if not self.monitor.enabled:
                self.get_logger().info("LAM fault monitor off: no monitor.json beside the checkpoint (calibrate with "
                                       "`lara eval sim --monitor --calibrate-monitor`) and no fault_monitor_threshold")
        self.chunk_pub = self.create_publisher(ActionChunk, t["action_chunk_topic"], 10)
        self.check_pub = self.create_publisher(DynamicsCheck, t["dynamics_check_topic"], 10)
        self.image_transport = self.camera_inputs[0].transport
        self.camera_qos: dict[str, str] = {}     # camera -> reliability of its subscription
        self._image_arrival: dict[str, float] = {}
        for cam in self.camera_inputs:
            rel = self.camera_qos[cam.name] = match_publisher_reliability(self, qos_rel, cam.topic)
            self.create_subscription(CompressedImage if cam.transport == "compressed" else Image, cam.topic,
                                     lambda msg, c=cam.name: self._on_image(msg, c), qos_from_params(rel, qos_depth))
            self._image_arrival[cam.name] = time.monotonic()
        self.camera_reliability = self.camera_qos[self.camera_name]
        self.create_timer(2.0, self._check_camera)
        self.create_subscription(String, t["instruction_topic"], self._on_instruction_msg, 10)
        self._tf_relay = None
        try:
            ee_source = resolve_source(ee_source, tf_factory)
        except ValueError as exc:
            raise ValueError(f"policy_node: {exc}") from exc
        if ee_source == "tf":
            self._tf_relay = TfPoseRelay(self, self.frame_id, ee_link, self.assembler.on_ee, tf_factory=tf_factory)
        else:
            self.create_subscription(PoseStamped, t["ee_pose_topic"], self.assembler.on_ee, 10)
        self.ee_pose_source = ee_source
        self.create_subscription(PointStamped, t["goal_topic"], self.assembler.on_goal, 10)
        self.create_subscription(JointState, t["joint_states_topic"], self.assembler.on_joints, 10)
        # services keep up to 100 queued requests (the default 10 dropped requests of a burst: the
        # callers' futures never completed)
        from rclpy.qos import QoSProfile
        srv_qos = QoSProfile(depth=100)
        self.create_service(SetInstruction, t["set_instruction_service"], self._on_set_instruction,
                            qos_profile=srv_qos)
        self.create_service(Trigger, t["reset_service"], self._on_reset, qos_profile=srv_qos)

        self._worker = threading.Thread(target=self._run_worker, name="lara_policy_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"policy_node: model '{meta.model_id}' ({meta.action_space}, H={meta.horizon}), camera(s) "
            + ", ".join(f"'{c.name}' <- {c.topic}" for c in self.camera_inputs) + f", state {self.state_names}, "
            f"replan every {self.get_parameter('replan_period_steps').value} x {self.control_period * 1e3:.1f} ms")

    # -- rejection log -------------------------------------------------------------------
    def _reject(self, key: str, message: str, cause: str = "") -> None:
        """Count the rejection under `key` (and `key:cause`), log it throttled per cause."""
        self.rejections[key] += 1
        log_key = key
        if cause:
            log_key = f"{key}:{cause}"
            self.rejections[log_key] += 1
        self.last_rejection = message
        now = time.monotonic()
        if now - self._last_log.get(log_key, -1e9) >= self.log_throttle_s:
            self._last_log[log_key] = now
            self.get_logger().warning(f"policy_node: {message}; not publishing")

    # -- camera QoS -----------------------------------------------------------------------
    def _check_camera(self) -> None:
        """A camera without an image for 2 s: say why, loudly (no publisher, or a QoS that cannot match)."""
        for cam in self.camera_inputs:
            idle = time.monotonic() - self._image_arrival[cam.name]
            if idle >= 2.0:
                where = "" if len(self.camera_inputs) == 1 else f" of camera '{cam.name}'"
                why = silence_reason(self, cam.topic, self.camera_qos[cam.name])
                self._reject("no_camera", f"no camera image{where} for {idle:.0f} s: {why}")

    # -- inputs (executor thread; the state sources go to ObservationAssembler) ----------
    @staticmethod
    def _decode_image(msg):
        """RGB of a raw or compressed image message (ImageConversionError when it cannot be)."""
        return compressed_msg_to_rgb(msg) if isinstance(msg, CompressedImage) else image_msg_to_rgb(msg)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg, camera: str | None = None) -> None:
        camera = camera or self.camera_name
        self._image_arrival[camera] = time.monotonic()
        arrival = self._now()
        if self.assembler.add_image(msg, camera):
            if camera == self.camera_name:
                self.timings.frame(stamp_to_sec(msg.header.stamp), arrival, self._now())
            self._new_image.set()

    def set_instruction(self, text: str) -> tuple[bool, str]:
        text = (text or "").strip()
        cause, why = instruction_problem(text, int(self.get_parameter("max_instruction_chars").value))
        if why:
            current = self.assembler.instruction
            self._reject("instruction", f"{why} (keeping '{current[:60]}')" if current else why, cause=cause)
            return False, why
        with self._lock:
            changed = text != self.assembler.instruction
            self.assembler.instruction = text
        if changed:
            self.reset_episode()
        return True, f"instruction set: '{text}'"

    def _on_instruction_msg(self, msg: String) -> None:
        self.set_instruction(msg.data)

    def _on_set_instruction(self, request, response):
        response.success, response.message = self.set_instruction(request.instruction)
        return response

    def reset_episode(self) -> None:
        """Forget per-episode state: policy memory, buffered frame/state, surprise reference."""
        with self._lock:
            self._epoch += 1
            self.assembler.clear()
            self._surprise_pending.clear()
            self._surprise_last = float("nan")
            self._last_chunk = None
            if self.monitor is not None:
                self.monitor.reset()
        try:
            self.policy.reset()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"policy_node: policy.reset() failed: {exc}")

    def _on_reset(self, request, response):
        self.reset_episode()
        response.success, response.message = True, "policy episode state cleared"
        return response

    @property
    def instruction(self) -> str:
        return self.assembler.instruction

    # -- observation (ObservationAssembler) ----------------------------------------------
    def snapshot(self) -> tuple[Observation | None, str, str]:
        """(observation, "", "") or (None, cause key, message)."""
        return self.assembler.snapshot()

    # read by tests and the bench, kept by the assembler
    sync_waits = _assembler_attr("sync_waits")
    sync_timeouts = _assembler_attr("sync_timeouts")
    state_stamps_used = _assembler_attr("state_stamps_used")
    _ee_hist, _goal_hist, _joint_hist = (_assembler_attr(n) for n in ("ee_hist", "goal_hist", "joint_hist"))

    # -- inference (worker thread) --------------------------------------------------------
    def _run_worker(self) -> None:
        if self.inference_nice and hasattr(os, "setpriority"):
            try:   # lowering a thread's own priority needs no privilege
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.inference_nice)
            except OSError:
                pass
        next_due = 0.0
        last_stamp = None
        while not self._stop.is_set():
            if not self._new_image.wait(timeout=0.1):
                continue
            self._new_image.clear()
            if self._stop.is_set():
                break
            # a due prediction goes first; the surprise of an earlier chunk (a LAM forward) is
            # computed after it, not on the camera -> chunk path
            if not self.get_parameter("enabled").value or time.monotonic() < next_due:
                self._pair_surprise()
                continue
            obs, key, why = self.snapshot()
            if obs is None:
                self._reject(key, why)
                self._pair_surprise()
                continue
            if obs.stamp == last_stamp:
                self._pair_surprise()
                continue
            t_start = time.monotonic()
            try:
                published = self.step(obs)
            except Exception:  # noqa: BLE001 - only a shutdown race is expected here
                if not self.context.ok():
                    break   # Ctrl-C / SIGTERM shut the context down while publishing
                raise
            if published:
                last_stamp = obs.stamp
                period = int(self.get_parameter("replan_period_steps").value) * self.control_period
                next_due = t_start + period - 0.5 * self.control_period
            self._pair_surprise()

    def step(self, obs: Observation) -> bool:
        """Predict and publish one chunk for obs; False (and a log line) when nothing was published."""
        n = int(self.get_parameter("num_candidates").value)
        seed = int(self.get_parameter("seed").value)
        epoch = self._epoch
        t0 = time.perf_counter()
        started = self._now()
        try:
            pred = self.policy.predict_chunk(obs, num_candidates=n, seed=None if seed < 0 else seed,
                                             **self._rtc_guide(obs.stamp))
        except ValueError as exc:
            self._reject("policy_input", f"policy refused the observation: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - keep the node alive, say why
            self._reject("policy_error", f"policy failed: {type(exc).__name__}: {exc}")
            return False
        latency_ms = (time.perf_counter() - t0) * 1e3
        returned = self._now()
        actions = np.asarray(pred.actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] != int(self.meta.action_dim) or not np.all(np.isfinite(actions)):
            self._reject("bad_output", f"policy returned invalid actions {actions.shape} "
                                       f"(finite: {bool(np.all(np.isfinite(actions)))})")
            return False
        if epoch != self._epoch:
            return False  # the episode was reset while predicting: drop the stale chunk
        self.inference_ms.append(latency_ms)
        if len(self.inference_ms) > 10000:
            del self.inference_ms[:5000]
        img = obs.images[self.camera_name]
        check = pred.check
        latent = check.predicted_latent if check is not None else pred.info.get("predicted_latent")
        if check is None and latent is not None:    # N = 1: no check, but surprise still reported
            check = DynamicsCheckResult(num_candidates=1, chosen_index=0, predicted_effect=np.zeros(0, np.float32),
                                        plausibility=np.zeros(0, np.float32), accepted=True, predicted_latent=latent)
        surprise, self._surprise_last = self._surprise_last, float("nan")   # each value reported once
        self.chunk_pub.publish(chunk_to_msg(actions, obs.stamp, self.control_period, self.meta.action_space,
                                            obs.instruction, self.meta.model_id, self.frame_id))
        self.timings.chunk(obs.stamp, started, returned, self._now())
        self._last_chunk = (obs.stamp, actions)
        self.chunks_published += 1
        if check is not None:
            self.check_pub.publish(check_to_msg(check, obs.stamp, surprise, self.frame_id))
            self.checks_published += 1
            if not check.accepted:
                self.get_logger().warning(f"policy_node: dynamics check flagged the step: {check.reason}",
                                          throttle_duration_sec=self.log_throttle_s)
        if latent is not None and hasattr(self.policy, "surprise"):
            target = obs.stamp + self.surprise_offset_steps * self.control_period
            with self._lock:
                if epoch == self._epoch:
                    self._surprise_pending.append((target, obs.stamp, latent, img))
        return True

    def _rtc_guide(self, stamp: float) -> dict:
        """predict_chunk's guide for real-time chunking ({} when off or nothing is executing)."""
        if not self.get_parameter("rtc").value or self._last_chunk is None:
            return {}
        if getattr(self.policy, "runtime", "torch") != "torch":
            self.get_logger().warning("policy_node: rtc needs runtime torch (the exported graph has the Euler loop "
                                      "inside); sampling without guidance", throttle_duration_sec=self.log_throttle_s)
            return {}
        prev_stamp, prev = self._last_chunk
        start = int(round((stamp - prev_stamp) / self.control_period))
        if start >= len(prev) or start < 0:
            return {}                    # the executing chunk has run out (or a reset): nothing to keep
        delay = int(self.get_parameter("rtc_delay_steps").value)
        if delay < 0:                    # the measured camera -> publish time, in control periods
            p50 = self.timings.summary()["cam_to_publish_p50_ms"]
            delay = int(math.ceil(p50 * 1e-3 / self.control_period)) if math.isfinite(p50) else 1
        guide, weights = rtc_guide(prev, start, min(delay, len(prev) - 1), len(prev))
        return {"guide": guide, "guide_weights": weights}

    def _pair_surprise(self) -> None:
        """Surprise of every pending chunk whose frame t + C has arrived (worker thread): the
        latest frame is used when it is at most half a period early; a frame more than C/4
        periods late gives NaN (the worker was busy; the pair would not be the LAM's)."""
        if not self._surprise_pending:
            return
        with self._lock:
            image = self.assembler.image
        if image is None:
            return
        rgb, stamp = image
        late_max = 0.25 * self.surprise_offset_steps * self.control_period
        while True:
            with self._lock:
                epoch = self._epoch
                if not self._surprise_pending or self._surprise_pending[0][0] > stamp + 0.5 * self.control_period:
                    return
                target, chunk_stamp, latent, img_t = self._surprise_pending.popleft()
            lag, value = stamp - target, float("nan")
            if lag <= late_max:
                try:
                    value = float(self.policy.surprise(latent, img_t, rgb))
                except Exception as exc:  # noqa: BLE001
                    self._reject("surprise", f"surprise computation failed: {exc}")
            if epoch != self._epoch:      # reset meanwhile: the value belongs to the old episode
                return
            self._surprise_last = value
            self.surprises.append((chunk_stamp, lag, value))
            if self.monitor is not None:
                self.monitor.update(value, chunk_stamp)
            if len(self.surprises) > 10000:
                del self.surprises[:5000]

    def stop_threads(self) -> None:
        """Stop the inference worker (idempotent)."""
        if hasattr(self, "_worker"):   # absent when construction failed (e.g. bad checkpoint)
            self._stop.set()
            self._new_image.set()
            if self._worker.is_alive() and threading.current_thread() is not self._worker:
                self._worker.join(timeout=5.0)

    def destroy_node(self):
        self.stop_threads()
        return super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    node = build_or_exit(PolicyNode, "policy_node", (ValueError, FileNotFoundError, ImportError))
    spin_node(node)   # inference has its own thread; one executor thread avoids rclpy's busy-waking pool


if __name__ == "__main__":
    main()
