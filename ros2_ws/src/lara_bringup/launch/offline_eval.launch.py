"""Offline (rosbag) evaluation: replay the OBSERVATION topics of a recorded episode into
policy_node, record the chunks it predicts (recorder autostarts), then score them against the
actions executed in the recording (`lara eval bag --chunks-from`, an open-loop proxy).

    ros2 launch lara_bringup offline_eval.launch.py bag:=episodes/ros/episode_... \\
        checkpoint:=/path/to/ckpt out:=runs/offline_eval

Nothing moves (no command_node) and no recorded command reaches the graph: `ros2 bag play`
gets `--topics` with the observation topics of offline_eval.yaml only, `--clock` (sim time) and
`--delay` (policy_node loads torch and the checkpoint first). When the player exits, the score
is written to `out` and the launch shuts down. Parameters: lara_bringup/config/offline_eval.yaml
(the same file `lara bringup offline_eval.yaml --bag ...` runs in one process).
"""
from lara_bringup.launch_common import _abs, _load, _section, make_launch_description

OBSERVATION_TOPICS = ["/camera/image_raw", "/joint_states", "/lara/ee_pose", "/lara/goal", "/lara/instruction"]


def _bag_player(context):
    from launch.actions import EmitEvent, ExecuteProcess, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration

    get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731
    bag = get("bag")
    if not bag:
        return []
    config = _load(get("config"))
    bring = _section(config, "lara_bringup", with_wildcard=False)
    topics = list(bring.get("observation_topics") or OBSERVATION_TOPICS)
    record_dir = _abs(get("record_dir") or _section(config, "recorder_node").get("output_dir")
                      or bring.get("record_dir", "episodes/offline_eval"))
    ckpt = _abs(get("checkpoint") or _section(config, "policy_node").get("checkpoint") or bring.get("checkpoint", ""))
    player = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", get("rate"),
                                 "--delay", get("delay"), "--topics", *topics], output="screen")
    score = ExecuteProcess(cmd=["python3", "-m", "lara_policy.cli", "eval", "bag", "--policy", ckpt, bag,
                                "--chunks-from", record_dir, "--out", _abs(get("out"))], output="screen")
    return [
        player,
        # the recorder flushes a segment every flush_period_s: the chunks are on disk 2 s later
        RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[TimerAction(period=2.0, actions=[score])])),
        RegisterEventHandler(OnProcessExit(target_action=score, on_exit=[EmitEvent(event=Shutdown(
            reason="offline evaluation scored"))])),
    ]


def generate_launch_description():
    return make_launch_description(
        "offline_eval.yaml", robot_launch_arg=False, more_actions=_bag_player,
        more_args=[("bag", "", "rosbag2 episode folder to replay (observation topics only)"),
                   ("rate", "1.0", "replay rate"),
                   ("delay", "5.0", "seconds before playing (policy_node loads the checkpoint)"),
                   ("out", "runs/offline_eval", "where the score (results.json/.md, plots) is written")])
