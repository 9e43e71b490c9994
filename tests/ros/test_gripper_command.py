"""command_node's gripper action outputs (gripper_interface gripper_command and
parallel_gripper_command) against FAKE gripper servers (tests/ros/fake_gripper.py: the goal
handling of gripper_action_controller, parallel_gripper_action_controller and franka_gripper)
built on a TEST-ONLY mirror of control_msgs (tests/ros/interfaces/control_msgs, the upstream
GripperCommand and ParallelGripperCommand definitions). Real DDS actions between three
processes. A real gripper driver was never driven here."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, kill, wait_for  # noqa: E402
from test_command_node import Rig  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent
OPEN, CLOSE = -1.0, 1.0


class Gripper:
    """The fake gripper process, its goal log and its mode topic."""

    def __init__(self, rig: Rig, env: dict, flavour: str, node: str = ""):
        self.goals: list[dict] = []
        rig.n.create_subscription(String, "/fake_gripper/goals",
                                  lambda m: self.goals.__setitem__(slice(None), json.loads(m.data)), 10)
        self.mode_pub = rig.n.create_publisher(String, "/fake_gripper/mode", 10)
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fake_gripper.py"), flavour] + ([node] if node else []),
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def mode(self, text: str) -> None:
        self.mode_pub.publish(String(data=text))
        time.sleep(0.3)


def profile_gripper(name: str) -> list[str]:
    """The gripper parameters of a shipped robot profile (lara_bringup/config/<name>.yaml) as -p args."""
    import os

    from lara_bringup import config_dir
    from lara_policy.ros.params import load_params_yaml, node_params
    cmd = node_params(load_params_yaml(os.path.join(config_dir(), f"{name}.yaml")), "command_node")
    return [f"{k}:={cmd[k]}" for k in ("gripper_interface", "gripper_action", "gripper_joint", "gripper_open_position",
                                       "gripper_closed_position", "gripper_max_effort") if k in cmd]


def command_node(env: dict, *params: str) -> tuple[subprocess.Popen, OutputReader]:
    args = [sys.executable, "-m", "lara_policy.ros.command_node", "--ros-args", "-p", "autostart:=true",
            "-p", "servo_activation:=none", "-p", "control_rate_hz:=20.0", "-p", "blend_steps:=0"]
    for p in params:
        args += ["-p", p]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, OutputReader(proc)


def hold(rig: Rig, value: float, pred, timeout: float) -> bool:
    """Feed chunks commanding gripper `value` until pred() or timeout."""
    return wait_for(lambda: (rig.chunk(action=(0.1, 0.0, 0.0, value)), pred())[1], timeout, period=0.1)


def test_gripper_goals_sent_on_change_in_driver_units(harness):
    env = servo_interfaces.env(servo_interfaces.build())
    rig = Rig(harness)
    grip = Gripper(rig, env, "gripper_command")
    cmd, out = command_node(env, "gripper_interface:=gripper_command", "gripper_open_position:=0.085",
                            "gripper_closed_position:=0.0", "gripper_max_effort:=20.0", "blend_steps:=3")
    goals = grip.goals
    try:
        # open (-1): one goal at the open gap, with the effort limit
        assert hold(rig, OPEN, lambda: len(goals) >= 1, 40.0), out.text()
        assert goals[0]["position"] == pytest.approx(0.085) and goals[0]["max_effort"] == 20.0, goals
        t_end = time.monotonic() + 1.5              # 30 ticks of the same command: no new goal
        while time.monotonic() < t_end:
            rig.chunk(action=(0.1, 0.0, 0.0, OPEN))
            time.sleep(0.1)
        assert len(goals) == 1, goals
        # close (+1): ends with a goal at the closed position
        assert hold(rig, CLOSE, lambda: goals and goals[-1]["position"] == pytest.approx(0.0), 10.0), goals
        time.sleep(1.0)
        # the blend from -1 to +1 passes through intermediate targets: a few goals, not one per tick
        assert len(goals) <= 6, goals
        print(f"gripper: {len(goals)} goals for 2 commanded states: {[round(g['position'], 4) for g in goals]}")
    finally:
        kill(cmd, 2)
        kill(grip.proc, 9)


def test_parallel_gripper_command_resends_aborted_goals_then_faults(harness):
    """Robotiq 2F-85 on parallel_gripper_action_controller (the driver's main branch): the goal is
    a JointState with ONE position in knuckle radians (0.0 open .. 0.7929 closed), the joint name
    and a positive effort. An aborted goal is resent (gripper_max_retries); one that keeps
    aborting faults command_node; a grasp that stalls on an object is not a failure."""
    env = servo_interfaces.env(servo_interfaces.build())
    rig = Rig(harness)
    grip = Gripper(rig, env, "parallel_gripper_command", "robotiq_gripper_controller")
    params = profile_gripper("ur5e_robotiq")       # the shipped profile's values, checked against upstream
    assert "gripper_interface:=parallel_gripper_command" in params and "gripper_closed_position:=0.7929" in params
    cmd, out = command_node(env, *params, "gripper_max_retries:=2", "gripper_deadband:=0.2")
    goals = grip.goals
    closed = lambda g: g["position"] == pytest.approx(0.7929)  # noqa: E731
    try:
        assert hold(rig, OPEN, lambda: [g for g in goals if g.get("outcome") == "succeeded"], 40.0), out.text()
        g0 = goals[0]
        assert g0["position"] == pytest.approx(0.0) and g0["name"] == ["robotiq_85_left_knuckle_joint"], g0
        assert g0["effort"] == [50.0] and g0["velocity"] == [], g0
        assert not [g for g in goals if g.get("outcome") == "rejected"], goals

        # two aborts, then success: the same closed target is resent twice, no fault
        grip.mode("abort:2")
        assert hold(rig, CLOSE, lambda: [g for g in goals if closed(g) and g["outcome"] == "succeeded"], 15.0), goals
        assert [g["outcome"] for g in goals if closed(g)] == ["aborted", "aborted", "succeeded"], goals
        time.sleep(0.5)
        assert rig.status[-1].state == "armed", rig.status[-1]

        # an object: the close stalls (allow_stalling: succeeded, stalled) -> no resend, no fault
        n = len(goals)
        grip.mode("object:0.4")
        assert hold(rig, OPEN, lambda: len(goals) > n and goals[-1]["position"] == pytest.approx(0.0), 15.0), goals
        n = len(goals)
        assert hold(rig, CLOSE, lambda: len(goals) > n and closed(goals[-1]), 15.0), goals
        time.sleep(1.0)
        assert len([g for g in goals[n:] if closed(g)]) == 1, goals[n:]
        assert rig.status[-1].state == "armed", rig.status[-1]

        # keeps aborting: 1 + 2 resends, then a fault naming the gripper (zero motion)
        grip.mode("abort:99")
        n = len(goals)
        assert hold(rig, OPEN, lambda: [s for s in rig.status if s.state == "fault" and "gripper" in s.reason],
                    15.0), (goals[n:], rig.status[-2:])
        opened = lambda: [g["outcome"] for g in goals[n:] if g["position"] == pytest.approx(0.0)]  # noqa: E731
        wait_for(lambda: len(opened()) >= 3, 3.0)          # the fake's log is published at 20 Hz
        time.sleep(0.5)
        assert opened() == ["aborted"] * 3, goals[n:]
        reason = [s for s in rig.status if s.state == "fault" and "gripper" in s.reason][-1].reason
        assert reason.startswith("gripper goal aborted") and "by /robotiq_gripper_controller/gripper_cmd" in reason \
            and "after 2 resend" in reason, reason
        assert not rig.status[-1].moving

        # re-armed (deactivate + activate) with the gripper fixed: the same open target is sent again
        grip.mode("ok")
        n = len(goals)
        lifecycle = rig.n.create_client(ChangeState, "/command_node/change_state")
        assert lifecycle.wait_for_service(timeout_sec=10.0)
        for tid in (4, 3):                                   # lifecycle_msgs Transition: deactivate, activate
            fut = lifecycle.call_async(ChangeState.Request(transition=Transition(id=tid)))
            assert wait_for(fut.done, 10.0) and fut.result().success
        assert hold(rig, OPEN, lambda: [g for g in goals[n:] if g["outcome"] == "succeeded"], 15.0), goals[n:]
        assert rig.status[-1].state == "armed", rig.status[-1]
    finally:
        kill(cmd, 2)
        kill(grip.proc, 9)


def test_franka_gripper_half_width_positions_and_grasp(harness):
    """franka_gripper: target width = 2 x position, above max_width 0.08 aborts. The old shared
    default (open 0.085) therefore always aborted; the Franka profile's 0.04 / 0.0 works, and a
    grasp that stops on an object (aborted, width outside epsilon) is not resent."""
    env = servo_interfaces.env(servo_interfaces.build())
    rig = Rig(harness)
    grip = Gripper(rig, env, "franka")
    goals = grip.goals
    cmd, out = command_node(env, "gripper_interface:=gripper_command", "gripper_action:=/franka_gripper/gripper_action",
                            "gripper_open_position:=0.085", "gripper_closed_position:=0.0", "gripper_max_effort:=20.0")
    try:
        assert hold(rig, OPEN, lambda: [s for s in rig.status if s.state == "fault" and "gripper" in s.reason], 40.0), \
            (out.text(), goals)
        wait_for(lambda: len(goals) >= 3, 3.0)             # the fake's log is published at 20 Hz
        time.sleep(0.5)
        assert [g["outcome"] for g in goals] == ["aborted"] * 3, goals        # 0.085 x 2 > 0.08: out of range
    finally:
        kill(cmd, 2)
    rig.status.clear()
    goals.clear()
    time.sleep(0.5)
    params = profile_gripper("franka_fr3")         # the shipped profile's values
    assert "gripper_open_position:=0.04" in params and "gripper_max_effort:=20.0" in params, params
    cmd, out = command_node(env, *params, "gripper_deadband:=0.2")
    try:
        ok_open = lambda: [g for g in goals if g["position"] == pytest.approx(0.04) and g["outcome"] == "succeeded"]  # noqa: E731
        assert hold(rig, OPEN, ok_open, 40.0), (out.text(), goals)
        grip.mode("object:0.015")                       # a 3 cm object
        n = len(goals)
        assert hold(rig, CLOSE, lambda: len(goals) > n and goals[-1]["position"] == pytest.approx(0.0), 15.0), goals
        time.sleep(1.0)
        closes = [g for g in goals[n:] if g["position"] == pytest.approx(0.0)]
        assert [g["outcome"] for g in closes] == ["aborted"] and closes[0]["max_effort"] == 20.0, goals[n:]
        assert rig.status[-1].state == "armed", rig.status[-1]
    finally:
        kill(cmd, 2)
        kill(grip.proc, 9)


@pytest.mark.parametrize("overrides, match", [
    ({"gripper_max_effort": 0.0}, "gripper_max_effort must be > 0"),
    ({}, "needs gripper_open_position"),
    ({"gripper_open_position": 0.04, "gripper_closed_position": 0.04, "gripper_max_effort": 20.0}, "must differ"),
    ({"gripper_interface": "gripper_cmd"}, "gripper_interface must be one of"),
])
def test_gripper_parameters_refused_at_configure(ros, overrides, match):
    from lara_policy.ros.command_node import CommandNode
    params = {"gripper_interface": "parallel_gripper_command", "servo_activation": "none", "image_topic": "",
              "gripper_open_position": 0.0, "gripper_closed_position": 0.7929, **overrides}
    if not overrides:
        params.pop("gripper_open_position")
    node = CommandNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    try:
        node.trigger_configure()
        assert node._state_machine.current_state[1] == "unconfigured"
        assert match in node.reason, node.reason
    finally:
        node.destroy_node()
