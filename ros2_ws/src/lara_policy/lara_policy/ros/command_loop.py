"""command_node's control loop and chunk scheduling (mixed into CommandNode; see command_node's
docstring for the faults and what clears them).

The inputs the tick judges (camera image arrival, end-effector pose, joint states: fresh, finite,
in frame_id), chunk acceptance (checked at arrival, then queued by timestamp in the ChunkScheduler,
which cross-fades a newer chunk over blend_steps ticks), the tick itself (state, action for `now`,
safety limits, backend), the clock checks (a backwards jump drops chunks and input times; a stalled
/clock under use_sim_time faults) and the SafetyStatus it assembles and publishes.

Everything here runs on the node's state under the node's lock (self._lock): the e-stop services and
lifecycle transitions in command_node.py change that same state, and a late tick must never overwrite
a transition.
"""
from __future__ import annotations

import math
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import JointState

from lara_msgs.msg import ActionChunk, SafetyStatus
from lara_policy.ros.backends import BackendError
from lara_policy.ros.codec import msg_to_chunk
from lara_policy.ros.safety import TimedChunk, action_to_command

INACTIVE, ARMED, FAULT, ESTOP = (SafetyStatus.STATE_INACTIVE, SafetyStatus.STATE_ARMED,
                                 SafetyStatus.STATE_FAULT, SafetyStatus.STATE_ESTOP)


@dataclass
class TickRecord:
    """What one control tick decided (kept in CommandNode.tick_log for tests and debugging)."""
    t: float
    state: str
    moving: bool
    reason: str
    linear: tuple = (0.0, 0.0, 0.0)     # commanded EE step / period (m/s); zeros when not moving
    obs_age: float = float("nan")
    angular: tuple = (0.0, 0.0, 0.0)    # commanded rotation vector / period (rad/s, frame_id axes)


def _stamp_from_raw_header(data: bytes) -> float | None:
    """Header stamp of a CDR-serialized message that starts with std_msgs/Header (e.g. Image),
    read without deserializing the (large) rest."""
    if len(data) < 12:
        return None
    fmt = "<iI" if data[1] == 1 else ">iI"
    sec, nsec = struct.unpack_from(fmt, data, 4)
    return sec + nsec * 1e-9


def _short(text: str, n: int = 48) -> str:
    """A message-supplied string quoted for a reason/log line, cut to n characters (a fuzzed or
    broken publisher must not turn every SafetyStatus and log line into megabytes)."""
    text = str(text)
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} chars)"


class ControlLoop:
    """The control tick, chunk intake, clock checks and status of CommandNode (a mixin: it uses the
    node's parameters, backend, scheduler, limits and lock, which command_node.py sets up)."""

    # ---------------------------------------------------------------- inputs
    def _joint_positions(self) -> np.ndarray | None:
        """Current positions of joint_names when known, fresh and finite (else None: never
        hold at, or step from, a stale or NaN position)."""
        return self._joint_state()[0]

    def _joint_state(self) -> tuple[np.ndarray | None, str]:
        names = self._joint_names
        if not names:
            return None, "no joint_names configured"
        missing = [n for n in names if n not in self._joint_pos]
        if missing:
            return None, f"no joint state for {missing} on {self.p('joint_states_topic')}"
        now = self.now()
        max_age = self.live.max_joint_age if self.live is not None else float("inf")
        age = max(now - self._joint_arrival[n] for n in names)
        if age > max_age:
            return None, f"stale joint states: {age:.3f} s > {max_age:.3f} s"
        pos = np.array([self._joint_pos[n] for n in names], dtype=np.float64)
        if not np.all(np.isfinite(pos)):
            return None, f"joint state is NaN/inf {dict(zip(names, pos.tolist()))}"
        return pos, ""

    def _ee_position(self) -> tuple[np.ndarray | None, str]:
        """EE position for the workspace check when known, fresh, finite and in `frame_id`."""
        msg = self._ee_pose
        if msg is None:
            if self._tf_relay is not None:
                return None, f"no end-effector pose from tf ({self._tf_relay.last_error or 'no transform yet'})"
            return None, f"no end-effector pose on {self.p('ee_pose_topic')}"
        age = self.now() - self._ee_pose_arrival
        if age > self.live.max_pose_age:
            return None, f"stale end-effector pose: {age:.3f} s > {self.live.max_pose_age:.3f} s"
        frame = msg.header.frame_id
        if frame and frame.lstrip("/") != str(self.p("frame_id")).lstrip("/"):
            return None, (f"end-effector pose is in frame '{frame}' but twists and the workspace box are in "
                          f"'{self.p('frame_id')}' (publish the pose in frame_id)")
        p, q = msg.pose.position, msg.pose.orientation
        pos = np.array([p.x, p.y, p.z], dtype=np.float64)
        if not np.all(np.isfinite(pos)):
            return None, f"end-effector pose is NaN/inf {pos.tolist()}"
        if not all(math.isfinite(v) for v in (q.x, q.y, q.z, q.w)):
            # the position is not used alone: a broken orientation means a broken pose source
            return None, f"end-effector pose orientation is NaN/inf {[q.x, q.y, q.z, q.w]}"
        return pos, ""

    def _camera_hint(self) -> str:
        """Why no image arrives (no publisher, or a QoS that can never match); computed at most every 2 s."""
        now = time.monotonic()
        if now - self._hint_at < 2.0:
            return self._hint
        self._hint_at = now
        topic = str(self.p("image_topic"))
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            self._hint = f"no publisher on {topic}"
        elif self.image_reliability == "reliable" and all(
                i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in pubs):
            self._hint = (f"the publisher(s) on {topic} offer BEST_EFFORT and this subscription is RELIABLE: "
                          "set image_qos_reliability: best_effort (or auto)")
        else:
            self._hint = f"{len(pubs)} publisher(s) on {topic}, nothing arrived"
        return self._hint

    def _on_image(self, data: bytes) -> None:
        self._last_image_arrival = self.now()
        self._last_image_stamp = _stamp_from_raw_header(data)

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        self._ee_pose, self._ee_pose_arrival = msg, self.now()

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return     # malformed: names and positions cannot be paired
        now = self.now()
        for n, pos in zip(msg.name, msg.position):
            self._joint_pos[n] = float(pos)
            self._joint_arrival[n] = now

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            ch = msg_to_chunk(msg)
            if ch.action_space != self.action_space:
                raise ValueError(f"action space {_short(ch.action_space)} but this node runs '{self.action_space}'")
            self.backend.check_action_space(ch.action_space)
            if ch.actions.shape[1] != self.action_dim:
                raise ValueError(f"action_dim {ch.actions.shape[1]} != {self.action_dim} for {self.action_space}")
            if self.action_space == "joint_position":
                # the whole chunk, at arrival: no action of it is executed (nor blended in) when
                # any target lies outside the joint limits
                self.limits.check_joint_targets(ch.actions[:, :len(self._joint_names)])
        except (ValueError, BackendError) as e:
            with self._lock:
                self.rejected_chunks += 1
                self._reject_reason = f"rejected chunk: {e}"
                self.scheduler.clear()   # never keep executing around a bad chunk
            model = _short(msg.model_id) if msg.model_id else "?"
            self.get_logger().error(f"{self._reject_reason} (model {model}); zero motion")
            self._tick()
            return
        with self._lock:
            now = self.now()
            self._observe_clock(now)
            refused = self.scheduler.push(TimedChunk(ch.actions.astype(np.float64), ch.t0, ch.dt,
                                                     ch.action_space, ch.model_id, received=now), now)
            if refused:
                self.rejected_chunks += 1
                self._reject_reason = f"rejected chunk: {refused}"
                self.scheduler.clear()
            else:
                self._reject_reason = ""
        if not refused and self._loop is not None and self.tick_on_chunk:
            self._tick_now.set()        # command it now (control thread), re-phased: see tick_on_chunk
        if refused:
            model = _short(msg.model_id) if msg.model_id else "?"
            self.get_logger().error(f"{self._reject_reason} (model {model}); zero motion")
            self._tick()

    # ---------------------------------------------------------------- control loop
    def _control_loop(self) -> None:
        next_t = time.monotonic()
        while not self._loop_stop.is_set():
            next_t += self.period
            if self._tick_now.is_set():         # a chunk arrived: tick now, the next one a period later
                self._tick_now.clear()
                next_t = time.monotonic() + self.period
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - e.g. context shut down: stop the loop, say why
                if not self.context.ok():
                    return
                self.get_logger().error(f"control tick failed: {type(e).__name__}: {e}")
            delay = next_t - time.monotonic()
            if delay < -self.period:          # overrun by more than a period: resync, no burst
                next_t = time.monotonic()
                delay = 0.0
            self._tick_now.wait(max(0.0, delay))

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop_stop.set()
            self._tick_now.set()
            if self._loop is not threading.current_thread():
                self._loop.join(timeout=2.0)
            self._loop = None

    def _tick(self) -> None:
        with self._lock:
            if not self._active or self.backend is None:
                return
            now = self.now()
            obs_age = float("nan")
            self._observe_clock(now)
            stalled = self._clock_stalled(now)
            if self._estop:
                state, reason = ESTOP, "e-stop"
            elif self._disarmed_after_estop:
                state, reason = INACTIVE, "e-stop cleared; re-arm with lifecycle deactivate + activate"
            elif self._reject_reason:
                state, reason = FAULT, self._reject_reason
            elif stalled:
                state, reason = FAULT, stalled
            else:
                state, reason = ARMED, ""
                if self._watch_images:
                    if self._last_image_arrival is None:
                        state, reason = FAULT, f"stale observation: no image received ({self._camera_hint()})"
                    else:
                        obs_age = now - self._last_image_arrival
                        if obs_age > self.max_obs_age:
                            state, reason = FAULT, f"stale observation: {obs_age:.3f} s > {self.max_obs_age:.3f} s"
            cmd = None
            if state == ARMED:
                try:
                    action, why = self.scheduler.action(now)
                except Exception as e:  # noqa: BLE001 - never leave the last command running
                    action, why = None, f"internal error in the scheduler: {type(e).__name__}: {e}"
                if action is None:
                    state, reason = FAULT, why
                else:
                    try:
                        scale, rot_scale, limit, n_joints = self._conv
                        cmd = action_to_command(action, self.action_space, scale, rot_scale, limit,
                                                num_joints=n_joints)
                        if not self._frame_map.identity:      # policy axes -> robot base frame
                            if cmd.linear_step is not None:
                                cmd.linear_step = self._frame_map.delta_to_base(cmd.linear_step)
                            if cmd.angular_step is not None:
                                # a rotation vector is an axial vector: a mirrored policy frame
                                # (det -1) turns the other way round in the base frame
                                cmd.angular_step = self._frame_map.delta_to_base(cmd.angular_step) * \
                                    float(np.sign(np.linalg.det(self._frame_map.R)))
                        ee = None
                        if self._needs_pose:
                            ee, why = self._ee_position()
                            if ee is None:
                                raise ValueError(why)
                        joints = None
                        if cmd.joints is not None:
                            joints, why = self._joint_state()
                            if joints is None:
                                raise ValueError(why)
                        self.limits.apply(cmd, ee, joints)
                        reason = "; ".join(cmd.notes)
                    except (ValueError, BackendError) as e:
                        cmd, state, reason = None, FAULT, f"unsafe command: {e}"
                    except Exception as e:  # noqa: BLE001 - a bug must end in zero motion, with the reason
                        cmd, state, reason = None, FAULT, f"internal error in the control tick: {type(e).__name__}: {e}"
            if state == ARMED:
                try:
                    halt = (self._monitor_alarm or self.backend.fault_reason() or self.backend.gripper_fault()
                            or (self._watch.check(now, cmd) if self._watch is not None else ""))
                except Exception as e:  # noqa: BLE001
                    halt = f"backend error: {type(e).__name__}: {e}"
                if halt:
                    # the motion server halted the arm (Servo: singularity, collision, joint bound):
                    # command zero, say why; clears when it reports normal operation again
                    cmd, state, reason = None, FAULT, halt
            linear = angular = (0.0, 0.0, 0.0)
            try:
                if cmd is not None:
                    self.backend.send(cmd)
                    if cmd.linear_step is not None:
                        linear = tuple(float(v) for v in cmd.linear_step / self.period)
                    if cmd.angular_step is not None:
                        angular = tuple(float(v) for v in cmd.angular_step / self.period)
                else:
                    self.backend.zero()
            except Exception as e:  # noqa: BLE001 - a backend failure must end in zero motion
                self.get_logger().error(f"backend {self.backend.name} failed: {e}; zero motion")
                cmd, state, reason = None, FAULT, f"backend error: {e}"
                try:
                    self.backend.zero()
                except Exception:  # noqa: BLE001
                    pass

            moving = cmd is not None and cmd.moving
            self.tick_log.append(TickRecord(now, state, moving, reason, linear, obs_age, angular))
            # under the lock: a transition (deactivate, e-stop) cannot be overwritten by a late tick
            self._set_status(state, moving, reason)

    def _clock_stalled(self, now: float) -> str:
        """use_sim_time: why the node clock counts as stalled ('' when it advances). A /clock that
        stops (simulator paused or dead, bag player stopped) freezes every age check (chunk, pose,
        joints, image ages are all on this clock), so motion would go on at the wall control rate."""
        limit = self.live.max_clock_stall if self.live is not None else 0.0
        if not limit or not self.get_parameter("use_sim_time").value:
            return ""
        wall = time.monotonic()
        if self._clock_seen is None or now != self._clock_seen[0]:
            self._clock_seen = (now, wall)
            return ""
        idle = wall - self._clock_seen[1]
        if idle <= limit:
            return ""
        return (f"clock stalled: the node clock (use_sim_time, /clock) has not advanced for {idle:.3f} s "
                f"(> max_clock_stall_s {limit:.3f}); simulator paused or /clock publisher gone")

    def _observe_clock(self, now: float) -> None:
        """Clock-jump check, shared by the tick and the chunk callback (whichever sees the jump
        first): a backwards jump drops the held chunks (scheduler) and every input arrival time,
        which say nothing on the new timeline (an old pose would otherwise look fresh for as long
        as the jump)."""
        if self.scheduler.observe_clock(now):
            self._last_image_arrival = self._ee_pose_arrival = self._ee_pose = None
            self._joint_arrival.clear()
            self._joint_pos.clear()
            self._reject_reason = ""
            self.get_logger().warning(f"{self.scheduler.hold_reason}; zero motion")

    # ---------------------------------------------------------------- status
    def _set_status(self, state: str, moving: bool, reason: str) -> None:
        changed = (state, moving, reason) != (self._state, self._moving, self._reason)
        if changed and state != self._state:
            text = f"safety state {self._state} -> {state}" + (f": {reason}" if reason else "")
            if state in (FAULT, ESTOP):   # separate call sites: rclpy fixes a call site's severity
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
        self._state, self._moving, self._reason = state, moving, reason
        if changed:
            self._publish_status()

    def _publish_status(self) -> None:
        if self._status_pub is None:
            return
        msg = SafetyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state, msg.moving, msg.reason = self._state, bool(self._moving), self._reason
        self._status_pub.publish(msg)

