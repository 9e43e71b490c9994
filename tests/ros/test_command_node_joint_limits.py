"""JointTrajectory backend joint limits (issue 12, reviews/ros.md §2.3): joint_position_min/max and
max_joint_velocity_rps, validated at configure and at run time, the per-tick step tied to the
control rate, a clear fault for a target outside the range. Real rclpy over real DDS, checked on
what a ros2_control joint_trajectory_controller receives: trajectory_msgs/JointTrajectory on
<controller>/joint_trajectory, joint_names in the configured order, one point with `positions`
only (one per joint) at time_from_start = one control period, header.stamp 0 ("start now")."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.srv import DescribeParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from lara_msgs.msg import ActionChunk, SafetyStatus  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402
from lara_policy.ros.safety import MotionCommand, SafetyLimits  # noqa: E402

from helpers_runtime import call_service, wait_for  # noqa: E402

pytestmark = pytest.mark.ros
JOINTS = ["shoulder", "elbow", "wrist"]
LIMITS = dict(joint_position_min=[-1.0, -2.0, -0.5], joint_position_max=[1.0, 2.0, 0.5])


def jt_node(h, **params):
    base = {"backend": "joint_trajectory", "action_space": "joint_position", "joint_names": JOINTS,
            "image_topic": "", "control_rate_hz": 20.0, "max_joint_step_rad": 0.5}
    base.update(params)
    return h.add(CommandNode(context=h.context, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


class Controller:
    """The joint_trajectory_controller's side: joint_state_broadcaster output + the trajectory topic."""

    def __init__(self, h, q=(0.0, 0.0, 0.0)):
        self.n = h.node("fake_controller")
        self.q = list(q)
        self.trajs: list[JointTrajectory] = []
        self.status: list[SafetyStatus] = []
        self.n.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", self.trajs.append, 100)
        self.n.create_subscription(SafetyStatus, "/lara/safety_status", self.status.append, 100)
        js = self.n.create_publisher(JointState, "/joint_states", 10)
        # joint_state_broadcaster order is not the controller's: names are matched, not positions
        self.n.create_timer(0.02, lambda: js.publish(JointState(name=JOINTS[::-1] + ["gripper"],
                                                                position=self.q[::-1] + [0.0])))
        self.chunks = self.n.create_publisher(ActionChunk, "/lara/action_chunk", 10)

    def chunk(self, target):
        t = self.n.get_clock().now().nanoseconds * 1e-9
        self.chunks.publish(chunk_to_msg(np.tile(np.array([target], np.float32), (40, 1)), t, 0.05,
                                         "joint_position", "reach", "m"))

    def moving_steps(self, n0=0):
        """Position change per trajectory (from the measured q) of the moving trajectories since n0."""
        return [np.array(t.points[0].positions) - np.array(self.q) for t in self.trajs[n0:]
                if t.points and not np.allclose(t.points[0].positions, self.q)]


def _arm(node):
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "inactive", node.reason
    node.trigger_activate()
    assert node._state_machine.current_state[1] == "active", node.reason


@pytest.mark.parametrize("params,expect", [
    (dict(joint_position_min=[-1.0, -2.0], joint_position_max=[1.0, 2.0, 0.5]), "joint_position_min needs one value"),
    (dict(joint_position_min=[-1.0, 2.5, -0.5], joint_position_max=[1.0, 2.0, 0.5]), "elbow min 2.5 >= max 2.0"),
    (dict(joint_position_min=[-1.0, -2.0, -0.5]), "must be set together"),
    (dict(max_joint_velocity_rps=[1.0, -0.5, 1.0]), "max_joint_velocity_rps must be > 0"),
    (dict(max_joint_velocity_rps=[1.0, 1.0]), "max_joint_velocity_rps needs one value per joint_names entry"),
    (dict(max_joint_velocity_rps=[float("nan")]), "max_joint_velocity_rps must be finite"),
], ids=["min_count", "min_ge_max", "only_min", "neg_velocity", "velocity_count", "nan_velocity"])
def test_joint_limits_validated_at_configure(harness, params, expect):
    node = jt_node(harness, **params)
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "unconfigured"
    assert "configure refused" in node.reason and expect in node.reason, node.reason


def test_joint_limit_parameters_have_descriptors(harness):
    jt_node(harness)
    client = harness.node("describer")
    names = ["joint_position_min", "joint_position_max", "max_joint_velocity_rps"]
    resp = call_service(harness, client, DescribeParameters, "/command_node/describe_parameters",
                        DescribeParameters.Request(names=names))
    by_name = {d.name: d for d in resp.descriptors}
    for n in names:
        assert by_name[n].description and "per joint_names entry" in by_name[n].additional_constraints, by_name[n]
    assert "rad/s" in by_name["max_joint_velocity_rps"].description


@pytest.mark.parametrize("rate", [20.0, 10.0])
def test_joint_step_is_the_velocity_limit_times_the_control_period(harness, rate):
    """0.5 rad/s: 0.025 rad per tick at 20 Hz, 0.05 at 10 Hz (max_joint_step_rad 0.5 does not bind);
    the same velocity whatever the rate, unlike a fixed per-tick step."""
    node = jt_node(harness, control_rate_hz=rate, max_joint_velocity_rps=[0.5, 0.5, 0.25], **LIMITS)
    ctl = Controller(harness, q=(0.1, -0.2, 0.0))
    _arm(node)
    assert wait_for(lambda: (ctl.chunk([0.9, -1.5, 0.4]), len(ctl.moving_steps()) >= 3)[1], 15.0, period=0.2), \
        node.reason
    period = 1.0 / rate
    traj = next(t for t in reversed(ctl.trajs) if not np.allclose(t.points[0].positions, ctl.q))
    assert list(traj.joint_names) == JOINTS and len(traj.points) == 1
    assert traj.header.stamp.sec == 0 and traj.header.stamp.nanosec == 0
    assert traj.points[0].time_from_start.nanosec == int(round(period * 1e9))
    assert len(traj.points[0].positions) == 3 and not traj.points[0].velocities
    for step in ctl.moving_steps():
        assert np.allclose(np.abs(step), [0.5 * period, 0.5 * period, 0.25 * period], atol=1e-9), step
        assert np.allclose(np.sign(step), [1, -1, 1])
    assert wait_for(lambda: "joint step clipped" in node.reason and "rad/s" in node.reason, 5.0), node.reason


def test_target_outside_the_joint_limits_faults_and_never_reaches_the_controller(harness):
    node = jt_node(harness, max_joint_velocity_rps=[1.0], **LIMITS)
    ctl = Controller(harness, q=(0.1, -0.2, 0.0))
    _arm(node)
    assert wait_for(lambda: (ctl.chunk([0.3, 0.0, 0.1]), len(ctl.moving_steps()) >= 1)[1], 15.0, period=0.2)
    n0 = len(ctl.trajs)
    ctl.chunk([0.3, 2.4, 0.1])                  # elbow above its 2.0 rad limit
    assert wait_for(lambda: "joint limit: elbow target 2.4000 rad" in node.reason, 5.0), node.reason
    assert node.state == "fault" and "[-2.0000, 2.0000]" in node.reason
    assert wait_for(lambda: any("joint limit: elbow" in s.reason and s.state == "fault" for s in ctl.status), 5.0)
    # zero motion = hold at the measured position: every trajectory since is a hold
    assert wait_for(lambda: len(ctl.trajs) > n0 + 3, 5.0)
    late = ctl.trajs[n0 + 1:]                   # (the first may have left before the chunk arrived)
    assert all(np.allclose(t.points[0].positions, ctl.q) for t in late), [t.points[0].positions for t in late]
    assert all(np.all(np.array(t.points[0].positions) <= LIMITS["joint_position_max"]) for t in ctl.trajs)
    # a valid chunk clears it
    assert wait_for(lambda: (ctl.chunk([0.3, 0.0, 0.1]), node.tick_log[-1].moving)[1], 5.0, period=0.2), node.reason


def test_arm_outside_its_range_holds_with_the_reason(harness):
    node = jt_node(harness, **LIMITS)
    ctl = Controller(harness, q=(1.05, 0.0, 0.0))   # shoulder 0.05 rad past its limit (moved by hand)
    _arm(node)
    assert wait_for(lambda: (ctl.chunk([0.9, 0.0, 0.0]), "shoulder is at 1.0500 rad" in node.reason)[1], 10.0,
                    period=0.2), node.reason
    assert not node.tick_log[-1].moving
    assert wait_for(lambda: len(ctl.trajs) >= 2, 5.0)
    assert all(np.allclose(t.points[0].positions, ctl.q) for t in ctl.trajs)   # holds only


def test_joint_limits_change_at_run_time_or_are_refused(harness):
    node = jt_node(harness, max_joint_velocity_rps=[1.0], **LIMITS)
    ctl = Controller(harness, q=(0.0, 0.0, 0.0))
    _arm(node)
    assert wait_for(lambda: (ctl.chunk([0.8, 0.0, 0.0]), len(ctl.moving_steps()) >= 1)[1], 15.0, period=0.2)
    client = harness.node("param_client")

    def set_param(name, value):
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return call_service(harness, client, SetParameters, "/command_node/set_parameters", req).results[0]
    r = set_param("max_joint_velocity_rps", [0.2])
    assert r.successful, r.reason
    n0 = len(ctl.trajs)
    assert wait_for(lambda: (ctl.chunk([0.8, 0.0, 0.0]), len(ctl.moving_steps(n0)) >= 3)[1], 10.0, period=0.2)
    assert np.allclose(np.abs(ctl.moving_steps(n0)[-1][0]), 0.2 * 0.05, atol=1e-9)
    for name, value, expect in [("max_joint_velocity_rps", [0.0], "must be > 0"),
                                ("joint_position_max", [1.0, 2.0], "one value per joint_names entry"),
                                ("joint_position_min", [-1.0, 3.0, -0.5], "elbow min 3.0 >= max 2.0")]:
        r = set_param(name, value)
        assert not r.successful and expect in r.reason, (name, r.reason)
    assert list(node.get_parameter("max_joint_velocity_rps").value) == [0.2]
    r = set_param("joint_position_max", [0.5, 2.0, 0.5])     # tighter: the 0.8 target is now refused
    assert r.successful, r.reason
    assert wait_for(lambda: (ctl.chunk([0.8, 0.0, 0.0]), "joint limit: shoulder target 0.8000" in node.reason)[1],
                    5.0, period=0.2), node.reason


def test_safety_limits_joint_checks_unit():
    lim = SafetyLimits(period=0.05, max_joint_step=0.1, joint_min=np.array([-1.0, -1.0]),
                       joint_max=np.array([1.0, 1.0]), joint_max_velocity=np.array([1.0, 0.4]), joint_names=("a", "b"))
    assert np.allclose(lim.joint_step_limit(2), [0.05, 0.02])
    cmd = lim.apply(MotionCommand(joints=np.array([0.9, -0.9])), None, np.array([0.0, 0.0]))
    assert np.allclose(cmd.joints, [0.05, -0.02])
    with pytest.raises(ValueError, match=r"joint limit: b target -1\.2000 rad \(action 3\)"):
        lim.check_joint_targets(np.array([[0.0, 0.0]] * 3 + [[0.0, -1.2]]))
    with pytest.raises(ValueError, match="a is at 1.1000 rad"):
        lim.apply(MotionCommand(joints=np.array([0.9, 0.0])), None, np.array([1.1, 0.0]))
    for bad in (dict(joint_min=np.array([0.0, 0.0]), joint_max=np.array([0.0, 1.0])),
                dict(joint_max_velocity=np.array([0.0])), dict(joint_min=np.array([0.0, 0.0]))):
        with pytest.raises(ValueError):
            SafetyLimits(period=0.05, **bad)
