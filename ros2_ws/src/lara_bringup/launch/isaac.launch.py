"""LARA-ROS on an arm simulated in NVIDIA Isaac Sim through the Isaac Sim ROS 2 bridge.

    ros2 launch lara_bringup isaac.launch.py checkpoint:=/path/to/ckpt \
        robot_launch:=/path/to/your_isaac_moveit_servo.launch.py arm:=true

Topic names follow the Isaac ROS bridge / MoveIt Isaac tutorial conventions
(lara_bringup/config/isaac.yaml: camera /rgb, joint states /isaac_joint_states via
topic_based_ros2_control, Servo on /servo_node/delta_twist_cmds); sim time from Isaac.
"""
from lara_bringup.launch_common import make_launch_description


def generate_launch_description():
    return make_launch_description("isaac.yaml")
