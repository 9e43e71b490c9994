"""command_node camera QoS (reviews/ros.md §3.2): `image_qos_reliability: auto` matches the camera
publisher's reliability (policy_node's implementation, imported), so a driver with sensor-data
QoS (BEST_EFFORT) is watched instead of leaving the arm in "stale observation" forever; a
RELIABLE subscription that can never match says so in the fault reason. Real rclpy over DDS."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lara_msgs.msg import ActionChunk  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg, rgb_to_image_msg  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402

pytestmark = pytest.mark.ros


def camera(h, reliability):
    n = h.node("fake_driver")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliability)   # sensor-data style
    pub = n.create_publisher(Image, "/camera/image_raw", qos)
    img = rgb_to_image_msg(np.zeros((8, 8, 3), np.uint8), 0.0)

    def frame():
        img.header.stamp = n.get_clock().now().to_msg()
        pub.publish(img)
    n.create_timer(1.0 / 30.0, frame)
    chunks = n.create_publisher(ActionChunk, "/lara/action_chunk", 10)

    def chunk():
        t = n.get_clock().now().nanoseconds * 1e-9
        chunks.publish(chunk_to_msg(np.tile(np.array([[0.5, 0.0, 0.0, 0.0]], np.float32), (40, 1)), t, 0.05,
                                    "ee_delta_xyz_gripper"))
    return chunk


def node(h, **params):
    base = {"control_rate_hz": 20.0, "servo_activation": "none"}
    base.update(params)
    return h.add(CommandNode(context=h.context, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


def _arm(n):
    n.trigger_configure()
    assert n._state_machine.current_state[1] == "inactive", n.reason
    n.trigger_activate()
    assert n._state_machine.current_state[1] == "active", n.reason


@pytest.mark.parametrize("offered,chosen", [(ReliabilityPolicy.BEST_EFFORT, "best_effort"),
                                            (ReliabilityPolicy.RELIABLE, "reliable")], ids=["best_effort", "reliable"])
def test_auto_matches_the_camera_publisher_and_the_arm_moves(harness, offered, chosen):
    chunk = camera(harness, offered)
    n = node(harness, image_qos_reliability="auto")
    _arm(n)
    assert n.image_reliability == chosen
    assert wait_for(lambda: (chunk(), n.tick_log and n.tick_log[-1].moving)[1], 10.0, period=0.1), n.reason
    assert n._last_image_arrival is not None


def test_reliable_subscription_to_a_best_effort_camera_says_why_nothing_arrives(harness):
    chunk = camera(harness, ReliabilityPolicy.BEST_EFFORT)
    n = node(harness, image_qos_reliability="reliable")
    _arm(n)
    assert wait_for(lambda: (chunk(), "offer BEST_EFFORT and this subscription is RELIABLE" in n.reason)[1], 10.0,
                    period=0.1), n.reason
    assert n.state == "fault" and "stale observation: no image received" in n.reason
    assert not any(r.moving for r in n.tick_log)


def test_default_keeps_image_qos_reliable_and_bad_values_are_refused(harness):
    n = node(harness, image_qos_reliable=False)
    _arm(n)
    assert n.image_reliability == "best_effort"
    n2 = CommandNode("command_node_2", context=harness.context,
                     parameter_overrides=[Parameter("image_qos_reliability", value="sometimes"),
                                          Parameter("estop_service", value="/x/estop"),
                                          Parameter("estop_reset_service", value="/x/estop_reset")])
    harness.add(n2)
    n2.trigger_configure()
    assert n2._state_machine.current_state[1] == "unconfigured"
    assert "image_qos_reliability must be reliable, best_effort, auto" in n2.reason, n2.reason
