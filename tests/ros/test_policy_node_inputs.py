"""policy_node input handling found wrong by the black-box test (reviews/blackbox.md F2, F5):
observations stamped in the future are refused with a clear (throttled) warning, and joint
states from separate drivers on one topic are merged by joint name. Real DDS; both failed on
5b2bafb."""
from __future__ import annotations

import time

import pytest
from builtin_interfaces.msg import Time

from graph_helpers import GoalSeekingTestPolicy
from helpers_runtime import wait_for
from test_policy_node import Feeder, _policy_node

pytestmark = pytest.mark.ros


class OffsetFeeder(Feeder):
    """Feeder whose stamps are `offset` seconds ahead of its clock (a camera/robot host whose
    clock runs ahead), and whose gripper comes from a separate JointState message at 10 Hz."""

    def __init__(self, rclpy, offset=0.0, split_gripper=False):
        self.offset, self.split_gripper, self._n = offset, split_gripper, 0
        super().__init__(rclpy)

    def publish(self):
        Image, PoseStamped, PointStamped, JointState = self._types
        t = self.node.get_clock().now().nanoseconds * 1e-9 + self.offset
        stamp = Time(sec=int(t), nanosec=int((t % 1) * 1e9))
        orig = self.node.get_clock

        class _C:   # the base class stamps with get_clock().now().to_msg(): shift it
            def now(self_inner):
                return type("N", (), {"to_msg": lambda s: stamp, "nanoseconds": int(t * 1e9)})()
        self.node.get_clock = lambda: _C()
        js_pub = self._js.publish
        if self.split_gripper:
            self._js.publish = lambda m: None
        try:
            super().publish()
        finally:
            self.node.get_clock = orig
            self._js.publish = js_pub
        if self.split_gripper:
            arm = JointState(name=["right_j0", "right_j1"], position=[0.0, 0.1])
            arm.header.stamp = stamp
            self._js.publish(arm)                      # arm broadcaster, 30 Hz
            self._n += 1
            if self._n % 3 == 0:                       # separate gripper driver, 10 Hz
                grip = JointState(name=["gripper"], position=[1.0])
                grip.header.stamp = stamp
                self._js.publish(grip)


@pytest.mark.parametrize("offset", [20.0, 0.5])
def test_future_stamped_observations_refused_with_clear_warning(ros, spinner, capfd, offset):
    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy)
    feeder = OffsetFeeder(ros, offset=offset)
    spinner(node, feeder.node)
    assert wait_for(lambda: node.rejections.get("future_image", 0) >= 10, 10.0), dict(node.rejections)
    time.sleep(0.3)
    assert feeder.chunks == [] and node.chunks_published == 0 and policy.calls == 0
    err = capfd.readouterr().err
    assert "in the future" in err and "clock" in err, err[-2000:]
    assert err.count("in the future") <= 3, "the warning must be throttled"
    feeder.offset = 0.0                                # clocks agree again: chunks resume
    assert wait_for(lambda: len(feeder.chunks) >= 1, 10.0), dict(node.rejections)


def test_joint_states_from_separate_drivers_are_merged_by_name(ros, spinner):
    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy)
    feeder = OffsetFeeder(ros, split_gripper=True)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 1, 15.0), (dict(node.rejections), node.last_rejection)
    missing = node.rejections.get("missing_state:gripper", 0)    # before the gripper's first message
    n = len(feeder.chunks)
    assert wait_for(lambda: len(feeder.chunks) >= n + 3, 15.0), (dict(node.rejections), node.last_rejection)
    # once both drivers have spoken, an arm-only message never erases the gripper
    assert node.rejections.get("missing_state:gripper", 0) == missing, dict(node.rejections)
