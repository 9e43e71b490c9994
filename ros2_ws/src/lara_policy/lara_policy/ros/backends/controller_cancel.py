"""Cancel every goal of a trajectory controller's action server, from command_node's process.

Why (moveit_py backend): on Humble, moveit_py binds `MoveItPy.execute(group_name,
robot_trajectory, blocking=True)` without releasing the GIL (moveit2 humble
moveit_py/src/moveit/moveit_ros/moveit_cpp/moveit_cpp.cpp: no gil_scoped_release on "execute";
Jazzy+ has `py::call_guard<py::gil_scoped_release>()`). While the arm moves, the worker
process's Python threads cannot run, so it cannot call `stop_execution()`. Ending the worker
process does not stop the arm either: the controller keeps executing the trajectory it
accepted (an action server does not cancel the goals of a client that disappears).

So the e-stop also cancels at the controller: an `action_msgs/srv/CancelGoal` request with a
zero goal id and a zero stamp means "cancel all goals" (action_msgs CancelGoal.srv), sent to
`<action>/_action/cancel_goal` of each FollowJointTrajectory server MoveIt executes on.
ros2_controllers' joint_trajectory_controller accepts a cancel and holds position (humble
joint_trajectory_controller.cpp goal_cancelled_callback; master decelerates when
decelerate_on_cancel). MoveIt then sees its goal end, and the blocking execute returns.
The request is fire-and-forget (never blocks the e-stop); the answer is logged.
"""
from __future__ import annotations


class ControllerCanceller:
    def __init__(self, node, action_names: list[str]):
        from action_msgs.srv import CancelGoal  # noqa: PLC0415 (rclpy's own dependency)

        self.node = node
        self._req_type = CancelGoal.Request
        self.actions = ["/" + a.strip("/") for a in action_names if a.strip("/")]
        self._clients = {a: node.create_client(CancelGoal, f"{a}/_action/cancel_goal") for a in self.actions}
        self.requests_sent = 0

    def cancel_all(self, why: str) -> None:
        for action, cli in self._clients.items():
            if not cli.service_is_ready():
                self.node.get_logger().error(f"cannot cancel the goals of {action} ({why}): its cancel service is not "
                                             "available", throttle_duration_sec=1.0)
                continue
            req = self._req_type()       # goal_info.goal_id all zeros, stamp 0: cancel ALL goals
            fut = cli.call_async(req)
            self.requests_sent += 1

            def done(f, action=action):
                try:
                    r = f.result()
                except Exception:  # noqa: BLE001 - shutdown
                    return
                if r is not None:
                    self.node.get_logger().warning(
                        f"cancelled {len(r.goals_canceling)} goal(s) of {action} ({why}); return code {r.return_code}")
            fut.add_done_callback(done)

    def close(self) -> None:
        for cli in self._clients.values():
            self.node.destroy_client(cli)
        self._clients = {}
