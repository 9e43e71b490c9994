"""Regression tests for what the command_node DDS fuzz (tests/fuzz/test_command_node_fuzz.py) and
its review turned up in command_node. Real rclpy nodes over real DDS; the control ticks are run by
the test (a 0.01 Hz control loop never ticks by itself), so the order of clock, input and tick is
exact, not a race.

- A backwards clock jump first seen by a CHUNK (it arrived before the next tick) dropped the held
  chunks but not the input arrival times: an end-effector pose from the old timeline then looked
  fresh for as long as the jump (its age was negative), and the box check used it.
- A NaN orientation in the end-effector pose passed (only the position was checked).
- A message-supplied action_space string went whole into the reason of every SafetyStatus and
  log line (a 5000-character one made 5 kB status messages).
- An exception inside a tick (a bug in the scheduler, a backend's status) escaped the tick: no
  zero command that tick, the last command kept running and the status said nothing.
- (found by the fuzz's full run) Under use_sim_time a /clock that stopped froze every age check:
  the pose, joint and chunk watchdogs run on the node clock, so the node kept commanding the
  last motion at the wall control rate for as long as /clock was silent."""
from __future__ import annotations

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from lara_msgs.msg import ActionChunk, SafetyStatus  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg, sec_to_stamp  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402

pytestmark = pytest.mark.ros


class ManualRig:
    """A command_node on a sim clock the test sets, ticking only when the test says so."""

    def __init__(self, h, **params):
        base = {"control_rate_hz": 0.01, "use_sim_time": True, "image_topic": "", "servo_activation": "none",
                "workspace_min": [0.0, -1.0, 0.0], "workspace_max": [1.0, 1.0, 1.0], "max_pose_age_s": 0.5,
                "max_linear_step_m": 0.01, "ee_pose_source": "topic", "max_clock_stall_s": 0.0}
        base.update(params)
        self.node = h.add(CommandNode(context=h.context,
                                      parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))
        self.n = h.node("regression_rig")
        self.clock_pub = self.n.create_publisher(Clock, "/clock", 10)
        self.pose_pub = self.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self.chunk_pub = self.n.create_publisher(ActionChunk, "/lara/action_chunk", 10)
        self.twists: list[TwistStamped] = []
        self.status: list[SafetyStatus] = []
        self.n.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self.twists.append, 50)
        self.n.create_subscription(SafetyStatus, "/lara/safety_status", self.status.append, 50)

    def set_clock(self, t: float) -> None:
        assert wait_for(lambda: (self.clock_pub.publish(Clock(clock=sec_to_stamp(t))),
                                 abs(self.node.now() - t) < 1e-6)[1], 10.0, period=0.05), self.node.now()

    def pose(self, xyz=(0.5, 0.0, 0.5), quat=(0.0, 0.0, 0.0, 1.0)) -> None:
        n0 = self.node._ee_pose

        m = PoseStamped()
        m.header.frame_id = "base"
        m.pose.position.x, m.pose.position.y, m.pose.position.z = xyz
        m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = quat
        self.pose_pub.publish(m)
        assert wait_for(lambda: self.node._ee_pose is not n0, 5.0), "pose never arrived"

    def chunk(self, t0: float, action=(0.5, 0.0, 0.0, 0.0), space="ee_delta_xyz_gripper") -> None:
        cur, rej = self.node.scheduler.current, self.node.rejected_chunks
        self.chunk_pub.publish(chunk_to_msg(np.tile(np.array([action], np.float32), (40, 1)), t0, 0.05, space))
        assert wait_for(lambda: self.node.scheduler.current is not cur or self.node.rejected_chunks != rej, 5.0), \
            "chunk never handled"

    def arm(self, t: float = 1000.0) -> None:
        self.set_clock(t)
        self.node.trigger_configure()
        self.node.trigger_activate()
        assert self.node._state_machine.current_state[1] == "active", self.node.reason

    def tick(self):
        self.node._tick()
        return self.node.tick_log[-1]


def test_clock_jump_seen_first_by_a_chunk_drops_the_old_pose(harness):
    rig = ManualRig(harness)
    rig.arm(1000.0)
    rig.pose()
    rig.chunk(1000.0)
    assert rig.tick().moving, rig.node.reason
    # the simulator resets: /clock goes back 100 s; the pose source is gone (no new pose);
    # the policy's first chunk on the new clock arrives before the next control tick
    rig.set_clock(900.0)
    rig.chunk(900.0)
    assert rig.node.scheduler.current.t0 == pytest.approx(900.0)
    rec = rig.tick()
    # before the fix: the pose received at t=1000 had age -100 s, "fresh", and the arm moved on it
    assert not rec.moving and "no end-effector pose" in rec.reason, rec
    assert wait_for(lambda: rig.twists and rig.twists[-1].twist.linear.x == 0.0, 5.0)
    rig.pose()                                            # a pose on the new clock: motion resumes
    assert rig.tick().moving, rig.node.reason


def test_nan_orientation_in_the_end_effector_pose_faults(harness):
    rig = ManualRig(harness)
    rig.arm()
    rig.pose()
    rig.chunk(1000.0)
    assert rig.tick().moving
    rig.pose(quat=(0.0, 0.0, 0.0, math.nan))
    rec = rig.tick()
    assert not rec.moving and rec.state == "fault" and "orientation is NaN" in rec.reason, rec
    rig.pose()
    assert rig.tick().moving


def test_a_huge_action_space_string_does_not_flood_the_status(harness):
    rig = ManualRig(harness)
    rig.arm()
    rig.pose()
    rig.chunk(1000.0, action=(0.1,) * 4, space="x" * 5000)
    assert rig.node.rejected_chunks == 1
    assert wait_for(lambda: any("rejected chunk" in s.reason for s in rig.status), 5.0), [s.reason for s in rig.status]
    reason = next(s.reason for s in rig.status if "rejected chunk" in s.reason)
    assert "(5000 chars)" in reason and len(reason) < 300, len(reason)


def test_an_exception_inside_the_tick_commands_zero_motion_with_the_reason(harness):
    rig = ManualRig(harness)
    rig.arm()
    rig.pose()
    rig.chunk(1000.0)
    assert rig.tick().moving

    def broken(now):           # fault injection: a bug in the scheduler
        raise ZeroDivisionError("float division by zero")
    rig.node.scheduler.action = broken
    rec = rig.tick()
    assert not rec.moving and rec.state == "fault" and "ZeroDivisionError" in rec.reason, rec
    assert wait_for(lambda: rig.twists and rig.twists[-1].twist.linear.x == 0.0, 5.0)
    del rig.node.scheduler.action
    rig.node.backend.fault_reason = lambda: 1 / 0     # ... or in a backend's status
    rec = rig.tick()
    assert not rec.moving and "backend error: ZeroDivisionError" in rec.reason, rec


def test_a_stalled_sim_clock_faults_instead_of_freezing_every_watchdog(harness):
    rig = ManualRig(harness, max_clock_stall_s=0.3)
    rig.arm(1000.0)
    rig.pose()
    rig.set_clock(1000.01)
    rig.chunk(1000.0)
    assert rig.tick().moving, rig.node.reason
    # /clock goes silent (simulator paused or dead): before the fix the pose, chunk and joint ages
    # stayed frozen at their last value and the node kept commanding the same step forever
    assert wait_for(lambda: "clock stalled" in rig.tick().reason, 5.0, period=0.05), rig.node.reason
    rec = rig.node.tick_log[-1]
    assert not rec.moving and rec.state == "fault" and "max_clock_stall_s" in rec.reason
    assert wait_for(lambda: rig.twists and rig.twists[-1].twist.linear.x == 0.0, 5.0)
    rig.set_clock(1000.02)                               # the clock runs again: motion resumes
    assert rig.tick().moving, rig.node.reason
