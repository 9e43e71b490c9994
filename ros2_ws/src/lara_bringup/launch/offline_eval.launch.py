"""Offline (rosbag) evaluation: replay a recorded episode into policy_node and record what
the policy predicts (chunks + dynamics checks) next to what was executed.

    ros2 launch lara_bringup offline_eval.launch.py bag:=episodes/ros/episode_... \
        checkpoint:=/path/to/ckpt

Nothing moves (no command_node). The bag is played with `ros2 bag play --clock` (sim time);
parameters from lara_bringup/config/offline_eval.yaml.
"""
from lara_bringup.launch_common import make_launch_description


def _bag_player(context):
    from launch.actions import ExecuteProcess
    from launch.substitutions import LaunchConfiguration

    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        return []
    rate = LaunchConfiguration("rate").perform(context)
    return [ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate], output="screen")]


def generate_launch_description():
    return make_launch_description(
        "offline_eval.yaml", robot_launch_arg=False, more_actions=_bag_player,
        more_args=[("bag", "", "rosbag2 folder to replay"), ("rate", "1.0", "replay rate")])
