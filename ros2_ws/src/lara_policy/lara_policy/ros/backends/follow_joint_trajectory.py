"""control_msgs/action/FollowJointTrajectory client backend (ros2_controllers'
joint_trajectory_controller serves it at `<controller>/follow_joint_trajectory`).

Behaviour of the server this is written against (ros-controls/ros2_controllers,
joint_trajectory_controller.cpp, read at the 2026-08 snapshot):
- a goal is REJECTED when the controller is inactive or the trajectory fails validation
  (joint names, empty, timestamps);
- a new goal preempts the active one: the old goal ends ABORTED, INVALID_GOAL, "Current goal
  preempted by new incoming action." on Jazzy / Kilted / Rolling (joint_trajectory_controller.cpp
  preempt_active_goal: setAborted), but CANCELED, INVALID_GOAL, "Current goal cancelled due to new
  incoming action." on Humble (humble branch, preempt_active_goal: setCanceled). Neither is a
  fault here: only our NEWEST goal ending ABORTED is;
- cancelling the active goal makes the controller hold its current position (or decelerate
  to a hold, `should_decelerate_on_cancel`);
- PATH_TOLERANCE_VIOLATED / GOAL_TOLERANCE_VIOLATED abort the goal.

Here: one goal per control tick, one point reached after one period, header.stamp 0 ("start
on receipt", as the topic backend). Zero motion = cancel our goal in flight (the controller
holds), so no joint state is needed for a hold and nothing is sent while nothing moves.
E-stop / deactivate cancel every goal of ours, including one whose acceptance has not arrived
yet. A rejected goal, or our NEWEST goal aborted (not merely preempted by our next goal), is a
fault with the error code and the server's message until the next activate.
"""
from __future__ import annotations

import threading

from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectoryPoint

from ..safety import MotionCommand
from .base import Backend, BackendError

ERROR_CODES = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS", -3: "OLD_HEADER_TIMESTAMP",
               -4: "PATH_TOLERANCE_VIOLATED", -5: "GOAL_TOLERANCE_VIOLATED"}
STATUS_ABORTED = 6          # action_msgs/msg/GoalStatus


class FollowJointTrajectoryBackend(Backend):
    name = "follow_joint_trajectory"
    action_spaces = frozenset({"joint_position"})

    def __init__(self, node, gripper_topic: str, period: float, action_name: str, joint_names: list[str],
                 wait_s: float = 5.0):
        try:
            from control_msgs.action import FollowJointTrajectory  # noqa: PLC0415 (optional dependency)
        except ImportError as e:
            raise BackendError("backend 'follow_joint_trajectory' needs control_msgs "
                               "(install ros-$ROS_DISTRO-control-msgs); or use backend 'joint_trajectory'") from e
        from rclpy.action import ActionClient  # noqa: PLC0415

        super().__init__(node, gripper_topic, period)
        self._Goal = FollowJointTrajectory.Goal
        self.action_name = action_name
        self.client = ActionClient(node, FollowJointTrajectory, action_name)
        self.joint_names = list(joint_names)
        self.wait_s = float(wait_s)
        self._lock = threading.Lock()
        self._seq = 0                  # last goal sent
        self._cancel_upto = 0          # goals with seq <= this are cancelled when accepted
        self._handles: dict[int, object] = {}   # accepted goals not finished yet
        self._fault = ""
        self.goals_sent = self.cancels_sent = 0

    def activate(self) -> None:
        if not self.client.wait_for_server(timeout_sec=self.wait_s):
            raise BackendError(f"FollowJointTrajectory action server {self.action_name} not available after "
                               f"{self.wait_s:.1f} s (controller loaded and active?)")
        with self._lock:
            self._fault = ""

    def fault_reason(self) -> str:
        with self._lock:
            return self._fault

    def send(self, cmd: MotionCommand) -> None:
        goal = self._Goal()
        goal.trajectory.joint_names = list(self.joint_names)      # header.stamp 0: start on receipt
        pt = JointTrajectoryPoint()
        pt.positions = [float(p) for p in cmd.joints]
        nsec = int(round(self.period * 1e9))
        pt.time_from_start = Duration(sec=nsec // 1_000_000_000, nanosec=nsec % 1_000_000_000)
        goal.trajectory.points = [pt]
        with self._lock:
            self._seq += 1
            seq = self._seq
        fut = self.client.send_goal_async(goal)
        fut.add_done_callback(lambda f, s=seq: self._on_goal_response(s, f))
        self.goals_sent += 1
        self.send_gripper(cmd.gripper)

    def _on_goal_response(self, seq: int, fut) -> None:
        try:
            handle = fut.result()
        except Exception as e:  # noqa: BLE001
            with self._lock:
                self._fault = f"FollowJointTrajectory goal to {self.action_name} failed: {type(e).__name__}: {e}"
            return
        if not handle.accepted:
            with self._lock:
                self._fault = (f"FollowJointTrajectory goal rejected by {self.action_name} (controller inactive, "
                               "or joint names / trajectory refused; see the controller's log)")
            return
        with self._lock:
            cancel = seq <= self._cancel_upto
            if not cancel:
                self._handles[seq] = handle
        if cancel:              # zero / e-stop came while this goal was on its way: stop it
            self._cancel(handle)
            return
        handle.get_result_async().add_done_callback(lambda f, s=seq: self._on_result(s, f))

    def _on_result(self, seq: int, fut) -> None:
        with self._lock:
            self._handles.pop(seq, None)
            newest = seq == self._seq and seq > self._cancel_upto
        try:
            res = fut.result()
        except Exception:  # noqa: BLE001 - shutdown
            return
        if res.status == STATUS_ABORTED and newest:
            code = int(res.result.error_code)
            with self._lock:
                self._fault = (f"FollowJointTrajectory goal aborted by {self.action_name}: "
                               f"{ERROR_CODES.get(code, code)} ({code}) {res.result.error_string}").strip()

    def _cancel(self, handle) -> None:
        try:
            handle.cancel_goal_async()
            self.cancels_sent += 1
        except Exception as e:  # noqa: BLE001 - say so; the controller still ends the point after a period
            self.node.get_logger().error(f"cancel of a FollowJointTrajectory goal failed: {type(e).__name__}: {e}")

    def zero(self) -> None:
        """Hold = cancel our goals in flight (the controller then holds the current position)."""
        with self._lock:
            self._cancel_upto = self._seq
            handles, self._handles = list(self._handles.values()), {}
        for h in handles:
            self._cancel(h)

    def pause(self) -> None:
        self.zero()

    def close(self) -> None:
        self.zero()
        self.client.destroy()
        super().close()
