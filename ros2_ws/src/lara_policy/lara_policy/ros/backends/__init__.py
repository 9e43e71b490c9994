"""command_node backends: how a safe MotionCommand reaches the arm.

- ServoBackend ("servo", default): geometry_msgs/TwistStamped to MoveIt Servo (streaming).
- JointTrajectoryBackend ("joint_trajectory"): trajectory_msgs/JointTrajectory to ros2_control.
- FollowJointTrajectoryBackend ("follow_joint_trajectory"): control_msgs FollowJointTrajectory
  action goals (lazy import of control_msgs).
- MoveItPyBackend ("moveit_py"): pose goals planned + executed with moveit_py in a worker process.
Every backend also publishes the gripper command (std_msgs/Float64, -1 open .. +1 close).
"""
from __future__ import annotations

from .base import Backend, BackendError
from .follow_joint_trajectory import FollowJointTrajectoryBackend
from .joint_trajectory import JointTrajectoryBackend
from .moveit_py import MoveItPyBackend
from .servo import ServoBackend

BACKENDS = {"servo": ServoBackend, "joint_trajectory": JointTrajectoryBackend,
            "follow_joint_trajectory": FollowJointTrajectoryBackend, "moveit_py": MoveItPyBackend}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]


__all__ = ["Backend", "BackendError", "BACKENDS", "backend_class", "ServoBackend",
           "JointTrajectoryBackend", "FollowJointTrajectoryBackend", "MoveItPyBackend"]
