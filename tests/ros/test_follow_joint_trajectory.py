"""command_node's follow_joint_trajectory backend against a FAKE joint_trajectory_controller
process (tests/ros/fake_fjt.py) on a TEST-ONLY mirror of control_msgs' FollowJointTrajectory
(tests/ros/interfaces/control_msgs). Three processes, real DDS actions. A real ros2_control
controller was never driven here."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.srv import ChangeState  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lara_msgs.msg import ActionChunk, SafetyStatus  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, kill, wait_for  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent
RATE = 20.0
PERIOD = 1.0 / RATE
ACTIVATE, DEACTIVATE = 3, 4


def test_follow_joint_trajectory_goals_cancel_on_estop_and_refusals_fault(harness, tmp_path):
    env = servo_interfaces.env(servo_interfaces.build())
    env["FAKE_FJT_EXEC_S"] = "2.0"     # each goal runs until preempted by the next (or cancelled)
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    autostart: true\n    backend: follow_joint_trajectory\n"
        "    action_space: joint_position\n    joint_names: [j1, j2]\n    max_joint_step_rad: 0.05\n"
        f"    control_rate_hz: {RATE}\n    image_topic: ''\n    servo_wait_s: 20.0\n    max_chunk_age_s: 1.0\n"
        "    max_joint_state_age_s: 1.0\n")
    rig = harness.node("fjt_rig")
    log: dict = {}
    status: list[tuple[float, str, str, float]] = []     # (arrival, state, reason, node stamp)
    rig.create_subscription(String, "/fake_fjt/log", lambda m: log.update(json.loads(m.data)), 10)
    rig.create_subscription(SafetyStatus, "/lara/safety_status", lambda m: status.append(
        (time.time(), m.state, m.reason, m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)), 100)
    mode = rig.create_publisher(String, "/fake_fjt/mode", 10)
    js = rig.create_publisher(JointState, "/joint_states", 10)
    chunks = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    estop, reset = rig.create_client(Trigger, "/lara/estop"), rig.create_client(Trigger, "/lara/estop_reset")
    lifecycle = rig.create_client(ChangeState, "/command_node/change_state")
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            js.publish(JointState(name=["j1", "j2"], position=[0.1, -0.2]))
            t = rig.get_clock().now().nanoseconds * 1e-9
            chunks.publish(chunk_to_msg(np.tile(np.array([[0.3, -0.22]], np.float32), (30, 1)), t, PERIOD,
                                        "joint_position", "reach", "test-model"))
            stop.wait(0.1)

    def call(client, req):
        assert client.wait_for_service(timeout_sec=10.0)
        t = time.time()
        fut = client.call_async(req)
        assert wait_for(fut.done, 10.0, period=0.001)
        return fut.result(), t, time.time()

    def rearm(new_mode: str):
        mode.publish(String(data=new_mode))
        assert call(reset, Trigger.Request())[0].success
        for tid in (DEACTIVATE, ACTIVATE):
            req = ChangeState.Request()
            req.transition.id = tid
            call(lifecycle, req)

    fake = subprocess.Popen([sys.executable, str(HERE / "fake_fjt.py"), "j1", "j2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cmd = subprocess.Popen([sys.executable, "-m", "lara_policy.ros.command_node", "--ros-args", "--params-file",
                            str(params)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputReader(cmd)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        # ---- goals: one point after one period, stamp 0, step-limited; preemption by our own next goal is no fault
        assert wait_for(lambda: log.get("n_accepted", 0) >= 20, 60.0, period=0.05), (out.text(), log)
        assert log["nonzero_stamps"] == 0 and log["bad_points"] == 0
        assert log["tfs_ns"] == int(PERIOD * 1e9)
        assert np.allclose(log["last"], [0.15, -0.22]), log["last"]        # j1 0.1 -> 0.3 clipped to 0.05/step
        assert log["preempted"] >= 10
        t_ok = time.time()
        time.sleep(0.3)
        assert not [s for s in status if s[0] > t_ok and s[1] != "armed"], status[-3:]

        # ---- e-stop: latched within 3 periods; the last goal the controller accepted (also one still
        # in flight at the e-stop) is cancelled, so the controller holds; no goal after that cancel
        resp, t_req, t_resp = call(estop, Trigger.Request())
        assert resp.success, resp.message
        # latched within 3 periods, judged on command_node's own SafetyStatus stamp: when this test
        # process gets the answer depends on how busy the machine is (a CI runner took 0.25 s once)
        assert wait_for(lambda: [x for x in status if x[1] == "estop"], 5.0, period=0.005), status[-3:]
        t_latched = min(x[3] for x in status if x[1] == "estop")
        assert t_latched - t_req <= 3 * PERIOD, (t_latched - t_req, t_resp - t_req)

        def last_goal_cancelled():
            accepted = [g[0] for g in log.get("goals", []) if g[1]]
            cancels = [c for c in log.get("cancels", []) if c >= t_req]
            return bool(cancels) and max(cancels) >= max(accepted)
        assert wait_for(last_goal_cancelled, 3.0, period=0.005), log
        t_last_cancel = max(c for c in log["cancels"] if c >= t_req)
        time.sleep(0.5)                          # a window in which a node still sending at 20 Hz sends 10 goals
        after = [g for g in log["goals"] if g[0] > t_last_cancel]
        in_flight = [g for g in log["goals"] if g[0] > t_req]
        print(f"e-stop latched {(t_latched - t_req) * 1e3:.1f} ms after the request (node's stamp), answer "
              f"received after {(t_resp - t_req) * 1e3:.1f} ms; first cancel at the controller after "
              f"{(min(c for c in log['cancels'] if c >= t_req) - t_req) * 1e3:.1f} ms; goals arriving after the "
              f"e-stop request (in flight): {len(in_flight)}, cancelled on acceptance; after the last cancel: "
              f"{len(after)}")
        assert not after, after

        # ---- a rejected goal (inactive controller, wrong joints) faults with the reason
        rearm("reject")
        assert wait_for(lambda: [s for s in status if s[1] == "fault" and "rejected" in s[2]], 10.0), status[-3:]
        reason = [s for s in status if s[1] == "fault" and "rejected" in s[2]][0][2]
        assert "FollowJointTrajectory goal rejected by /arm_controller/follow_joint_trajectory" in reason, reason

        # ---- our newest goal aborted (path tolerance) faults with the error code and the server's text
        rearm("abort")
        assert wait_for(lambda: [s for s in status if "PATH_TOLERANCE_VIOLATED" in s[2]], 10.0), status[-3:]
        reason = [s for s in status if "PATH_TOLERANCE_VIOLATED" in s[2]][0][2]
        assert "aborted by /arm_controller/follow_joint_trajectory: PATH_TOLERANCE_VIOLATED (-4) j1 path" in reason
    finally:
        stop.set()
        kill(cmd, signal.SIGINT)
        kill(fake, signal.SIGKILL)


def test_follow_joint_trajectory_refused_cleanly_where_control_msgs_is_missing(tmp_path):
    try:
        import control_msgs.action  # noqa: F401
        pytest.skip("control_msgs is importable in this process")
    except ImportError:
        pass
    from lara_policy.ros.backends import BackendError, FollowJointTrajectoryBackend
    with pytest.raises(BackendError, match="needs control_msgs"):
        FollowJointTrajectoryBackend(None, "", PERIOD, "/x", ["j1"])


def test_humble_preemption_ends_canceled_and_is_no_fault(harness, tmp_path):
    """Humble's JTC ends a goal preempted by our next goal CANCELED (not ABORTED as on Jazzy+):
    at 20 goals/s every goal but the newest is preempted; none of that may fault."""
    env = servo_interfaces.env(servo_interfaces.build())
    env.update(FAKE_FJT_EXEC_S="2.0", FAKE_FJT_DISTRO="humble")
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    autostart: true\n    backend: follow_joint_trajectory\n"
        "    action_space: joint_position\n    joint_names: [j1, j2]\n"
        f"    control_rate_hz: {RATE}\n    image_topic: ''\n    servo_wait_s: 20.0\n    max_chunk_age_s: 1.0\n"
        "    max_joint_state_age_s: 1.0\n")
    rig = harness.node("fjt_humble_rig")
    log: dict = {}
    status: list[tuple[str, str]] = []
    rig.create_subscription(String, "/fake_fjt/log", lambda m: log.update(json.loads(m.data)), 10)
    rig.create_subscription(SafetyStatus, "/lara/safety_status", lambda m: status.append((m.state, m.reason)), 100)
    js = rig.create_publisher(JointState, "/joint_states", 10)
    chunks = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            js.publish(JointState(name=["j1", "j2"], position=[0.1, -0.2]))
            t = rig.get_clock().now().nanoseconds * 1e-9
            chunks.publish(chunk_to_msg(np.tile(np.array([[0.3, -0.22]], np.float32), (30, 1)), t, PERIOD,
                                        "joint_position", "reach", "test-model"))
            stop.wait(0.1)
    fake = subprocess.Popen([sys.executable, str(HERE / "fake_fjt.py"), "j1", "j2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cmd = subprocess.Popen([sys.executable, "-m", "lara_policy.ros.command_node", "--ros-args", "--params-file",
                            str(params)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputReader(cmd)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert wait_for(lambda: log.get("preempted", 0) >= 10, 60.0, period=0.05), (out.text(), log)
        time.sleep(0.5)
        assert status and status[-1][0] == "armed", status[-3:]
        bad = [s for s in status if "FollowJointTrajectory" in s[1]]
        assert not bad, bad[:3]
    finally:
        stop.set()
        kill(cmd, signal.SIGINT)
        kill(fake, signal.SIGKILL)
