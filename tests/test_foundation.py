"""Issue 2: the workspace works end to end — lara_msgs over real DDS between two
processes, the `lara` command, and `lara doctor` noticing a broken piece."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

PUBLISHER = textwrap.dedent("""
    import sys, time, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
    from lara_msgs.msg import ActionChunk, DynamicsCheck
    rclpy.init()
    node = rclpy.create_node("lara_test_publisher")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    chunk_pub = node.create_publisher(ActionChunk, "/lara_test/chunk", qos)
    check_pub = node.create_publisher(DynamicsCheck, "/lara_test/check", qos)
    chunk = ActionChunk(horizon=3, action_dim=4, actions=[float(i) / 8 - 0.5 for i in range(12)], dt=0.05,
                        action_space="ee_delta_xyz_gripper", instruction="open the drawer", model_id="m-123")
    chunk.header.frame_id = "base"
    chunk.header.stamp.sec, chunk.header.stamp.nanosec = 42, 7
    check = DynamicsCheck(num_candidates=8, chosen_index=5, predicted_effect=[0.1] * 8,
                          plausibility=[2.0] * 8, surprise=float("nan"), accepted=False,
                          reason="all candidates null")
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        chunk_pub.publish(chunk); check_pub.publish(check)
        rclpy.spin_once(node, timeout_sec=0.05)
""")


@pytest.mark.ros
def test_lara_msgs_cross_dds_between_processes_intact():
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from lara_msgs.msg import ActionChunk, DynamicsCheck

    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, "30"], env=os.environ.copy())
    ctx = Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("lara_test_subscriber", context=ctx)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        chunks, checks = [], []
        node.create_subscription(ActionChunk, "/lara_test/chunk", chunks.append, qos)
        node.create_subscription(DynamicsCheck, "/lara_test/check", checks.append, qos)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + 25
        while (not chunks or not checks) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, "publisher process died"
        ex.shutdown()
    finally:
        proc.kill()
        proc.wait()
        rclpy.shutdown(context=ctx)
    assert chunks and checks, "no lara_msgs message crossed DDS from the other process"
    c = chunks[0]
    assert (c.horizon, c.action_dim, c.dt) == (3, 4, pytest.approx(0.05))
    assert list(c.actions) == pytest.approx([i / 8 - 0.5 for i in range(12)])
    assert (c.action_space, c.instruction, c.model_id) == ("ee_delta_xyz_gripper", "open the drawer", "m-123")
    assert (c.header.frame_id, c.header.stamp.sec, c.header.stamp.nanosec) == ("base", 42, 7)
    k = checks[0]
    assert (k.num_candidates, k.chosen_index, k.accepted, k.reason) == (8, 5, False, "all candidates null")
    assert list(k.plausibility) == pytest.approx([2.0] * 8)
    assert k.surprise != k.surprise  # NaN survives the wire


def _lara(*args, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "lara_policy.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or os.environ.copy())


def test_lara_version_and_unknown_command():
    from lara_policy import __version__
    out = _lara("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"lara {__version__}"
    bad = _lara("bench", "nonsense")
    assert bad.returncode == 2
    assert "bench model" in bad.stderr  # suggests the real subcommands


def test_doctor_reports_a_broken_renderer():
    env = dict(os.environ, MUJOCO_GL="no-such-backend")
    out = _lara("doctor", "--only", "mujoco", "torch", env=env)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert any(line.startswith("[FAIL] mujoco") and "no-such-backend" in line for line in lines), out.stdout
    assert any(line.startswith("[ OK ] torch") for line in lines), out.stdout
    assert any("fix:" in line for line in lines)


@pytest.mark.ros
def test_doctor_all_green_on_this_machine(tmp_path):
    report = tmp_path / "doctor.json"
    out = _lara("doctor", "--json", str(report))
    assert out.returncode == 0, out.stdout + out.stderr
    import json
    results = json.loads(report.read_text())
    assert {r["name"] for r in results} >= {"ros2-dds", "lara_msgs", "mujoco", "torch", "language-model"}
    assert all(r["ok"] for r in results if r["required"])
