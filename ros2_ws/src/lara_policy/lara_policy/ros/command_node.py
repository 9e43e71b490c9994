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
- "rejected chunk: ..."     a chunk with NaN/inf, a wrong size, or an action space the backend
  cannot execute. Clears when the next valid chunk arrives (chunks held before are dropped).
- "e-stop"                   /lara/estop (std_srvs/Trigger). LATCHED: only /lara/estop_reset
  clears it, and after a reset the node stays disarmed (state inactive, zero motion) until it
  is re-armed by a lifecycle deactivate + activate.
"""
from __future__ import annotations

import signal
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.executors
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from lara_msgs.msg import ActionChunk, SafetyStatus
from lara_policy.ros import topics
from lara_policy.ros.backends import (Backend, BackendError, JointTrajectoryBackend, MoveItPyBackend,
                                      ServoBackend, backend_class)
from lara_policy.ros.codec import msg_to_chunk
from lara_policy.ros.safety import (ACTION_SPACES, ChunkScheduler, SafetyLimits, TimedChunk,
                                    action_dim_for, action_to_command)

INACTIVE, ARMED, FAULT, ESTOP = (SafetyStatus.STATE_INACTIVE, SafetyStatus.STATE_ARMED,
                                 SafetyStatus.STATE_FAULT, SafetyStatus.STATE_ESTOP)


@dataclass
class TickRecord:
    """What one control tick decided (kept in CommandNode.tick_log for tests and debugging)."""
    t: float
    state: str
    moving: bool
    reason: str
    linear: tuple = (0.0, 0.0, 0.0)     # commanded EE step / period (m/s); zeros when not moving
    obs_age: float = float("nan")


def _stamp_from_raw_header(data: bytes) -> float | None:
    """Header stamp of a CDR-serialized message that starts with std_msgs/Header (e.g. Image),
    read without deserializing the (large) rest."""
    if len(data) < 12:
        return None
    fmt = "<iI" if data[1] == 1 else ">iI"
    sec, nsec = struct.unpack_from(fmt, data, 4)
    return sec + nsec * 1e-9


_PARAMS = [
    # name, default, description
    ("control_rate_hz", 20.0, "Control loop rate (Hz); one action is commanded per tick."),
    ("backend", "servo", "Motion backend: servo (MoveIt Servo TwistStamped), joint_trajectory "
                         "(ros2_control JointTrajectory) or moveit_py (plan + execute pose goals)."),
    ("action_space", "ee_delta_xyz_gripper", "Action space of the checkpoint being run (checked "
                                             "against the backend at configure and per chunk)."),
    ("blend_steps", 3, "Control ticks over which a newer chunk is cross-faded into the current one."),
    ("max_chunk_age_s", 1.0, "A chunk whose observation is older than this is stale (zero motion)."),
    ("max_observation_age_s", 0.0, "Newest camera image older than this -> zero motion "
                                   "(0 = 3 control periods)."),
    ("image_topic", topics.CAMERA_IMAGE, "Camera image topic watched for staleness ('' disables)."),
    ("image_qos_reliable", True, "Subscribe to the camera reliably (must match the publisher)."),
    ("chunk_topic", topics.ACTION_CHUNK, "lara_msgs/ActionChunk input."),
    ("ee_pose_topic", topics.EE_POSE, "geometry_msgs/PoseStamped end-effector pose (workspace box, moveit_py)."),
    ("joint_states_topic", topics.JOINT_STATES, "sensor_msgs/JointState (joint_trajectory backend)."),
    ("twist_topic", topics.SERVO_TWIST, "Servo backend output (geometry_msgs/TwistStamped)."),
    ("trajectory_topic", topics.JOINT_TRAJECTORY, "joint_trajectory backend output."),
    ("gripper_topic", topics.GRIPPER_COMMAND, "Gripper command output (std_msgs/Float64, -1 open .. +1 close)."),
    ("safety_status_topic", topics.SAFETY_STATUS, "lara_msgs/SafetyStatus output."),
    ("estop_service", topics.ESTOP, "std_srvs/Trigger: latch the e-stop."),
    ("estop_reset_service", topics.ESTOP_RESET, "std_srvs/Trigger: clear the e-stop (stays disarmed)."),
    ("frame_id", "base", "Frame of the commanded twist."),
    ("ee_delta_scale_m", 0.01, "Metres per unit of an ee_delta action (Meta-World action_scale)."),
    ("ee_rot_scale_rad", 0.05, "Radians per unit of an ee_delta_6d rotation action."),
    ("action_limit", 1.0, "ee_delta actions are clipped to [-action_limit, action_limit]."),
    ("max_linear_speed_mps", 0.5, "Maximum commanded EE linear speed (m/s)."),
    ("max_angular_speed_rps", 1.0, "Maximum commanded EE angular speed (rad/s)."),
    ("max_linear_step_m", 0.02, "Maximum EE translation per control step (m)."),
    ("max_joint_step_rad", 0.05, "Maximum joint change per control step (rad)."),
    ("workspace_min", Parameter.Type.DOUBLE_ARRAY, "Workspace box min [x, y, z] (m, base frame); "
                                                   "empty = no box."),
    ("workspace_max", Parameter.Type.DOUBLE_ARRAY, "Workspace box max [x, y, z] (m)."),
    ("joint_names", Parameter.Type.STRING_ARRAY, "Joints commanded by the joint_trajectory backend."),
    ("joint_gripper", False, "joint_position actions carry a trailing gripper value."),
    ("planning_group", "arm", "moveit_py planning group."),
    ("pose_link", "tool0", "moveit_py link the pose goal is for."),
    ("control_thread", True, "Run the control loop on a dedicated thread with deadline scheduling "
                             "(wall clock); false = an rclpy timer on the node clock."),
    ("status_rate_hz", 4.0, "SafetyStatus is published on every change and at this rate."),
]


class CommandNode(LifecycleNode):
    """See the module docstring. `moveit_factory` (tests only) replaces moveit_py's MoveItPy."""

    def __init__(self, node_name: str = "command_node", *, moveit_factory=None, **kwargs):
        super().__init__(node_name, **kwargs)
        for name, default, desc in _PARAMS:
            if isinstance(default, Parameter.Type):
                # declared without a value (a typed empty list is not portable); unset = empty
                self.declare_parameter(name, default, ParameterDescriptor(description=desc))
            else:
                self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        self._moveit_factory = moveit_factory
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
        self._ee_pose: PoseStamped | None = None
        self._joint_pos: dict[str, float] = {}
        self._joint_names: list[str] = []
        self._subs, self._timers = [], []
        self._loop: threading.Thread | None = None
        self._status_pub = None
        # E-stop is available in every lifecycle state, from construction on.
        self._estop_srv = self.create_service(Trigger, self.p("estop_service"), self._on_estop)
        self._reset_srv = self.create_service(Trigger, self.p("estop_reset_service"), self._on_estop_reset)

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

    def _joint_positions(self) -> np.ndarray | None:
        names = self._joint_names
        if not names or any(n not in self._joint_pos for n in names):
            return None
        return np.array([self._joint_pos[n] for n in names])

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (BackendError, ValueError) as e:
            self.get_logger().error(f"configure refused: {e}")
            self._teardown()
            self._set_status(INACTIVE, False, f"configure refused: {e}")
            return TransitionCallbackReturn.FAILURE
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
        wmin, wmax = list(self.p("workspace_min") or []), list(self.p("workspace_max") or [])
        if wmin or wmax:
            if len(wmin) != 3 or len(wmax) != 3 or any(a >= b for a, b in zip(wmin, wmax)):
                raise ValueError(f"workspace_min/max must be 3 values each with min < max, got {wmin} {wmax}")
        else:
            self.get_logger().warning("no workspace box configured (workspace_min/max empty)")
        self.limits = SafetyLimits(
            period=self.period, max_linear_speed=float(self.p("max_linear_speed_mps")),
            max_angular_speed=float(self.p("max_angular_speed_rps")),
            max_linear_step=float(self.p("max_linear_step_m")), max_joint_step=float(self.p("max_joint_step_rad")),
            workspace_min=np.array(wmin) if wmin else None, workspace_max=np.array(wmax) if wmax else None)
        self.max_obs_age = float(self.p("max_observation_age_s")) or 3.0 * self.period
        # per-tick values, read once (parameters take effect at the next configure)
        self._conv = (float(self.p("ee_delta_scale_m")), float(self.p("ee_rot_scale_rad")),
                      float(self.p("action_limit")), len(joint_names))
        self._watch_images = bool(self.p("image_topic"))
        self.scheduler = ChunkScheduler(int(self.p("blend_steps")), float(self.p("max_chunk_age_s")))

        if self._status_pub is None:    # kept across cleanup/configure (it reports configure errors)
            self._status_pub = self.create_publisher(SafetyStatus, self.p("safety_status_topic"), 10)
        grip = str(self.p("gripper_topic"))
        if cls is ServoBackend:
            self.backend = ServoBackend(self, grip, self.period, self.p("twist_topic"), self.p("frame_id"))
        elif cls is JointTrajectoryBackend:
            self.backend = JointTrajectoryBackend(self, grip, self.period, self.p("trajectory_topic"),
                                                  joint_names, self._joint_positions)
        else:
            self.backend = MoveItPyBackend(self, grip, self.period, self.p("planning_group"), self.p("pose_link"),
                                           lambda: self._ee_pose, moveit_factory=self._moveit_factory)

        self._subs.append(self.create_subscription(ActionChunk, self.p("chunk_topic"), self._on_chunk, 10))
        self._subs.append(self.create_subscription(PoseStamped, self.p("ee_pose_topic"), self._on_ee_pose, 10))
        self._subs.append(self.create_subscription(JointState, self.p("joint_states_topic"), self._on_joints, 10))
        if self.p("image_topic"):
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE if self.p("image_qos_reliable")
                             else ReliabilityPolicy.BEST_EFFORT)
            self._subs.append(self.create_subscription(Image, self.p("image_topic"), self._on_image, qos, raw=True))
        if self.p("control_thread"):
            # A dedicated thread with deadline scheduling: ticks stay on time whatever the executor
            # does (rclpy's MultiThreadedExecutor was measured delivering a 30 Hz timer in pairs,
            # 66 ms apart). Shared state is guarded by self._lock.
            self._loop_stop = threading.Event()
            self._loop = threading.Thread(target=self._control_loop, name="command_node_control", daemon=True)
            self._loop.start()
        else:
            self._timers.append(self.create_timer(self.period, self._tick,
                                                  callback_group=MutuallyExclusiveCallbackGroup()))
        self._timers.append(self.create_timer(1.0 / float(self.p("status_rate_hz")), self._publish_status))

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            if self._estop:
                self.get_logger().error("activate refused: e-stop latched; call the e-stop reset service first")
                return TransitionCallbackReturn.FAILURE
            self.scheduler.clear()
            self._reject_reason = ""
            self._disarmed_after_estop = False
            self._active = True
        self.get_logger().info(f"armed: backend {self.backend.name}, action space {self.action_space}, "
                               f"{1.0 / self.period:.1f} Hz")
        self._tick()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self.scheduler.clear()
            if self.backend is not None:
                self.backend.zero()
            self._set_status(INACTIVE, False, "deactivated")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        self._set_status(INACTIVE, False, "unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            if self.backend is not None:
                self.backend.zero()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            if self.backend is not None:
                self.backend.zero()
        return TransitionCallbackReturn.SUCCESS

    def _control_loop(self) -> None:
        next_t = time.monotonic()
        while not self._loop_stop.is_set():
            next_t += self.period
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - e.g. context shut down: stop the loop, say why
                if not self.context.ok():
                    return
                self.get_logger().error(f"control tick failed: {type(e).__name__}: {e}")
            delay = next_t - time.monotonic()
            if delay < -self.period:          # overrun by more than a period: resync, no burst
                next_t = time.monotonic()
                delay = 0.0
            self._loop_stop.wait(max(0.0, delay))

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop_stop.set()
            if self._loop is not threading.current_thread():
                self._loop.join(timeout=2.0)
            self._loop = None

    def destroy_node(self):
        self._stop_loop()
        return super().destroy_node()

    def _teardown(self) -> None:
        self._stop_loop()
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        self._timers, self._subs = [], []
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    # ---------------------------------------------------------------- inputs
    def _on_image(self, data: bytes) -> None:
        self._last_image_arrival = self.now()
        self._last_image_stamp = _stamp_from_raw_header(data)

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        self._ee_pose = msg

    def _on_joints(self, msg: JointState) -> None:
        for n, pos in zip(msg.name, msg.position):
            self._joint_pos[n] = pos

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            ch = msg_to_chunk(msg)
            if ch.action_space != self.action_space:
                raise ValueError(f"action space '{ch.action_space}' but this node runs '{self.action_space}'")
            self.backend.check_action_space(ch.action_space)
            if ch.actions.shape[1] != self.action_dim:
                raise ValueError(f"action_dim {ch.actions.shape[1]} != {self.action_dim} for {self.action_space}")
        except (ValueError, BackendError) as e:
            with self._lock:
                self.rejected_chunks += 1
                self._reject_reason = f"rejected chunk: {e}"
                self.scheduler.clear()   # never keep executing around a bad chunk
            self.get_logger().error(f"{self._reject_reason} (model {msg.model_id or '?'}); zero motion")
            self._tick()
            return
        with self._lock:
            self._reject_reason = ""
            self.scheduler.push(TimedChunk(ch.actions.astype(np.float64), ch.t0, ch.dt, ch.action_space,
                                           ch.model_id, received=self.now()))

    # ---------------------------------------------------------------- e-stop
    def _on_estop(self, request, response):
        with self._lock:
            self._estop = True
            if self.backend is not None:
                self.backend.zero()
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

    # ---------------------------------------------------------------- control loop
    def _tick(self) -> None:
        with self._lock:
            if not self._active or self.backend is None:
                return
            now = self.now()
            obs_age = float("nan")
            if self._estop:
                state, reason = ESTOP, "e-stop"
            elif self._disarmed_after_estop:
                state, reason = INACTIVE, "e-stop cleared; re-arm with lifecycle deactivate + activate"
            elif self._reject_reason:
                state, reason = FAULT, self._reject_reason
            else:
                state, reason = ARMED, ""
                if self._watch_images:
                    if self._last_image_arrival is None:
                        state, reason = FAULT, "stale observation: no image received"
                    else:
                        obs_age = now - self._last_image_arrival
                        if obs_age > self.max_obs_age:
                            state, reason = FAULT, f"stale observation: {obs_age:.3f} s > {self.max_obs_age:.3f} s"
            cmd = None
            if state == ARMED:
                action, why = self.scheduler.action(now)
                if action is None:
                    state, reason = FAULT, why
                else:
                    try:
                        scale, rot_scale, limit, n_joints = self._conv
                        cmd = action_to_command(action, self.action_space, scale, rot_scale, limit,
                                                num_joints=n_joints)
                        ee = self._ee_pose.pose.position if self._ee_pose is not None else None
                        self.limits.apply(cmd, np.array([ee.x, ee.y, ee.z]) if ee is not None else None,
                                          self._joint_positions())
                        reason = "; ".join(cmd.notes)
                    except (ValueError, BackendError) as e:
                        cmd, state, reason = None, FAULT, f"unsafe command: {e}"
            linear = (0.0, 0.0, 0.0)
            try:
                if cmd is not None:
                    self.backend.send(cmd)
                    if cmd.linear_step is not None:
                        linear = tuple(float(v) for v in cmd.linear_step / self.period)
                else:
                    self.backend.zero()
            except Exception as e:  # noqa: BLE001 - a backend failure must end in zero motion
                self.get_logger().error(f"backend {self.backend.name} failed: {e}; zero motion")
                cmd, state, reason = None, FAULT, f"backend error: {e}"
                try:
                    self.backend.zero()
                except Exception:  # noqa: BLE001
                    pass
            moving = cmd is not None and cmd.moving
            self.tick_log.append(TickRecord(now, state, moving, reason, linear, obs_age))
            # under the lock: a transition (deactivate, e-stop) cannot be overwritten by a late tick
            self._set_status(state, moving, reason)

    # ---------------------------------------------------------------- status
    def _set_status(self, state: str, moving: bool, reason: str) -> None:
        changed = (state, moving, reason) != (self._state, self._moving, self._reason)
        if changed and state != self._state:
            text = f"safety state {self._state} -> {state}" + (f": {reason}" if reason else "")
            if state in (FAULT, ESTOP):   # separate call sites: rclpy fixes a call site's severity
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
        self._state, self._moving, self._reason = state, moving, reason
        if changed:
            self._publish_status()

    def _publish_status(self) -> None:
        if self._status_pub is None:
            return
        msg = SafetyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state, msg.moving, msg.reason = self._state, bool(self._moving), self._reason
        self._status_pub.publish(msg)


def main(args=None) -> None:
    """`ros2 run lara_policy command_node`: configures and activates itself unless
    `--ros-args -p autostart:=false` (then arm it through the lifecycle services)."""
    # Own signal handling: on Ctrl-C / SIGTERM the node must still command zero motion, which
    # is impossible once rclpy's handler has shut the context down.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    node = CommandNode()
    node.declare_parameter("autostart", True, ParameterDescriptor(
        description="Configure and activate at start (else wait for lifecycle transitions)."))
    if node.get_parameter("autostart").value:
        node.trigger_configure()
        node.trigger_activate()
    try:
        rclpy.spin(node)
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
