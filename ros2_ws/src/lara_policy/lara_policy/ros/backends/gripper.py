"""Gripper outputs of command_node: what a gripper driver understands.

- "float64" (default): std_msgs/Float64 on gripper_topic every tick, -1 open .. +1 close
  (LARA's own convention: sim_node and custom drivers).
- "gripper_command": a control_msgs/action/GripperCommand client (ros2_controllers'
  gripper_action_controller on Humble / Jazzy at `<controller>/gripper_cmd`, removed on
  Kilted / Rolling; franka_gripper's `franka_gripper/gripper_action`; the Robotiq driver's
  humble branch). Goal: command.position, command.max_effort.
- "parallel_gripper_command": a control_msgs/action/ParallelGripperCommand client
  (ros2_controllers' parallel_gripper_action_controller at `<controller>/gripper_cmd`, the
  Robotiq driver's main branch). Goal: command (sensor_msgs/JointState) with ONE position
  (the controller rejects any other count), the joint name and the effort.

The command -1..+1 maps linearly onto [open_position, closed_position] in driver units (the
positions may run either way: a Robotiq 2F-85 knuckle is 0.0 open .. 0.7929 closed, a Franka
hand finger 0.04 open .. 0.0 closed). A goal is sent only when the target moves by more than
`deadband` of the open-closed range, so the controller is not preempted 30 times a second.

The result of every goal is read:
- SUCCEEDED: done (a standing failure clears);
- CANCELED: preempted by our own next goal (the controllers cancel the active goal when a new
  one arrives): nothing to do;
- ABORTED (or REJECTED) of our newest goal: resent, at most `max_retries` times; when it keeps
  failing the output reports `failure()` (command_node faults with it when
  gripper_fault_on_failure is true, else logs it). NOT resent, and no failure: an abort while
  closing with the fingers stopped short of closed, i.e. `stalled` in the result, or the result
  position between open and closed by more than the deadband: the gripper holds an object
  (gripper_action_controller without allow_stalling aborts a stalled grasp; franka_gripper
  aborts a grasp whose width ends outside its epsilon, which is what an object does).
"""
from __future__ import annotations

import math
import threading

from .base import BackendError

STATUS_SUCCEEDED, STATUS_CANCELED, STATUS_ABORTED = 4, 5, 6     # action_msgs/msg/GoalStatus
INTERFACES = ("float64", "gripper_command", "parallel_gripper_command")


def check_gripper_params(interface: str, open_position, closed_position, max_effort, deadband,
                         max_retries) -> None:
    """Refuse what no driver accepts (BackendError names the parameter). Runs before any import."""
    if interface not in INTERFACES:
        raise BackendError(f"parameter gripper_interface must be one of {', '.join(INTERFACES)}, got '{interface}'")
    if interface == "float64":
        return
    for name, v in (("gripper_open_position", open_position), ("gripper_closed_position", closed_position),
                    ("gripper_max_effort", max_effort)):
        if v is None:
            raise BackendError(
                f"gripper_interface {interface} needs {name} (driver units; there is no default that fits "
                "every gripper: Robotiq 2F-85 knuckle open 0.0 / closed 0.7929 rad, max_effort e.g. 50; "
                "Franka hand finger open 0.04 / closed 0.0 m (half the width), max_effort = grasp force in N, "
                "e.g. 20; see lara_bringup/config/ur5e_robotiq.yaml and franka_fr3.yaml)")
    for name, v in (("gripper_open_position", open_position), ("gripper_closed_position", closed_position),
                    ("gripper_max_effort", max_effort), ("gripper_deadband", deadband)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BackendError(f"{name} must be a finite number, got {v!r}")
    if open_position == closed_position:
        raise BackendError("gripper_open_position and gripper_closed_position must differ")
    if not max_effort > 0:
        raise BackendError(
            f"gripper_max_effort must be > 0, got {max_effort}: an effort-interface gripper controller clamps its "
            "command to +-max_effort (0 = no force at all) and franka_gripper uses it as the grasp force")
    if not 0 <= deadband < 1:
        raise BackendError(f"gripper_deadband must be in [0, 1), got {deadband}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise BackendError(f"gripper_max_retries must be an integer >= 0, got {max_retries!r}")


class _GripperActionOutput:
    """Shared goal bookkeeping of the two action interfaces (subclasses build goals / read results)."""
    interface = ""

    def __init__(self, node, action_name: str, open_position: float, closed_position: float,
                 max_effort: float, deadband: float = 0.05, max_retries: int = 2, joint_name: str = ""):
        check_gripper_params(self.interface, open_position, closed_position, max_effort, deadband, max_retries)
        from rclpy.action import ActionClient  # noqa: PLC0415

        self.node = node
        self.action = self._action_type()
        self.client = ActionClient(node, self.action, action_name)
        self.action_name = action_name
        self.open, self.closed = float(open_position), float(closed_position)
        self.max_effort, self.deadband = float(max_effort), float(deadband)
        self.max_retries = int(max_retries)
        self.joint_name = joint_name
        self._lock = threading.Lock()
        self.last_sent: float | None = None
        self.goals_sent = 0
        self.retries = 0
        self._seq = 0                        # newest goal
        self._failure = ""
        self.outcomes: dict[str, int] = {}

    # -- subclass API
    def _action_type(self):
        raise NotImplementedError

    def _goal(self, position: float):
        raise NotImplementedError

    def _result_position(self, result) -> float:
        raise NotImplementedError

    # -- mapping
    def position_for(self, value: float) -> float:
        """-1 (open) .. +1 (close) -> driver position."""
        v = min(1.0, max(-1.0, float(value)))
        return self.open + (v + 1.0) / 2.0 * (self.closed - self.open)

    def failure(self) -> str:
        with self._lock:
            return self._failure

    def reset_failure(self) -> None:
        """Re-arm: forget a standing failure, and the last target (so the next command is sent
        again, even when it equals the goal that kept failing)."""
        with self._lock:
            self._failure = ""
            self.last_sent = None

    def send(self, value: float) -> None:
        pos = self.position_for(value)
        if self.last_sent is not None and abs(pos - self.last_sent) <= self.deadband * abs(self.closed - self.open):
            return
        if not self.client.server_is_ready():
            self.node.get_logger().warning(
                f"gripper action server {self.action_name} ({self.action.__name__}) not available; gripper command "
                "not sent (is the controller active, and is gripper_interface the type it serves?)",
                throttle_duration_sec=2.0)
            return
        self.last_sent = pos
        self._send_goal(pos, attempt=0)

    def _send_goal(self, pos: float, attempt: int) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
        fut = self.client.send_goal_async(self._goal(pos))
        fut.add_done_callback(lambda f: self._on_response(seq, pos, attempt, f))
        self.goals_sent += 1

    def _count(self, what: str) -> None:
        with self._lock:
            self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def _on_response(self, seq: int, pos: float, attempt: int, fut) -> None:
        try:
            handle = fut.result()
        except Exception as e:  # noqa: BLE001 - shutdown
            self._failed(seq, pos, attempt, f"goal failed: {type(e).__name__}: {e}", retry=False)
            return
        if not handle.accepted:
            self._count("rejected")
            self._failed(seq, pos, attempt, "goal rejected", retry=True)
            return
        handle.get_result_async().add_done_callback(lambda f: self._on_result(seq, pos, attempt, f))

    def _on_result(self, seq: int, pos: float, attempt: int, fut) -> None:
        try:
            res = fut.result()
        except Exception:  # noqa: BLE001 - shutdown
            return
        status, result = res.status, res.result
        if status == STATUS_SUCCEEDED:
            self._count("succeeded")
            with self._lock:
                if seq == self._seq:
                    self._failure = ""
            return
        if status == STATUS_CANCELED:
            self._count("canceled")
            return
        self._count("aborted" if status == STATUS_ABORTED else f"status {status}")
        reached = self._result_position(result)
        if self._holds_object(pos, reached, bool(getattr(result, "stalled", False))):
            self._count("grasped")
            self.node.get_logger().info(f"gripper stopped at {reached:.4f} short of {pos:.4f}: holding an object "
                                        "(goal not resent)")
            with self._lock:
                if seq == self._seq:
                    self._failure = ""
            return
        self._failed(seq, pos, attempt, f"goal aborted (result position {reached:.4f}, "
                                        f"reached_goal {bool(getattr(result, 'reached_goal', False))})", retry=True)

    def _holds_object(self, target: float, reached: float, stalled: bool) -> bool:
        closing = abs(target - self.closed) < abs(target - self.open)
        if not closing:
            return False
        if stalled:
            return True
        if not math.isfinite(reached):
            return False
        lo, hi = sorted((self.open, self.closed))
        margin = max(self.deadband, 0.02) * (hi - lo)
        return lo + margin < reached < hi - margin and abs(reached - target) > margin

    def _failed(self, seq: int, pos: float, attempt: int, what: str, retry: bool) -> None:
        with self._lock:
            newest = seq == self._seq
        if not newest:
            return                      # an older goal: our newer one decides
        if retry and attempt < self.max_retries:
            self.retries += 1
            self.node.get_logger().warning(f"gripper {what} by {self.action_name} (target {pos:.4f}); resending "
                                           f"({attempt + 1}/{self.max_retries})")
            self._send_goal(pos, attempt + 1)
            return
        text = (f"gripper {what} by {self.action_name} (target {pos:.4f})"
                + (f" after {attempt} resend(s)" if attempt else ""))
        with self._lock:
            self._failure = text
        self.node.get_logger().error(text)

    def close(self) -> None:
        self.client.destroy()


class GripperCommandOutput(_GripperActionOutput):
    """control_msgs/action/GripperCommand: command.position, command.max_effort."""
    interface = "gripper_command"

    def _action_type(self):
        try:
            from control_msgs.action import GripperCommand  # noqa: PLC0415
        except ImportError as e:
            raise BackendError("gripper_interface 'gripper_command' needs control_msgs "
                               "(install ros-$ROS_DISTRO-control-msgs)") from e
        return GripperCommand

    def _goal(self, position: float):
        goal = self.action.Goal()
        goal.command.position = float(position)
        goal.command.max_effort = self.max_effort
        return goal

    def _result_position(self, result) -> float:
        return float(result.position)


class ParallelGripperCommandOutput(_GripperActionOutput):
    """control_msgs/action/ParallelGripperCommand: command is a sensor_msgs/JointState with one
    position (parallel_gripper_action_controller rejects any other count), the joint name and
    the effort (used by the controller where it has a max_effort_interface, else its own
    max_effort parameter)."""
    interface = "parallel_gripper_command"

    def _action_type(self):
        try:
            from control_msgs.action import ParallelGripperCommand  # noqa: PLC0415
        except ImportError as e:
            raise BackendError("gripper_interface 'parallel_gripper_command' needs control_msgs with "
                               "ParallelGripperCommand (install ros-$ROS_DISTRO-control-msgs)") from e
        return ParallelGripperCommand

    def _goal(self, position: float):
        goal = self.action.Goal()
        if self.joint_name:
            goal.command.name = [self.joint_name]
        goal.command.position = [float(position)]
        goal.command.effort = [self.max_effort]
        return goal

    def _result_position(self, result) -> float:
        pos = list(result.state.position)
        return float(pos[0]) if pos else float("nan")


OUTPUTS = {"gripper_command": GripperCommandOutput, "parallel_gripper_command": ParallelGripperCommandOutput}
