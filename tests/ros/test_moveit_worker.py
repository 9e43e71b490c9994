"""moveit_py backend: MoveItPy runs in a worker process, so planning never blocks command_node.

command_node runs as its own process with backend moveit_py; its worker process gets a FAKE
moveit_py (tests/ros/fake_moveit, on PYTHONPATH) whose plan() blocks for seconds WITHOUT
releasing the GIL (as moveit_py's real plan() binding does) and whose execute() runs for
seconds and honours stop_execution(). Everything between the test and command_node is real DDS
(chunks, pose, gripper commands, SafetyStatus, the e-stop and lifecycle services).
No real MoveIt ran here: MoveIt 2 is not installable on these machines.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from std_msgs.msg import Float64, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lara_msgs.msg import ActionChunk, SafetyStatus  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, kill, wait_for  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_moveit"
RATE = 20.0
PERIOD = 1.0 / RATE
ACTIVATE, DEACTIVATE = 3, 4          # lifecycle_msgs/msg/Transition ids


def start_command_node(tmp_path: Path, plan_s: float, exec_s: float, fail: str = "", new_session: bool = False,
                       extra_params: str = "", extra_env: dict | None = None):
    log = tmp_path / "fake_moveit.jsonl"
    params = tmp_path / "params.yaml"
    moveit_cfg = tmp_path / "moveit_config.yaml"
    moveit_cfg.write_text("robot_description: <robot name='r'/>\nplanning_pipelines:\n  pipeline_names: [ompl]\n")
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    moveit_config_file: {moveit_cfg}\n"
        "    autostart: true\n    backend: moveit_py\n    planning_group: arm\n    pose_link: tool0\n"
        f"    control_rate_hz: {RATE}\n    image_topic: ''\n    ee_pose_source: topic\n"
        "    max_chunk_age_s: 1.0\n    max_pose_age_s: 1.0\n    status_rate_hz: 4.0\n" + extra_params)
    env = dict(extra_env or os.environ)
    env["PYTHONPATH"] = f"{FAKE}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(FAKE_MOVEIT_LOG=str(log), FAKE_MOVEIT_PLAN_S=str(plan_s), FAKE_MOVEIT_EXEC_S=str(exec_s))
    if fail:
        env["FAKE_MOVEIT_FAIL"] = fail
    proc = subprocess.Popen([sys.executable, "-m", "lara_policy.ros.command_node", "--ros-args",
                             "--params-file", str(params)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
    return proc, OutputReader(proc), log


def events(log: Path, name: str | None = None) -> list[dict]:
    if not log.exists():
        return []
    out = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in out if name is None or e["event"] == name]


class Feeder:
    """Test-side node: publishes the EE pose and a fresh chunk every 0.1 s (a policy stand-in);
    records every gripper command and SafetyStatus with its wall-clock arrival time."""

    def __init__(self, h):
        self.n = h.node("moveit_rig")
        self.pose_pub = self.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self.chunk_pub = self.n.create_publisher(ActionChunk, "/lara/action_chunk", 10)
        self.gripper: list[float] = []
        self.status: list[tuple[float, str, str, float]] = []   # (arrival, state, reason, node stamp)
        self.n.create_subscription(Float64, "/lara/gripper_command", lambda m: self.gripper.append(time.time()), 100)
        self.n.create_subscription(SafetyStatus, "/lara/safety_status",
                                   lambda m: self.status.append((time.time(), m.state, m.reason,
                                                                  m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)), 100)
        self.estop = self.n.create_client(Trigger, "/lara/estop")
        self.reset = self.n.create_client(Trigger, "/lara/estop_reset")
        self.lifecycle = self.n.create_client(ChangeState, "/command_node/change_state")
        self.chunks_on = True
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            pose = PoseStamped()
            pose.header.frame_id = "base"            # command_node's default frame_id
            pose.header.stamp = self.n.get_clock().now().to_msg()
            pose.pose.position.x, pose.pose.position.z, pose.pose.orientation.w = 0.4, 0.3, 1.0
            self.pose_pub.publish(pose)
            t = self.n.get_clock().now().nanoseconds * 1e-9
            if self.chunks_on:
                self.chunk_pub.publish(chunk_to_msg(np.tile(np.array([[0.3, 0.0, 0.0, 0.0]], np.float32), (30, 1)),
                                                    t, PERIOD, "ee_delta_xyz_gripper", "reach", "test-model"))
            self._stop.wait(0.1)

    def call(self, client, request, timeout=10.0):
        """(response, request wall time, response wall time); polls the future at 1 ms."""
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        t_req = time.time()
        fut = client.call_async(request)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.001)
        assert fut.done(), f"{client.srv_name} did not answer"
        return fut.result(), t_req, time.time()

    def first_status(self, state: str, after: float) -> tuple[float, str, str, float] | None:
        return next((s for s in list(self.status) if s[1] == state and s[0] >= after), None)

    def rearm(self):
        """e-stop reset, then lifecycle deactivate + activate (the documented re-arm)."""
        assert self.call(self.reset, Trigger.Request())[0].success
        for tid in (DEACTIVATE, ACTIVATE):
            req = ChangeState.Request()
            req.transition.id = tid
            self.call(self.lifecycle, req)

    def close(self):
        self._stop.set()
        self._t.join(timeout=2.0)


def _gaps(times: list[float], t0: float, t1: float) -> tuple[int, float]:
    win = [t for t in times if t0 <= t <= t1]
    gaps = np.diff([t0] + win + [t1])
    return len(win), float(gaps.max())


def test_planning_holding_the_gil_never_blocks_ticks_or_estop_and_estop_stops_execution(harness, tmp_path):
    plan_s, exec_s = 2.0, 3.0
    rig = Feeder(harness)
    proc, out, log = start_command_node(tmp_path, plan_s, exec_s)
    try:
        # ---- 1. e-stop while the worker "plans" (its GIL held for 2 s)
        assert wait_for(lambda: events(log, "plan_start"), 60.0, period=0.05), (out.text(), rig.status[-1:])
        plan_start = events(log, "plan_start")[0]["t"]
        while time.time() < plan_start + 0.9:
            time.sleep(0.005)
        resp, t_req, t_resp = rig.call(rig.estop, Trigger.Request())
        assert resp.success
        assert wait_for(lambda: rig.first_status("estop", t_req), 2.0, period=0.005)
        t_estop, _, _, t_latched = rig.first_status("estop", t_req)
        assert wait_for(lambda: events(log, "plan_end"), 5.0), out.text()
        plan_end = events(log, "plan_end")[0]
        time.sleep(0.5)

        # the fake really held the GIL of the process it planned in
        assert plan_end["heartbeat_max_gap_s"] >= 0.8 * plan_s, plan_end
        # command_node kept ticking at its control rate during the plan: a gripper command per tick
        n, gap = _gaps(rig.gripper, plan_start + 0.1, t_req)
        expected = (t_req - plan_start - 0.1) * RATE
        print(f"during the plan: {n} commands in {t_req - plan_start - 0.1:.2f} s (expected ~{expected:.0f}), "
              f"largest gap {gap * 1e3:.0f} ms; e-stop latched {(t_latched - t_req) * 1e3:.1f} ms after the request "
              f"(node's stamp), answer received after {(t_resp - t_req) * 1e3:.1f} ms, ESTOP status after "
              f"{(t_estop - t_req) * 1e3:.1f} ms (this process's clock)")
        # gaps are arrival times in THIS process (Float64 has no stamp), which a busy CI runner can
        # stall for ~0.3 s; a tick loop blocked by the GIL-holding plan would leave a gap of ~plan_s
        assert n >= 0.7 * expected and gap <= 0.25 * plan_s, (n, expected, gap)
        # the e-stop latched within 3 control periods although the worker was planning, judged on
        # the node's own stamp (when this test process itself gets the answer depends on how busy
        # the machine is: a shared 2-core CI runner delayed it by 0.3 s once) ...
        assert t_latched - t_req <= 3 * PERIOD, (t_latched - t_req, t_resp - t_req, t_estop - t_req)
        # ... and the answer did not wait for the plan, which held the worker's GIL until plan_end
        assert t_resp < plan_end["t"] and t_estop < plan_end["t"], (t_resp - t_req, t_estop - t_req, plan_end)
        # the MoveIt config reached MoveItPy in the worker (pickled across the spawn)
        assert events(log, "init")[0]["config_keys"] == ["planning_pipelines", "robot_description"]
        # ... and MoveItPy did not see command_node's `--params-file` (spawn copies sys.argv)
        assert events(log, "init")[0]["argv_params_files"] == [], events(log, "init")
        assert events(log, "init")[0]["node_name"] == "lara_moveit_py"
        # moveit_py was imported only in the worker process, never in command_node's
        assert {e["pid"] for e in events(log, "import")} == {events(log, "init")[0]["pid"]}
        assert proc.pid not in {e["pid"] for e in events(log, "import")}
        # zero motion: no command after the e-stop (at most the one tick in flight as it latched,
        # on another writer than the status), no goal and no execution
        assert len([t for t in rig.gripper if t > t_estop]) <= 1
        assert not [e for e in events(log, "goal") if e["t"] > t_req]
        assert not events(log, "execute_start"), "the plan finished after the e-stop was executed"
        assert [e for e in events(log, "stop_execution") if e["t"] > t_req]

        # ---- 2. e-stop while a trajectory executes: stop_execution reaches MoveIt at once
        rig.rearm()
        assert wait_for(lambda: events(log, "execute_start"), 15.0, period=0.02), out.text()
        ex = events(log, "execute_start")[0]
        assert ex["trajectory"] == "fake_trajectory" and ex["controllers"] == []
        while time.time() < ex["t"] + 0.3:
            time.sleep(0.005)
        resp, t_req2, t_resp2 = rig.call(rig.estop, Trigger.Request())
        assert resp.success
        assert wait_for(lambda: [e for e in events(log, "execute_end")], 3.0, period=0.01), out.text()
        stops = [e for e in events(log, "stop_execution") if e["t"] > t_req2 and e["executing"]]
        assert stops, events(log)
        end = events(log, "execute_end")[0]
        print(f"execution stopped {(stops[0]['t'] - t_req2) * 1e3:.1f} ms after the e-stop request")
        assert end["stopped"] and stops[0]["t"] - t_req2 <= 3 * PERIOD, (stops[0]["t"] - t_req2)
        assert end["t"] < ex["t"] + exec_s - 1.0

        # ---- 3. command_node SIGKILLed mid-execution: the worker stops the execution and exits
        rig.rearm()
        assert wait_for(lambda: len(events(log, "execute_start")) >= 2, 15.0, period=0.02), out.text()
        worker = events(log, "init")[0]["pid"]
        t_kill = time.time()
        kill(proc, signal.SIGKILL)
        assert wait_for(lambda: [e for e in events(log, "stop_execution") if e["t"] > t_kill and e["executing"]],
                        3.0, period=0.01), events(log)[-5:]
        assert wait_for(lambda: not _pid_alive(worker), 5.0), "worker outlived command_node"
    finally:
        rig.close()
        kill(proc, signal.SIGINT)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie (exited, not yet reaped by its init) is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_fault_stops_execution_worker_death_faults_and_start_failure_refuses_configure(harness, tmp_path):
    rig = Feeder(harness)
    proc, out, log = start_command_node(tmp_path, 0.1, 30.0)
    try:
        assert wait_for(lambda: events(log, "execute_start"), 60.0, period=0.05), out.text()
        # any fault is zero motion: the policy stops (stale chunk) -> the execution in flight is stopped
        t_pause = time.time()
        rig.chunks_on = False
        assert wait_for(lambda: rig.first_status("fault", t_pause), 5.0), rig.status[-3:]
        t_fault, _, why, _ = rig.first_status("fault", t_pause)
        assert why.startswith("stale chunk"), why
        assert wait_for(lambda: events(log, "execute_end"), 3.0), events(log)[-3:]
        stops = [e for e in events(log, "stop_execution") if e["executing"]]
        assert stops and events(log, "execute_end")[0]["stopped"]
        print(f"stale-chunk fault -> stop_execution after {(stops[0]['t'] - t_fault) * 1e3:.1f} ms")
        assert stops[0]["t"] - t_fault <= 3 * PERIOD
        rig.chunks_on = True
        assert wait_for(lambda: len(events(log, "execute_start")) >= 2, 15.0, period=0.05), out.text()
        worker = events(log, "init")[0]["pid"]
        t_kill = time.time()
        os.kill(worker, signal.SIGKILL)
        assert wait_for(lambda: rig.first_status("fault", t_kill), 3.0, period=0.01), rig.status[-3:]
        t_fault, _, reason, _ = rig.first_status("fault", t_kill)
        assert "moveit_py worker process died (killed by SIGKILL)" in reason, reason
        time.sleep(0.5)
        assert len([t for t in rig.gripper if t > t_fault]) <= 1, "commands after the worker died"
        assert proc.poll() is None, out.text()           # command_node itself carries on, faulted
        # re-arming cannot hide it: activate is refused with the reason
        rig.call(rig.reset, Trigger.Request())
        req = ChangeState.Request()
        req.transition.id = DEACTIVATE
        rig.call(rig.lifecycle, req)
        req.transition.id = ACTIVATE
        assert not rig.call(rig.lifecycle, req)[0].success
        assert wait_for(lambda: "activate refused: moveit_py worker process died" in out.text(), 5.0), out.text()
    finally:
        kill(proc, signal.SIGINT)
    # MoveItPy cannot be built in the worker: configure is refused with MoveIt's reason, no crash
    fail_dir = tmp_path / "fail"
    fail_dir.mkdir()
    proc, out, log = start_command_node(fail_dir, 0, 0, fail="Unable to construct robot model")
    try:
        assert wait_for(lambda: "configure refused" in out.text(), 60.0, period=0.05), out.text()
        assert ("configure refused: moveit_py worker failed to start: MoveItPy failed: RuntimeError: Unable to "
                "construct robot model (give the MoveIt config: moveit_config_file)") in out.text(), out.text()
        time.sleep(0.5)
        assert proc.poll() is None, out.text()
    finally:
        rig.close()
        kill(proc, signal.SIGINT)


def test_ctrl_c_to_the_process_group_stops_the_execution_and_ends_the_worker(harness, tmp_path):
    """A terminal's Ctrl-C reaches command_node AND its worker: the worker ignores SIGINT,
    command_node commands zero (stop) and exits, the worker stops the execution and exits."""
    rig = Feeder(harness)
    proc, out, log = start_command_node(tmp_path, 0.1, 30.0, new_session=True)
    try:
        assert wait_for(lambda: events(log, "execute_start"), 60.0, period=0.05), out.text()
        worker = events(log, "init")[0]["pid"]
        t_int = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) is not None
        assert wait_for(lambda: not _pid_alive(worker), 5.0), "worker outlived command_node"
        stops = [e for e in events(log, "stop_execution") if e["t"] > t_int and e["executing"]]
        assert stops and events(log, "execute_end")[0]["stopped"], events(log)[-4:]
        assert "shutting down: zero motion commanded" in out.text(), out.text()
    finally:
        rig.close()
        kill(proc, signal.SIGKILL)


@pytest.mark.parametrize("config, match", [
    ("", "backend moveit_py needs moveit_config_file"),
    ("robot_description: <robot name='r'/>\nplanning_pipelines: [ompl]\n", "no planning_pipelines.pipeline_names"),
])
def test_moveit_py_refuses_to_start_without_a_usable_config(ros, tmp_path, config, match):
    """No moveit_config_file: MoveItPy would read command_node's --params-file from the worker's
    argv; a dict without .moveit_cpp(file_path=...) has planning_pipelines as a list, and
    MoveItCpp throws "Failed to load planning pipelines". Both are refused at configure, before
    any worker starts."""
    from rclpy.parameter import Parameter

    from lara_policy.ros.command_node import CommandNode
    path = ""
    if config:
        path = str(tmp_path / "moveit.yaml")
        Path(path).write_text(config)
    node = CommandNode(parameter_overrides=[Parameter("backend", value="moveit_py"),
                                            Parameter("moveit_config_file", value=path),
                                            Parameter("image_topic", value="")])
    try:
        node.trigger_configure()
        assert node._state_machine.current_state[1] == "unconfigured"
        assert match in node.reason, node.reason
    finally:
        node.destroy_node()


def test_humble_execute_holding_the_gil_is_stopped_by_the_estop_at_the_controller(harness, tmp_path):
    """Humble's moveit_py execute(group, trajectory, blocking=True) keeps the GIL while the arm
    moves (no gil_scoped_release in the humble binding), so the worker cannot call
    stop_execution. The fake MoveItPy (FAKE_MOVEIT_DISTRO=humble) sends its trajectory to a fake
    JTC process and blocks in a GIL-holding C read until that controller ends the goal; the
    e-stop must still stop it within a fraction of the trajectory: command_node cancels every
    goal of moveit_controller_actions at the controller."""
    exec_s = 6.0
    env = servo_interfaces.env(servo_interfaces.build())
    fifo = tmp_path / "fjt_done"
    os.mkfifo(fifo)
    env.update(FAKE_FJT_EXEC_S=str(exec_s), FAKE_FJT_DONE_FIFO=str(fifo), FAKE_MOVEIT_DISTRO="humble",
               FAKE_MOVEIT_CONTROLLER="/arm_controller/follow_joint_trajectory", FAKE_MOVEIT_EXEC_FIFO=str(fifo),
               ROS_DISTRO="humble")
    fjt_log: dict = {}
    rig = Feeder(harness)
    rig.n.create_subscription(String, "/fake_fjt/log", lambda m: fjt_log.update(json.loads(m.data)), 10)
    fjt = subprocess.Popen([sys.executable, str(HERE / "fake_fjt.py"), "j1"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    proc, out, log = start_command_node(
        tmp_path, 0.0, exec_s, extra_env=env,
        extra_params="    moveit_controller_actions: [/arm_controller/follow_joint_trajectory]\n")
    try:
        assert wait_for(lambda: events(log, "execute_start"), 60.0, period=0.02), out.text()
        ex = events(log, "execute_start")[0]
        assert ex["humble"] and ex["group"] == "arm", ex
        assert wait_for(lambda: fjt_log.get("n_accepted", 0) >= 1, 5.0), fjt_log
        while time.time() < ex["t"] + 0.5:
            time.sleep(0.005)
        resp, t_req, t_resp = rig.call(rig.estop, Trigger.Request())
        assert resp.success
        assert wait_for(lambda: events(log, "execute_end"), exec_s, period=0.01), (out.text(), fjt_log)
        end = events(log, "execute_end")[0]
        cancels = lambda: [c for c in fjt_log.get("cancels", []) if c >= t_req]  # noqa: E731
        assert wait_for(cancels, 2.0, period=0.01), fjt_log          # the fake's log comes at 20 Hz
        cancels = cancels()
        print(f"Humble execute (GIL held {end['heartbeat_max_gap_s']:.2f} s) ended {end['t'] - t_req:.2f} s after the "
              f"e-stop request; cancel at the controller {(cancels[0] - t_req) * 1e3:.0f} ms after it")
        # the fake really held the worker's GIL for the whole execution (no stop_execution possible) ...
        assert end["heartbeat_max_gap_s"] >= 0.8 * (end["t"] - ex["t"]) - 0.1, end
        assert not [e for e in events(log, "stop_execution") if t_req <= e["t"] < end["t"] and e["executing"]]
        # ... and the e-stop ended it at the controller long before the trajectory's 6 s
        assert cancels[0] - t_req < 1.0 and end["t"] - ex["t"] < exec_s - 2.0, (cancels[0] - t_req, end)
    finally:
        rig.close()
        kill(proc, signal.SIGINT)
        kill(fjt, signal.SIGKILL)


def test_moveit_py_on_humble_refuses_to_start_without_controller_actions(ros, tmp_path, monkeypatch):
    from rclpy.parameter import Parameter

    from lara_policy.ros.command_node import CommandNode
    monkeypatch.setenv("ROS_DISTRO", "humble")
    cfg = tmp_path / "moveit.yaml"
    cfg.write_text("robot_description: <robot name='r'/>\nplanning_pipelines:\n  pipeline_names: [ompl]\n")
    node = CommandNode(parameter_overrides=[Parameter("backend", value="moveit_py"),
                                            Parameter("moveit_config_file", value=str(cfg)),
                                            Parameter("image_topic", value="")])
    try:
        node.trigger_configure()
        assert node._state_machine.current_state[1] == "unconfigured"
        assert "on Humble needs moveit_controller_actions" in node.reason, node.reason
    finally:
        node.destroy_node()
