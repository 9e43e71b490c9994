"""End-effector pose from tf2 (ee_pose_source: tf) and the policy <-> base frame mapping.

tf2_ros is not installable on these machines (ENVIRONMENT.md), so the lookup path runs against
a TEST DOUBLE of the documented tf2_ros interface: `Buffer.lookup_transform(target_frame,
source_frame, time)` returning geometry_msgs/TransformStamped (header.frame_id = target,
child_frame_id = source) or raising a LookupException, and `TransformListener(buffer, node)`.
The double's buffer is filled by the test as a robot_state_publisher would fill /tf. Everything
else (command_node, policy_node, DDS) is real. A real tf2_ros was never called here."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from lara_policy.ros.command_node import CommandNode  # noqa: E402
from lara_policy.ros.ee_pose import FrameMap  # noqa: E402

from graph_helpers import GoalSeekingTestPolicy  # noqa: E402
from helpers_runtime import wait_for  # noqa: E402
from test_command_node import PERIOD, RATE, Rig, armed_moving  # noqa: E402

pytestmark = pytest.mark.ros


class LookupException(Exception):
    """Stands in for tf2_ros.LookupException."""


class FakeTfBuffer:
    """TEST DOUBLE of tf2_ros.Buffer: one parent -> child transform, set by the test."""

    def __init__(self):
        self._tf: dict[tuple[str, str], TransformStamped] = {}
        self._lock = threading.Lock()
        self.lookups = []

    def set(self, parent, child, xyz, stamp):
        t = TransformStamped()
        t.header.frame_id, t.child_frame_id, t.header.stamp = parent, child, stamp
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (float(v) for v in xyz)
        t.transform.rotation.w = 1.0
        with self._lock:
            self._tf[(parent, child)] = t

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        self.lookups.append((target_frame, source_frame, time.nanoseconds))
        with self._lock:
            t = self._tf.get((target_frame, source_frame))
        if t is None:
            raise LookupException(f'"{source_frame}" passed to lookupTransform argument source_frame '
                                  "does not exist.")
        return t


def fake_tf_factory(buffers):
    def factory(node):
        buf = FakeTfBuffer()
        buffers.append(buf)
        return buf, object()        # TransformListener(buffer, node): only kept alive
    return factory


def test_frame_map_axes_origin_and_validation():
    fm = FrameMap(["-y", "x", "z"], [0.1, 0.0, 0.0])
    assert np.allclose(fm.delta_to_base([1.0, 0.0, 0.0]), [0.0, -1.0, 0.0])    # policy +x -> base -y
    assert np.allclose(fm.delta_to_base([0.0, 1.0, 0.0]), [1.0, 0.0, 0.0])
    base = np.array([0.3, -0.2, 0.5])
    assert np.allclose(fm.delta_to_base(fm.position_to_policy(base)) + fm.origin, base)
    assert FrameMap().identity and not fm.identity
    for bad in (["x", "x", "z"], ["x", "y"], ["x", "y", "w"]):
        with pytest.raises(ValueError, match="policy_axes_in_base"):
            FrameMap(bad)


def test_command_node_workspace_box_on_tf_pose_with_age_check(harness):
    buffers = []
    node = harness.add(CommandNode(context=harness.context, tf_factory=fake_tf_factory(buffers), parameter_overrides=[
        Parameter(k, value=v) for k, v in dict(
            control_rate_hz=RATE, max_chunk_age_s=1.0, servo_activation="none", ee_pose_source="tf",
            frame_id="base_link", ee_link="tool0", workspace_min=[0.0, -1.0, 0.0], workspace_max=[0.55, 1.0, 1.0],
            max_pose_age_s=0.3, policy_axes_in_base=["-y", "x", "z"]).items()]))
    rig = Rig(harness)
    pose = {"xyz": (0.5, 0.0, 0.3), "on": True}
    node.trigger_configure()
    assert buffers, "configure did not create the tf buffer"
    buf = buffers[0]

    def publish_tf():                                   # robot_state_publisher stand-in, 50 Hz
        if pose["on"]:
            buf.set("base_link", "tool0", pose["xyz"], rig.n.get_clock().now().to_msg())
    rig.n.create_timer(0.02, publish_tf)
    node.trigger_activate()
    assert wait_for(lambda: (rig.chunk(action=(0.0, 0.5, 0.0, 0.0)), node.tick_log[-1].moving)[1], 10.0,
                    period=0.1), node.reason
    # looked up base_link -> tool0 at "latest" (time 0)
    assert ("base_link", "tool0", 0) in buf.lookups
    # the policy's +y is the base's +x (axes ['-y', 'x', 'z']): 0.5 * 0.01 / 0.05 = 0.1 m/s along x
    assert wait_for(lambda: (rig.chunk(action=(0.0, 0.5, 0.0, 0.0)),
                             np.allclose(node.tick_log[-1].linear, (0.1, 0.0, 0.0)))[1], 5.0, period=0.1), \
        node.tick_log[-1]
    assert all(m.header.frame_id == "base_link" for _, m in rig.twists[-3:])
    # the tf pose is at the box edge in x (0.55): +x held, reason says so
    pose["xyz"] = (0.55, 0.0, 0.3)
    assert wait_for(lambda: (rig.chunk(action=(0.0, 0.5, 0.0, 0.0)), "workspace: x held" in node.reason)[1],
                    5.0, period=0.1), node.reason
    # the transform stops updating (robot_state_publisher died): stale pose -> zero motion
    pose.update(xyz=(0.3, 0.0, 0.3))
    time.sleep(0.2)
    pose["on"] = False
    assert wait_for(lambda: (rig.chunk(), "stale end-effector pose" in node.reason)[1], 5.0, period=0.1), \
        node.reason
    assert not node.tick_log[-1].moving
    pose["on"] = True
    assert wait_for(lambda: (rig.chunk(), node.tick_log[-1].moving)[1], 5.0, period=0.1), node.reason


def test_policy_node_state_from_tf_with_frame_and_gripper_mapping(ros, spinner):
    from lara_policy.ros.policy_node import PolicyNode
    from test_policy_node import Feeder

    buffers = []
    policy = GoalSeekingTestPolicy()
    node = PolicyNode(policy=policy, tf_factory=fake_tf_factory(buffers), parameter_overrides=[
        Parameter(k, value=v) for k, v in dict(
            instruction="reach", ee_pose_source="tf", frame_id="base_link", ee_link="tool0",
            policy_axes_in_base=["-y", "x", "z"], policy_origin_in_base=[0.1, 0.0, 0.0],
            gripper_open_position=0.08, gripper_closed_position=0.0).items()])
    feeder = Feeder(ros)                   # camera, goal, joint_states (gripper = 1.0 -> see below)
    feeder._pose.publish = lambda m: None  # no /lara/ee_pose: the pose must come from tf
    buf = buffers[0]
    feeder.node.create_timer(0.02, lambda: buf.set("base_link", "tool0", (0.3, -0.2, 0.5),
                                                   feeder.node.get_clock().now().to_msg()))
    spinner(node, feeder.node)
    assert wait_for(lambda: policy.last_obs is not None, 15.0), (dict(node.rejections), node.last_rejection)
    s = np.asarray(policy.last_obs.state, dtype=np.float64)
    # base (0.3, -0.2, 0.5) - origin (0.1, 0, 0) = (0.2, -0.2, 0.5); policy x = -base y, policy y = base x
    assert np.allclose(s[:3], [0.2, 0.2, 0.5], atol=1e-6), s
    # Feeder's gripper joint is 1.0 (driver units); open = 0.08 -> 12.5 in policy units: the mapping applies
    assert s[3] == pytest.approx(1.0 / 0.08)
