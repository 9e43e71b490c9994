"""LARA-ROS on Meta-World (MuJoCo): sim_node + policy_node + command_node + recorder_node.

    ros2 launch lara_bringup sim.launch.py task:=reach-v3 checkpoint:=/path/to/ckpt

Parameters come from lara_bringup/config/sim.yaml (`config:=` for another file). The sim
publishes its instruction and starts the next seed when an episode's step budget is used
up; command_node arms at start (arm:=false to arm it yourself);
start/stop recording with the /lara/recorder/start|stop services and reset the sim with
/lara/sim/reset. `lara bringup sim.yaml` runs the same graph in one process and drives
whole episodes. camera_watch:=true adds camera_watch_node (the frozen-camera detector; default:
the config's lara_bringup.camera_watch).
"""
from lara_bringup.launch_common import make_launch_description, select_config
from lara_policy.ros.camera_watch_node import LAUNCH_ARG, launch_actions


def _camera_watch(context):
    from launch.substitutions import LaunchConfiguration
    return launch_actions(context, select_config(LaunchConfiguration("config").perform(context), "", "sim.yaml"))


def generate_launch_description():
    return make_launch_description("sim.yaml", robot_launch_arg=False, more_args=[LAUNCH_ARG],
                                   more_actions=_camera_watch)
