"""LARA-ROS on an arm simulated in Gazebo (gz sim + gz_ros2_control + MoveIt Servo).

    ros2 launch lara_bringup gazebo.launch.py checkpoint:=/path/to/ckpt \
        robot_launch:=/path/to/your_robot_gz_servo.launch.py arm:=true

Topic names follow gz_ros2_control / ros_gz_bridge conventions (lara_bringup/config/
gazebo.yaml: camera /camera/image, /joint_states from joint_state_broadcaster, Servo on
/servo_node/delta_twist_cmds); every node uses sim time.
"""
from lara_bringup.launch_common import make_launch_description


def generate_launch_description():
    return make_launch_description("gazebo.yaml")
