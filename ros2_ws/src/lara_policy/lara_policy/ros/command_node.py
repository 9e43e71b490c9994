"""command_node: executes lara_msgs/ActionChunk at the control rate, safely.

A lifecycle node (configure: validate parameters and backend, create publishers; activate:
execute; deactivate: zero motion). At every control tick it picks the action meant for `now`
from the newest chunk (by timestamp: action k of a chunk stamped t0 is for t0 + k*dt),
cross-fades a newer overlapping chunk over `blend_steps` ticks, applies the safety limits
(workspace box, speed and per-step limits, NaN/inf guard) and hands the result to a backend
(MoveIt Servo TwistStamped, ros2_control JointTrajectory, or moveit_py pose goals) plus the
gripper command.

Faults and what clears them (every fault commands zero motion, every tick, and the reason is
on /lara/safety_status):
- "stale observation: ..."  newest camera image older than max_observation_age_s.
  Clears by itself when a fresh image arrives.
- "stale chunk: ..."        no chunk, newest chunk older than max_chunk_age_s, or run out.
  Clears by itself when a fresh chunk arrives.
- "rejected chunk: ..."     a chunk with NaN/inf, a wrong size, an action space the backend
  cannot execute, or a stamp more than max_chunk_future_s ahead of this node's clock. Clears
  when the next valid chunk arrives (chunks held before are dropped).
- "clock jumped back ..."   the node clock went backwards (sim reset, looped bag, clock step):
  held chunks and input arrival times are dropped; clears when chunks, images (and the pose /
  joint states where used) arrive on the new clock.
- "unsafe command: ..."     the end-effector pose (when the workspace box or moveit_py needs it)
  or the joint states (joint_trajectory) are missing, older than max_pose_age_s /
  max_joint_state_age_s, NaN/inf, or the pose is in another frame than `frame_id`.
  Clears when fresh, finite input arrives.
- "e-stop"                   /lara/estop (std_srvs/Trigger). LATCHED: only /lara/estop_reset
  clears it, and after a reset the node stays disarmed (state inactive, zero motion) until it
  is re-armed by a lifecycle deactivate + activate.

Parameters: limits (speeds, steps, box, ages, scales) are validated at configure and may be
changed at run time (`ros2 param set`): a valid value applies at the next tick, an invalid one
is refused with the reason. Every other parameter (backend, topics, rate, ...) is read at
configure: changing it is refused while the node is configured (cleanup first).
"""
from __future__ import annotations

import math
import os
import signal
import threading
from collections import deque

import rclpy
import rclpy.executors
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from lara_msgs.msg import ActionChunk, SafetyStatus
from lara_policy.ros.backends import (Backend, BackendError, FollowJointTrajectoryBackend, JointTrajectoryBackend,
                                      MoveItPyBackend, ServoBackend, backend_class)
from lara_policy.ros.backends.gripper import OUTPUTS as GRIPPER_OUTPUTS
from lara_policy.ros.backends.gripper import check_gripper_params
# the control loop and the parameter tables live beside this shell; their names stay importable from here
from lara_policy.ros.command_loop import (ARMED, ESTOP, FAULT, INACTIVE, ControlLoop, TickRecord,  # noqa: F401
                                          _short)
from lara_policy.ros.command_params import (_CONSTRAINTS, _PARAMS, FREE_PARAMS, LIVE_PARAMS,  # noqa: F401
                                            LiveLimits, _positive, build_live_limits)
from lara_policy.ros.ee_pose import FrameMap, TfPoseRelay, resolve_source
from lara_policy.ros.motion_watch import MotionWatch
from lara_policy.ros.safety import ACTION_SPACES, ChunkScheduler, action_dim_for


class CommandNode(ControlLoop, LifecycleNode):
    """See the module docstring. This file is the node shell (parameters, lifecycle, publishers,
    subscriptions, services); the tick, chunk intake and status are ControlLoop's (command_loop.py),
    the parameter tables and live limits command_params.py's. `moveit_factory` (tests only)
    replaces moveit_py's MoveItPy."""

    def __init__(self, node_name: str = "command_node", *, moveit_factory=None, tf_factory=None, **kwargs):
        super().__init__(node_name, **kwargs)
        for name, default, desc in _PARAMS:
            # a Parameter.Type default declares the parameter without a value (a typed empty list is
            # not portable); unset = empty. Ranges are checked at configure (a clear refusal), not by
            # a descriptor range (an out-of-range override would make the constructor raise).
            self.declare_parameter(name, default, ParameterDescriptor(
                description=desc, additional_constraints=_CONSTRAINTS.get(name, "")))
        self._moveit_factory = moveit_factory
        self._tf_factory = tf_factory      # tests: a double of tf2_ros (Buffer, TransformListener)
        self._tf_relay = None
        self._watch = None             # MotionWatch (servo backend: arm follows? clocks agree?)
        self._monitor_alarm = ""       # the LAM fault monitor's latched alarm (hold_on_monitor_alarm)
        self._lock = threading.RLock()
        self.tick_log: deque[TickRecord] = deque(maxlen=4000)
        self.rejected_chunks = 0
        self.backend: Backend | None = None
        self._state, self._moving, self._reason = INACTIVE, False, "unconfigured"
        self._active = False
        self._estop = False
        self._disarmed_after_estop = False
        self._reject_reason = ""
        self._last_image_arrival: float | None = None
        self._last_image_stamp: float | None = None
        self.image_reliability = ""
        self._clock_seen: tuple[float, float] | None = None   # (node time, wall time it last changed)
        self._hint, self._hint_at = "", -1e9
        self._ee_pose: PoseStamped | None = None
        self._ee_pose_arrival: float | None = None
        self._joint_pos: dict[str, float] = {}
        self._joint_arrival: dict[str, float] = {}
        self._configured = False
        self.live: LiveLimits | None = None
        self._joint_names: list[str] = []
        self._subs, self._timers = [], []
        self._loop: threading.Thread | None = None
        self._status_pub = None
        # E-stop is available in every lifecycle state, from construction on.
        self._estop_srv = self.create_service(Trigger, self.p("estop_service"), self._on_estop)
        self._reset_srv = self.create_service(Trigger, self.p("estop_reset_service"), self._on_estop_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ---------------------------------------------------------------- helpers
    def p(self, name):
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def state(self) -> str:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def _moveit_config(self) -> dict | None:
        path = str(self.p("moveit_config_file") or "")
        if not path:
            return None
        import yaml
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"moveit_config_file {path}: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"moveit_config_file {path}: expected a mapping (the MoveIt config dict)")
        return data

    # ---------------------------------------------------------------- parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Limits apply live after validation; structural parameters are refused while configured."""
        names = [p.name for p in params]
        if not self._configured:
            return SetParametersResult(successful=True)
        structural = [n for n in names if n not in LIVE_PARAMS and n not in FREE_PARAMS]
        if structural:
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(structural)} is read at configure: deactivate + cleanup, set it, configure again"))
        values = {n: self.p(n) for n in LIVE_PARAMS}
        values.update({p.name: p.value for p in params})
        try:
            live = build_live_limits(values, self.period, self._joint_names)
        except ValueError as e:
            self.get_logger().warning(f"parameter change refused: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            self._apply_live(live)
        self.get_logger().info(f"limits changed at run time: {', '.join(f'{p.name}={p.value}' for p in params)}")
        return SetParametersResult(successful=True)

    def _apply_live(self, live: LiveLimits) -> None:
        self.live = live
        self.limits = live.limits
        self.max_obs_age = live.max_obs_age
        self._conv = live.conv + (len(self._joint_names),)
        if getattr(self, "scheduler", None) is not None:
            self.scheduler.max_chunk_age_s = live.max_chunk_age
            self.scheduler.max_future_s = live.max_chunk_future

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as e:  # noqa: BLE001 - any failure: say why, leave nothing half-made
            why = str(e) if isinstance(e, (BackendError, ValueError)) else f"{type(e).__name__}: {e}"
            self.get_logger().error(f"configure refused: {why}")
            try:
                self._teardown()
            except Exception as e2:  # noqa: BLE001
                self.get_logger().error(f"teardown after failed configure: {type(e2).__name__}: {e2}")
            self._set_status(INACTIVE, False, f"configure refused: {why}")
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self._set_status(INACTIVE, False, "configured, not active")
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        rate = float(self.p("control_rate_hz"))
        if not rate > 0:
            raise ValueError(f"control_rate_hz must be > 0, got {rate}")
        self.period = 1.0 / rate
        self.action_space = str(self.p("action_space"))
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"unknown action_space '{self.action_space}' (known: {', '.join(ACTION_SPACES)})")
        cls = backend_class(str(self.p("backend")))
        cls.check_action_space(self.action_space)
        joint_names = self._joint_names = list(self.p("joint_names") or [])
        if self.action_space == "joint_position" and not joint_names:
            raise ValueError("action_space joint_position needs the joint_names parameter")
        self.action_dim = action_dim_for(self.action_space, len(joint_names), bool(self.p("joint_gripper")))
        live = build_live_limits({n: self.p(n) for n in LIVE_PARAMS}, self.period, joint_names)
        if (live.limits.joint_min is not None or live.limits.joint_max_velocity is not None) \
                and self.action_space != "joint_position":
            self.get_logger().warning(f"joint limits are set but action_space {self.action_space} commands no "
                                      "joints: they are not used")
        if self.action_space == "joint_position" and live.limits.joint_min is None:
            self.get_logger().warning("no joint position limits configured (joint_position_min/max empty)")
        if live.limits.workspace_min is None:
            self.get_logger().warning("no workspace box configured (workspace_min/max empty)")
        blend = int(self.p("blend_steps"))
        if blend < 0:
            raise ValueError(f"parameter blend_steps must be >= 0, got {blend}")
        status_rate = self.p("status_rate_hz")
        if not (isinstance(status_rate, (int, float)) and math.isfinite(status_rate) and status_rate > 0):
            raise ValueError(f"parameter status_rate_hz must be > 0, got {status_rate!r}")
        self._watch_images = bool(self.p("image_topic"))
        self.scheduler = ChunkScheduler(blend, live.max_chunk_age, live.max_chunk_future)
        self._apply_live(live)
        self._needs_pose = live.limits.workspace_min is not None or cls is MoveItPyBackend
        self._frame_map = FrameMap(list(self.p("policy_axes_in_base") or ["x", "y", "z"]))

        if self._status_pub is None:    # kept across cleanup/configure (it reports configure errors)
            self._status_pub = self.create_publisher(SafetyStatus, self.p("safety_status_topic"), 10)
        gripper_interface = str(self.p("gripper_interface"))
        check_gripper_params(gripper_interface, self.p("gripper_open_position"), self.p("gripper_closed_position"),
                             self.p("gripper_max_effort"), self.p("gripper_deadband"), self.p("gripper_max_retries"))
        grip = str(self.p("gripper_topic")) if gripper_interface == "float64" else ""
        if cls is ServoBackend:
            self.backend = ServoBackend(self, grip, self.period, self.p("twist_topic"), self.p("frame_id"),
                                        activation=str(self.p("servo_activation")),
                                        servo_node=str(self.p("servo_node")),
                                        wait_s=float(self.p("servo_wait_s")))
        elif cls is FollowJointTrajectoryBackend:
            self.backend = FollowJointTrajectoryBackend(self, grip, self.period, str(self.p("trajectory_action")),
                                                        joint_names, wait_s=float(self.p("servo_wait_s")))
        elif cls is JointTrajectoryBackend:
            self.backend = JointTrajectoryBackend(self, grip, self.period, self.p("trajectory_topic"),
                                                  joint_names, self._joint_positions)
        else:
            self.backend = MoveItPyBackend(self, grip, self.period, self.p("planning_group"), self.p("pose_link"),
                                           lambda: self._ee_pose, moveit_factory=self._moveit_factory,
                                           config_dict=self._moveit_config(),
                                           workspace=lambda: (self.limits.workspace_min, self.limits.workspace_max),
                                           controller_actions=list(self.p("moveit_controller_actions") or []),
                                           ros_distro=os.environ.get("ROS_DISTRO", ""))
        if gripper_interface in GRIPPER_OUTPUTS:
            self.backend.gripper_out = GRIPPER_OUTPUTS[gripper_interface](
                self, str(self.p("gripper_action")), float(self.p("gripper_open_position")),
                float(self.p("gripper_closed_position")), float(self.p("gripper_max_effort")),
                float(self.p("gripper_deadband")), int(self.p("gripper_max_retries")), str(self.p("gripper_joint")))
            self.backend.gripper_faults = bool(self.p("gripper_fault_on_failure"))

        self._watch = None
        for name in ("max_not_following_s", "max_clock_offset_s"):
            _positive({name: self.p(name)}, name, zero_ok=True)
        if cls is ServoBackend and (self.p("max_not_following_s") or self.p("max_clock_offset_s")):
            self._watch = MotionWatch(self, str(self.p("joint_states_topic")), joint_names, lambda: self._ee_pose,
                                      max_not_following_s=float(self.p("max_not_following_s")),
                                      max_clock_offset_s=float(self.p("max_clock_offset_s")))
        self._subs.append(self.create_subscription(ActionChunk, self.p("chunk_topic"), self._on_chunk, 10))
        if self.p("hold_on_monitor_alarm"):
            from std_msgs.msg import String
            self._subs.append(self.create_subscription(String, self.p("monitor_alarm_topic"), self._on_monitor_alarm,
                                                       10))
        source = resolve_source(str(self.p("ee_pose_source")), self._tf_factory)
        self.get_logger().info(f"end-effector pose from {source}: " + (
            f"tf {self.p('frame_id')} -> {self.p('ee_link')}" if source == "tf" else str(self.p("ee_pose_topic"))))
        if source == "tf":
            self._tf_relay = TfPoseRelay(self, str(self.p("frame_id")), str(self.p("ee_link")), self._on_ee_pose,
                                         rate_hz=max(rate, 30.0), tf_factory=self._tf_factory)
        else:
            self._subs.append(self.create_subscription(PoseStamped, self.p("ee_pose_topic"), self._on_ee_pose, 10))
        self._subs.append(self.create_subscription(JointState, self.p("joint_states_topic"), self._on_joints, 10))
        if self.p("image_topic"):
            self.image_reliability = self._image_reliability(str(self.p("image_topic")))
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE if self.image_reliability == "reliable"
                             else ReliabilityPolicy.BEST_EFFORT)
            self._subs.append(self.create_subscription(Image, self.p("image_topic"), self._on_image, qos, raw=True))
        if self.p("control_thread"):
            # A dedicated thread with deadline scheduling: ticks stay on time whatever the executor
            # does (rclpy's MultiThreadedExecutor was measured delivering a 30 Hz timer in pairs,
            # 66 ms apart). Shared state is guarded by self._lock.
            self._loop_stop = threading.Event()
            self._tick_now = threading.Event()
            self.tick_on_chunk = bool(self.p("tick_on_chunk")) and self.backend.commands_are_rates
            self._loop = threading.Thread(target=self._control_loop, name="command_node_control", daemon=True)
            self._loop.start()
        else:
            self._timers.append(self.create_timer(self.period, self._tick,
                                                  callback_group=MutuallyExclusiveCallbackGroup()))
        self._timers.append(self.create_timer(1.0 / float(self.p("status_rate_hz")), self._publish_status))

    def _image_reliability(self, topic: str) -> str:
        """'reliable' / 'best_effort' for the camera subscription; 'auto' matches the publishers
        (best_effort when a publisher found within 2 s offers it, else reliable)."""
        wanted = str(self.p("image_qos_reliability") or "").strip().lower().replace("-", "_")
        if not wanted:
            return "reliable" if self.p("image_qos_reliable") else "best_effort"
        if wanted not in ("reliable", "best_effort", "auto"):
            raise ValueError(f"parameter image_qos_reliability must be reliable, best_effort, auto or '', "
                             f"got {_short(wanted)}")
        if wanted == "auto":
            from lara_policy.ros.params import match_publisher_reliability
            return match_publisher_reliability(self, "auto", topic)
        return wanted

    def _on_monitor_alarm(self, msg) -> None:
        with self._lock:
            if self._active and not self._monitor_alarm:
                self._monitor_alarm = msg.data or "LAM monitor alarm"
                self.get_logger().error(f"holding: {self._monitor_alarm}; re-arm with deactivate + activate")

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        try:
            with self._lock:
                if self._estop:
                    self.get_logger().error("activate refused: e-stop latched; call the e-stop reset service first")
                    return TransitionCallbackReturn.FAILURE
                self.scheduler.clear()
                self._reject_reason = ""
                self._clock_seen = None
                self._disarmed_after_estop = False
                self.backend.activate()
                self.backend.reset_gripper_fault()
                if self._watch is not None:
                    self._watch.reset()
                self._monitor_alarm = ""
                self._active = True
        except Exception as e:  # noqa: BLE001 - never arm half-way
            why = str(e) if isinstance(e, BackendError) else f"{type(e).__name__}: {e}"
            self.get_logger().error(f"activate refused: {why}")
            self._safe_zero()
            self._set_status(INACTIVE, False, f"activate refused: {why}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"armed: backend {self.backend.name}, action space {self.action_space}, "
                               f"{1.0 / self.period:.1f} Hz")
        self._tick()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self.scheduler.clear()
            self._safe_zero(pause=True)
            self._set_status(INACTIVE, False, "deactivated")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        self._set_status(INACTIVE, False, "unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self._safe_zero(pause=True)
        try:
            self._teardown()
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"teardown at shutdown failed: {type(e).__name__}: {e}")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """An exception escaped a transition: zero motion and tear everything down (back to
        unconfigured, nothing left running; a new configure starts clean)."""
        with self._lock:
            self._active = False
            self._safe_zero(pause=True)
        try:
            self._teardown()
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"teardown after error failed: {type(e).__name__}: {e}")
        self._set_status(INACTIVE, False, "error during a lifecycle transition; unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _safe_zero(self, pause: bool = False) -> None:
        """Zero motion (and pause the backend, e.g. Servo) without ever raising."""
        if self.backend is None:
            return
        try:
            self.backend.zero()
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"backend {self.backend.name}: zero failed: {type(e).__name__}: {e}")
        if pause:
            try:
                self.backend.pause()
            except Exception as e:  # noqa: BLE001
                self.get_logger().error(f"backend {self.backend.name}: pause failed: {type(e).__name__}: {e}")

    def destroy_node(self):
        # A node destroyed while configured (never cleaned up) still owns its backend, and the Servo
        # backend spins a client executor on a daemon thread: left running, it woke in the
        # interpreter's teardown and aborted the process ("terminate called without an active
        # exception": CPython ends such threads with pthread_exit, whose unwind pybind11's frame
        # cannot pass). So the backend, watch and tf relay are closed and joined here.
        try:
            self._teardown()
        except Exception as e:  # noqa: BLE001 - destroy anyway
            self.get_logger().error(f"teardown at destroy failed: {type(e).__name__}: {e}")
        return super().destroy_node()

    def _teardown(self) -> None:
        self._configured = False
        self._stop_loop()
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        self._timers, self._subs = [], []
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        if getattr(self, "_watch", None) is not None:
            self._watch.close()
            self._watch = None
        if self._tf_relay is not None:
            self._tf_relay.close()
            self._tf_relay = None

    # ---------------------------------------------------------------- e-stop
    def _on_estop(self, request, response):
        with self._lock:
            self._estop = True
            self._safe_zero(pause=True)
            if hasattr(self, "scheduler"):
                self.scheduler.clear()
            self._set_status(ESTOP, False, "e-stop")
        self.get_logger().warning("E-STOP latched: zero motion until reset and re-armed")
        response.success, response.message = True, "e-stop latched"
        return response

    def _on_estop_reset(self, request, response):
        with self._lock:
            was = self._estop
            self._estop = False
            self._disarmed_after_estop = was or self._disarmed_after_estop
            if was:
                self._set_status(INACTIVE, False, "e-stop cleared; re-arm with lifecycle deactivate + activate")
        response.success = True
        response.message = "e-stop cleared; node stays disarmed until re-activated" if was else "no e-stop latched"
        return response


def main(args=None) -> None:
    """`ros2 run lara_policy command_node`: waits unarmed for the lifecycle transitions
    (`ros2 lifecycle set /command_node configure`, then `activate`) unless `-p autostart:=true`."""
    # Own signal handling: on Ctrl-C / SIGTERM the node must still command zero motion, which
    # is impossible once rclpy's handler has shut the context down.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    # Ctrl-C must stop this node even when its parent started it with SIGINT ignored (a script's
    # `cmd &`, nohup from a non-interactive shell: the ignore is inherited, and Python then
    # installs no KeyboardInterrupt); `ros2 launch` stops nodes with SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    node = CommandNode()
    if node.get_parameter("autostart").value:
        node.trigger_configure()
        if node._state_machine.current_state[1] == "inactive":
            node.trigger_activate()
        else:
            node.get_logger().error(f"autostart: not armed ({node.reason}); fix the parameters, then "
                                    "configure + activate through the lifecycle services")
    else:
        node.get_logger().info("waiting for lifecycle transitions (configure, activate); autostart is off")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        # spin_once with a timeout: the wait returns regularly, so Ctrl-C / SIGTERM are handled
        # in every lifecycle state (an unconfigured node has no timer to wake the wait)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        try:
            if node.backend is not None:
                node.backend.zero()
                node.get_logger().info("shutting down: zero motion commanded")
        except Exception as e:  # noqa: BLE001
            node.get_logger().error(f"could not command zero motion at shutdown: {e}")
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
