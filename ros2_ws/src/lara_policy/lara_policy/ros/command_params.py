"""command_node's parameters: the declared table (name, default, description), the constraints
`ros2 param describe` shows, which parameters are live limits (validated together, applied at the
next tick when changed at run time) and which are free, and build_live_limits, which validates the
limit parameters into the LiveLimits the control loop uses."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rclpy.parameter import Parameter

from lara_policy.ros import topics
from lara_policy.ros.safety import SafetyLimits

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
    ("hold_on_monitor_alarm", False, "hold (zero motion, FAULT with the reason) on an alarm of policy_node's LAM "
                                     "fault monitor (std_msgs/String on monitor_alarm_topic); latched until "
                                     "deactivate + activate."),
    ("monitor_alarm_topic", topics.MONITOR_ALARM, "std_msgs/String alarms of the LAM fault monitor."),
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
    ("ee_rot_scale_rad", 0.05, "Radians per unit of an ee_delta_6d rotation action: actions [3:6] are a rotation "
                               "vector (axis x angle) about frame_id's axes (after policy_axes_in_base), turning the "
                               "tool about its own point, MoveIt Servo's twist convention: servo twist angular = a x "
                               "ee_rot_scale_rad / control period (rad/s); moveit_py goal q = exp(a x "
                               "ee_rot_scale_rad) * q (composed on the left)."),
    ("action_limit", 1.0, "ee_delta actions are clipped to [-action_limit, action_limit]."),
    ("max_linear_speed_mps", 0.5, "Maximum commanded EE linear speed (m/s)."),
    ("max_angular_speed_rps", 1.0, "Maximum commanded EE angular speed (rad/s): a faster rotation is scaled down "
                                   "along its axis (the norm of the angular twist is clamped)."),
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
    ("tick_on_chunk", True, "With a rate backend (servo) and control_thread: a new chunk is commanded on arrival "
                            "and the control clock re-phased to it (the next tick one period later), instead of "
                            "waiting up to a period for the next tick. Position backends ignore it (an extra "
                            "tick would add a step)."),
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
