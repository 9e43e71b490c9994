from __future__ import annotations

from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..safety import MotionCommand
from .base import Backend


class JointTrajectoryBackend(Backend):
    """ros2_control (joint_trajectory_controller): one-point JointTrajectory per control step,
    reached after one control period. Zero motion = hold: a trajectory to the current joint
    positions (from /joint_states), or an empty trajectory (the controller's "stop") when no
    joint state is known yet."""
    name = "joint_trajectory"
    action_spaces = frozenset({"joint_position"})

    def __init__(self, node, gripper_topic: str, period: float, trajectory_topic: str,
                 joint_names: list[str], current_positions):
        super().__init__(node, gripper_topic, period)
        self.joint_names = list(joint_names)
        self._current = current_positions          # callable -> np.ndarray | None
        self._pub = node.create_publisher(JointTrajectory, trajectory_topic, 10)

    def _traj(self, positions) -> JointTrajectory:
        msg = JointTrajectory()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.joint_names = list(self.joint_names)
        if positions is not None:
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
        self._pub.publish(self._traj(self._current()))

    def _publishers(self) -> list:
        return super()._publishers() + [self._pub]
