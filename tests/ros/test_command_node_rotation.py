"""Rotation actions (ee_delta_6d_gripper) through command_node, real rclpy + DDS: a 7-D chunk
becomes a TwistStamped whose angular part is the rotation vector x ee_rot_scale_rad / control
period (rad/s, about frame_id's axes: MoveIt Servo's convention), clamped to
max_angular_speed_rps, with the same faults as linear motion (NaN / wrong size -> zero motion
with the reason); moveit_py composes the rotation with the current orientation on the left.

The round trip closes the loop: a bag of Servo twists that rotate the tool -> `lara convert` ->
the store's actions -> the same values as one chunk -> command_node -> the twists published
equal the bag's twists."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402

from lara_msgs.msg import ActionChunk, SafetyStatus  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

pytestmark = pytest.mark.ros
SPACE = "ee_delta_6d_gripper"


def make_node(h, rate=20.0, moveit_factory=None, **params):
    base = {"control_rate_hz": rate, "max_chunk_age_s": 5.0, "servo_activation": "none", "image_topic": "",
            "action_space": SPACE}
    base.update(params)
    return h.add(CommandNode(context=h.context, moveit_factory=moveit_factory,
                             parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


class Rig:
    def __init__(self, h):
        self.n = h.node("rot_rig")
        self.chunks = self.n.create_publisher(ActionChunk, "/lara/action_chunk", 10)
        self.twists: list[TwistStamped] = []
        self.gripper: list[float] = []
        self.status: list[SafetyStatus] = []
        self.n.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self.twists.append, 200)
        self.n.create_subscription(Float64, "/lara/gripper_command", lambda m: self.gripper.append(m.data), 200)
        self.n.create_subscription(SafetyStatus, "/lara/safety_status", self.status.append, 50)

    def chunk(self, actions, dt, space=SPACE):
        t = self.n.get_clock().now().nanoseconds * 1e-9
        self.chunks.publish(chunk_to_msg(np.asarray(actions, np.float32), t, dt, space, "turn", "rot-model"))
        return t


def ang(m: TwistStamped) -> np.ndarray:
    return np.array([m.twist.angular.x, m.twist.angular.y, m.twist.angular.z])


def lin(m: TwistStamped) -> np.ndarray:
    return np.array([m.twist.linear.x, m.twist.linear.y, m.twist.linear.z])


def arm(node) -> None:
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "inactive", node.reason
    node.trigger_activate()
    assert node._state_machine.current_state[1] == "active", node.reason


def feed_until(rig, node, actions, pred, dt=0.05, timeout=10.0):
    def go():
        rig.chunk([actions] * 40, dt)
        return pred()
    assert wait_for(go, timeout, period=0.2), f"{node.state}: {node.reason}"


# ----------------------------------------------------------------------------- servo
def test_rotation_chunk_becomes_an_angular_twist_clamped_and_faulted_like_linear(harness):
    node, rig = make_node(harness, max_angular_speed_rps=0.5, ee_rot_scale_rad=0.02, blend_steps=0), Rig(harness)
    arm(node)
    period = 0.05
    # within the limit: omega = a_rot * ee_rot_scale_rad / period, linear as ever, frame_id 'base'
    a = [0.2, 0.0, -0.1, 0.4, -0.2, 0.1, 1.0]
    want = np.array(a[3:6]) * 0.02 / period                       # (0.16, -0.08, 0.04) rad/s, |w| 0.183
    feed_until(rig, node, a, lambda: any(np.allclose(ang(m), want, atol=1e-6) for m in rig.twists))
    m = next(m for m in rig.twists if np.allclose(ang(m), want, atol=1e-6))
    assert m.header.frame_id == "base" and np.allclose(lin(m), [0.04, 0.0, -0.02], atol=1e-6)
    assert rig.gripper and rig.gripper[-1] == 1.0 and node.state == SafetyStatus.STATE_ARMED
    assert "angular" not in node.reason
    # too fast: |w| = 1.6 * sqrt(3) rad/s (components beyond action_limit clipped to 1 first: 0.4 * sqrt(3))
    # -> scaled down ALONG ITS AXIS to max_angular_speed_rps, the reason says so
    n0 = len(rig.twists)
    feed_until(rig, node, [0.0, 0.0, 0.0, 3.0, -1.0, 1.0, 0.0],
               lambda: any(np.linalg.norm(ang(m)) > 0.4 for m in rig.twists[n0:]))
    fast = [ang(m) for m in rig.twists[n0:] if np.linalg.norm(ang(m)) > 0.4]
    for w in fast:
        assert np.linalg.norm(w) == pytest.approx(0.5, abs=1e-6)
        np.testing.assert_allclose(w / np.linalg.norm(w), np.array([1, -1, 1]) / np.sqrt(3), atol=1e-6)
    assert wait_for(lambda: "angular step clipped" in node.reason, 3.0), node.reason
    # a live change of the limit applies at the next tick; a bad value is refused
    assert not node.set_parameters([Parameter("max_angular_speed_rps", value=-1.0)])[0].successful
    assert node.set_parameters([Parameter("max_angular_speed_rps", value=0.6)])[0].successful
    n1 = len(rig.twists)
    feed_until(rig, node, [0.0, 0.0, 0.0, 3.0, -1.0, 1.0, 0.0],
               lambda: any(abs(np.linalg.norm(ang(m)) - 0.6) < 1e-6 for m in rig.twists[n1:]))
    assert all(np.linalg.norm(ang(m)) <= 0.6 + 1e-6 for m in rig.twists)
    # NaN in a rotation component: the chunk is rejected, zero motion, the reason says why
    rig.chunk([[0.1, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0]] * 10, period)
    assert wait_for(lambda: node.reason.startswith("rejected chunk") and node.state == SafetyStatus.STATE_FAULT, 5.0)
    n2 = len(rig.twists)
    assert wait_for(lambda: len(rig.twists) > n2 + 3, 5.0)
    assert all(not np.any(ang(m)) and not np.any(lin(m)) for m in rig.twists[n2 + 1:])
    # garbage: a 6-D chunk on the 7-D action space (rotation without gripper) is rejected too
    feed_until(rig, node, a, lambda: node.state == SafetyStatus.STATE_ARMED and node.tick_log[-1].moving)
    rig.chunk([[0.1, 0.0, 0.0, 0.5, 0.0, 0.0]] * 10, period)
    assert wait_for(lambda: "action_dim 6 != 7" in node.reason, 5.0), node.reason
    assert wait_for(lambda: not node.tick_log[-1].moving and node.tick_log[-1].angular == (0.0, 0.0, 0.0), 3.0)


@pytest.mark.parametrize("axes,sign", [(["-y", "x", "z"], 1.0), (["x", "y", "-z"], -1.0)], ids=["turned", "mirrored"])
def test_policy_axes_map_the_rotation_into_the_base_frame(harness, axes, sign):
    """policy_axes_in_base: the rotation vector turns with the axes (an axial vector: a mirrored
    policy frame reverses it), as the linear delta does."""
    node, rig = make_node(harness, policy_axes_in_base=axes, ee_rot_scale_rad=0.02), Rig(harness)
    arm(node)
    R = np.zeros((3, 3))
    for col, a in enumerate(axes):
        R["xyz".index(a[-1]), col] = -1.0 if a.startswith("-") else 1.0
    a = np.array([0.3, 0.0, 0.0, 0.5, 0.25, -0.4, 0.0])
    want_w, want_v = sign * R @ (a[3:6] * 0.02 / 0.05), R @ (a[:3] * 0.01 / 0.05)
    feed_until(rig, node, a.tolist(), lambda: any(np.allclose(ang(m), want_w, atol=1e-6) for m in rig.twists))
    m = next(m for m in rig.twists if np.allclose(ang(m), want_w, atol=1e-6))
    np.testing.assert_allclose(lin(m), want_v, atol=1e-6)
    # a physical check of the mirrored case: mirroring the policy's rotation (conjugating by R) gives
    # the base-frame rotation whose rotation vector is the one commanded
    Rp = Rotation.from_rotvec(a[3:6] * 0.02)
    base = R @ Rp.as_matrix() @ R.T
    np.testing.assert_allclose(Rotation.from_matrix(base).as_rotvec(), want_w * 0.05, atol=1e-9)


# ----------------------------------------------------------------------------- moveit_py
class _Planning:
    def __init__(self, log):
        self.log = log

    def set_start_state_to_current_state(self):
        self.log.append(("start_state",))

    def set_goal_state(self, pose_stamped_msg=None, pose_link=None):
        self.log.append(("goal", pose_stamped_msg, pose_link))

    def plan(self):
        return type("PlanResult", (), {"trajectory": "traj", "__bool__": lambda s: True})()


class _MoveItPy:
    """TEST DOUBLE of moveit.planning.MoveItPy (moveit_py is not installable here)."""

    def __init__(self, name):
        self.log = []

    def get_planning_component(self, group):
        return _Planning(self.log)

    def execute(self, trajectory, controllers=None):
        self.log.append(("execute",))


def test_moveit_py_composes_the_rotation_on_the_left_of_the_current_orientation(harness):
    fakes = []
    node = make_node(harness, moveit_factory=lambda name, cfg=None: fakes.append(_MoveItPy(name)) or fakes[-1],
                     backend="moveit_py", ee_rot_scale_rad=0.05, max_angular_speed_rps=2.0)
    rig = Rig(harness)
    pose_pub = rig.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
    arm(node)
    q0 = Rotation.from_euler("xyz", [0.3, -0.7, 1.1])
    a = np.array([0.5, 0.0, 0.0, 0.8, -0.4, 0.6, -1.0])

    def feed():
        pose = PoseStamped()
        pose.header.frame_id = "base"
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.4, 0.1, 0.3
        (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
         pose.pose.orientation.w) = (float(v) for v in q0.as_quat())
        pose_pub.publish(pose)
        rig.chunk([a] * 40, 0.05)
        return fakes and any(e[0] == "goal" for e in fakes[0].log)
    assert wait_for(feed, 15.0, period=0.1), node.reason
    g = next(e for e in fakes[0].log if e[0] == "goal")[1]
    # the first goal: one step from the measured pose; rotation vector 0.05 * a_rot about the base axes
    q = g.pose.orientation
    got = Rotation.from_quat([q.x, q.y, q.z, q.w])
    step = Rotation.from_rotvec(a[3:6] * 0.05)
    assert (got * (step * q0).inv()).magnitude() < 1e-6                 # left: base frame
    assert (got * (q0 * step).inv()).magnitude() > 1e-2                 # not the tool frame
    assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1.0) < 1e-9
    assert g.pose.position.x == pytest.approx(0.4 + 0.005) and g.pose.position.y == pytest.approx(0.1)


# ----------------------------------------------------------------------------- round trip
def _bag_twists(bag: Path) -> np.ndarray:
    """(N, 6) linear + angular of every TwistStamped in the bag, in bag order, read with rosbags."""
    from rosbags.highlevel import AnyReader
    out = []
    with AnyReader([bag]) as r:
        conns = [c for c in r.connections if c.topic == "/servo_node/delta_twist_cmds"]
        for c, _, raw in r.messages(connections=conns):
            m = r.deserialize(raw, c.msgtype)
            assert m.header.frame_id == "base_link"
            out.append([m.twist.linear.x, m.twist.linear.y, m.twist.linear.z,
                        m.twist.angular.x, m.twist.angular.y, m.twist.angular.z])
    return np.array(out)


def test_round_trip_bag_to_store_to_command_node_gives_the_bags_twists(harness, tmp_path):
    pytest.importorskip("rosbags")
    from rotbag import RATE, ROT_MAPPING, ROT_SCALE, SCALE, rotation_bag

    from lara_policy.cli import main as lara
    from lara_policy.formats.store import EpisodeStore

    bag, _ = rotation_bag(tmp_path / "bag", steps=60, seed=5)
    (tmp_path / "map.yaml").write_text(ROT_MAPPING)
    assert lara(["convert", str(bag), "--mapping", str(tmp_path / "map.yaml"), "--out", str(tmp_path / "s.hdf5")]) == 0
    with EpisodeStore(tmp_path / "s.hdf5") as s:
        assert s.meta.action_space == SPACE
        actions, dt, frame = s.episode(0).actions, s.meta.dt, s.meta.extra["action_frame"]
    bag_tw = _bag_twists(bag)
    assert len(bag_tw) == len(actions) and np.abs(bag_tw[:, 3:]).max() > 1.0

    # command_node configured as the robot that recorded the bag: its frame, scales and rate
    node = make_node(harness, rate=RATE, frame_id=frame, ee_delta_scale_m=SCALE, ee_rot_scale_rad=ROT_SCALE,
                     max_angular_speed_rps=5.0, max_linear_speed_mps=1.0, blend_steps=0)
    rig = Rig(harness)
    arm(node)
    assert abs(dt - node.period) < 1e-9
    t0 = rig.chunk(actions, dt)                              # the store's actions as one chunk
    assert wait_for(lambda: node.reason.startswith("stale chunk: ran out"), 10.0), node.reason
    moving = [m for m in rig.twists if np.any(lin(m)) or np.any(ang(m))]
    assert moving and all(m.header.frame_id == frame for m in moving)
    # every published twist is the bag's twist of the step it was sent for (by its stamp), in order
    hit = []
    for m in moving:
        k_est = int(np.floor((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - t0) / dt))
        got = np.concatenate([lin(m), ang(m)])
        err = np.abs(bag_tw - got).max(axis=1)
        k = int(np.argmin(err))
        assert err[k] < 1e-5, (got, bag_tw[k_est] if 0 <= k_est < len(bag_tw) else None)
        assert abs(k - k_est) <= 1, (k, k_est)
        hit.append(k)
    assert hit == sorted(hit)
    expected = np.nonzero(np.any(bag_tw != 0, axis=1))[0]
    assert len(set(hit)) >= 0.7 * len(expected), (len(set(hit)), len(expected))   # ticks missed on a busy CPU
    assert set(rig.gripper) <= {-1.0, 1.0} and -1.0 in rig.gripper and 1.0 in rig.gripper
