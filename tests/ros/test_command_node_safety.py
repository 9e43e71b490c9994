"""Regression tests for the command_node safety holes found by the ROS review and the black-box
test (reviews/ros.md §7.2, blackbox.md F1/F3/F4/F8): clock jumps and future-stamped chunks,
NaN / stale / wrong-frame end-effector pose, limit validation and run-time parameter changes,
autostart, lifecycle exceptions. Real rclpy nodes over real DDS; each test failed on 5b2bafb."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from lara_policy.ros.command_node import CommandNode  # noqa: E402
from lara_policy.ros.codec import sec_to_stamp  # noqa: E402
from lara_policy.ros.safety import ChunkScheduler, MotionCommand, SafetyLimits, TimedChunk  # noqa: E402

from helpers_runtime import OutputReader, call_service, kill, spawn_python, wait_for  # noqa: E402
from test_command_node import PERIOD, RATE, Rig, armed_moving, make_node  # noqa: E402

pytestmark = pytest.mark.ros


# ----------------------------------------------------------------------------- pure logic
def test_scheduler_refuses_future_chunk_and_drops_chunks_on_backwards_clock_jump():
    s = ChunkScheduler(blend_steps=0, max_chunk_age_s=0.5, max_future_s=0.1)
    a = np.ones((16, 4))
    assert s.push(TimedChunk(a, t0=100.0, dt=0.05, action_space="x"), now=100.01) == ""
    assert s.action(100.02)[0] is not None
    # a chunk stamped 10 s ahead is refused with the reason; it never blocks fresh chunks
    why = s.push(TimedChunk(a * 2, t0=110.0, dt=0.05, action_space="x"), now=100.03)
    assert "9.970 s in the future" in why
    assert s.push(TimedChunk(a * 3, t0=100.04, dt=0.05, action_space="x"), now=100.05) == ""
    assert np.allclose(s.action(100.06)[0], 3)
    # the clock jumps back 50 s (sim reset): the old timeline's chunk is dropped, not replayed
    act, why = s.action(50.0)
    assert act is None and why.startswith("clock jumped back 50.06")
    assert s.action(50.05) == (None, why)            # the reason stays until fresh data
    # a chunk on the new clock is accepted (no "out of order" against the old one) and runs
    assert s.push(TimedChunk(a * 4, t0=50.06, dt=0.05, action_space="x"), now=50.07) == ""
    assert np.allclose(s.action(50.08)[0], 4)
    # a held chunk that ends up in the future (small jump under the tolerance) is not executed
    s2 = ChunkScheduler(max_chunk_age_s=0.5, max_future_s=0.1, clock_jump_tolerance_s=10.0)
    s2.push(TimedChunk(a, t0=10.0, dt=0.05, action_space="x"), now=10.0)
    assert s2.action(9.5)[0] is None and "in the future" in s2.action(9.5)[1]


@pytest.mark.parametrize("bad", [dict(max_linear_speed=-0.15), dict(max_joint_step=-0.05),
                                 dict(max_linear_step=float("nan")), dict(max_angular_speed=0.0),
                                 dict(workspace_min=np.array([1.0, 0, 0]), workspace_max=np.array([0.0, 1, 1]))],
                         ids=["neg_speed", "neg_joint_step", "nan_step", "zero_angular", "swapped_box"])
def test_safety_limits_refuse_values_that_invert_or_disable_limiting(bad):
    with pytest.raises(ValueError):
        SafetyLimits(period=0.05, **bad)


def test_nan_pose_or_joint_state_never_passes_the_limits():
    lim = SafetyLimits(period=0.05, workspace_min=np.array([0.0, 0, 0]), workspace_max=np.array([1.0, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        lim.apply(MotionCommand(linear_step=np.array([0.001, 0, 0])), np.array([np.nan, 0.5, 0.5]), None)
    with pytest.raises(ValueError, match="NaN"):
        SafetyLimits(period=0.05).apply(MotionCommand(joints=np.array([0.1, 0.2])), None,
                                        np.array([np.nan, 0.2]))


# ----------------------------------------------------------------------------- ROS graph
def _future_chunk(rig, seconds):
    from lara_policy.ros.codec import chunk_to_msg
    t = rig.n.get_clock().now().nanoseconds * 1e-9 + seconds
    rig.chunks.publish(chunk_to_msg(np.tile(np.array([[0.0, 0.5, 0.0, 1.0]], np.float32), (40, 1)), t, PERIOD,
                                    "ee_delta_xyz_gripper", "reach", "future-model"))


def test_future_stamped_chunk_faults_with_reason_and_fresh_chunks_recover(harness):
    node, rig = make_node(harness), Rig(harness)
    armed_moving(node, rig)
    _future_chunk(rig, 10.0)
    assert wait_for(lambda: "in the future" in node.reason, 5.0), node.reason
    assert node.state == "fault"
    t_fault = node.now()
    time.sleep(3 * PERIOD)
    # the future chunk's action (+y, gripper closed) was never executed
    after = [r for r in node.tick_log if r.t > t_fault]
    assert after and not any(r.moving for r in after)
    assert all(abs(m.twist.linear.y) < 1e-9 for _, m in rig.twists)
    assert any(s.state == "fault" and "in the future" in s.reason for s in rig.status)
    # fresh chunks are executed again at once (not ignored as "out of order")
    assert wait_for(lambda: (rig.chunk(), node.tick_log[-1].moving)[1], 5.0, period=0.1), node.reason


def test_backwards_sim_clock_jump_faults_and_recovers_on_the_new_clock(harness):
    node = make_node(harness, use_sim_time=True, control_thread=True)
    rig_clock = harness.node("clock_source")
    clock_pub = rig_clock.create_publisher(Clock, "/clock", 10)
    sim = {"t": 1000.0, "run": True}

    def tick_clock():
        if sim["run"]:
            sim["t"] += 0.01
            clock_pub.publish(Clock(clock=sec_to_stamp(sim["t"])))
    rig_clock.create_timer(0.01, tick_clock)
    rig = Rig(harness)
    rig.n.set_parameters([Parameter("use_sim_time", value=True)])   # stamps on the sim clock
    assert wait_for(lambda: node.now() > 1000.0 and rig.n.get_clock().now().nanoseconds > 1e12, 10.0)
    armed_moving(node, rig)
    sim["t"] = 10.0                       # simulator reset: /clock goes back ~990 s
    assert wait_for(lambda: "clock jumped back" in node.reason, 5.0), node.reason
    t_jump = time.monotonic()
    time.sleep(5 * PERIOD)
    assert not node.tick_log[-1].moving and node.state == "fault"
    assert rig.twists[-1][1].twist.linear.x == 0.0
    assert any(s.state == "fault" and "clock jumped back" in s.reason for s in rig.status)
    # no action 0 of the old chunk was replayed after the jump
    assert not any(r.moving and r.t < 900.0 for r in node.tick_log)
    # fresh chunks + images stamped on the new clock: motion resumes by itself
    assert wait_for(lambda: (rig.chunk(), node.tick_log[-1].moving)[1], 10.0, period=0.1), node.reason
    assert node.tick_log[-1].t < 100.0
    print(f"clock jump: fault, recovered {time.monotonic() - t_jump:.2f} s after the jump")


def _pose_pub(h, rig, frame="base"):
    pub = rig.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
    pose = {"xyz": (0.5, 0.0, 0.3), "on": True, "frame": frame}

    def send():
        if pose["on"]:
            m = PoseStamped()
            m.header.stamp = rig.n.get_clock().now().to_msg()
            m.header.frame_id = pose["frame"]
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in pose["xyz"])
            m.pose.orientation.w = 1.0
            pub.publish(m)
    rig.n.create_timer(1.0 / 30.0, send)
    return pose


def test_nan_stale_or_wrong_frame_ee_pose_faults_instead_of_skipping_the_box(harness):
    node = make_node(harness, workspace_min=[0.0, -1.0, 0.0], workspace_max=[1.0, 1.0, 1.0], max_pose_age_s=0.3)
    rig = Rig(harness)
    pose = _pose_pub(harness, rig)
    armed_moving(node, rig)
    for bad, expect in [(lambda: pose.update(xyz=(float("nan"), 0.0, 0.3)), "NaN"),
                        (lambda: pose.update(on=False), "stale end-effector pose"),
                        (lambda: pose.update(frame="world"), "frame 'world'")]:
        bad()
        assert wait_for(lambda: expect in node.reason and not node.tick_log[-1].moving, 5.0,
                        period=0.05) or (rig.chunk() and False), (expect, node.reason)
        for _ in range(4):                # chunks keep coming: still no motion
            rig.chunk()
            time.sleep(PERIOD)
        assert not node.tick_log[-1].moving and expect in node.reason, node.reason
        pose.update(xyz=(0.5, 0.0, 0.3), on=True, frame="base")
        assert wait_for(lambda: (rig.chunk(), node.tick_log[-1].moving)[1], 5.0, period=0.1), node.reason


@pytest.mark.parametrize("param,value,expect", [
    ("max_linear_speed_mps", -0.15, "max_linear_speed"), ("action_limit", -1.0, "action_limit"),
    ("max_joint_step_rad", -0.05, "max_joint_step"), ("max_chunk_age_s", 0.0, "max_chunk_age_s"),
    ("workspace_max", [0.0, 0.0, 0.0], "min < max")])
def test_invalid_limits_refused_at_configure(harness, param, value, expect):
    extra = {"workspace_min": [0.1, 0.1, 0.1], "workspace_max": [1.0, 1.0, 1.0]} if param == "workspace_max" else {}
    extra[param] = value
    node = make_node(harness, **extra)
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "unconfigured"
    assert "configure refused" in node.reason and expect in node.reason, node.reason


def test_limit_changes_at_run_time_apply_or_are_refused_never_ignored(harness):
    node, rig = make_node(harness, max_linear_speed_mps=0.5), Rig(harness)
    armed_moving(node, rig)
    # 0.5 action * 0.01 m / 0.05 s = 0.1 m/s before the change
    assert wait_for(lambda: abs(node.tick_log[-1].linear[0] - 0.1) < 1e-9, 3.0)
    client = harness.node("param_client")

    def set_param(name, value):
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return call_service(harness, client, SetParameters, "/command_node/set_parameters", req).results[0]
    r = set_param("max_linear_speed_mps", 0.04)            # an operator slows the arm down
    assert r.successful, r.reason
    assert wait_for(lambda: (rig.chunk(), abs(node.tick_log[-1].linear[0] - 0.04) < 1e-9)[1], 5.0, period=0.1), \
        node.tick_log[-1]
    r = set_param("max_linear_speed_mps", -0.15)           # would invert every step
    assert not r.successful and "max_linear_speed_mps" in r.reason
    r = set_param("backend", "joint_trajectory")           # read at configure only
    assert not r.successful and "configure" in r.reason
    assert node.get_parameter("max_linear_speed_mps").value == 0.04
    assert node.get_parameter("backend").value == "servo"
    for _ in range(5):
        rig.chunk()
        time.sleep(PERIOD)
    assert abs(node.tick_log[-1].linear[0] - 0.04) < 1e-9


def test_exception_in_configure_leaves_nothing_running_and_reconfigure_is_clean(harness):
    calls = {"n": 0}

    def failing_factory(name, config_dict=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("Unable to construct robot model")   # what MoveItCpp throws
        from test_command_node_backends import FakeMoveItPy
        return FakeMoveItPy(name)
    node = harness.add(CommandNode(context=harness.context, moveit_factory=failing_factory, parameter_overrides=[
        Parameter("backend", value="moveit_py"), Parameter("control_rate_hz", value=RATE),
        Parameter("image_topic", value="")]))
    subs0, timers0 = len(list(node.subscriptions)), len(list(node.timers))
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "unconfigured"
    assert "RuntimeError: Unable to construct robot model" in node.reason, node.reason
    assert (len(list(node.subscriptions)), len(list(node.timers))) == (subs0, timers0)
    assert node._loop is None
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "inactive", node.reason
    assert len(list(node.subscriptions)) == subs0 + 3      # chunk, pose, joints: no duplicates


def test_autostart_is_off_for_ros2_run():
    rclpy.init()
    try:
        node = CommandNode()
        assert node.get_parameter("autostart").value is False
        node.destroy_node()
    finally:
        rclpy.shutdown()


COMMAND_NODE_PROCESS = """
import sys
from lara_policy.ros.command_node import main
main(["command_node", "--ros-args"] + sys.argv[1:])
"""


def test_autostart_with_bad_limits_does_not_crash_and_ctrl_c_works_unconfigured():
    proc = spawn_python(COMMAND_NODE_PROCESS, "-p", "autostart:=true", "-p", "max_linear_speed_mps:=-0.15",
                        "-p", "servo_activation:=none")
    out = OutputReader(proc)
    try:
        assert wait_for(lambda: "not armed" in out.text(), 30.0, period=0.1), out.text()
        assert "max_linear_speed" in out.text()
        time.sleep(0.5)
        assert proc.poll() is None, out.text()           # alive, waiting for a fixed config
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)                   # unconfigured: no timer wakes the executor
        proc.wait(timeout=5.0)
        print(f"SIGINT while unconfigured: exit {proc.returncode} after {time.monotonic() - t:.2f} s")
        assert proc.returncode == 0, out.text()
        assert "Traceback" not in out.text(), out.text()
    finally:
        kill(proc, 9)


COMMAND_NODE_SIGINT_IGNORED = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)     # as a background job of a non-interactive shell
from lara_policy.ros.command_node import main
main(["command_node", "--ros-args"] + sys.argv[1:])
"""


def test_ctrl_c_works_when_started_with_sigint_ignored():
    """A script's `ros2 run ... &` (or nohup from a non-interactive shell) starts the node with
    SIGINT ignored; `ros2 launch` and an operator stop it with SIGINT: it must still stop."""
    proc = spawn_python(COMMAND_NODE_SIGINT_IGNORED, "-p", "servo_activation:=none")
    out = OutputReader(proc)
    try:
        assert wait_for(lambda: "waiting for lifecycle transitions" in out.text(), 30.0, period=0.1), out.text()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10.0)
        assert proc.returncode == 0, out.text()
    finally:
        kill(proc, 9)
