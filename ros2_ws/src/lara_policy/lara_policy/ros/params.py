"""Parameter helpers shared by the LARA-ROS nodes and the single-process bringup.

* `declare(node, name, default, description, ...)` declares a parameter with a
  ParameterDescriptor (description, read-only flag, numeric range) and returns its value.
* `load_params_yaml(path)` reads a ROS 2 params file (`node: {ros__parameters: {...}}`),
  `node_params(config, node_name)` merges the `/**` wildcard section with the node's own
  section (flattening nested dicts to dotted names, as `--params-file` does), and
  `to_overrides(params)` turns that into rclpy `Parameter` objects for `parameter_overrides`.

Only APIs present in rclpy on Humble, Jazzy and Kilted are used.
"""
from __future__ import annotations

import os
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter


def declare(node, name: str, default: Any, description: str, *, read_only: bool = False,
            min_value: float | int | None = None, max_value: float | int | None = None) -> Any:
    """Declare `name` with a descriptor and return its (possibly overridden) value."""
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if min_value is not None or max_value is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(min_value if min_value is not None else -2**31),
                                               to_value=int(max_value if max_value is not None else 2**31 - 1),
                                               step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(min_value if min_value is not None else -1e300),
                to_value=float(max_value if max_value is not None else 1e300), step=0.0)]
    node.declare_parameter(name, default, desc)
    return node.get_parameter(name).value


def load_params_yaml(path: str) -> dict:
    """Parse a ROS 2 params YAML file; raises FileNotFoundError / ValueError with the path."""
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:   # a syntax error: the file and line, no traceback
            raise ValueError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of node names at the top level")
    unset = find_placeholders(data)
    if unset:
        raise ValueError(
            f"{path}: {len(unset)} value(s) still 'YOUR ...' placeholders: " + "; ".join(unset)
            + ". Copy the file and set them for your robot (docs/runtime_command_recorder.md, 'Bring up your "
            "arm'), or start a robot profile: ur5e_robotiq.yaml, franka_fr3.yaml")
    return data


PLACEHOLDER_PREFIXES = ("YOUR_", "YOUR ")


def find_placeholders(data: Any, prefix: str = "") -> list[str]:
    """'section.key = value' for every string value (also inside lists) that starts with YOUR_ /
    'YOUR ' (the generic real_arm.yaml marks what must be set per robot that way)."""
    out: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            key = str(k) if not prefix else f"{prefix}.{k}"
            out += find_placeholders(v, key.replace(".ros__parameters", ""))
    elif isinstance(data, list):
        for v in data:
            if isinstance(v, str) and v.startswith(PLACEHOLDER_PREFIXES):
                out.append(f"{prefix} = {v}")
                break
    elif isinstance(data, str) and data.startswith(PLACEHOLDER_PREFIXES):
        out.append(f"{prefix} = {data}")
    return out


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def node_params(config: dict, node_name: str) -> dict:
    """ros__parameters for `node_name`: `/**` first, then `node_name` / `/node_name` on top."""
    merged: dict = {}
    for key in ("/**", node_name, "/" + node_name):
        section = config.get(key)
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            _flatten("", section["ros__parameters"], merged)
    return merged


def node_sections(config: dict) -> list[str]:
    """Names of the node sections in a params file (every key holding ros__parameters)."""
    return [k.lstrip("/") for k, v in config.items()
            if isinstance(v, dict) and "ros__parameters" in v and k not in ("/**", "lara_bringup", "/lara_bringup")]


def to_overrides(params: dict) -> list[Parameter]:
    out = []
    for name, value in params.items():
        if isinstance(value, list) and not value:
            continue  # empty arrays have no type; leave the node's default
        if isinstance(value, tuple):
            value = list(value)
        out.append(Parameter(name, value=value))
    return out


def qos_from_params(reliability: str, depth: int):
    """QoS profile for camera streams: 'reliable' (default; delivers big images over DDS)
    or 'best_effort' (sensor-data style; drops most 640x480 frames between processes)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = str(reliability).strip().lower().replace("-", "_")
    if rel not in ("reliable", "best_effort"):
        raise ValueError(f"camera QoS reliability must be 'reliable' or 'best_effort', got '{reliability}'")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                      reliability=ReliabilityPolicy.RELIABLE if rel == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


def match_publisher_reliability(node, wanted: str, topic: str, wait_s: float = 2.0) -> str:
    """'reliable' / 'best_effort' as configured; 'auto': best_effort when a publisher found on
    `topic` within wait_s offers it (a reliable subscription never matches it), else reliable."""
    import time

    from rclpy.qos import ReliabilityPolicy
    wanted = str(wanted).strip().lower().replace("-", "_")
    if wanted != "auto":
        return wanted
    end = time.monotonic() + wait_s
    pubs = []
    while not pubs and time.monotonic() < end:
        pubs = node.get_publishers_info_by_topic(topic)
        if not pubs:
            time.sleep(0.05)
    chosen = "best_effort" if any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in pubs) \
        else "reliable"
    node.get_logger().info(f"{node.get_name()}: QoS auto on {topic} -> {chosen} ({len(pubs)} publisher(s))")
    return chosen


def resolve_output_path(path: str, from_config: bool) -> str:
    """Absolute output directory: a path typed on the command line is relative to the working
    directory; a relative path from a config file is relative to the repository root
    ($LARA_ROOT, set by env.sh) when that is set, else to the working directory."""
    if not path or os.path.isabs(path):
        return path
    root = os.environ.get("LARA_ROOT")
    return os.path.join(root, path) if from_config and root else os.path.abspath(path)


BRINGUP_SECTION = "lara_bringup"


def bringup_paths(config: dict, *, checkpoint: str = "", record_dir: str = "") -> dict:
    """The ONE reading of a lara_bringup YAML's paths, for `lara bringup` and the launch files:
    checkpoint = argument > policy_node.checkpoint > lara_bringup.checkpoint (resolve_path),
    record_dir = argument > recorder_node.output_dir > lara_bringup.record_dir
    (resolve_output_path). Returns {"checkpoint": ..., "record_dir": ...} ('' when unset)."""
    bring = node_params({k: v for k, v in config.items() if k != "/**"}, BRINGUP_SECTION)
    ckpt = checkpoint or node_params(config, "policy_node").get("checkpoint") or bring.get("checkpoint") or ""
    rec_cfg = node_params(config, "recorder_node").get("output_dir") or bring.get("record_dir") or ""
    rec = resolve_output_path(record_dir, from_config=False) if record_dir else \
        resolve_output_path(str(rec_cfg), from_config=True)
    return {"checkpoint": resolve_path(str(ckpt)) if ckpt else "", "record_dir": rec}


def resolve_path(path: str) -> str:
    """A relative path as given if it exists from the working directory, else relative to
    the repository root ($LARA_ROOT, set by env.sh), else unchanged (the caller reports it)."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path) if path else path
    root = os.environ.get("LARA_ROOT")
    if root and os.path.exists(os.path.join(root, path)):
        return os.path.join(root, path)
    return path
