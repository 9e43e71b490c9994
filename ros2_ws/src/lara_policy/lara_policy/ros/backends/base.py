from __future__ import annotations

from std_msgs.msg import Float64

from ..safety import MotionCommand


class BackendError(RuntimeError):
    """A backend cannot be set up, or cannot execute an action space."""


class Backend:
    """Turns MotionCommands into messages. Subclasses set `name` and `action_spaces`."""
    name = "base"
    action_spaces: frozenset[str] = frozenset()
    # True when a command is a rate (velocity) that the motion server integrates on its own clock:
    # one sent early changes when it takes effect, not how far the arm goes (tick_on_chunk)
    commands_are_rates = False

    def __init__(self, node, gripper_topic: str, period: float):
        self.node = node
        self.period = float(period)
        self._gripper_pub = node.create_publisher(Float64, gripper_topic, 10) if gripper_topic else None
        self.gripper_out = None     # e.g. a GripperCommandOutput (control_msgs action) instead of the topic
        self.gripper_faults = False  # a gripper goal that keeps failing is a fault (gripper_fault_on_failure)

    @classmethod
    def check_action_space(cls, action_space: str) -> None:
        if action_space not in cls.action_spaces:
            raise BackendError(f"backend '{cls.name}' cannot execute action space '{action_space}' "
                               f"(it executes: {', '.join(sorted(cls.action_spaces))})")

    def send(self, cmd: MotionCommand) -> None:
        raise NotImplementedError

    def zero(self) -> None:
        """Command zero motion (gripper unchanged)."""
        raise NotImplementedError

    def activate(self) -> None:
        """Called when command_node arms (e.g. start / unpause MoveIt Servo). Raises
        BackendError with the reason when the motion server cannot be made to accept commands."""

    def pause(self) -> None:
        """Called on deactivate and e-stop after zero(): stop the motion server from executing
        anything else (e.g. pause Servo so no other twist source moves the arm). Never blocks long."""

    def fault_reason(self) -> str:
        """Non-empty while the motion server reports that it halted the arm (command_node then
        faults with this reason, zero motion)."""
        return ""

    def gripper_fault(self) -> str:
        """Non-empty while the gripper action output reports a goal that kept failing and
        gripper_fault_on_failure is set (command_node faults with it)."""
        if self.gripper_out is None or not self.gripper_faults:
            return ""
        return self.gripper_out.failure()

    def reset_gripper_fault(self) -> None:
        if self.gripper_out is not None:
            self.gripper_out.reset_failure()

    def send_gripper(self, value: float | None) -> None:
        if value is None:
            return
        if self.gripper_out is not None:
            self.gripper_out.send(value)
        elif self._gripper_pub is not None:
            self._gripper_pub.publish(Float64(data=float(value)))

    def close(self) -> None:
        if self.gripper_out is not None:
            self.gripper_out.close()
            self.gripper_out = None
        for pub in self._publishers():
            self.node.destroy_publisher(pub)

    def _publishers(self) -> list:
        return [self._gripper_pub] if self._gripper_pub is not None else []
