"""Does the arm follow what command_node commands through MoveIt Servo? Two silent failures
that leave a real arm standing still while command_node reports "armed, moving":

1. Servo writes to a controller that is not active. UR: ur_moveit_config's ur_servo.yaml sets
   `command_out_topic: /forward_position_controller/commands`, but the UR driver starts
   scaled_joint_trajectory_controller (Humble..Kilted; joint_trajectory_controller on main) and
   loads forward_position_controller inactive: Servo publishes, nothing moves, Servo's status
   stays "No warnings".
2. Servo judges twists by their stamp on ITS OWN clock (jazzy servo_node.cpp processTwistCommand,
   humble servo_calcs.cpp: `now - stamp >= incoming_command_timeout` = stale). Hosts whose
   clocks differ by more than that timeout, or a use_sim_time mismatch, make every twist stale
   (nothing moves, no status) or, the other way round, keep the last twist alive for the offset.

What this watch does (command_node runs it at every tick, servo backend):
- `max_not_following_s` > 0: while the commanded twist stays non-zero for that long (and adds
  up to at least MIN_COMMANDED_M / MIN_COMMANDED_RAD), the arm's joint states (joint_names, or
  every joint) must move by more than MIN_JOINT_DELTA_RAD or the end-effector pose by more than
  MIN_EE_DELTA_M; else command_node faults "arm not following: ..." (zero motion), LATCHED until
  the next activate (an unlatched fault would let Servo get 1 s of twists again every time).
  Also a fault: joint states that were arriving stop arriving while commanding motion. With no
  joint states and no pose at all nothing can be judged (a warning, once).
- `max_clock_offset_s` > 0: the stamps of the joint states (stamped by the robot's
  joint_state_broadcaster on the controller host's clock, the clock Servo runs on when it runs
  there) are compared with this node's clock at arrival; the smallest difference over the last
  2 s (the one with the least transport delay) estimates the offset. More than the limit either
  way: fault "clock offset: ..." until the offset is back within it (not latched).
Both are judged on the node clock (arrival times), the one every other age check uses.
"""
from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np
from sensor_msgs.msg import JointState

MIN_JOINT_DELTA_RAD = 0.002      # encoder noise is ~1e-5 rad; a 1 cm motion of a UR5e moves a joint > 0.01 rad
MIN_EE_DELTA_M = 0.002
MIN_COMMANDED_M = 0.01           # judge only after at least 1 cm (or 0.05 rad) was commanded
MIN_COMMANDED_RAD = 0.05
OFFSET_WINDOW_S = 2.0
OFFSET_MIN_SAMPLES = 5


class MotionWatch:
    def __init__(self, node, joint_states_topic: str, joint_names: list[str], ee_pose, *,
                 max_not_following_s: float = 0.0, max_clock_offset_s: float = 0.0):
        self.node = node
        self.topic = joint_states_topic
        self.joint_names = list(joint_names)
        self._ee_pose = ee_pose               # callable -> PoseStamped | None (command_node's newest pose)
        self.window = float(max_not_following_s)
        self.max_offset = float(max_clock_offset_s)
        self._lock = threading.Lock()
        self._joints: dict[str, float] = {}
        self._joint_arrival: float | None = None
        self._offsets: deque = deque(maxlen=200)      # (arrival, arrival - stamp)
        self._sub = node.create_subscription(JointState, joint_states_topic, self._on_joints, 10)
        self.reset()

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return
        now = self._now()
        with self._lock:
            for n, p in zip(msg.name, msg.position):
                if math.isfinite(p):
                    self._joints[n] = float(p)
            self._joint_arrival = now
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if stamp > 0:
                self._offsets.append((now, now - stamp))

    def _joint_vector(self) -> np.ndarray | None:
        names = self.joint_names or sorted(self._joints)
        if not names or any(n not in self._joints for n in names):
            return None
        return np.array([self._joints[n] for n in names])

    def _ee_xyz(self) -> np.ndarray | None:
        msg = self._ee_pose()
        if msg is None:
            return None
        p = msg.pose.position
        v = np.array([p.x, p.y, p.z])
        return v if np.all(np.isfinite(v)) else None

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the commanded-motion window and clear a latched fault (command_node: activate)."""
        with self._lock:
            self._since: float | None = None
            self._commanded = np.zeros(2)         # (metres, radians) commanded since _since
            self._q0 = self._x0 = None
            self._latched = ""
            self._warned = False
        self._offsets.clear()

    def clock_offset(self, now: float) -> float | None:
        """Estimated (this node's clock - joint states' clock) in s, or None (too few stamped samples)."""
        with self._lock:
            recent = [d for t, d in self._offsets if now - OFFSET_WINDOW_S <= t <= now + 1.0]
        if len(recent) < OFFSET_MIN_SAMPLES:
            return None
        # d = offset + transport delay (>= 0): the smallest d is the best estimate when the joint
        # states' clock is behind ours; when it is ahead, offset < 0 and d stays < 0 as well
        return float(min(recent))

    def check(self, now: float, cmd) -> str:
        """Called once per tick with the command about to be sent (None = zero motion). Returns
        the fault reason ('' = fine)."""
        if self.max_offset > 0:
            off = self.clock_offset(now)
            if off is not None and abs(off) > self.max_offset:
                side = "behind" if off > 0 else "ahead of"
                return (f"clock offset: {self.topic} stamps are {abs(off):.3f} s {side} this node's clock "
                        f"(> max_clock_offset_s {self.max_offset:.3f}): MoveIt Servo compares twist stamps with "
                        "its own clock (incoming_command_timeout), so every twist is stale (nothing moves) or the "
                        "last one outlives its sender; synchronise the hosts (chrony/PTP) and set the same "
                        "use_sim_time on every node")
        if self.window <= 0:
            return ""
        with self._lock:
            if self._latched:
                return self._latched
            moving = cmd is not None and getattr(cmd, "moving", False) and cmd.linear_step is not None
            if not moving:
                self._since, self._q0, self._x0 = None, None, None
                self._commanded[:] = 0.0
                return ""
            q, x = self._joint_vector(), self._ee_xyz()
            if self._since is None:
                self._since, self._q0, self._x0 = now, q, x
                self._commanded[:] = 0.0
            self._commanded[0] += float(np.linalg.norm(cmd.linear_step))
            if cmd.angular_step is not None:
                self._commanded[1] += float(np.linalg.norm(cmd.angular_step))
            if self._q0 is None:
                self._q0 = q
            if self._x0 is None:
                self._x0 = x
            elapsed = now - self._since
            if elapsed < self.window:
                return ""
            if self._commanded[0] < MIN_COMMANDED_M and self._commanded[1] < MIN_COMMANDED_RAD:
                return ""
            reason = self._not_following(now, elapsed, q, x)
            self._latched = reason
        if reason:
            self.node.get_logger().error(reason)
        return reason

    def _not_following(self, now: float, elapsed: float, q, x) -> str:
        if self._q0 is None and self._x0 is None:
            if not self._warned:
                self._warned = True
                self.node.get_logger().warning(
                    f"max_not_following_s: no joint states on {self.topic} and no end-effector pose: cannot check "
                    "that the arm follows")
            return ""
        if self._q0 is not None and self._joint_arrival is not None and now - self._joint_arrival > self.window:
            return (f"arm not following: no joint states on {self.topic} for {now - self._joint_arrival:.2f} s while "
                    "commanding motion (driver or joint_state_broadcaster down?); re-arm after fixing")
        dq = float(np.max(np.abs(q - self._q0))) if (q is not None and self._q0 is not None
                                                       and q.shape == self._q0.shape) else None
        dx = float(np.linalg.norm(x - self._x0)) if (x is not None and self._x0 is not None) else None
        if (dq is not None and dq > MIN_JOINT_DELTA_RAD) or (dx is not None and dx > MIN_EE_DELTA_M):
            self._since, self._q0, self._x0 = now, q, x        # it follows: judge the next window afresh
            self._commanded[:] = 0.0
            return ""
        moved = []
        if dq is not None:
            moved.append(f"joints moved at most {dq:.4f} rad")
        if dx is not None:
            moved.append(f"the end-effector {dx * 1000:.1f} mm")
        return (f"arm not following: {self._commanded[0] * 100:.1f} cm / {self._commanded[1]:.2f} rad commanded over "
                f"{elapsed:.2f} s (Servo reported no halt) but {' and '.join(moved)}. Is the controller Servo "
                "writes to active (UR: ur_servo.yaml's command_out_topic /forward_position_controller/commands needs "
                "forward_position_controller active instead of scaled_joint_trajectory_controller)? Are the twists "
                "stale at Servo (host clocks, use_sim_time)? Re-arm (deactivate + activate) after fixing")

    def close(self) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None
