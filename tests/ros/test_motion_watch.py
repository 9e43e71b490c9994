"""command_node faults when the arm does not follow the twists it sends to MoveIt Servo (wrong
controller active, twists stale at Servo) and when the arm's clock is off this node's clock (Servo
judges twist stamps on its own clock). In-process command_node, real DDS: the test publishes
the arm's /joint_states (static = not following, moving = following) with stamps on its clock,
shifted to play a skewed host or a use_sim_time mismatch."""
from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from sensor_msgs.msg import JointState  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402
from test_command_node import Rig, make_node  # noqa: E402

pytestmark = pytest.mark.ros
JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint"]


class Arm:
    """Publishes /joint_states at 50 Hz: `speed` rad/s on every joint (0 = standing still),
    stamped with the publisher's clock + `offset_s`."""

    def __init__(self, rig: Rig):
        self.pub = rig.n.create_publisher(JointState, "/joint_states", 10)
        self.n, self.speed, self.offset_s, self.q = rig.n, 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.q += self.speed * 0.02
            msg = JointState(name=JOINTS, position=[self.q] * len(JOINTS))
            t = self.n.get_clock().now().nanoseconds + int(self.offset_s * 1e9)
            msg.header.stamp.sec, msg.header.stamp.nanosec = t // 1_000_000_000, t % 1_000_000_000
            self.pub.publish(msg)
            self._stop.wait(0.02)

    def close(self):
        self._stop.set()
        self._t.join(timeout=2.0)


def _run(rig, node, pred, timeout):
    return wait_for(lambda: (rig.chunk(action=(0.5, 0.0, 0.0, 0.0)), pred())[1], timeout, period=0.1)


def test_arm_not_following_twists_faults_latched_until_rearm(harness):
    rig = Rig(harness)
    arm = Arm(rig)
    node = make_node(harness, max_not_following_s=0.6, joint_names=JOINTS, image_topic="")
    try:
        node.trigger_configure()
        node.trigger_activate()
        # the arm follows: 2.5 s of motion, no fault
        arm.speed = 0.05
        assert _run(rig, node, lambda: node.tick_log and node.tick_log[-1].moving, 15.0), node.reason
        t0 = time.monotonic()
        _run(rig, node, lambda: time.monotonic() - t0 > 2.5, 5.0)
        assert not [r for r in node.tick_log if "not following" in r.reason]
        assert node.state == "armed", node.reason
        # the arm stands still (Servo writes to an inactive controller): fault within ~the window
        arm.speed = 0.0
        t_stop = node.now()
        assert _run(rig, node, lambda: "arm not following" in node.reason, 10.0), node.reason
        t_fault = min(r.t for r in node.tick_log if "arm not following" in r.reason)
        assert t_fault - t_stop <= 0.6 + 0.6 + 1.0, t_fault - t_stop     # <= 2 windows + slack (node clock)
        assert "joints moved at most" in node.reason and "forward_position_controller" in node.reason
        assert not node.tick_log[-1].moving and node.state == "fault"
        # latched: the arm moving again does not clear it; re-arming does
        arm.speed = 0.05
        time.sleep(1.0)
        assert "arm not following" in node.reason
        node.trigger_deactivate()
        node.trigger_activate()
        assert _run(rig, node, lambda: node.state == "armed" and node.tick_log[-1].moving, 10.0), node.reason
    finally:
        arm.close()


@pytest.mark.parametrize("offset_s, side", [(-2.0, "behind"), (+2.0, "ahead of"), (-1.7e9, "behind")],
                         ids=["host_behind", "host_ahead", "use_sim_time_mismatch"])
def test_clock_offset_faults_and_clears(harness, offset_s, side):
    rig = Rig(harness)
    arm = Arm(rig)
    arm.speed = 0.05
    node = make_node(harness, max_clock_offset_s=0.05, image_topic="")
    try:
        node.trigger_configure()
        node.trigger_activate()
        assert _run(rig, node, lambda: node.state == "armed" and node.tick_log[-1].moving, 15.0), node.reason
        arm.offset_s = offset_s
        assert _run(rig, node, lambda: "clock offset" in node.reason, 10.0), node.reason
        assert f"s {side} this node's clock" in node.reason and "chrony" in node.reason, node.reason
        assert not node.tick_log[-1].moving
        arm.offset_s = 0.0           # clocks agree again (after the 2 s estimate window)
        assert _run(rig, node, lambda: node.state == "armed" and node.tick_log[-1].moving, 10.0), node.reason
    finally:
        arm.close()
