from __future__ import annotations

from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..safety import MotionCommand
from .base import Backend


class JointTrajectoryBackend(Backend):
    """ros2_control (joint_trajectory_controller): one-point JointTrajectory per control step,
    reached after one control period.

    header.stamp is 0 ("start when received"): ros2_control's JTC rejects a trajectory with a
    non-zero stamp that ends in the past, which a now-stamped one-period point does whenever it
    arrives more than one period late (latency, clock offset between hosts).
    Zero motion = hold: a trajectory to the current joint positions (from /joint_states), sent
    only when those are known, fresh and finite. Otherwise nothing is sent and the controller
    keeps its last goal (ROS 2's JTC rejects an empty trajectory, so there is no "stop" message;
    a stale or NaN position must never become a goal)."""
    name = "joint_trajectory"
    action_spaces = frozenset({"joint_position"})

    def __init__(self, node, gripper_topic: str, period: float, trajectory_topic: str,
                 joint_names: list[str], current_positions):
        super().__init__(node, gripper_topic, period)
        self.joint_names = list(joint_names)
        self._current = current_positions          # callable -> np.ndarray | None (fresh, finite)
        self._pub = node.create_publisher(JointTrajectory, trajectory_topic, 10)

    def _traj(self, positions) -> JointTrajectory:
        msg = JointTrajectory()     # header.stamp stays 0: start on receipt
        msg.joint_names = list(self.joint_names)
        pt = JointTrajectoryPoint()
        pt.positions = [float(p) for p in positions]
        nsec = int(round(self.period * 1e9))
        pt.time_from_start = Duration(sec=nsec // 1_000_000_000, nanosec=nsec % 1_000_000_000)
        msg.points = [pt]
        return msg

    def send(self, cmd: MotionCommand) -> None:
        self._pub.publish(self._traj(cmd.joints))
        self.send_gripper(cmd.gripper)

    def zero(self) -> None:
        current = self._current()
        if current is not None:
            self._pub.publish(self._traj(current))

    def _publishers(self) -> list:
        return super()._publishers() + [self._pub]
