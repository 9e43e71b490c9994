"""LARA-ROS on a real arm through MoveIt Servo: policy_node + command_node + recorder_node.

    ros2 launch lara_bringup real_arm.launch.py checkpoint:=/path/to/ckpt \
        robot_launch:=/path/to/your_arm_servo.launch.py arm:=false

Start (or include with robot_launch:=) the arm driver, MoveIt + servo_node and the camera
driver; topic names, workspace box and speed limits are in lara_bringup/config/
real_arm.yaml (`config:=` for your copy). command_node stays disarmed unless arm:=true:
arm it with `ros2 lifecycle set /command_node configure` then `activate`; e-stop with
`ros2 service call /lara/estop std_srvs/srv/Trigger`.
"""
from lara_bringup.launch_common import make_launch_description


def generate_launch_description():
    return make_launch_description("real_arm.yaml")
