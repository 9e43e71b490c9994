from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PoseStamped

from ..moveit_worker import START_TIMEOUT_S, MoveItWorker, WorkerError, pose_to_dict
from ..safety import MotionCommand
from .base import Backend, BackendError
from .controller_cancel import ControllerCanceller


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


class MoveItPyBackend(Backend):
    """moveit_py: integrates EE deltas onto the current EE pose (/lara/ee_pose) and plans +
    executes pose goals through MoveIt's documented Python API:
        robot = MoveItPy(node_name=..., config_dict=...); arm = robot.get_planning_component(group)
        arm.set_start_state_to_current_state(); arm.set_goal_state(pose_stamped_msg=..., pose_link=...)
        result = arm.plan(); robot.execute(result.trajectory, controllers=[])
        robot.get_trajectory_execution_manager().stop_execution()
    MoveItPy lives in a worker PROCESS (lara_policy.ros.moveit_worker): plan() holds the GIL in
    moveit_py, and in command_node's process that stalled the control loop and the e-stop for
    the whole planning time. Nothing here waits for the worker once it is up: send() integrates
    the target every tick and hands the NEWEST target to the worker whenever it is idle (goals
    coalesce); zero() (any fault) drops the pending target and, like pause() (deactivate,
    e-stop), stops the execution in flight and discards a plan still being computed (a
    shared-memory flag, never a wait) and, with `controller_actions`, also cancels every goal of
    those FollowJointTrajectory servers (needed on Humble, whose blocking execute holds the
    worker's GIL: see controller_cancel.py). A dead worker is a fault with its exit code or signal
    (fault_reason); a worker that cannot start is a configure refusal with its reason.
    The integrated target is clamped to the workspace box.

    NOT exercised against a real MoveIt here (MoveIt is not installable on these machines):
    tests drive the worker process with a FAKE moveit_py module on its sys.path
    (tests/ros/fake_moveit) and in-process test doubles (`moveit_factory`, run on a thread)."""
    name = "moveit_py"
    action_spaces = frozenset({"ee_delta_xyz_gripper", "ee_delta_6d_gripper"})

    def __init__(self, node, gripper_topic: str, period: float, planning_group: str, pose_link: str,
                 current_pose, moveit_factory=None, node_name: str = "lara_moveit_py",
                 config_dict: dict | None = None, workspace=None, start_timeout_s: float = START_TIMEOUT_S,
                 controller_actions: list[str] = (), ros_distro: str = ""):
        if not config_dict and moveit_factory is None:
            # MoveItPy without config_dict reads `--params-file` from sys.argv (moveit_py/moveit/utils.py,
            # get_launch_params_filepaths), and the spawned worker carries command_node's argv: it would
            # load command_node's parameters and fail with "Failed to load planning pipelines"
            raise BackendError(
                "backend moveit_py needs moveit_config_file: a YAML of the MoveIt config dict, e.g. "
                "MoveItConfigsBuilder('ur', package_name='ur_moveit_config').moveit_cpp(file_path=...)"
                ".to_moveit_configs().to_dict() dumped with yaml.safe_dump (docs/runtime_command_recorder.md)")
        if config_dict is not None and moveit_factory is None:
            pipes = config_dict.get("planning_pipelines")
            if not (isinstance(pipes, dict) and pipes.get("pipeline_names")):
                raise BackendError(
                    "moveit_config_file has no planning_pipelines.pipeline_names (MoveItCpp throws \"Failed to load "
                    "planning pipelines from parameter server\" without it): build the dict with "
                    "MoveItConfigsBuilder(...).moveit_cpp(file_path=<your moveit_cpp.yaml>) before to_dict()")
        if ros_distro == "humble" and not [a for a in controller_actions if a.strip("/")]:
            raise BackendError(
                "backend moveit_py on Humble needs moveit_controller_actions (the FollowJointTrajectory action(s) "
                "MoveIt executes on, e.g. /scaled_joint_trajectory_controller/follow_joint_trajectory): Humble's "
                "moveit_py execute() holds the GIL while the arm moves, so the worker cannot call stop_execution "
                "and the e-stop must cancel at the controller")
        super().__init__(node, gripper_topic, period)
        self.canceller = ControllerCanceller(node, list(controller_actions)) if controller_actions else None
        self._current_pose = current_pose          # callable -> PoseStamped | None
        self._workspace = workspace                # callable -> (min, max) arrays or (None, None)
        self.pose_link = pose_link
        self.group = planning_group
        self._lock = threading.Lock()
        self._target: PoseStamped | None = None    # integrated target
        self._pending = False
        logger = node.get_logger()

        def log(level: str, text: str) -> None:
            (logger.error if level == "error" else logger.warning)(text)
        try:
            self.worker = MoveItWorker(node_name, config_dict, planning_group, pose_link,
                                       robot_factory=moveit_factory, start_timeout_s=start_timeout_s, log=log)
        except WorkerError as e:
            raise BackendError(str(e)) from e

    @property
    def goals_sent(self) -> int:
        return self.worker.goals_sent

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
                # a rotation vector about the base frame's axes, composed on the LEFT (q_delta * q:
                # MoveIt Servo's twist convention, docs/runtime_command_recorder.md "Rotations")
                q = _quat_mul(_rotvec_to_quat(cmd.angular_step), q)
                q /= np.linalg.norm(q)
            tgt.pose.orientation.x, tgt.pose.orientation.y, tgt.pose.orientation.z, tgt.pose.orientation.w = \
                (float(v) for v in q)
            self._target, self._pending = tgt, True
            if self.worker.submit(pose_to_dict(tgt)):      # idle worker: the newest target, never a wait
                self._pending = False
        self.send_gripper(cmd.gripper)

    def zero(self) -> None:
        """Zero motion (every fault, stale input, end of chunk): drop the pending target and stop
        the goal being planned or executed, if any (once per goal)."""
        with self._lock:
            self._target, self._pending = None, False
        if self.worker.stop_if_busy() and self.canceller is not None:
            self.canceller.cancel_all("zero motion while a moveit_py goal was in flight")

    def pause(self) -> None:
        """Deactivate / e-stop: stop a trajectory in flight (MoveItCpp's
        TrajectoryExecutionManager.stop_execution, called by the worker) and discard a plan
        still being computed, busy or not. Returns at once."""
        with self._lock:
            self._target, self._pending = None, False
        self.worker.stop()
        if self.canceller is not None:      # Humble: the worker cannot stop a blocking execute itself
            self.canceller.cancel_all("deactivate / e-stop")

    def activate(self) -> None:
        dead = self.worker.death_reason()
        if dead:
            raise BackendError(f"{dead}; deactivate, cleanup and configure again to restart it")

    def fault_reason(self) -> str:
        return self.worker.death_reason()

    def close(self) -> None:
        self.worker.close()
        if self.canceller is not None:
            self.canceller.close()
            self.canceller = None
        super().close()
