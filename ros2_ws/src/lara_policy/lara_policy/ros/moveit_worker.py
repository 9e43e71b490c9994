"""moveit_py in a process of its own, so planning never stalls command_node.

Why: moveit_py binds `PlanningComponent.plan()` without releasing the GIL (moveit2
moveit_py/src/moveit/moveit_ros/moveit_cpp/planning_component.cpp: no gil_scoped_release on
"plan"), so in command_node's process the control thread, the status timer and the e-stop
service would all wait while OMPL plans. Here the MoveItPy instance lives in a worker process
(multiprocessing "spawn": a fresh interpreter, no forked rclpy state); only small messages and
one shared integer cross the boundary, and nothing on command_node's side ever waits for the
worker once it is up.

Protocol (parent = command_node's backend, child = the worker):
- start: the child builds MoveItPy(node_name, config_dict) and the planning component, then
  sends ("ready", pid) or ("error", text); the parent waits for that (configure time only) and
  turns "error", an early exit or a timeout into a BackendError naming the reason.
- ("goal", seq, epoch, pose) parent -> child: plan + execute one pose goal. The parent sends a
  goal only while the child is idle (at most one outstanding), so the pipe never fills.
- ("done", seq, outcome) child -> parent: outcome is "executed", "plan_failed", "discarded"
  (a stop came before execution started), "stopped" (execution stopped by a stop) or "error".
- stop: the parent increments a shared integer (the epoch); no message, so it never blocks
  and it works while the child holds its GIL. The child's main thread watches the epoch every
  10 ms: it calls the trajectory execution manager's stop_execution() once per change and
  again every 10 ms while an execution from an older epoch is still in flight. A goal whose
  epoch is old when planning ends is never executed.
- ("close",) parent -> child, or the parent process disappearing (pipe EOF, parent sentinel),
  or SIGTERM: the child stops any execution and exits. SIGINT is ignored in the child (a
  terminal's Ctrl-C reaches the whole process group; command_node decides what happens); both
  handlers are re-installed after MoveItPy's rclcpp::init, which installs rclcpp's own.
- death: the parent's receiver thread sees the pipe close; `death_reason()` names the exit code
  or signal, and command_node faults with it (zero motion) until reconfigured.

Tests only: `robot_factory` (a callable: (node_name, config_dict) -> MoveItPy-like) runs the same
child loop on a thread of the calling process instead (in-process test doubles cannot cross a
spawn); production always uses the process.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

START_TIMEOUT_S = 60.0       # MoveItPy loads the robot model and planning pipelines at start
POLL_S = 0.01                # child: how often the epoch / parent / pipe are checked


class WorkerError(RuntimeError):
    """The worker could not be started (message says why)."""


def pose_to_dict(msg) -> dict:
    """geometry_msgs/PoseStamped -> plain data (picklable, no rclpy types across the pipe)."""
    p, o = msg.pose.position, msg.pose.orientation
    return {"frame_id": msg.header.frame_id, "stamp": (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)),
            "position": (float(p.x), float(p.y), float(p.z)), "orientation": (float(o.x), float(o.y), float(o.z),
                                                                           float(o.w))}


def dict_to_pose(d: dict):
    from geometry_msgs.msg import PoseStamped  # noqa: PLC0415 (child side)
    msg = PoseStamped()
    msg.header.frame_id = d["frame_id"]
    msg.header.stamp.sec, msg.header.stamp.nanosec = d["stamp"]
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = d["position"]
    (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
     msg.pose.orientation.w) = d["orientation"]
    return msg


def _import_moveit_py(node_name: str, config_dict: dict | None):
    """The real MoveItPy (child side). Errors become one line for the parent."""
    try:
        from moveit.planning import MoveItPy  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise WorkerError("backend 'moveit_py' needs MoveIt 2's moveit_py (not installed here: "
                          f"{e}); use backend 'servo' or 'joint_trajectory'") from e
    try:
        return MoveItPy(node_name=node_name, config_dict=config_dict) if config_dict else MoveItPy(node_name=node_name)
    except RuntimeError as e:   # "Unable to construct robot model", "Failed to load planning pipelines"
        raise WorkerError(f"MoveItPy failed: RuntimeError: {e} (give the MoveIt config: moveit_config_file)") from e


# ====================================================================== child side
class _ChildLoop:
    def __init__(self, conn, epoch, robot, arm, spec: dict, parent_alive):
        self.conn, self.epoch, self.robot, self.arm = conn, epoch, robot, arm
        self.group, self.pose_link = spec["planning_group"], spec["pose_link"]
        self.parent_alive = parent_alive
        self.lock = threading.Lock()
        self.job: threading.Thread | None = None
        self.exec_epoch: int | None = None      # epoch of the execution in flight (None: none)
        self.stop_called = False
        self.terminate = False
        self.send_lock = threading.Lock()

    def send(self, msg) -> None:
        with self.send_lock:
            try:
                self.conn.send(msg)
            except (OSError, EOFError, BrokenPipeError):
                self.terminate = True

    def stop_execution(self) -> None:
        try:
            self.robot.get_trajectory_execution_manager().stop_execution()
        except Exception as e:  # noqa: BLE001 - say so, keep watching
            self.send(("log", f"stop_execution failed: {type(e).__name__}: {e}"))

    def _job(self, seq: int, goal_epoch: int, pose: dict) -> None:
        outcome, error, t0 = "error", "", time.monotonic()
        plan_s = exec_s = 0.0
        try:
            if self.epoch.value != goal_epoch:
                outcome = "discarded"
                return
            self.arm.set_start_state_to_current_state()
            self.arm.set_goal_state(pose_stamped_msg=dict_to_pose(pose), pose_link=self.pose_link)
            result = self.arm.plan()            # may hold this process's GIL for the whole plan
            plan_s = time.monotonic() - t0
            if not result:
                outcome = "plan_failed"
                return
            with self.lock:
                if self.epoch.value != goal_epoch:      # stopped while planning: never execute it
                    outcome = "discarded"
                    return
                self.exec_epoch, self.stop_called = goal_epoch, False
            t1 = time.monotonic()
            try:
                self.robot.execute(result.trajectory, controllers=[])          # Jazzy, Kilted, Rolling
            except TypeError:
                self.robot.execute(self.group, result.trajectory, blocking=True)   # Humble backport
            exec_s = time.monotonic() - t1
            with self.lock:
                stopped = self.stop_called or self.epoch.value != goal_epoch
            outcome = "stopped" if stopped else "executed"
        except Exception as e:  # noqa: BLE001 - a planner error must never kill the worker
            error = f"{type(e).__name__}: {e}"
        finally:
            with self.lock:
                self.exec_epoch = None
            self.send(("done", seq, {"outcome": outcome, "error": error, "plan_s": plan_s, "exec_s": exec_s}))

    def run(self) -> None:
        seen = self.epoch.value
        try:
            while not self.terminate:
                now_epoch = self.epoch.value
                with self.lock:
                    old_exec = self.exec_epoch is not None and self.exec_epoch != now_epoch
                if now_epoch != seen or old_exec:
                    seen = now_epoch
                    with self.lock:
                        self.stop_called = self.stop_called or old_exec
                    self.stop_execution()
                if not self.parent_alive():
                    break
                try:
                    if not self.conn.poll(POLL_S):
                        continue
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "close":
                    break
                if msg[0] == "goal":
                    _, seq, goal_epoch, pose = msg
                    if self.job is not None and self.job.is_alive():
                        self.send(("done", seq, {"outcome": "error", "error": "worker busy", "plan_s": 0.0,
                                                 "exec_s": 0.0}))
                        continue
                    self.job = threading.Thread(target=self._job, args=(seq, goal_epoch, pose),
                                                name="moveit_plan_execute", daemon=True)
                    self.job.start()
        finally:
            # leaving (close, parent gone, SIGTERM): nothing of ours may keep moving the arm
            with self.lock:
                busy = self.exec_epoch is not None
            if busy or (self.job is not None and self.job.is_alive()):
                self.stop_execution()
                if self.job is not None:
                    self.job.join(timeout=2.0)


def child_main(conn, epoch, spec: dict, robot_factory=None) -> None:
    """Worker entry point (a spawned process, or a thread in tests: robot_factory given)."""
    in_process = robot_factory is not None
    loop_ref: list[_ChildLoop] = []

    def _term(signum, frame):
        if loop_ref:
            loop_ref[0].terminate = True

    def _signals():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _term)
    if not in_process:
        _signals()
        # spawn gives the child the parent's sys.argv (command_node's `--ros-args --params-file ...`);
        # moveit_py takes `--params-file` from sys.argv for its node when no config_dict is given
        # (moveit_py/moveit/utils.py get_launch_params_filepaths, evaluated at import on Humble):
        # never let MoveItPy see command_node's parameters
        import sys  # noqa: PLC0415
        sys.argv = sys.argv[:1]
        parent = multiprocessing.parent_process()
        parent_alive = (lambda: parent.is_alive()) if parent is not None else (lambda: True)
    else:
        parent_alive = lambda: True  # noqa: E731
    try:
        make = robot_factory or _import_moveit_py
        robot = make(spec["node_name"], spec["config_dict"])
        arm = robot.get_planning_component(spec["planning_group"])
        if not in_process:
            # MoveItPy's rclcpp::init installed rclcpp's SIGINT/SIGTERM handlers (shutdown of its
            # context, which would leave a trajectory running): ours again
            _signals()
    except WorkerError as e:
        conn.send(("error", str(e)))
        return
    except BaseException as e:  # noqa: BLE001 - any start failure is reported, not raised
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    loop = _ChildLoop(conn, epoch, robot, arm, spec, parent_alive)
    loop_ref.append(loop)
    conn.send(("ready", os.getpid()))
    loop.run()
    try:
        conn.close()
    except OSError:
        pass


# ====================================================================== parent side
class MoveItWorker:
    """Parent handle (see the module docstring). Every method returns at once once started."""

    def __init__(self, node_name: str, config_dict: dict | None, planning_group: str, pose_link: str,
                 robot_factory=None, start_timeout_s: float = START_TIMEOUT_S, log=None):
        self.spec = {"node_name": node_name, "config_dict": config_dict, "planning_group": planning_group,
                     "pose_link": pose_link}
        self.log = log or (lambda level, text: None)
        self._lock = threading.Lock()
        self._busy = False
        self._seq = 0
        self._stopped_seq = 0
        self._dead = ""
        self._closing = False
        self.pid: int | None = None
        self.outcomes: dict[str, int] = {}
        self.last_outcome: dict = {}
        self.goals_sent = 0
        ctx = multiprocessing.get_context("spawn")
        self._epoch = ctx.RawValue("q", 0)
        self._conn, child_conn = ctx.Pipe(duplex=True)
        if robot_factory is None:
            self.proc = ctx.Process(target=child_main, args=(child_conn, self._epoch, self.spec), name="lara_moveit_py",
                                    daemon=True)
            self.thread = None
            self.proc.start()
            child_conn.close()
        else:
            self.proc = None
            self.thread = threading.Thread(target=child_main, args=(child_conn, self._epoch, self.spec, robot_factory),
                                           name="lara_moveit_py_inprocess", daemon=True)
            self.thread.start()
        try:
            self._await_ready(start_timeout_s)
        except WorkerError:
            self._kill()
            self._conn.close()
            raise
        self._rx = threading.Thread(target=self._receive, name="lara_moveit_py_rx", daemon=True)
        self._rx.start()

    # ------------------------------------------------------------ start / death
    def _alive(self) -> bool:
        return self.proc.is_alive() if self.proc is not None else self.thread.is_alive()

    def _exit_text(self) -> str:
        if self.proc is None:
            return "worker thread ended"
        code = self.proc.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._conn.poll(0.1):
                try:
                    msg = self._conn.recv()
                except (EOFError, OSError):
                    if self.proc is not None:
                        self.proc.join(timeout=2.0)
                    raise WorkerError(f"moveit_py worker process ended before it was ready ({self._exit_text()})")
                if msg[0] == "ready":
                    self.pid = int(msg[1])
                    return
                if msg[0] == "error":
                    raise WorkerError(f"moveit_py worker failed to start: {msg[1]}")
            elif not self._alive():
                if self.proc is not None:
                    self.proc.join(timeout=2.0)
                raise WorkerError(f"moveit_py worker process ended before it was ready ({self._exit_text()})")
            if time.monotonic() > deadline:
                raise WorkerError(f"moveit_py worker did not report ready within {timeout:.0f} s "
                                  "(MoveItPy construction hung: robot_description / controllers reachable?)")

    def _receive(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "done":
                with self._lock:
                    self._busy = False
                    out = msg[2]
                    self.last_outcome = out
                    self.outcomes[out["outcome"]] = self.outcomes.get(out["outcome"], 0) + 1
                if out["outcome"] in ("error", "plan_failed"):
                    self.log("warning", f"moveit_py goal {msg[1]}: {out['outcome']}"
                                        + (f" ({out['error']})" if out["error"] else ""))
            elif msg[0] == "log":
                self.log("error", f"moveit_py worker: {msg[1]}")
        if self.proc is not None:
            self.proc.join(timeout=1.0)
        with self._lock:
            if not self._closing:
                self._dead = f"moveit_py worker process died ({self._exit_text()})"
        if not self._closing:
            self.log("error", self._dead + "; zero motion until command_node is configured again")

    def death_reason(self) -> str:
        """'' while the worker is up; otherwise why it is gone."""
        with self._lock:
            if self._dead:
                return self._dead
        if not self._closing and not self._alive():
            return f"moveit_py worker process died ({self._exit_text()})"
        return ""

    # ------------------------------------------------------------ requests
    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def submit(self, pose_dict: dict) -> bool:
        """Send a goal when the worker is idle (never blocks); False when busy or gone."""
        with self._lock:
            if self._busy or self._dead or self._closing:
                return False
            self._busy = True
            self._seq += 1
            seq = self._seq
        try:
            self._conn.send(("goal", seq, int(self._epoch.value), pose_dict))
        except (OSError, EOFError, BrokenPipeError) as e:
            with self._lock:
                self._dead = f"moveit_py worker unreachable ({type(e).__name__}: {e})"
            return False
        self.goals_sent += 1
        return True

    def stop(self) -> None:
        """Stop the execution in flight and discard a plan not yet executed. A shared-memory write:
        returns at once, even while the worker holds its GIL in plan()."""
        with self._lock:
            self._stopped_seq = self._seq
        self._epoch.value += 1

    def stop_if_busy(self) -> bool:
        """stop(), once per outstanding goal (command_node calls zero() every faulted tick);
        True when it stopped one."""
        with self._lock:
            if not self._busy or self._stopped_seq == self._seq:
                return False
        self.stop()
        return True

    def close(self, timeout: float = 3.0) -> None:
        with self._lock:
            self._closing = True
        self.stop()
        try:
            self._conn.send(("close",))
        except (OSError, EOFError, BrokenPipeError):
            pass
        if self.proc is not None:
            self.proc.join(timeout=timeout)
        elif self.thread is not None:
            self.thread.join(timeout=timeout)
        self._kill()
        try:
            self._conn.close()
        except OSError:
            pass

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()          # SIGTERM: the child stops its execution and exits
            self.proc.join(timeout=2.0)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(timeout=2.0)
