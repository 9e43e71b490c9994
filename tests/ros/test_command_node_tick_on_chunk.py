"""tick_on_chunk (issue 24, the ROS path's tick wait): with a rate backend (servo twists) and the
control thread, a new chunk is commanded when it arrives and the control clock re-phased to it,
instead of waiting up to a period for the next tick; the ticks after it stay a period apart. Off,
a chunk waits for the next tick. Real rclpy + DDS; a slow 5 Hz loop makes the difference plain."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from lara_msgs.msg import ActionChunk  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402

pytestmark = pytest.mark.ros
PERIOD = 0.2


def _run(harness, tick_on_chunk: bool):
    node = harness.add(CommandNode(context=harness.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"control_rate_hz": 1 / PERIOD, "max_chunk_age_s": 5.0,
                                            "servo_activation": "none", "image_topic": "",
                                            "tick_on_chunk": tick_on_chunk}.items()]))
    rig = harness.node("tick_rig")
    pub = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    twists: list[tuple[float, TwistStamped]] = []
    rig.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds",
                            lambda m: twists.append((time.monotonic(), m)), 100)
    node.trigger_configure()
    node.trigger_activate()
    assert node._state_machine.current_state[1] == "active", node.reason
    waits, sent = [], []
    for k in range(6):
        time.sleep(0.13 + 0.05 * k)          # chunks at varied phases of the 200 ms clock
        n0 = len(twists)
        t = rig.get_clock().now().nanoseconds * 1e-9
        sent.append(time.monotonic())
        pub.publish(chunk_to_msg(np.tile([0.5, 0, 0, 0], (40, 1)).astype(np.float32), t, PERIOD,
                                 "ee_delta_xyz_gripper", "go", "tick-test"))
        assert wait_for(lambda: any(np.isclose(m.twist.linear.x, 0.5 * 0.01 / PERIOD) for _, m in twists[n0:]),
                        2.0), "no command for the chunk"
        first = next(a for a, m in twists[n0:] if np.isclose(m.twist.linear.x, 0.5 * 0.01 / PERIOD))
        waits.append(first - sent[-1])
    arrivals = [a for a, _ in twists]
    return waits, np.diff(arrivals), node


def test_tick_on_chunk_commands_a_chunk_on_arrival(harness):
    waits, intervals, node = _run(harness, True)
    assert node.tick_on_chunk
    assert max(waits[1:]) < 0.08, waits      # not up to a period (200 ms) later
    # re-phased, not added: apart from the early ticks, ticks stay a period apart
    assert np.median(intervals) == pytest.approx(PERIOD, abs=0.03), intervals


def test_without_tick_on_chunk_a_chunk_waits_for_the_next_tick(harness):
    waits, intervals, node = _run(harness, False)
    assert max(waits[1:]) > 0.08, waits      # 5 chunks at spread phases: some wait for the tick
    assert all(iv > 0.5 * PERIOD for iv in intervals), intervals
