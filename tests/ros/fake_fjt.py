"""A FAKE joint_trajectory_controller action server (test double, own process) on the TEST-ONLY
control_msgs mirror: control_msgs/action/FollowJointTrajectory at
/arm_controller/follow_joint_trajectory, with the goal handling of ros2_controllers' JTC
(joint_trajectory_controller.cpp): goals whose joint names differ from the controller's are
rejected, a new goal preempts the active one (ABORTED, INVALID_GOAL, "Current goal preempted by
new incoming action."; with FAKE_FJT_DISTRO=humble it ends CANCELED, INVALID_GOAL, "Current goal
cancelled due to new incoming action.", as the humble branch's preempt_active_goal does), a cancel
of the active goal is accepted (JTC then holds). It moves nothing. Each goal "executes" for FAKE_FJT_EXEC_S seconds (default 2) unless preempted/cancelled.

Mode, from /fake_fjt/mode (std_msgs/String): "accept" (default) | "reject" (reject every goal,
as an inactive controller does) | "abort" (accept, then abort at once with PATH_TOLERANCE_VIOLATED).
What it saw is published as JSON on /fake_fjt/log (std_msgs/String) at 20 Hz.
Usage: fake_fjt.py JOINT [JOINT ...]"""
import json
import os
import sys
import threading
import time

import rclpy
from control_msgs.action import FollowJointTrajectory
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from std_msgs.msg import String

GoalEvent = _rclpy.GoalEvent

Result = FollowJointTrajectory.Result


def main():
    joints = sys.argv[1:]
    exec_s = float(os.environ.get("FAKE_FJT_EXEC_S", "2.0"))
    humble = os.environ.get("FAKE_FJT_DISTRO", "") == "humble"
    # test hook: one byte written to this FIFO whenever a goal ends (tests/ros/fake_moveit's Humble
    # execute blocks on it, holding its GIL, as MoveIt waits for the controller's result in C++)
    done_fifo = os.environ.get("FAKE_FJT_DONE_FIFO")
    done_fd = os.open(done_fifo, os.O_RDWR) if done_fifo else None

    def goal_done():
        if done_fd is not None:
            os.write(done_fd, b"x")
    rclpy.init()
    node = rclpy.create_node("arm_controller")
    lock = threading.Lock()
    state = {"mode": "accept", "goals": [], "n_goals": 0, "n_accepted": 0, "cancels": [], "preempted": 0,
             "nonzero_stamps": 0, "bad_points": 0, "last": None, "tfs_ns": None}
    active = {"handle": None, "preempt": None}

    def on_mode(msg):
        with lock:
            state["mode"] = msg.data

    def goal_cb(goal):
        traj = goal.trajectory
        with lock:
            ok = state["mode"] != "reject" and list(traj.joint_names) == joints and len(traj.points) >= 1
            state["n_goals"] += 1
            state["n_accepted"] += int(ok)
            state["goals"] = (state["goals"] + [[time.time(), ok]])[-200:]
            if traj.header.stamp.sec or traj.header.stamp.nanosec:
                state["nonzero_stamps"] += 1
            if len(traj.points) != 1:
                state["bad_points"] += 1
            if traj.points:
                p = traj.points[0]
                state["last"] = list(p.positions)
                state["tfs_ns"] = p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec
        return GoalResponse.ACCEPT if ok else GoalResponse.REJECT

    def accepted_cb(handle):
        with lock:        # JTC: the new goal preempts the active one
            if active["preempt"] is not None:
                active["preempt"].set()
            active["handle"], active["preempt"] = handle, threading.Event()
        handle.execute()

    def cancel_cb(handle):
        with lock:
            state["cancels"] = (state["cancels"] + [time.time()])[-200:]
        return CancelResponse.ACCEPT

    def execute_cb(handle):
        with lock:
            preempt = active["preempt"] if active["handle"] is handle else threading.Event()
            mode = state["mode"]
        res = Result()
        if mode == "abort":
            res.error_code, res.error_string = Result.PATH_TOLERANCE_VIOLATED, "j1 path tolerance 0.1 exceeded"
            handle.abort()
            return res
        end = time.monotonic() + exec_s
        while time.monotonic() < end:
            if handle.is_cancel_requested:
                handle.canceled()
                goal_done()
                return res
            if preempt.is_set():
                with lock:
                    state["preempted"] += 1
                if humble:     # humble preempt_active_goal: setCanceled (EXECUTING -> CANCELING -> CANCELED)
                    res.error_code, res.error_string = (Result.INVALID_GOAL,
                                                        "Current goal cancelled due to new incoming action.")
                    handle._update_state(GoalEvent.CANCEL_GOAL)
                    handle.canceled()
                    return res
                res.error_code, res.error_string = Result.INVALID_GOAL, "Current goal preempted by new incoming action."
                handle.abort()
                return res
            time.sleep(0.002)
        handle.succeed()
        goal_done()
        res.error_code = Result.SUCCESSFUL
        return res

    group = ReentrantCallbackGroup()
    ActionServer(node, FollowJointTrajectory, "~/follow_joint_trajectory", execute_cb, goal_callback=goal_cb,
                 handle_accepted_callback=accepted_cb, cancel_callback=cancel_cb, callback_group=group)
    node.create_subscription(String, "/fake_fjt/mode", on_mode, 10)
    pub = node.create_publisher(String, "/fake_fjt/log", 10)

    def report():
        with lock:
            pub.publish(String(data=json.dumps(state)))
    node.create_timer(0.05, report)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print("fake follow_joint_trajectory server up", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
