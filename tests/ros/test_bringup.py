"""`lara bringup` end to end as a user runs it (a subprocess over real DDS), its errors, and
the shipped configs (every parameter they set is declared by its node)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from graph_helpers import GoalSeekingTestPolicy

pytestmark = pytest.mark.ros


def _lara(*args, timeout=240, env=None):
    return subprocess.run([sys.executable, "-m", "lara_policy.cli", *args], env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


def test_lara_bringup_sim_runs_episodes_and_records(tiny_checkpoint, tmp_path):
    out = tmp_path / "result.json"
    rec = tmp_path / "bags"
    p = _lara("bringup", "sim", "--checkpoint", str(tiny_checkpoint), "--episodes", "2", "--max-steps", "20",
              "--record-dir", str(rec), "--json", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "episode 1/2 reach-v3 seed 1000:" in p.stdout and "episode 2/2 reach-v3 seed 1001:" in p.stdout, p.stdout
    assert "episodes succeeded on reach-v3" in p.stdout
    res = json.loads(out.read_text())
    eps = res["episodes"]
    assert [e["seed"] for e in eps] == [1000, 1001]
    assert all(e["steps"] > 0 for e in eps), eps      # the arm was commanded in every episode
    assert all(e["instruction"] for e in eps)
    try:
        import lara_policy.ros.recorder_node  # noqa: F401
    except ImportError:
        pytest.skip("recorder_node not available: bags not checked")
    for e in eps:
        assert e["bag_path"] and os.path.isdir(e["bag_path"]), e
        assert e["bag_path"] in p.stdout
        assert os.path.isfile(os.path.join(e["bag_path"], "metadata.yaml")), os.listdir(e["bag_path"])


def test_lara_bringup_errors_are_clear(tmp_path):
    p = _lara("bringup", "no-such-config", timeout=60)
    assert p.returncode == 2 and "config 'no-such-config' not found" in p.stderr and "sim.yaml" in p.stderr
    p = _lara("bringup", "sim", "--checkpoint", str(tmp_path / "missing"), timeout=60)
    assert p.returncode == 2 and "policy checkpoint not found" in p.stderr, p.stderr
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    p = _lara("bringup", "sim", "--checkpoint", str(bad), "--no-record", timeout=120)
    assert p.returncode == 1, p.stdout[-1000:] + p.stderr[-2000:]
    assert f"cannot load checkpoint {bad}" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


SHIPPED = ["sim", "ur5e_robotiq", "franka_fr3", "gazebo", "isaac", "offline_eval"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_parameters_are_declared(ros, name):
    """Every parameter a shipped YAML sets must exist on its node (a typo would be silently
    ignored by ROS), every node must construct from it, and the file must be a valid ROS 2
    params file (rcl's parser, as `--params-file` on a real install uses it)."""
    from lara_policy.ros.bringup import NODE_TYPES, Graph, resolve_config, robot_nodes
    from lara_policy.ros.params import load_params_yaml, node_params

    try:
        path = resolve_config(name)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"shipped config {name} missing: {exc}")
    config = load_params_yaml(path)
    nodes = robot_nodes(config, "camera_watch_node" in config or None)     # its section too, where there is one
    assert nodes and all(n in NODE_TYPES for n in nodes), nodes
    overrides = {"sim_node": {"auto_reset": False}} if "sim_node" in nodes else {}
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", path], context=ctx)   # raises on a bad file
    ctx.try_shutdown()
    graph = Graph(config, nodes, policy=GoalSeekingTestPolicy(), overrides=overrides)
    try:
        assert set(graph.nodes) == set(nodes) - set(graph.skipped)
        for n, node in graph.nodes.items():
            own = {k for k in node_params({k: v for k, v in config.items() if k != "/**"}, n)}
            undeclared = sorted(k for k in own if not node.has_parameter(k))
            assert not undeclared, f"{name}.yaml sets undeclared parameters on {n}: {undeclared}"
            for k, v in node_params(config, n).items():
                if node.has_parameter(k) and not isinstance(v, list):
                    assert node.get_parameter(k).value == v or k == "checkpoint", (n, k, v)
    finally:
        graph.close()


@pytest.mark.parametrize("profile", ["ur5e_robotiq", "franka_fr3"])
def test_lara_bringup_real_arm_graph_starts_disarmed(tiny_checkpoint, profile):
    """Without a sim (real arm), a robot profile's graph runs (command_node configures with the
    profile's gripper and Servo settings) but command_node is NOT armed unless asked."""
    import servo_interfaces     # the gripper action clients need control_msgs: the test-only mirror
    p = _lara("bringup", profile, "--checkpoint", str(tiny_checkpoint), "--no-record", "--duration", "2",
              timeout=120, env=servo_interfaces.env(servo_interfaces.build()))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "nodes policy_node, command_node" in p.stdout
    assert "NOT armed" in p.stdout and "ARMED" not in p.stdout.replace("NOT armed", "")


def test_lara_bringup_policy_node_in_its_own_process(tiny_checkpoint, tmp_path):
    """As `ros2 launch` runs it: policy_node in a child process, reached over DDS only."""
    out = tmp_path / "result.json"
    p = _lara("bringup", "sim", "--checkpoint", str(tiny_checkpoint), "--episodes", "1", "--max-steps", "20",
              "--no-record", "--policy-process", "--json", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "policy_node (own process, pid" in p.stdout and "episode 1/1 reach-v3 seed 1000:" in p.stdout, p.stdout
    eps = json.loads(out.read_text())["episodes"]
    assert eps[0]["steps"] > 0 and "no action chunk" not in eps[0]["message"], eps   # chunks crossed processes
    pid = int(p.stdout.split("own process, pid ")[1].split(")")[0])
    assert not os.path.exists(f"/proc/{pid}"), "the policy_node process outlived lara bringup"


def test_generic_real_arm_config_refuses_to_start_until_placeholders_are_set(tiny_checkpoint, tmp_path):
    p = _lara("bringup", "real_arm", "--checkpoint", str(tiny_checkpoint), "--no-record", "--duration", "1",
              timeout=60)
    assert p.returncode == 2, p.stdout[-1000:] + p.stderr[-2000:]
    for key in ("policy_node.frame_id = YOUR_BASE_FRAME", "command_node.gripper_max_effort = YOUR_GRIPPER_MAX_EFFORT",
                "command_node.workspace_min = YOUR_WORKSPACE_MIN", "policy_node.gripper_joint_name = YOUR_GRIPPER_JOINT"):
        assert key in p.stderr, p.stderr
    assert "ur5e_robotiq.yaml, franka_fr3.yaml" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "nodes policy_node" not in p.stdout                  # nothing started
