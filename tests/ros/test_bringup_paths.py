"""One reader of the lara_bringup YAML: the launch files (launch_common.node_specs) and `lara
bringup` (bringup.build_overrides) resolve checkpoint and record_dir identically, from any
working directory (reviews/ros.md §1.3: two copies resolved relative paths differently)."""
from __future__ import annotations

import argparse
import os

import pytest

pytest.importorskip("rclpy")

from lara_bringup import config_dir  # noqa: E402
from lara_bringup.launch_common import node_specs  # noqa: E402
from lara_policy.ros.bringup import build_overrides  # noqa: E402
from lara_policy.ros.params import load_params_yaml  # noqa: E402

CONFIGS = ["sim.yaml", "ur5e_robotiq.yaml", "franka_fr3.yaml", "gazebo.yaml", "isaac.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("args", [{}, {"checkpoint": "models/lara-metaworld-mt3", "record_dir": "my_eps"}],
                         ids=["from_yaml", "from_args"])
def test_launch_and_lara_bringup_read_the_same_paths(name, args, tmp_path, monkeypatch):
    root = os.environ.get("LARA_ROOT") or os.getcwd()
    monkeypatch.setenv("LARA_ROOT", root)
    monkeypatch.chdir(tmp_path)                       # launched from somewhere else
    path = os.path.join(config_dir(), name)
    specs = {s["name"]: s["parameters"] for s in node_specs(path, **args)}
    ov = build_overrides(load_params_yaml(path), argparse.Namespace(task=None, num_candidates=None,
                                                                   device=None, **{"checkpoint": None,
                                                                                   "record_dir": None, **args}))
    if "policy_node" in specs:
        assert specs["policy_node"]["checkpoint"] == ov["policy_node"]["checkpoint"]
        assert os.path.isabs(specs["policy_node"]["checkpoint"])
    if "policy_node" in specs:      # camera_watch_node (when switched on) reads the policy's checkpoint, both ways
        from lara_policy.ros.camera_watch_node import launch_spec
        watch = launch_spec(path, switch="true", checkpoint=args.get("checkpoint", ""))
        assert watch["parameters"]["checkpoint"] == ov["camera_watch_node"]["checkpoint"] == \
            specs["policy_node"]["checkpoint"]
    if "recorder_node" in specs:
        assert specs["recorder_node"]["output_dir"] == ov["recorder_node"]["output_dir"]
        expected_base = str(tmp_path) if args else root   # typed: cwd; from the YAML: the checkout
        assert specs["recorder_node"]["output_dir"].startswith(expected_base)
