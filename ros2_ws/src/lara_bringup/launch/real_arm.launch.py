"""LARA-ROS on a real arm through MoveIt Servo: policy_node + command_node + recorder_node.

    ros2 launch lara_bringup real_arm.launch.py robot:=ur5e_robotiq checkpoint:=/path/to/ckpt \
        robot_launch:=/path/to/your_arm_servo.launch.py arm:=false

`robot:=` picks a shipped profile (lara_bringup/config/ur5e_robotiq.yaml: UR5e + Robotiq 2F-85,
franka_fr3.yaml: Franka FR3 + hand; each value names its upstream source); `config:=` your own
YAML; neither = the generic real_arm.yaml, which refuses to start until its "YOUR_..." values
are set. Start (or include with robot_launch:=) the arm driver, MoveIt + servo_node and the
camera driver. command_node stays disarmed unless arm:=true: arm it with
`ros2 lifecycle set /command_node configure` then `activate`; e-stop with
`ros2 service call /lara/estop std_srvs/srv/Trigger`. camera_watch:=true adds camera_watch_node (the
frozen-camera detector on the policy's camera; it needs the checkpoint's monitor.json camera_threshold).
"""
from lara_bringup.launch_common import make_launch_description, select_config
from lara_policy.ros.camera_watch_node import LAUNCH_ARG, launch_actions


def _camera_watch(context):
    from launch.substitutions import LaunchConfiguration
    get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731
    return launch_actions(context, select_config(get("config"), get("robot"), "real_arm.yaml"))


def generate_launch_description():
    return make_launch_description("real_arm.yaml", robot_arg=True, more_args=[LAUNCH_ARG],
                                   more_actions=_camera_watch)
