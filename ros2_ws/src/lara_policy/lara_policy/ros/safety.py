"""ROS-free parts of command_node: chunk scheduling/blending, action -> motion command
conversion, and the safety limits. Kept free of rclpy so they are unit-testable and reusable.

Chunk semantics (shared with policy_node and sim_node): a chunk's t0 is the capture time of the
observation it was predicted from; action k is meant for t0 + k * dt; actions are in physical
units of the chunk's action space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Action spaces command_node knows, with their action dimension (None = given by joint_names).
ACTION_SPACES = {
    "ee_delta_xyz_gripper": 4,   # xyz EE delta in [-1, 1] (x ee_delta_scale_m) + gripper [-1 open, +1 close]
    "ee_delta_6d_gripper": 7,    # xyz + rotation vector delta in [-1, 1] (x ee_rot_scale_rad) + gripper; the
                                 # rotation vector is about the base frame's axes, applied about the EE point and
                                 # composed on the LEFT (R_next = exp(rotvec) R): MoveIt Servo's twist convention
    "joint_position": None,      # absolute joint positions (rad) [+ gripper]
}


@dataclass
class TimedChunk:
    actions: np.ndarray      # (H, D) float
    t0: float                # time action 0 is meant for (s)
    dt: float
    action_space: str
    model_id: str = ""
    received: float = 0.0    # node time the chunk arrived

    @property
    def end(self) -> float:
        """Time after which the chunk has no action left."""
        return self.t0 + self.actions.shape[0] * self.dt

    def action_at(self, t: float) -> np.ndarray | None:
        """The action meant for time t (actions already in the past are skipped); None when run out."""
        k = int(math.floor((t - self.t0) / self.dt + 1e-6))
        if k >= self.actions.shape[0]:
            return None
        return self.actions[max(k, 0)]


class ChunkScheduler:
    """Picks the action for `now` by timestamp and cross-fades a newer overlapping chunk into
    the current one over `blend_steps` control ticks (linear weights 1/(n+1) .. n/(n+1)).

    Time sanity (a chunk's t0 must lie in this node's past):
    - a chunk stamped more than `max_future_s` ahead of `now` is refused by `push` (the caller
      faults with the returned reason: clocks of the hosts disagree, or the sim clock jumped
      back under a running policy), and a held chunk that ends up in the future is not executed;
    - the node clock going backwards by more than `clock_jump_tolerance_s` (sim reset, a looped
      bag's /clock, an NTP step) drops every held chunk: they belong to the old timeline. The
      reason stays until the next chunk is accepted (fresh data clears it by itself)."""

    def __init__(self, blend_steps: int = 3, max_chunk_age_s: float = 1.0, max_future_s: float = 0.1,
                 clock_jump_tolerance_s: float = 0.05):
        self.blend_steps = max(int(blend_steps), 0)
        self.max_chunk_age_s = float(max_chunk_age_s)
        self.max_future_s = float(max_future_s)
        self.clock_jump_tolerance_s = float(clock_jump_tolerance_s)
        self.current: TimedChunk | None = None
        self.previous: TimedChunk | None = None
        self._ticks_since_new = 0
        self._last_now: float | None = None
        self.hold_reason = ""     # why there is nothing to execute after a clock jump

    def clear(self) -> None:
        self.current = self.previous = None
        self._ticks_since_new = 0

    def observe_clock(self, now: float) -> float:
        """Record `now`; when the clock went back by more than the tolerance, drop every held
        chunk and return the size of the jump (s), else 0."""
        last, self._last_now = self._last_now, now
        if last is not None and now < last - self.clock_jump_tolerance_s:
            self.clear()
            self.hold_reason = (f"clock jumped back {last - now:.3f} s (sim reset, looped bag or clock step): "
                                "held chunks dropped, waiting for a chunk stamped on the new clock")
            return last - now
        return 0.0

    def push(self, chunk: TimedChunk, now: float | None = None) -> str:
        """Hold `chunk` for execution. Returns "" when accepted (or silently ignored as out of
        order), else the reason it was refused (a chunk stamped in the future)."""
        if now is not None:
            self.observe_clock(now)
            ahead = chunk.t0 - now
            if ahead > self.max_future_s:
                return (f"chunk stamped {ahead:.3f} s in the future (> {self.max_future_s:.3f} s): the "
                        "policy's clock is ahead of this node's (clock skew between hosts, or the sim "
                        "clock jumped back)")
        if self.current is not None and chunk.t0 < self.current.t0:
            return ""  # out of order: an older observation's chunk never replaces a newer one
        self.previous, self.current = self.current, chunk
        self._ticks_since_new = 0
        self.hold_reason = ""
        return ""

    def action(self, now: float) -> tuple[np.ndarray | None, str]:
        """(action, "") or (None, reason) when there is nothing fresh to execute."""
        self.observe_clock(now)
        cur = self.current
        if cur is None:
            return None, self.hold_reason or "stale chunk: no chunk received"
        age = now - cur.t0
        if age > self.max_chunk_age_s:
            return None, f"stale chunk: age {age:.3f} s > {self.max_chunk_age_s:.3f} s"
        if -age > self.max_future_s:
            return None, (f"chunk stamped {-age:.3f} s in the future (> {self.max_future_s:.3f} s): "
                          "not executed")
        a_new = cur.action_at(now)
        if a_new is None:
            return None, f"stale chunk: ran out {now - cur.end:.3f} s ago"
        out = a_new
        if self.previous is not None and self._ticks_since_new < self.blend_steps:
            a_old = self.previous.action_at(now)
            if a_old is not None and a_old.shape == a_new.shape:
                w = (self._ticks_since_new + 1) / (self.blend_steps + 1)
                out = (1.0 - w) * a_old + w * a_new
        self._ticks_since_new += 1
        return np.asarray(out, dtype=np.float64), ""


@dataclass
class MotionCommand:
    """One control step, in physical units, before it is handed to a backend."""
    linear_step: np.ndarray | None = None    # (3,) m to move this step (EE, base frame)
    angular_step: np.ndarray | None = None   # (3,) rad rotation vector this step
    joints: np.ndarray | None = None         # (N,) absolute joint targets, rad
    gripper: float | None = None             # -1 open .. +1 close
    notes: list[str] = field(default_factory=list)   # what the safety layer changed

    @property
    def moving(self) -> bool:
        return any(v is not None and np.any(v != 0.0)
                   for v in (self.linear_step, self.angular_step)) or self.joints is not None


def action_dim_for(action_space: str, num_joints: int = 0, joint_gripper: bool = False) -> int:
    if action_space not in ACTION_SPACES:
        raise ValueError(f"unknown action space '{action_space}' (known: {', '.join(ACTION_SPACES)})")
    dim = ACTION_SPACES[action_space]
    return dim if dim is not None else num_joints + int(joint_gripper)


def action_to_command(action: np.ndarray, action_space: str, ee_delta_scale_m: float,
                      ee_rot_scale_rad: float, action_limit: float, num_joints: int = 0) -> MotionCommand:
    """Convert one action (physical units of its space) to a MotionCommand."""
    a = np.asarray(action, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("action contains NaN/inf")
    if action_space == "ee_delta_xyz_gripper":
        a = np.clip(a, -action_limit, action_limit)
        return MotionCommand(linear_step=a[:3] * ee_delta_scale_m, angular_step=np.zeros(3),
                             gripper=float(a[3]))
    if action_space == "ee_delta_6d_gripper":
        a = np.clip(a, -action_limit, action_limit)
        return MotionCommand(linear_step=a[:3] * ee_delta_scale_m, angular_step=a[3:6] * ee_rot_scale_rad,
                             gripper=float(a[6]))
    if action_space == "joint_position":
        grip = float(np.clip(a[num_joints], -1.0, 1.0)) if a.shape[0] > num_joints else None
        return MotionCommand(joints=a[:num_joints].copy(), gripper=grip)
    raise ValueError(f"unknown action space '{action_space}'")


@dataclass
class SafetyLimits:
    period: float                              # control period, s
    max_linear_speed: float = 0.25             # m/s
    max_angular_speed: float = 1.0             # rad/s
    max_linear_step: float = 0.02              # m per control step
    max_joint_step: float = 0.05               # rad per control step
    workspace_min: np.ndarray | None = None    # (3,) m, base frame; None = no box
    workspace_max: np.ndarray | None = None
    # joint limits (joint_position action space), one value per joint (in joint_names order):
    joint_min: np.ndarray | None = None        # (N,) rad; None = no position limits
    joint_max: np.ndarray | None = None
    joint_max_velocity: np.ndarray | None = None   # (N,) rad/s; the per-tick step is velocity * period
    joint_names: tuple = ()                     # for messages only

    def __post_init__(self):
        """Refuse limits that would invert or disable motion limiting (negative, zero, NaN,
        swapped box): every one of them is a configuration error, never clipped silently."""
        for name in ("period", "max_linear_speed", "max_angular_speed", "max_linear_step", "max_joint_step"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("workspace box needs both workspace_min and workspace_max")
        if self.workspace_min is not None:
            lo = np.asarray(self.workspace_min, dtype=np.float64)
            hi = np.asarray(self.workspace_max, dtype=np.float64)
            if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) \
                    or np.any(lo >= hi):
                raise ValueError(f"workspace_min/max must be 3 finite values each with min < max, "
                                 f"got {list(lo)} {list(hi)}")
            self.workspace_min, self.workspace_max = lo, hi
        if (self.joint_min is None) != (self.joint_max is None):
            raise ValueError("joint position limits need both joint_position_min and joint_position_max")
        if self.joint_min is not None:
            lo = np.asarray(self.joint_min, dtype=np.float64).reshape(-1)
            hi = np.asarray(self.joint_max, dtype=np.float64).reshape(-1)
            if lo.shape != hi.shape or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo >= hi):
                raise ValueError(f"joint_position_min/max must be finite values, one per joint, with min < max, "
                                 f"got {lo.tolist()} {hi.tolist()}")
            self.joint_min, self.joint_max = lo, hi
        if self.joint_max_velocity is not None:
            v = np.asarray(self.joint_max_velocity, dtype=np.float64).reshape(-1)
            if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"max_joint_velocity_rps must be finite values > 0, got {v.tolist()}")
            self.joint_max_velocity = v

    def joint_step_limit(self, n: int) -> np.ndarray:
        """Largest joint change per control tick, per joint (rad): max_joint_step, and
        max_joint_velocity * period where velocity limits are set (tied to the control rate)."""
        lim = np.full(n, self.max_joint_step, dtype=np.float64)
        if self.joint_max_velocity is not None:
            lim = np.minimum(lim, self.joint_max_velocity * self.period)   # one value broadcasts
        return lim

    def check_joint_targets(self, targets: np.ndarray) -> None:
        """ValueError naming the first joint whose target lies outside joint_position_min/max
        (targets: (N,) or (H, N)); no-op without position limits."""
        if self.joint_min is None:
            return
        t = np.asarray(targets, dtype=np.float64)
        if t.shape[-1] != self.joint_min.size:
            raise ValueError(f"{self.joint_min.size} joint position limits for {t.shape[-1]} joints")
        bad = np.argwhere((t < self.joint_min) | (t > self.joint_max))
        if bad.size:
            idx = tuple(int(v) for v in bad[0])
            i = idx[-1]
            where = f" (action {idx[0]})" if t.ndim == 2 else ""
            raise ValueError(f"joint limit: {self._joint_name(i)} target {t[idx]:.4f} rad{where} outside "
                             f"[{self.joint_min[i]:.4f}, {self.joint_max[i]:.4f}] (joint_position_min/max)")

    def _joint_name(self, i: int) -> str:
        return self.joint_names[i] if i < len(self.joint_names) else f"joint {i}"

    def apply(self, cmd: MotionCommand, ee_position: np.ndarray | None,
              joint_positions: np.ndarray | None) -> MotionCommand:
        """Clip a command in place to the limits; records what it changed in cmd.notes.
        Raises ValueError when the command cannot be made safe (then the caller stops)."""
        if cmd.linear_step is not None:
            step = cmd.linear_step
            lim = min(self.max_linear_step, self.max_linear_speed * self.period)
            n = float(np.linalg.norm(step))
            if n > lim:
                step = step * (lim / n)
                cmd.notes.append(f"linear step clipped {n:.4f} -> {lim:.4f} m")
            if self.workspace_min is not None:
                if ee_position is None:
                    raise ValueError("no end-effector pose for the workspace check")
                if not np.all(np.isfinite(ee_position)):
                    raise ValueError(f"end-effector pose is NaN/inf {list(ee_position)}: no workspace check possible")
                target = ee_position + step
                for i, axis in enumerate("xyz"):
                    if (target[i] < self.workspace_min[i] and step[i] < 0) or \
                            (target[i] > self.workspace_max[i] and step[i] > 0):
                        step = step.copy()
                        step[i] = 0.0
                        cmd.notes.append(f"workspace: {axis} held at {ee_position[i]:.3f} "
                                         f"(box [{self.workspace_min[i]:.3f}, {self.workspace_max[i]:.3f}])")
            cmd.linear_step = step
        if cmd.angular_step is not None:
            lim = self.max_angular_speed * self.period
            n = float(np.linalg.norm(cmd.angular_step))
            if n > lim:
                cmd.angular_step = cmd.angular_step * (lim / n)
                cmd.notes.append(f"angular step clipped {n:.4f} -> {lim:.4f} rad")
        if cmd.joints is not None:
            if joint_positions is None or joint_positions.shape != cmd.joints.shape:
                raise ValueError("no joint state for the joint step limit")
            if not np.all(np.isfinite(joint_positions)):
                raise ValueError(f"joint state is NaN/inf {list(joint_positions)}")
            if self.joint_min is not None:
                if self.joint_min.shape != cmd.joints.shape:
                    raise ValueError(f"{self.joint_min.size} joint position limits for {cmd.joints.size} joints")
                # a target outside the joint's range is refused (fault, hold), never clamped
                # silently: the policy asked for a position the arm must not reach
                self.check_joint_targets(cmd.joints)
                # the arm itself outside its range (moved by hand, limits changed): hold, say so (every
                # commanded position then lies between two in-range positions: inside the range)
                out = np.flatnonzero((joint_positions < self.joint_min) | (joint_positions > self.joint_max))
                if out.size:
                    i = int(out[0])
                    raise ValueError(f"joint limit: {self._joint_name(i)} is at {joint_positions[i]:.4f} rad, outside "
                                     f"[{self.joint_min[i]:.4f}, {self.joint_max[i]:.4f}] (joint_position_min/max): "
                                     "move it back into range before arming")
            step = self.joint_step_limit(cmd.joints.size)
            delta = cmd.joints - joint_positions
            clipped = np.clip(delta, -step, step)
            if np.any(clipped != delta):
                i = int(np.argmax(np.abs(delta) - step))
                cmd.notes.append(f"joint step clipped to {step[i]:.4f} rad/tick ({step[i] / self.period:.3f} rad/s) "
                                 f"at {self._joint_name(i)}")
            cmd.joints = joint_positions + clipped
        if cmd.gripper is not None:
            cmd.gripper = float(np.clip(cmd.gripper, -1.0, 1.0))
        return cmd
