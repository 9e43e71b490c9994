"""TEST-ONLY FAKE of `moveit.planning` (moveit_py), shaped after the documented interface in
moveit2's moveit_py/moveit/planning.pyi and its pybind11 bindings (moveit_cpp.cpp,
planning_component.cpp, trajectory_execution_manager.cpp); written for LARA-ROS's tests, no
upstream code. It moves nothing. Behaviour, from the environment:

- FAKE_MOVEIT_PLAN_S: PlanningComponent.plan() blocks this long WITHOUT releasing the GIL (a C
  call through ctypes.PyDLL, like the real binding, which has no gil_scoped_release on plan);
  a heartbeat thread measures how long this process's other threads were starved
  ("plan_end": heartbeat_max_gap_s), proving the fake really held the GIL.
- FAKE_MOVEIT_EXEC_S: MoveItPy.execute() runs this long with the GIL released (the real
  binding releases it) and returns early when stop_execution() is called.
- FAKE_MOVEIT_FAIL: the MoveItPy constructor raises RuntimeError(<text>), as MoveItCpp does
  without a robot model.
- FAKE_MOVEIT_DISTRO=humble: Humble's binding `execute(group_name, robot_trajectory,
  blocking=True)` (the Jazzy call `execute(trajectory, controllers=[])` raises TypeError, as
  pybind11 does for incompatible arguments), WITHOUT releasing the GIL: it sends one
  FollowJointTrajectory goal (joint FAKE_MOVEIT_JOINT, default j1) to FAKE_MOVEIT_CONTROLLER
  (a tests/ros/fake_fjt.py server) and blocks in a C read() through ctypes.PyDLL on the FIFO
  FAKE_MOVEIT_EXEC_FIFO until the controller reports the goal's end (succeeded or cancelled),
  as MoveIt's C++ waits for the controller. stop_execution() cannot run meanwhile (GIL);
  "execute_end" reports heartbeat_max_gap_s.
Every call is logged to FAKE_MOVEIT_LOG (see _log.py)."""
import ctypes
import os
import sys
import threading
import time

from ._log import event


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc_gil_held = ctypes.PyDLL(None)     # PyDLL: calls keep the GIL (ctypes.CDLL would release it)


def _block_holding_gil(seconds: float) -> None:
    ts = _Timespec(int(seconds), int((seconds - int(seconds)) * 1e9))
    _libc_gil_held.nanosleep(ctypes.byref(ts), None)


class _Heartbeat:
    """A thread that wakes every 5 ms and records the longest gap between its wake-ups."""

    def __init__(self):
        self.max_gap, self._stop = 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.005)
            now = time.monotonic()
            self.max_gap, last = max(self.max_gap, now - last), now

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.max_gap


class _PlanResult:
    def __init__(self, ok: bool):
        self.trajectory = "fake_trajectory"
        self._ok = ok

    def __bool__(self):
        return self._ok


class PlanningComponent:
    def __init__(self, group: str):
        self.planning_group_name = group

    def set_start_state_to_current_state(self):
        event("start_state")

    def set_goal_state(self, configuration_name=None, robot_state=None, pose_stamped_msg=None, pose_link=None,
                       motion_plan_constraints=None):
        p = pose_stamped_msg.pose.position
        event("goal", frame_id=pose_stamped_msg.header.frame_id, position=[p.x, p.y, p.z], pose_link=pose_link,
              msg_type=type(pose_stamped_msg).__module__ + "." + type(pose_stamped_msg).__name__)

    def plan(self, single_plan_parameters=None, multi_plan_parameters=None):
        seconds = float(os.environ.get("FAKE_MOVEIT_PLAN_S", "0"))
        hb = _Heartbeat()
        time.sleep(0.02)                       # let the heartbeat start ticking
        event("plan_start", seconds=seconds)
        _block_holding_gil(seconds)
        event("plan_end", heartbeat_max_gap_s=hb.stop())
        return _PlanResult(True)


class TrajectoryExecutionManager:
    def __init__(self, robot):
        self._robot = robot

    def stop_execution(self, auto_clear=True):
        event("stop_execution", executing=self._robot._executing)
        self._robot._stop.set()


class MoveItPy:
    def __init__(self, node_name="moveit_py", name_space="", launch_params_filepaths=None, config_dict=None,
                 provide_planning_service=True, remappings=None):
        fail = os.environ.get("FAKE_MOVEIT_FAIL")
        if launch_params_filepaths is None:     # the binding's default: --params-file values of sys.argv
            argv = sys.argv
            launch_params_filepaths = [argv[i + 1] for i, v in enumerate(argv[:-1]) if v == "--params-file"]
        event("init", node_name=node_name, config_keys=sorted(config_dict or {}),
              argv_params_files=list(launch_params_filepaths))
        if not config_dict:
            # MoveItCpp's constructor without planning_pipelines.pipeline_names (moveit_cpp.cpp)
            raise RuntimeError("Failed to load planning pipelines from parameter server")
        if fail:
            raise RuntimeError(fail)
        self._stop = threading.Event()
        self._executing = False
        self._tem = TrajectoryExecutionManager(self)
        self._humble = os.environ.get("FAKE_MOVEIT_DISTRO") == "humble"
        if self._humble:
            self._start_controller_client()

    def get_planning_component(self, planning_component_name):
        event("group", group=planning_component_name)
        return PlanningComponent(planning_component_name)

    def get_trajectory_execution_manager(self):
        return self._tem

    def _start_controller_client(self):
        import rclpy
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor

        self._ctx = rclpy.Context()
        rclpy.init(context=self._ctx)
        self._node = rclpy.create_node("fake_moveit_controller_client", context=self._ctx)
        self._fjt = FollowJointTrajectory
        self._client = ActionClient(self._node, FollowJointTrajectory, os.environ["FAKE_MOVEIT_CONTROLLER"])
        ex = SingleThreadedExecutor(context=self._ctx)
        ex.add_node(self._node)
        threading.Thread(target=ex.spin, daemon=True).start()
        if not self._client.wait_for_server(timeout_sec=30.0):
            raise RuntimeError("fake MoveItPy: controller action server not found")
        self._fifo = os.open(os.environ["FAKE_MOVEIT_EXEC_FIFO"], os.O_RDWR)

    def execute(self, *args, **kwargs):
        if self._humble:
            return self._execute_humble(*args, **kwargs)
        return self._execute_jazzy(*args, **kwargs)

    def _execute_humble(self, group_name, robot_trajectory, blocking=True):
        if not isinstance(group_name, str):
            raise TypeError("execute(): incompatible function arguments")
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectoryPoint
        goal = self._fjt.Goal()
        goal.trajectory.joint_names = [os.environ.get("FAKE_MOVEIT_JOINT", "j1")]
        goal.trajectory.points = [JointTrajectoryPoint(positions=[0.5], time_from_start=Duration(sec=5))]
        hb = _Heartbeat()
        time.sleep(0.02)
        event("execute_start", group=group_name, trajectory=robot_trajectory, humble=True)
        t0 = time.monotonic()
        self._client.send_goal_async(goal)          # the request leaves now; its answer is not needed
        buf = ctypes.create_string_buffer(1)
        _libc_gil_held.read(self._fifo, buf, 1)     # blocks WITH the GIL until the controller ends the goal
        elapsed = time.monotonic() - t0
        event("execute_end", humble=True, seconds=elapsed, heartbeat_max_gap_s=hb.stop())
        return True

    def _execute_jazzy(self, robot_trajectory, controllers):
        seconds = float(os.environ.get("FAKE_MOVEIT_EXEC_S", "0"))
        self._stop.clear()
        self._executing = True
        event("execute_start", trajectory=robot_trajectory, controllers=list(controllers), seconds=seconds)
        stopped = self._stop.wait(seconds)      # GIL released, as the real binding does
        self._executing = False
        event("execute_end", stopped=bool(stopped))
        return True

    def shutdown(self):
        event("shutdown")
