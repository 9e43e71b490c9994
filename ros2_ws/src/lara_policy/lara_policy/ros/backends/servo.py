from __future__ import annotations

from geometry_msgs.msg import TwistStamped

from ..safety import MotionCommand
from .base import Backend


class ServoBackend(Backend):
    """MoveIt Servo: publishes geometry_msgs/TwistStamped (twist = step / control period).
    Zero motion = an all-zero twist, published every tick so Servo halts the arm."""
    name = "servo"
    action_spaces = frozenset({"ee_delta_xyz_gripper", "ee_delta_6d_gripper"})

    def __init__(self, node, gripper_topic: str, period: float, twist_topic: str, frame_id: str):
        super().__init__(node, gripper_topic, period)
        self.frame_id = frame_id
        self._pub = node.create_publisher(TwistStamped, twist_topic, 10)

    def _twist(self, lin=(0.0, 0.0, 0.0), ang=(0.0, 0.0, 0.0)) -> TwistStamped:
        msg = TwistStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in lin)
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in ang)
        return msg

    def send(self, cmd: MotionCommand) -> None:
        lin = cmd.linear_step / self.period
        ang = cmd.angular_step / self.period if cmd.angular_step is not None else (0.0, 0.0, 0.0)
        self._pub.publish(self._twist(lin, ang))
        self.send_gripper(cmd.gripper)

    def zero(self) -> None:
        self._pub.publish(self._twist())

    def _publishers(self) -> list:
        return super()._publishers() + [self._pub]
