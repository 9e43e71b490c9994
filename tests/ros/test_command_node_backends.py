"""command_node's other backends: ros2_control JointTrajectory (real DDS), and moveit_py
exercised against a TEST DOUBLE of moveit_py's documented API (MoveIt 2 is not installable on
these machines, so the real MoveItPy is never called here)."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from lara_msgs.msg import ActionChunk  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg  # noqa: E402
from lara_policy.ros.command_node import CommandNode  # noqa: E402

from helpers_runtime import wait_for  # noqa: E402

pytestmark = pytest.mark.ros
PERIOD = 0.05



def node_with(h, moveit_factory=None, **params):
    base = {"control_rate_hz": 1 / PERIOD, "image_topic": ""}   # observation watchdog off here
    base.update(params)
    return h.add(CommandNode(context=h.context, moveit_factory=moveit_factory,
                             parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


def publish_chunk(pub, node, actions, space):
    pub.publish(chunk_to_msg(np.asarray(actions, np.float32), node.get_clock().now().nanoseconds * 1e-9,
                             PERIOD, space, "x", "m"))


def test_joint_trajectory_backend_steps_limits_and_holds(harness):
    node = node_with(harness, backend="joint_trajectory", action_space="joint_position",
                     joint_names=["j1", "j2"], joint_gripper=True, max_joint_step_rad=0.05)
    rig = harness.node("rig")
    trajs, grips = [], []
    rig.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", trajs.append, 50)
    rig.create_subscription(Float64, "/lara/gripper_command", lambda m: grips.append(m.data), 50)
    js = rig.create_publisher(JointState, "/joint_states", 10)
    chunks = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    node.trigger_configure()
    node.trigger_activate()
    assert node._state_machine.current_state[1] == "active"

    def feed():
        js.publish(JointState(name=["j2", "j1", "gripper"], position=[0.1, 0.0, 0.0]))
        publish_chunk(chunks, rig, [[0.3, 0.08, 1.0]] * 20, "joint_position")
        return any(t.points for t in trajs) and grips
    assert wait_for(feed, 15.0, period=0.1), node.reason
    moving = [t for t in trajs if t.points][-1]
    assert list(moving.joint_names) == ["j1", "j2"]
    # j1: 0 -> 0.3 clipped to one 0.05 rad step; j2: 0.1 -> 0.08 within the limit
    assert np.allclose(moving.points[0].positions, [0.05, 0.08])
    assert moving.points[0].time_from_start.nanosec == int(PERIOD * 1e9)
    assert grips[-1] == 1.0
    # chunks stop -> hold at the current joint positions (a joint_state_broadcaster keeps publishing)
    n = len(trajs)
    current = {"pos": [0.02, 0.09]}
    timer = rig.create_timer(0.05, lambda: js.publish(JointState(name=["j1", "j2"], position=current["pos"])))
    assert wait_for(lambda: node.reason.startswith("stale chunk"), 5.0)
    time.sleep(3 * PERIOD)
    held = trajs[-1]
    assert len(trajs) > n and np.allclose(held.points[0].positions, [0.02, 0.09])
    # stamp 0 = "start now": ros2_control's JTC never rejects it as late (a now-stamped
    # one-period point is rejected when it arrives more than one period late)
    assert held.header.stamp.sec == 0 and held.header.stamp.nanosec == 0
    # NaN in /joint_states: no hold command carries it, the node says why
    current["pos"] = [float("nan"), 0.09]
    n_before_nan = len(trajs)
    publish_chunk(chunks, rig, [[0.03, 0.09, 1.0]] * 40, "joint_position")
    assert wait_for(lambda: "joint state is NaN" in node.reason, 5.0), node.reason
    assert node.state == "fault"
    time.sleep(3 * PERIOD)
    assert all(np.all(np.isfinite(t.points[0].positions)) for t in trajs if t.points)
    current["pos"] = [0.02, 0.09]
    # joint states stop: no hold at the stale position (the controller keeps its last goal)
    rig.destroy_timer(timer)
    time.sleep(0.1)
    n = len(trajs)
    publish_chunk(chunks, rig, [[0.03, 0.09, 1.0]] * 40, "joint_position")
    assert wait_for(lambda: "stale joint states" in node.reason, 5.0), node.reason
    time.sleep(3 * PERIOD)
    assert len(trajs) <= n + 1, "hold commands sent from stale joint states"
    assert all(not t.points or np.all(np.isfinite(t.points[0].positions)) for t in trajs)
    assert all(t.points for t in trajs), "empty trajectory sent (ros2_control's JTC rejects it)"
    # a NaN chunk never reaches the controller
    publish_chunk(chunks, rig, [[float("inf"), 0.0, 0.0]] * 5, "joint_position")
    assert wait_for(lambda: node.rejected_chunks == 1, 5.0)
    assert all(np.all(np.isfinite(t.points[0].positions)) for t in trajs if t.points)


class FakePlanningComponent:
    """TEST DOUBLE of moveit_py's PlanningComponent: records the documented calls."""

    def __init__(self, log):
        self.log = log

    def set_start_state_to_current_state(self):
        self.log.append(("start_state",))

    def set_goal_state(self, pose_stamped_msg=None, pose_link=None):
        self.log.append(("goal", pose_stamped_msg, pose_link))

    def plan(self):
        self.log.append(("plan",))
        return type("PlanResult", (), {"trajectory": "traj", "__bool__": lambda s: True})()


class FakeMoveItPy:
    """TEST DOUBLE of moveit.planning.MoveItPy (constructor, get_planning_component, execute)."""

    def __init__(self, node_name):
        self.node_name, self.log = node_name, []

    def get_planning_component(self, group):
        self.log.append(("group", group))
        return FakePlanningComponent(self.log)

    def execute(self, trajectory, controllers=None):
        self.log.append(("execute", trajectory, controllers))


def test_moveit_py_backend_plans_integrated_pose_goals_with_test_double(harness):
    fakes = []
    node = node_with(harness, moveit_factory=lambda name, cfg=None: fakes.append(FakeMoveItPy(name)) or fakes[-1],
                     backend="moveit_py", planning_group="panda_arm", pose_link="panda_hand")
    rig = harness.node("rig")
    pose_pub = rig.create_publisher(PoseStamped, "/lara/ee_pose", 10)
    chunks = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    node.trigger_configure()
    node.trigger_activate()
    fake = fakes[0]
    assert ("group", "panda_arm") in fake.log

    def feed():
        pose = PoseStamped()
        pose.header.frame_id = "base"
        pose.pose.position.x, pose.pose.position.z, pose.pose.orientation.w = 0.4, 0.3, 1.0
        pose_pub.publish(pose)
        publish_chunk(chunks, rig, [[1.0, 0.0, -0.5, 0.0]] * 20, "ee_delta_xyz_gripper")
        return any(e[0] == "execute" for e in fake.log)
    assert wait_for(feed, 15.0, period=0.1), node.reason
    goals = [e for e in fake.log if e[0] == "goal"]
    g = goals[0][1]
    assert goals[0][2] == "panda_hand" and g.header.frame_id == "base"
    assert g.pose.position.x > 0.4 and g.pose.position.z < 0.3          # integrated +x, -z deltas
    i = fake.log.index(goals[0])
    assert fake.log[i - 1] == ("start_state",) and fake.log[i + 1] == ("plan",)
    assert fake.log[i + 2] == ("execute", "traj", [])


class FakeExecutionManager:
    """TEST DOUBLE of moveit_py's TrajectoryExecutionManager (stop_execution)."""

    def __init__(self, log):
        self.log = log

    def stop_execution(self):
        self.log.append(("stop_execution",))


class FakeMoveItPyHumble(FakeMoveItPy):
    """TEST DOUBLE of the Humble backport: execute(group_name, robot_trajectory, blocking=True),
    plus the MoveIt config dict and get_trajectory_execution_manager()."""

    def __init__(self, node_name, config_dict=None):
        super().__init__(node_name)
        self.config_dict = config_dict

    def execute(self, group_name, robot_trajectory, blocking=True):
        self.log.append(("execute_humble", group_name, robot_trajectory, blocking))

    def get_trajectory_execution_manager(self):
        return FakeExecutionManager(self.log)


def test_moveit_py_config_estop_stops_execution_humble_signature_and_target_in_box(harness, tmp_path):
    import yaml
    from std_srvs.srv import Trigger

    from helpers_runtime import call_service
    cfg = tmp_path / "moveit.yaml"
    cfg.write_text(yaml.safe_dump({"robot_description": "<robot name='r'/>", "planning_pipelines":
                                   {"pipeline_names": ["ompl"]}}))
    fakes = []
    node = node_with(harness, moveit_factory=lambda name, c=None: fakes.append(FakeMoveItPyHumble(name, c)) or fakes[-1],
                     backend="moveit_py", planning_group="arm", moveit_config_file=str(cfg),
                     workspace_min=[0.0, -1.0, 0.0], workspace_max=[0.42, 1.0, 1.0])
    rig = harness.node("rig")
    pose_pub = rig.create_publisher(PoseStamped, "/lara/ee_pose", 10)
    chunks = rig.create_publisher(ActionChunk, "/lara/action_chunk", 10)
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "inactive", node.reason
    fake = fakes[0]
    assert fake.config_dict["planning_pipelines"] == {"pipeline_names": ["ompl"]}   # the config reached MoveItPy
    node.trigger_activate()

    def feed():
        pose = PoseStamped()
        pose.header.frame_id = "base"
        pose.pose.position.x, pose.pose.position.z, pose.pose.orientation.w = 0.4, 0.3, 1.0
        pose_pub.publish(pose)
        publish_chunk(chunks, rig, [[1.0, 0.0, 0.0, 0.0]] * 20, "ee_delta_xyz_gripper")
        return len([e for e in fake.log if e[0] == "execute_humble"]) >= 3
    assert wait_for(feed, 15.0, period=0.1), (node.reason, fake.log[-5:])
    assert ("execute_humble", "arm", "traj", True) in fake.log          # Humble signature used
    goals = [e[1] for e in fake.log if e[0] == "goal"]
    # +x at full step every tick: the integrated target never leaves the box (x <= 0.42)
    assert max(g.pose.position.x for g in goals) <= 0.42 + 1e-9, [g.pose.position.x for g in goals]
    assert call_service(harness, rig, Trigger, "/lara/estop", Trigger.Request()).success
    assert wait_for(lambda: ("stop_execution",) in fake.log, 5.0)        # execution in flight stopped


def test_moveit_py_backend_refused_cleanly_where_moveit_is_missing(harness, tmp_path):
    pytest.importorskip("rclpy")
    try:
        import moveit.planning  # noqa: F401
        pytest.skip("moveit_py is installed here")
    except ImportError:
        pass
    cfg = tmp_path / "moveit.yaml"
    cfg.write_text("robot_description: <robot name='r'/>\nplanning_pipelines:\n  pipeline_names: [ompl]\n")
    node = node_with(harness, backend="moveit_py", moveit_config_file=str(cfg))
    node.trigger_configure()
    assert node._state_machine.current_state[1] == "unconfigured"
    assert "moveit_py" in node.reason and "not installed" in node.reason
