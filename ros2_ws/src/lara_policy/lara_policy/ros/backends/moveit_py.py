from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PoseStamped

from ..safety import MotionCommand
from .base import Backend, BackendError


def _quat_mul(q1, q2):
    x1, y1, z1, w1 = q1
    x2, y2, z2, w2 = q2
    return np.array([w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
                     w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2])


def _rotvec_to_quat(rv):
    angle = float(np.linalg.norm(rv))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = np.asarray(rv) / angle
    return np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])


def default_moveit_factory(node_name: str, config_dict: dict | None = None):
    """Import moveit_py lazily: only machines with MoveIt 2 installed have it. `config_dict`: the
    MoveIt configuration (robot_description, SRDF, kinematics, planning pipelines, controllers;
    what `MoveItConfigsBuilder(...).to_moveit_configs().to_dict()` returns). Without it MoveItPy
    reads --params-file paths from argv, which in command_node hold LARA's parameters only."""
    try:
        from moveit.planning import MoveItPy  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise BackendError("backend 'moveit_py' needs MoveIt 2's moveit_py (not installed here); "
                           "use backend 'servo' or 'joint_trajectory'") from e
    try:
        return MoveItPy(node_name=node_name, config_dict=config_dict) if config_dict else MoveItPy(node_name=node_name)
    except RuntimeError as e:   # "Unable to construct robot model", "Failed to load planning pipelines"
        raise BackendError(f"MoveItPy failed: {e} (give the MoveIt config: moveit_config_file)") from e


class MoveItPyBackend(Backend):
    """moveit_py: integrates EE deltas onto the current EE pose (/lara/ee_pose) and plans +
    executes pose goals through MoveIt's documented Python API:
        robot = MoveItPy(node_name=...); arm = robot.get_planning_component(group)
        arm.set_start_state_to_current_state(); arm.set_goal_state(pose_stamped_msg=..., pose_link=...)
        result = arm.plan(); robot.execute(result.trajectory, controllers=[])
    Planning is slow compared with the control rate, so a worker thread plans to the NEWEST
    integrated target whenever the previous execution finished (goals coalesce).
    zero(): drops the pending goal and re-anchors the target at the current pose, so no new
    motion is started; pause() (deactivate, e-stop) also stops the execution in flight.
    The integrated target is clamped to the workspace box. Limits NOT lifted: plan() holds the
    GIL in moveit_py (execute releases it), so while OMPL plans, command_node's control thread
    and e-stop service wait (up to the planning time); use the servo backend for reactive
    control.

    NOT exercised against a real MoveIt here (MoveIt is not installable on these machines):
    tests use a test double that records the calls above (`moveit_factory` argument)."""
    name = "moveit_py"
    action_spaces = frozenset({"ee_delta_xyz_gripper", "ee_delta_6d_gripper"})

    def __init__(self, node, gripper_topic: str, period: float, planning_group: str, pose_link: str,
                 current_pose, moveit_factory=None, threaded: bool = True, node_name: str = "lara_moveit_py",
                 config_dict: dict | None = None, workspace=None):
        super().__init__(node, gripper_topic, period)
        self._current_pose = current_pose          # callable -> PoseStamped | None
        self._workspace = workspace                # callable -> (min, max) arrays or (None, None)
        self.pose_link = pose_link
        self.group = planning_group
        self.robot = (moveit_factory or default_moveit_factory)(node_name, config_dict)
        self.arm = self.robot.get_planning_component(planning_group)
        self._lock = threading.Lock()
        self._target: PoseStamped | None = None    # integrated target
        self._pending = False
        self._stop = threading.Event()
        self.goals_sent = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="moveit_py_backend", daemon=True)
            self._thread.start()

    def send(self, cmd: MotionCommand) -> None:
        with self._lock:
            base = self._target if self._target is not None else self._current_pose()
            if base is None:
                raise BackendError("moveit_py backend: no end-effector pose received yet")
            tgt = PoseStamped()
            tgt.header.frame_id = base.header.frame_id
            tgt.header.stamp = self.node.get_clock().now().to_msg()
            p, o = base.pose.position, base.pose.orientation
            xyz = np.array([p.x, p.y, p.z]) + np.asarray(cmd.linear_step, dtype=np.float64)
            lo, hi = self._workspace() if self._workspace is not None else (None, None)
            if lo is not None:
                # the integrated target runs ahead of the measured pose while planning lags:
                # keep the TARGET inside the workspace box, not only the next step
                xyz = np.clip(xyz, lo, hi)
            tgt.pose.position.x, tgt.pose.position.y, tgt.pose.position.z = (float(v) for v in xyz)
            q = np.array([o.x, o.y, o.z, o.w])
            if cmd.angular_step is not None and np.any(cmd.angular_step != 0):
                q = _quat_mul(_rotvec_to_quat(cmd.angular_step), q)   # rotation in the base frame
                q /= np.linalg.norm(q)
            tgt.pose.orientation.x, tgt.pose.orientation.y, tgt.pose.orientation.z, tgt.pose.orientation.w = \
                (float(v) for v in q)
            self._target, self._pending = tgt, True
        self.send_gripper(cmd.gripper)
        self._wake.set()

    def zero(self) -> None:
        with self._lock:
            self._target, self._pending = None, False

    def pause(self) -> None:
        """Deactivate / e-stop: also stop a trajectory in flight (MoveItCpp's
        TrajectoryExecutionManager.stop_execution, bound in moveit_py)."""
        self.zero()
        try:
            self.robot.get_trajectory_execution_manager().stop_execution()
        except AttributeError as e:
            raise BackendError(f"moveit_py cannot stop the execution in flight: {e}") from e

    def step(self) -> bool:
        """Plan + execute the pending target once; True when a goal was executed."""
        with self._lock:
            if not self._pending or self._target is None:
                return False
            goal, self._pending = self._target, False
        try:
            self.arm.set_start_state_to_current_state()
            self.arm.set_goal_state(pose_stamped_msg=goal, pose_link=self.pose_link)
            result = self.arm.plan()
            if not result:
                self.last_error = "planning failed"
                return False
            try:
                self.robot.execute(result.trajectory, controllers=[])          # Jazzy, Kilted, Rolling
            except TypeError:
                self.robot.execute(self.group, result.trajectory, blocking=True)   # Humble backport
            self.goals_sent += 1
            return True
        except Exception as e:  # noqa: BLE001 - a planner error must never kill the node
            self.last_error = f"{type(e).__name__}: {e}"
            self.node.get_logger().error(f"moveit_py plan/execute failed: {self.last_error}")
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            self.step()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        super().close()
