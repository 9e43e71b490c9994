"""command_node's Servo backend against a FAKE MoveIt Servo (tests/ros/fake_servo.py) that has
the upstream node name, service names/types, status topic and twist acceptance rules, built on
a TEST-ONLY mirror of moveit_msgs (ServoStatus, ServoCommandType; tests/ros/interfaces).
Three processes over real DDS: the fake Servo, command_node (`python -m ...command_node`, as
`ros2 run` starts it) and this test (camera, chunks, e-stop, observers).

What this proves: the fake refuses twists until activated, command_node activates it the way
the distribution needs (Jazzy+: switch_command_type TWIST; Humble: start_servo), Servo's halt
status becomes a command_node fault with the reason (and clears), and the e-stop pauses Servo.
What it does not: a real MoveIt Servo (not installable here) was never driven."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import Int8, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, call_service, kill, wait_for  # noqa: E402
from test_command_node import Rig  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def servo_env():
    return servo_interfaces.env(servo_interfaces.build())


def _spawn(args, env):
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("distro", ["jazzy", "humble"])
def test_command_node_activates_fake_servo_faults_on_halt_and_pauses_on_estop(harness, servo_env, distro):
    state = {}
    rig = Rig(harness)
    rig.n.create_subscription(String, "/fake_servo/state", lambda m: state.update(json.loads(m.data)), 10)
    set_status = rig.n.create_publisher(Int8, "/fake_servo/set_status", 10)
    twist_pub = rig.n.create_publisher(TwistStamped, "/servo_node/delta_twist_cmds", 10)
    servo = _spawn([str(HERE / "fake_servo.py"), distro], servo_env)
    servo_out = OutputReader(servo)
    cmd = None
    try:
        assert wait_for(lambda: state.get("distro") == distro, 30.0, period=0.1), servo_out.text()
        # like the real one, the fake drops twists until it is activated
        assert wait_for(lambda: (twist_pub.publish(TwistStamped()), state["refused"] > 0)[1], 10.0, period=0.1)
        assert state["accepted"] == 0
        cmd = _spawn(["-m", "lara_policy.ros.command_node", "--ros-args", "-p", "autostart:=true",
                      "-p", "control_rate_hz:=20.0", "-p", "servo_activation:=auto",
                      "-p", "max_chunk_age_s:=1.0", "-p", "frame_id:=base_link"], servo_env)
        cmd_out = OutputReader(cmd)
        # 0.5 * ee_delta_scale_m 0.01 / period 0.05 = 0.1 m/s reaches Servo, accepted
        assert wait_for(lambda: (rig.chunk(), state["accepted"] > 0 and state["last_x"] == pytest.approx(0.1))[1],
                        30.0, period=0.1), (state, cmd_out.text())
        expected_call = "switch_command_type:1" if distro == "jazzy" else "start_servo"
        assert expected_call in state["calls"], state["calls"]
        if distro == "jazzy":
            assert state["command_type"] == 1
        # Servo halts (collision): command_node faults with Servo's reason and commands zero
        set_status.publish(Int8(data=5 if distro == "jazzy" else 4))
        assert wait_for(lambda: (rig.chunk(), any(s.state == "fault" and "HALT_FOR_COLLISION" in s.reason
                                                  for s in rig.status[-5:]))[1], 10.0, period=0.1), \
            ([s.reason for s in rig.status[-5:]], cmd_out.text())
        assert wait_for(lambda: (rig.chunk(), state["last_x"] == 0.0)[1], 5.0, period=0.1), state
        # halt over: motion resumes by itself
        set_status.publish(Int8(data=0))
        assert wait_for(lambda: (rig.chunk(), state["last_x"] == pytest.approx(0.1))[1], 10.0, period=0.1), state
        # e-stop: zero twist and Servo paused (no other twist source can move the arm)
        assert call_service(harness, rig.n, Trigger, "/lara/estop", Trigger.Request()).success
        assert wait_for(lambda: state["paused"] is True, 10.0, period=0.1), (state, cmd_out.text())
        # the zero twist (topic) and the pause (service) travel separately: Servo either executed
        # the zero before pausing, or it arrived after the pause and was dropped (a paused Servo
        # moves nothing). Either way, from the pause on, no twist is executed, chunks or not.
        assert wait_for(lambda: state["last_x"] == 0.0 or state["while_paused"] > 0, 5.0, period=0.1), state
        accepted = state["accepted"]
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            rig.chunk()
            time.sleep(0.05)
        assert state["paused"] is True and state["accepted"] == accepted, state
        assert "pause_servo:True" in state["calls"] if distro == "jazzy" else "pause_servo" in state["calls"]
        print(f"{distro}: Servo calls {state['calls']}, accepted {state['accepted']} twists, "
              f"refused {state['refused']} before activation")
    finally:
        kill(cmd, 2)
        kill(servo, 9)


def test_arming_without_servo_is_refused_with_the_reason(harness, servo_env):
    cmd = _spawn(["-m", "lara_policy.ros.command_node", "--ros-args", "-p", "autostart:=true",
                  "-p", "servo_wait_s:=1.0", "-p", "servo_node:=/no_such_servo"], servo_env)
    out = OutputReader(cmd)
    try:
        assert wait_for(lambda: "activate refused" in out.text(), 30.0, period=0.1), out.text()
        assert "/no_such_servo/switch_command_type" in out.text() and "/no_such_servo/start_servo" in out.text()
        assert cmd.poll() is None
    finally:
        kill(cmd, 2)


def test_destroying_a_configured_command_node_joins_the_servo_client_thread(harness):
    """The root cause of the rare abort at `lara bringup` exit on a real-arm profile (1 in ~10-30
    runs): a command_node destroyed while configured (bringup disarms, never cleans up) kept the
    Servo backend's client executor spinning on a daemon thread; woken by rclpy.shutdown() during
    the interpreter's teardown, CPython ended it with pthread_exit, whose unwind through pybind11's
    frame called std::terminate (a core dump showed that thread, servo.py `_spin`). Destroying the
    node must close the backend and join that thread."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from lara_policy.ros.command_node import CommandNode

    n = CommandNode("command_node_destroyed", context=harness.context, parameter_overrides=[
        Parameter("servo_activation", value="auto"), Parameter("servo_node", value="/no_such_servo"),
        Parameter("estop_service", value="/destroyed/estop"),
        Parameter("estop_reset_service", value="/destroyed/estop_reset")])
    try:
        assert n.trigger_configure() == TransitionCallbackReturn.SUCCESS, n.reason
        spin = n.backend._spin_thread
        assert spin is not None and spin.is_alive()
    finally:
        n.destroy_node()
    assert not spin.is_alive(), "the Servo client's spin thread outlived its command_node"
