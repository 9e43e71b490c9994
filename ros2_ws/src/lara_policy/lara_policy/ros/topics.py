"""Default topic and service names of the LARA-ROS graph (every one is a node parameter)."""

CAMERA_IMAGE = "/camera/image_raw"            # sensor_msgs/Image (rgb8 or bgr8)
INSTRUCTION = "/lara/instruction"             # std_msgs/String
SET_INSTRUCTION = "/lara/set_instruction"     # lara_msgs/srv/SetInstruction
JOINT_STATES = "/joint_states"                # sensor_msgs/JointState (incl. the gripper joint)
EE_POSE = "/lara/ee_pose"                     # geometry_msgs/PoseStamped (end-effector in base frame)
GOAL = "/lara/goal"                           # geometry_msgs/PointStamped (task goal, where known)
ACTION_CHUNK = "/lara/action_chunk"           # lara_msgs/ActionChunk
DYNAMICS_CHECK = "/lara/dynamics_check"       # lara_msgs/DynamicsCheck
SERVO_TWIST = "/servo_node/delta_twist_cmds"  # geometry_msgs/TwistStamped (MoveIt Servo input)
JOINT_TRAJECTORY = "/arm_controller/joint_trajectory"  # trajectory_msgs/JointTrajectory (ros2_control)
GRIPPER_COMMAND = "/lara/gripper_command"     # std_msgs/Float64: -1 open .. +1 close
SAFETY_STATUS = "/lara/safety_status"         # lara_msgs/SafetyStatus
MONITOR_ALARM = "/lara/monitor_alarm"         # std_msgs/String: the LAM fault monitor's alarm (the reason)
DIAGNOSTICS = "/diagnostics"                  # diagnostic_msgs/DiagnosticArray (rqt_robot_monitor, dashboards)
ESTOP = "/lara/estop"                         # std_srvs/Trigger: stop now, stay stopped
ESTOP_RESET = "/lara/estop_reset"             # std_srvs/Trigger: clear the e-stop (node stays disarmed)
TASK_SUCCESS = "/lara/task_success"           # std_msgs/Bool (sim, or an operator/success detector)
SIM_RESET = "/lara/sim/reset"                 # std_srvs/Trigger
RECORDER_START = "/lara/recorder/start"       # lara_msgs/srv/StartEpisode
RECORDER_STOP = "/lara/recorder/stop"         # lara_msgs/srv/StopEpisode


def camera_topics(cameras: list[str], first_topic: str = CAMERA_IMAGE) -> list[str]:
    """The topic of each camera of a multi-camera graph (sim_node, `lara bringup`, the recorder's
    bags): the first camera on `first_topic` (so one-camera consumers, command_node's watchdog and
    the default recorder topics, see it unchanged), every other one on /camera/<name>/image_raw."""
    return [first_topic] + [f"/camera/{name}/image_raw" for name in list(cameras)[1:]]
