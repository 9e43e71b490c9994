"""What every lara_bringup launch file shares: read a config YAML (the same file
`lara bringup` reads, with the same reader: lara_policy.ros.params), turn its node sections
into launch_ros Node actions.

`node_specs()` is plain Python (no `launch` import) so it is testable on machines without
`ros2 launch`; `make_launch_description()` imports launch/launch_ros lazily.
"""
from __future__ import annotations

import os

from lara_bringup import config_dir
# the one reader of these YAML files, shared with `lara bringup`
from lara_policy.ros.params import (bringup_paths, load_params_yaml, node_params, resolve_output_path,
                                    resolve_path)

PACKAGE = "lara_policy"
# node section -> console script of lara_policy (setup.py entry points)
EXECUTABLES = {"sim_node": "sim_node", "policy_node": "policy_node",
               "command_node": "command_node", "recorder_node": "recorder_node",
               "camera_watch_node": "camera_watch_node"}


# robot profiles shipped in lara_bringup/config (real_arm.launch.py robot:=NAME)
ROBOT_PROFILES = ("ur5e_robotiq", "franka_fr3")


def select_config(config: str, robot: str, default_file: str) -> str:
    """The YAML a launch file reads: `config` (a path) if given, else the robot profile `robot`
    (lara_bringup/config/<robot>.yaml), else `default_file` in lara_bringup/config."""
    if config:
        return config
    if robot:
        if robot not in ROBOT_PROFILES:
            raise ValueError(f"robot:={robot}: no such profile (shipped: {', '.join(ROBOT_PROFILES)}); or pass "
                             "config:=/path/to/your.yaml")
        return os.path.join(config_dir(), f"{robot}.yaml")
    return os.path.join(config_dir(), default_file)


def _load(config_path: str) -> dict:
    return load_params_yaml(config_path)


def _section(config: dict, name: str, with_wildcard: bool = True) -> dict:
    return node_params(config if with_wildcard else {k: v for k, v in config.items() if k != "/**"}, name)


def _abs(path: str) -> str:
    """A path from a config: existing -> resolve_path's answer, else relative to $LARA_ROOT (or cwd)."""
    found = resolve_path(path)
    return found if not found or os.path.isabs(found) else resolve_output_path(path, from_config=True)


def node_specs(config_path: str, *, checkpoint: str = "", task: str = "", record_dir: str = "",
               extra: dict | None = None) -> list[dict]:
    """[{package, executable, name, parameters}] for every node the config starts, with the
    launch arguments applied on top of the YAML (empty = keep the YAML's value). Reads the YAML
    and resolves checkpoint / record_dir exactly as `lara bringup` does (params.bringup_paths)."""
    config = load_params_yaml(config_path)
    bring = _section(config, "lara_bringup", with_wildcard=False)
    paths = bringup_paths(config, checkpoint=checkpoint, record_dir=record_dir)
    names = list(bring.get("nodes") or [k.lstrip("/") for k, v in config.items()
                                        if isinstance(v, dict) and "ros__parameters" in v
                                        and k.lstrip("/") in EXECUTABLES])
    unknown = [n for n in names if n not in EXECUTABLES]
    if unknown:
        raise ValueError(f"{config_path}: unknown node(s) {unknown} (known: {', '.join(EXECUTABLES)})")
    specs = []
    for name in names:
        params = _section(config, name)
        if name in ("policy_node", "camera_watch_node"):    # the watch reads monitor.json beside the weights
            params["checkpoint"] = paths["checkpoint"]
        if name == "sim_node" and (task or bring.get("task")):
            params["task"] = task or bring.get("task")
        if name == "recorder_node":
            params["output_dir"] = paths["record_dir"] or resolve_output_path("episodes", from_config=True)
        params.update((extra or {}).get(name, {}))
        specs.append({"package": PACKAGE, "executable": EXECUTABLES[name], "name": name,
                      "parameters": params})
    return specs


def make_launch_description(config_file: str, *, extra: dict | None = None, robot_launch_arg: bool = True,
                            more_args=(), more_actions=None, robot_arg: bool = False):
    """LaunchDescription for lara_bringup/config/<config_file>.

    Launch arguments: config (path), checkpoint, task, record_dir, arm (command_node
    autostart: configure + activate at start), robot_launch (a launch file of the robot /
    simulator to include: its driver, MoveIt + Servo, camera, bridges), `more_args`
    ((name, default, description) triples) and whatever `more_actions(context)` adds."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    default_arm = "true" if config_file == "sim.yaml" else "false"
    args = [
        DeclareLaunchArgument("config", default_value="" if robot_arg else os.path.join(config_dir(), config_file),
                              description="LARA-ROS params YAML (same file `lara bringup` reads)"
                                          + (f"; '' = the robot profile, else {config_file}" if robot_arg else "")),
        DeclareLaunchArgument("checkpoint", default_value="", description="LARA checkpoint directory"),
        DeclareLaunchArgument("task", default_value="", description="Meta-World task (sim only)"),
        DeclareLaunchArgument("record_dir", default_value="", description="episode bag folder"),
        DeclareLaunchArgument("arm", default_value=default_arm,
                              description="command_node configures + activates at start (else arm it "
                                          "through its lifecycle services)"),
    ]
    args += [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in more_args]
    if robot_arg:
        args.append(DeclareLaunchArgument("robot", default_value="", description=(
            f"robot profile: {' | '.join(ROBOT_PROFILES)} (lara_bringup/config/<robot>.yaml); '' = {config_file}, "
            "whose 'YOUR_...' values must be set first")))
    if robot_launch_arg:
        args.append(DeclareLaunchArgument("robot_launch", default_value="",
                                          description="launch file of the robot/simulator to include"))

    def setup(context, *_a, **_k):
        get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731
        ex = {k: dict(v) for k, v in (extra or {}).items()}
        ex.setdefault("command_node", {})["autostart"] = get("arm").lower() in ("1", "true", "yes")
        actions = []
        if robot_launch_arg and get("robot_launch"):
            actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(get("robot_launch"))))
        config = select_config(get("config"), get("robot") if robot_arg else "", config_file)
        for spec in node_specs(config, checkpoint=get("checkpoint"), task=get("task"),
                               record_dir=get("record_dir"), extra=ex):
            actions.append(Node(package=spec["package"], executable=spec["executable"], name=spec["name"],
                                parameters=[spec["parameters"]], output="screen", emulate_tty=True))
        if more_actions is not None:
            actions += list(more_actions(context))
        return actions

    return LaunchDescription(args + [OpaqueFunction(function=setup)])
