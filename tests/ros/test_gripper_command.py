"""command_node's GripperCommand output (gripper_interface: gripper_command) against a FAKE
gripper_action_controller process (tests/ros/fake_gripper.py) built on a TEST-ONLY mirror of
control_msgs' GripperCommand (tests/ros/interfaces/control_msgs). Real DDS actions between
three processes. A real gripper driver was never driven here."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import String  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, kill, wait_for  # noqa: E402
from test_command_node import Rig  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent


def test_gripper_goals_sent_on_change_in_driver_units(harness):
    env = servo_interfaces.env(servo_interfaces.build())
    goals = []
    rig = Rig(harness)
    rig.n.create_subscription(String, "/fake_gripper/goals", lambda m: goals.__setitem__(slice(None), json.loads(m.data)), 10)
    grip = subprocess.Popen([sys.executable, str(HERE / "fake_gripper.py")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    cmd = subprocess.Popen([sys.executable, "-m", "lara_policy.ros.command_node", "--ros-args",
                            "-p", "autostart:=true", "-p", "servo_activation:=none", "-p", "control_rate_hz:=20.0",
                            "-p", "gripper_interface:=gripper_command", "-p", "gripper_open_position:=0.085",
                            "-p", "gripper_closed_position:=0.0", "-p", "gripper_max_effort:=20.0"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputReader(cmd)
    try:
        # open (-1): one goal at the open gap, with the effort limit
        assert wait_for(lambda: (rig.chunk(action=(0.1, 0.0, 0.0, -1.0)), len(goals) >= 1)[1], 40.0, period=0.1), \
            out.text()
        assert goals[0] == {"position": pytest.approx(0.085), "max_effort": 20.0}
        t_end = time.monotonic() + 1.5              # 30 ticks of the same command: no new goal
        while time.monotonic() < t_end:
            rig.chunk(action=(0.1, 0.0, 0.0, -1.0))
            time.sleep(0.1)
        assert len(goals) == 1, goals
        # close (+1): one goal at the closed position
        assert wait_for(lambda: (rig.chunk(action=(0.1, 0.0, 0.0, 1.0)), len(goals) >= 2)[1], 10.0, period=0.1)
        time.sleep(1.0)
        # the blend from -1 to +1 passes through intermediate targets: a few goals, not one per tick
        assert goals[-1]["position"] == pytest.approx(0.0) and len(goals) <= 6, goals
        assert not any(float("nan") == g["position"] for g in goals)
        print(f"gripper: {len(goals)} goals for 2 commanded states: {[round(g['position'], 4) for g in goals]}")
    finally:
        kill(cmd, 2)
        kill(grip, 9)
