"""Gripper outputs of command_node: what a gripper driver understands.

- "float64" (default): std_msgs/Float64 on gripper_topic every tick, -1 open .. +1 close
  (LARA's own convention: sim_node and custom drivers).
- "gripper_command": a control_msgs/action/GripperCommand client (ros2_controllers'
  gripper_action_controller serves it at `<controller>/gripper_cmd`; so do many vendor
  drivers). The command -1..+1 maps linearly onto [open_position, closed_position] (driver
  units: m of gap, rad, ...). A goal is sent only when the target moves by more than
  `deadband` of the open-closed range, so the controller is not preempted 30 times a second.
"""
from __future__ import annotations

import math

from .base import BackendError


class GripperCommandOutput:
    def __init__(self, node, action_name: str, open_position: float, closed_position: float,
                 max_effort: float = 0.0, deadband: float = 0.05):
        try:
            from control_msgs.action import GripperCommand
        except ImportError as e:
            raise BackendError("gripper_interface 'gripper_command' needs control_msgs "
                               "(install ros-$ROS_DISTRO-control-msgs)") from e
        from rclpy.action import ActionClient

        for name, v in (("gripper_open_position", open_position), ("gripper_closed_position", closed_position),
                        ("gripper_max_effort", max_effort), ("gripper_deadband", deadband)):
            if not math.isfinite(v):
                raise BackendError(f"{name} must be finite, got {v}")
        if open_position == closed_position:
            raise BackendError("gripper_open_position and gripper_closed_position must differ")
        if max_effort < 0 or not 0 <= deadband < 1:
            raise BackendError(f"gripper_max_effort must be >= 0 and gripper_deadband in [0, 1), got "
                               f"{max_effort}, {deadband}")
        self.node = node
        self._Goal = GripperCommand.Goal
        self.client = ActionClient(node, GripperCommand, action_name)
        self.action_name = action_name
        self.open, self.closed = float(open_position), float(closed_position)
        self.max_effort, self.deadband = float(max_effort), float(deadband)
        self.last_sent: float | None = None
        self.goals_sent = 0

    def position_for(self, value: float) -> float:
        """-1 (open) .. +1 (close) -> driver position."""
        v = min(1.0, max(-1.0, float(value)))
        return self.open + (v + 1.0) / 2.0 * (self.closed - self.open)

    def send(self, value: float) -> None:
        pos = self.position_for(value)
        if self.last_sent is not None and abs(pos - self.last_sent) <= self.deadband * abs(self.closed - self.open):
            return
        if not self.client.server_is_ready():
            self.node.get_logger().warning(f"gripper action server {self.action_name} not available; gripper "
                                           "command not sent", throttle_duration_sec=2.0)
            return
        goal = self._Goal()
        goal.command.position = pos
        goal.command.max_effort = self.max_effort
        self.client.send_goal_async(goal)
        self.last_sent = pos
        self.goals_sent += 1

    def close(self) -> None:
        self.client.destroy()
