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
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.executors
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
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
from lara_policy.ros.backends import (Backend, BackendError, FollowJointTrajectoryBackend, JointTrajectoryBackend,
                                      MoveItPyBackend, ServoBackend, backend_class)
from lara_policy.ros.backends.gripper import OUTPUTS as GRIPPER_OUTPUTS
from lara_policy.ros.backends.gripper import check_gripper_params
from lara_policy.ros.codec import msg_to_chunk
from lara_policy.ros.ee_pose import FrameMap, TfPoseRelay, resolve_source
from lara_policy.ros.motion_watch import MotionWatch
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


def _short(text: str, n: int = 48) -> str:
    """A message-supplied string quoted for a reason/log line, cut to n characters (a fuzzed or
    broken publisher must not turn every SafetyStatus and log line into megabytes)."""
    text = str(text)
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} chars)"


_PARAMS = [
    # name, default, description
    ("control_rate_hz", 20.0, "Control loop rate (Hz); one action is commanded per tick."),
    ("backend", "servo", "Motion backend: servo (MoveIt Servo TwistStamped), joint_trajectory "
                         "(ros2_control JointTrajectory), follow_joint_trajectory (control_msgs "
                         "FollowJointTrajectory action) or moveit_py (plan + execute pose goals)."),
    ("action_space", "ee_delta_xyz_gripper", "Action space of the checkpoint being run (checked "
                                             "against the backend at configure and per chunk)."),
    ("blend_steps", 3, "Control ticks over which a newer chunk is cross-faded into the current one."),
    ("max_chunk_age_s", 1.0, "A chunk whose observation is older than this is stale (zero motion)."),
    ("max_chunk_future_s", 0.1, "A chunk stamped more than this ahead of the node clock is refused "
                                "(fault): host clocks must agree to within this."),
    ("max_pose_age_s", 0.5, "End-effector pose older than this (by arrival) -> zero motion, where the "
                            "pose is used (workspace box, moveit_py)."),
    ("max_joint_state_age_s", 0.5, "Joint states older than this (by arrival) -> zero motion and no hold "
                                   "command (joint_trajectory backend)."),
    ("max_clock_stall_s", 0.5, "use_sim_time only: the node clock (/clock) not advancing for this long (wall "
                               "time) faults (every age check runs on that clock and would freeze); 0 = off."),
    ("max_observation_age_s", 0.0, "Newest camera image older than this -> zero motion "
                                   "(0 = 3 control periods)."),
    ("image_topic", topics.CAMERA_IMAGE, "Camera image topic watched for staleness ('' disables)."),
    ("image_qos_reliable", True, "Subscribe to the camera reliably (must match the publisher); used when "
                                 "image_qos_reliability is ''."),
    ("image_qos_reliability", "", "Camera subscription reliability: reliable | best_effort | auto (match the "
                                  "publishers found at configure, as policy_node's camera_qos_reliability) | '' "
                                  "(= image_qos_reliable)."),
    ("chunk_topic", topics.ACTION_CHUNK, "lara_msgs/ActionChunk input."),
    ("ee_pose_topic", topics.EE_POSE, "geometry_msgs/PoseStamped end-effector pose (workspace box, moveit_py)."),
    ("joint_states_topic", topics.JOINT_STATES, "sensor_msgs/JointState (joint_trajectory backend)."),
    ("twist_topic", topics.SERVO_TWIST, "Servo backend output (geometry_msgs/TwistStamped, m/s: Servo "
                                        "needs command_in_type: speed_units)."),
    ("servo_node", "/servo_node", "MoveIt Servo node whose services/status the servo backend uses."),
    ("servo_activation", "auto", "How the servo backend makes Servo accept twists when arming: auto | "
                                 "switch_command_type (Jazzy+) | start_servo (Humble) | none (no Servo "
                                 "services, e.g. LARA's sim_node)."),
    ("servo_wait_s", 5.0, "How long arming waits for Servo's services."),
    ("max_not_following_s", 0.0, "servo backend: commanded motion for this long with the joint states / EE pose not "
                                 "moving faults (latched until activate): wrong controller active, twists stale at "
                                 "Servo. 0 = off (the real-arm configs set 1.0)."),
    ("max_clock_offset_s", 0.0, "servo backend: joint_states stamps more than this off this node's clock fault (Servo "
                                "judges twist stamps on its own clock). 0 = off (the real-arm configs set 0.05)."),
    ("trajectory_topic", topics.JOINT_TRAJECTORY, "joint_trajectory backend output."),
    ("trajectory_action", "/arm_controller/follow_joint_trajectory", "follow_joint_trajectory backend: the "
                          "control_msgs/action/FollowJointTrajectory server (waited for servo_wait_s at arm)."),
    ("gripper_topic", topics.GRIPPER_COMMAND, "Gripper command output (std_msgs/Float64, -1 open .. +1 close)."),
    ("gripper_interface", "float64", "float64 (gripper_topic) | gripper_command (control_msgs/action/"
                                     "GripperCommand client on gripper_action: gripper_action_controller on "
                                     "Humble/Jazzy, franka_gripper) | parallel_gripper_command (control_msgs/"
                                     "action/ParallelGripperCommand: parallel_gripper_action_controller, Robotiq "
                                     "driver main branch)."),
    ("gripper_action", "/gripper_controller/gripper_cmd", "Gripper action server (ros2_controllers' gripper "
                                                           "controllers: <controller>/gripper_cmd; Robotiq: "
                                                           "/robotiq_gripper_controller/gripper_cmd; Franka: "
                                                           "/franka_gripper/gripper_action)."),
    ("gripper_open_position", Parameter.Type.DOUBLE, "Action gripper position for 'open' (driver units; no "
                                                     "default: Robotiq 2F-85 knuckle 0.0 rad, Franka finger "
                                                     "0.04 m = half the width)."),
    ("gripper_closed_position", Parameter.Type.DOUBLE, "Action gripper position for 'closed' (Robotiq 2F-85 "
                                                       "0.7929 rad, Franka 0.0)."),
    ("gripper_max_effort", Parameter.Type.DOUBLE, "Action gripper effort, > 0 (no default: effort-interface "
                                                  "controllers clamp to +-max_effort, so 0 = no force; Franka: "
                                                  "the grasp force in N)."),
    ("gripper_joint", "", "parallel_gripper_command: the gripper joint named in the command (e.g. "
                          "robotiq_85_left_knuckle_joint); '' = unnamed (the controller has one joint)."),
    ("gripper_deadband", 0.05, "A new gripper goal is sent only when the target moves by more than "
                               "this fraction of the open-closed range."),
    ("gripper_max_retries", 2, "An aborted or rejected gripper goal (our newest) is resent at most this often "
                               "(not when the fingers stopped on an object)."),
    ("gripper_fault_on_failure", True, "A gripper goal that keeps failing after gripper_max_retries faults "
                                       "command_node (zero motion) until the next activate; false = log only."),
    ("safety_status_topic", topics.SAFETY_STATUS, "lara_msgs/SafetyStatus output."),
    ("estop_service", topics.ESTOP, "std_srvs/Trigger: latch the e-stop."),
    ("estop_reset_service", topics.ESTOP_RESET, "std_srvs/Trigger: clear the e-stop (stays disarmed)."),
    ("frame_id", "base", "Robot base frame: of the commanded twist, the workspace box and the EE pose "
                         "(a pose in another frame faults)."),
    ("ee_pose_source", "auto", "End-effector pose from 'topic' (ee_pose_topic, PoseStamped), 'tf' (tf2 lookup "
                               "frame_id -> ee_link) or 'auto' (tf where tf2_ros is installed, else the topic)."),
    ("ee_link", "tool0", "End-effector link looked up in tf (ee_pose_source 'tf')."),
    ("policy_axes_in_base", ["x", "y", "z"], "Base-frame direction of the policy's +x, +y, +z action axes, "
                                              "e.g. ['-y', 'x', 'z'] (same value as policy_node's)."),
    ("ee_delta_scale_m", 0.01, "Metres per unit of an ee_delta action (Meta-World action_scale)."),
    ("ee_rot_scale_rad", 0.05, "Radians per unit of an ee_delta_6d rotation action."),
    ("action_limit", 1.0, "ee_delta actions are clipped to [-action_limit, action_limit]."),
    ("max_linear_speed_mps", 0.5, "Maximum commanded EE linear speed (m/s)."),
    ("max_angular_speed_rps", 1.0, "Maximum commanded EE angular speed (rad/s)."),
    ("max_linear_step_m", 0.02, "Maximum EE translation per control step (m)."),
    ("max_joint_step_rad", 0.05, "Maximum joint change per control step (rad), whatever the rate; see "
                                 "max_joint_velocity_rps for a limit tied to the control rate."),
    ("max_joint_velocity_rps", Parameter.Type.DOUBLE_ARRAY, "Joint velocity limits (rad/s), one per joint_names "
                                                            "entry or one for all (empty = none): the joint step "
                                                            "per tick is at most this x the control period "
                                                            "(e.g. your URDF / joint_limits.yaml max_velocity)."),
    ("joint_position_min", Parameter.Type.DOUBLE_ARRAY, "Joint position lower limits (rad), one per joint_names "
                                                        "entry (empty = none): a target below faults (hold)."),
    ("joint_position_max", Parameter.Type.DOUBLE_ARRAY, "Joint position upper limits (rad), one per joint_names "
                                                        "entry: a target above faults (hold)."),
    ("workspace_min", Parameter.Type.DOUBLE_ARRAY, "Workspace box min [x, y, z] (m, base frame); "
                                                   "empty = no box."),
    ("workspace_max", Parameter.Type.DOUBLE_ARRAY, "Workspace box max [x, y, z] (m)."),
    ("joint_names", Parameter.Type.STRING_ARRAY, "Joints commanded by the joint_trajectory backend."),
    ("joint_gripper", False, "joint_position actions carry a trailing gripper value."),
    ("planning_group", "arm", "moveit_py planning group."),
    ("pose_link", "tool0", "moveit_py link the pose goal is for."),
    ("moveit_config_file", "", "moveit_py: YAML of the MoveIt config dict (MoveItConfigsBuilder(...)"
                               ".to_moveit_configs().to_dict() dumped to a file); '' = MoveItPy's default."),
    ("moveit_controller_actions", Parameter.Type.STRING_ARRAY, "moveit_py: the FollowJointTrajectory action(s) "
                                                               "MoveIt executes on (e.g. /scaled_joint_trajectory_"
                                                               "controller/follow_joint_trajectory); deactivate, "
                                                               "e-stop and zero motion cancel every goal there. "
                                                               "Required on Humble (execute holds the GIL)."),
    ("control_thread", True, "Run the control loop on a dedicated thread with deadline scheduling "
                             "(wall clock); false = an rclpy timer on the node clock."),
    ("status_rate_hz", 4.0, "SafetyStatus is published on every change and at this rate."),
    ("autostart", False, "Configure and activate at start (`ros2 run` waits for lifecycle transitions "
                         "unless this is true; the sim config and `arm:=true` set it)."),
]

# Shown by `ros2 param describe`; checked at configure and on every run-time change.
_CONSTRAINTS = {
    "max_joint_velocity_rps": "finite, > 0; one value per joint_names entry, or one for all",
    "joint_position_min": "finite; one value per joint_names entry; < joint_position_max; set both or neither",
    "joint_position_max": "finite; one value per joint_names entry; > joint_position_min; set both or neither",
    "max_joint_step_rad": "finite, > 0", "max_linear_speed_mps": "finite, > 0", "max_angular_speed_rps": "finite, > 0",
    "max_linear_step_m": "finite, > 0", "workspace_min": "3 finite values < workspace_max, or empty",
    "workspace_max": "3 finite values > workspace_min, or empty",
}

# Limits: validated together, applied live when changed at run time.
LIVE_PARAMS = ("max_linear_speed_mps", "max_angular_speed_rps", "max_linear_step_m", "max_joint_step_rad",
               "max_joint_velocity_rps", "joint_position_min", "joint_position_max",
               "workspace_min", "workspace_max", "action_limit", "ee_delta_scale_m", "ee_rot_scale_rad",
               "max_chunk_age_s", "max_chunk_future_s", "max_observation_age_s", "max_pose_age_s",
               "max_joint_state_age_s", "max_clock_stall_s")
# Read at any time, no effect on a configured node's behaviour.
FREE_PARAMS = ("autostart",)


def _positive(values: dict, name: str, *, zero_ok: bool = False) -> float:
    v = values[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (v == 0 and not zero_ok):
        raise ValueError(f"parameter {name} must be a finite number {'>= 0' if zero_ok else '> 0'}, got {v!r}")
    return float(v)


@dataclass
class LiveLimits:
    """Everything derived from LIVE_PARAMS (built and validated in one place)."""
    limits: SafetyLimits
    conv: tuple                 # (ee_delta_scale_m, ee_rot_scale_rad, action_limit)
    max_chunk_age: float
    max_chunk_future: float
    max_obs_age: float
    max_pose_age: float
    max_joint_age: float
    max_clock_stall: float = 0.0


def _joint_array(values: dict, name: str, joint_names: list[str], *, one_for_all: bool = False):
    """A per-joint limit parameter as an array (None when empty); ValueError names it."""
    v = list(values.get(name) or [])
    if not v:
        return None
    n = len(joint_names)
    if not (len(v) == n or (one_for_all and len(v) == 1)):
        raise ValueError(f"parameter {name} needs one value per joint_names entry ({n}: {joint_names})"
                         + (" or one value for all" if one_for_all else "") + f", got {len(v)}: {v}")
    arr = np.array(v, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"parameter {name} must be finite, got {v}")
    return arr


def build_live_limits(values: dict, period: float, joint_names: list[str] = ()) -> LiveLimits:
    """Validate the limit parameters (a dict name -> value); ValueError names the parameter."""
    wmin, wmax = list(values.get("workspace_min") or []), list(values.get("workspace_max") or [])
    if (wmin or wmax) and (len(wmin) != 3 or len(wmax) != 3):
        raise ValueError(f"workspace_min/max must be 3 values each, got {wmin} {wmax}")
    joint_names = list(joint_names)
    jmin = _joint_array(values, "joint_position_min", joint_names)
    jmax = _joint_array(values, "joint_position_max", joint_names)
    if (jmin is None) != (jmax is None):
        raise ValueError("parameters joint_position_min and joint_position_max must be set together")
    if jmin is not None and np.any(jmin >= jmax):
        i = int(np.flatnonzero(jmin >= jmax)[0])
        raise ValueError(f"parameters joint_position_min/max: {joint_names[i]} min {jmin[i]} >= max {jmax[i]}")
    jvel = _joint_array(values, "max_joint_velocity_rps", joint_names, one_for_all=True)
    if jvel is not None and np.any(jvel <= 0):
        raise ValueError(f"parameter max_joint_velocity_rps must be > 0, got {jvel.tolist()}")
    limits = SafetyLimits(
        period=period, max_linear_speed=_positive(values, "max_linear_speed_mps"),
        max_angular_speed=_positive(values, "max_angular_speed_rps"),
        max_linear_step=_positive(values, "max_linear_step_m"),
        max_joint_step=_positive(values, "max_joint_step_rad"),
        workspace_min=np.array(wmin, dtype=np.float64) if wmin else None,
        workspace_max=np.array(wmax, dtype=np.float64) if wmax else None,
        joint_min=jmin, joint_max=jmax, joint_max_velocity=jvel, joint_names=tuple(joint_names))
    conv = (_positive(values, "ee_delta_scale_m"), _positive(values, "ee_rot_scale_rad"),
            _positive(values, "action_limit"))
    return LiveLimits(limits, conv, _positive(values, "max_chunk_age_s"),
                      _positive(values, "max_chunk_future_s", zero_ok=True),
                      _positive(values, "max_observation_age_s", zero_ok=True) or 3.0 * period,
                      _positive(values, "max_pose_age_s"), _positive(values, "max_joint_state_age_s"),
                      _positive(values, "max_clock_stall_s", zero_ok=True) if "max_clock_stall_s" in values else 0.0)


class CommandNode(LifecycleNode):
    """See the module docstring. `moveit_factory` (tests only) replaces moveit_py's MoveItPy."""

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

    def _joint_positions(self) -> np.ndarray | None:
        """Current positions of joint_names when known, fresh and finite (else None: never
        hold at, or step from, a stale or NaN position)."""
        return self._joint_state()[0]

    def _joint_state(self) -> tuple[np.ndarray | None, str]:
        names = self._joint_names
        if not names:
            return None, "no joint_names configured"
        missing = [n for n in names if n not in self._joint_pos]
        if missing:
            return None, f"no joint state for {missing} on {self.p('joint_states_topic')}"
        now = self.now()
        max_age = self.live.max_joint_age if self.live is not None else float("inf")
        age = max(now - self._joint_arrival[n] for n in names)
        if age > max_age:
            return None, f"stale joint states: {age:.3f} s > {max_age:.3f} s"
        pos = np.array([self._joint_pos[n] for n in names], dtype=np.float64)
        if not np.all(np.isfinite(pos)):
            return None, f"joint state is NaN/inf {dict(zip(names, pos.tolist()))}"
        return pos, ""

    def _ee_position(self) -> tuple[np.ndarray | None, str]:
        """EE position for the workspace check when known, fresh, finite and in `frame_id`."""
        msg = self._ee_pose
        if msg is None:
            if self._tf_relay is not None:
                return None, f"no end-effector pose from tf ({self._tf_relay.last_error or 'no transform yet'})"
            return None, f"no end-effector pose on {self.p('ee_pose_topic')}"
        age = self.now() - self._ee_pose_arrival
        if age > self.live.max_pose_age:
            return None, f"stale end-effector pose: {age:.3f} s > {self.live.max_pose_age:.3f} s"
        frame = msg.header.frame_id
        if frame and frame.lstrip("/") != str(self.p("frame_id")).lstrip("/"):
            return None, (f"end-effector pose is in frame '{frame}' but twists and the workspace box are in "
                          f"'{self.p('frame_id')}' (publish the pose in frame_id)")
        p, q = msg.pose.position, msg.pose.orientation
        pos = np.array([p.x, p.y, p.z], dtype=np.float64)
        if not np.all(np.isfinite(pos)):
            return None, f"end-effector pose is NaN/inf {pos.tolist()}"
        if not all(math.isfinite(v) for v in (q.x, q.y, q.z, q.w)):
            # the position is not used alone: a broken orientation means a broken pose source
            return None, f"end-effector pose orientation is NaN/inf {[q.x, q.y, q.z, q.w]}"
        return pos, ""

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

    def _camera_hint(self) -> str:
        """Why no image arrives (no publisher, or a QoS that can never match); computed at most every 2 s."""
        now = time.monotonic()
        if now - self._hint_at < 2.0:
            return self._hint
        self._hint_at = now
        topic = str(self.p("image_topic"))
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            self._hint = f"no publisher on {topic}"
        elif self.image_reliability == "reliable" and all(
                i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in pubs):
            self._hint = (f"the publisher(s) on {topic} offer BEST_EFFORT and this subscription is RELIABLE: "
                          "set image_qos_reliability: best_effort (or auto)")
        else:
            self._hint = f"{len(pubs)} publisher(s) on {topic}, nothing arrived"
        return self._hint

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

    # ---------------------------------------------------------------- inputs
    def _on_image(self, data: bytes) -> None:
        self._last_image_arrival = self.now()
        self._last_image_stamp = _stamp_from_raw_header(data)

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        self._ee_pose, self._ee_pose_arrival = msg, self.now()

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return     # malformed: names and positions cannot be paired
        now = self.now()
        for n, pos in zip(msg.name, msg.position):
            self._joint_pos[n] = float(pos)
            self._joint_arrival[n] = now

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            ch = msg_to_chunk(msg)
            if ch.action_space != self.action_space:
                raise ValueError(f"action space {_short(ch.action_space)} but this node runs '{self.action_space}'")
            self.backend.check_action_space(ch.action_space)
            if ch.actions.shape[1] != self.action_dim:
                raise ValueError(f"action_dim {ch.actions.shape[1]} != {self.action_dim} for {self.action_space}")
            if self.action_space == "joint_position":
                # the whole chunk, at arrival: no action of it is executed (nor blended in) when
                # any target lies outside the joint limits
                self.limits.check_joint_targets(ch.actions[:, :len(self._joint_names)])
        except (ValueError, BackendError) as e:
            with self._lock:
                self.rejected_chunks += 1
                self._reject_reason = f"rejected chunk: {e}"
                self.scheduler.clear()   # never keep executing around a bad chunk
            model = _short(msg.model_id) if msg.model_id else "?"
            self.get_logger().error(f"{self._reject_reason} (model {model}); zero motion")
            self._tick()
            return
        with self._lock:
            now = self.now()
            self._observe_clock(now)
            refused = self.scheduler.push(TimedChunk(ch.actions.astype(np.float64), ch.t0, ch.dt,
                                                     ch.action_space, ch.model_id, received=now), now)
            if refused:
                self.rejected_chunks += 1
                self._reject_reason = f"rejected chunk: {refused}"
                self.scheduler.clear()
            else:
                self._reject_reason = ""
        if refused:
            model = _short(msg.model_id) if msg.model_id else "?"
            self.get_logger().error(f"{self._reject_reason} (model {model}); zero motion")
            self._tick()

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

    # ---------------------------------------------------------------- control loop
    def _tick(self) -> None:
        with self._lock:
            if not self._active or self.backend is None:
                return
            now = self.now()
            obs_age = float("nan")
            self._observe_clock(now)
            stalled = self._clock_stalled(now)
            if self._estop:
                state, reason = ESTOP, "e-stop"
            elif self._disarmed_after_estop:
                state, reason = INACTIVE, "e-stop cleared; re-arm with lifecycle deactivate + activate"
            elif self._reject_reason:
                state, reason = FAULT, self._reject_reason
            elif stalled:
                state, reason = FAULT, stalled
            else:
                state, reason = ARMED, ""
                if self._watch_images:
                    if self._last_image_arrival is None:
                        state, reason = FAULT, f"stale observation: no image received ({self._camera_hint()})"
                    else:
                        obs_age = now - self._last_image_arrival
                        if obs_age > self.max_obs_age:
                            state, reason = FAULT, f"stale observation: {obs_age:.3f} s > {self.max_obs_age:.3f} s"
            cmd = None
            if state == ARMED:
                try:
                    action, why = self.scheduler.action(now)
                except Exception as e:  # noqa: BLE001 - never leave the last command running
                    action, why = None, f"internal error in the scheduler: {type(e).__name__}: {e}"
                if action is None:
                    state, reason = FAULT, why
                else:
                    try:
                        scale, rot_scale, limit, n_joints = self._conv
                        cmd = action_to_command(action, self.action_space, scale, rot_scale, limit,
                                                num_joints=n_joints)
                        if not self._frame_map.identity:      # policy axes -> robot base frame
                            if cmd.linear_step is not None:
                                cmd.linear_step = self._frame_map.delta_to_base(cmd.linear_step)
                            if cmd.angular_step is not None:
                                cmd.angular_step = self._frame_map.delta_to_base(cmd.angular_step)
                        ee = None
                        if self._needs_pose:
                            ee, why = self._ee_position()
                            if ee is None:
                                raise ValueError(why)
                        joints = None
                        if cmd.joints is not None:
                            joints, why = self._joint_state()
                            if joints is None:
                                raise ValueError(why)
                        self.limits.apply(cmd, ee, joints)
                        reason = "; ".join(cmd.notes)
                    except (ValueError, BackendError) as e:
                        cmd, state, reason = None, FAULT, f"unsafe command: {e}"
                    except Exception as e:  # noqa: BLE001 - a bug must end in zero motion, with the reason
                        cmd, state, reason = None, FAULT, f"internal error in the control tick: {type(e).__name__}: {e}"
            if state == ARMED:
                try:
                    halt = (self.backend.fault_reason() or self.backend.gripper_fault()
                            or (self._watch.check(now, cmd) if self._watch is not None else ""))
                except Exception as e:  # noqa: BLE001
                    halt = f"backend error: {type(e).__name__}: {e}"
                if halt:
                    # the motion server halted the arm (Servo: singularity, collision, joint bound):
                    # command zero, say why; clears when it reports normal operation again
                    cmd, state, reason = None, FAULT, halt
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

    def _clock_stalled(self, now: float) -> str:
        """use_sim_time: why the node clock counts as stalled ('' when it advances). A /clock that
        stops (simulator paused or dead, bag player stopped) freezes every age check (chunk, pose,
        joints, image ages are all on this clock), so motion would go on at the wall control rate."""
        limit = self.live.max_clock_stall if self.live is not None else 0.0
        if not limit or not self.get_parameter("use_sim_time").value:
            return ""
        wall = time.monotonic()
        if self._clock_seen is None or now != self._clock_seen[0]:
            self._clock_seen = (now, wall)
            return ""
        idle = wall - self._clock_seen[1]
        if idle <= limit:
            return ""
        return (f"clock stalled: the node clock (use_sim_time, /clock) has not advanced for {idle:.3f} s "
                f"(> max_clock_stall_s {limit:.3f}); simulator paused or /clock publisher gone")

    def _observe_clock(self, now: float) -> None:
        """Clock-jump check, shared by the tick and the chunk callback (whichever sees the jump
        first): a backwards jump drops the held chunks (scheduler) and every input arrival time,
        which say nothing on the new timeline (an old pose would otherwise look fresh for as long
        as the jump)."""
        if self.scheduler.observe_clock(now):
            self._last_image_arrival = self._ee_pose_arrival = self._ee_pose = None
            self._joint_arrival.clear()
            self._joint_pos.clear()
            self._reject_reason = ""
            self.get_logger().warning(f"{self.scheduler.hold_reason}; zero motion")

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
