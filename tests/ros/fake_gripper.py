"""A FAKE gripper action server (test double, own process). It moves nothing. Three flavours,
each with the interface and goal handling read in the upstream sources:

  gripper_command (default): ros2_controllers' gripper_action_controller (humble / jazzy):
      control_msgs/action/GripperCommand at /<node>/gripper_cmd (node default gripper_controller).
      A new goal preempts the active one (CANCELED); a goal succeeds when "reached"; a grasp that
      stalls on an object ABORTS with stalled = true (allow_stalling false, the default).
  parallel_gripper_command: ros2_controllers' parallel_gripper_action_controller (master):
      control_msgs/action/ParallelGripperCommand at /<node>/gripper_cmd; a goal whose
      command.position does not hold exactly one value is REJECTED; preempt = CANCELED; a stall
      on an object SUCCEEDS with stalled = true when allow_stalling (Robotiq's config), else
      ABORTS (FAKE_GRIPPER_ALLOW_STALLING=0).
  franka: franka_gripper's gripper_action_server: control_msgs/action/GripperCommand at
      /franka_gripper/gripper_action; target width = 2 x command.position, a width above
      max_width 0.08 or below 0 ABORTS at once; opening = move, closing = grasp(width, speed,
      force = command.max_effort, epsilon 0.005): a grasp that ends on an object outside epsilon
      ABORTS (reached_goal false), result position = width / 2.

Test hooks (not upstream): /fake_gripper/mode (std_msgs/String): "ok" | "abort:N" (the next N
goals abort where they are, not stalled) | "object:P" (an object stops closing goals at
position P). Every goal with its outcome is published on /fake_gripper/goals (std_msgs/String,
JSON) at 20 Hz. Usage: fake_gripper.py [gripper_command|parallel_gripper_command|franka] [node]"""
import json
import os
import sys
import threading
import time

import rclpy
from rclpy.action import ActionServer, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from std_msgs.msg import String

EXEC_S = float(os.environ.get("FAKE_GRIPPER_EXEC_S", "0.1"))
FRANKA_MAX_WIDTH, FRANKA_EPSILON = 0.08, 0.005


def main():
    flavour = sys.argv[1] if len(sys.argv) > 1 else "gripper_command"
    default_node = {"franka": "franka_gripper"}.get(flavour, "gripper_controller")
    node_name = sys.argv[2] if len(sys.argv) > 2 else default_node
    allow_stalling = os.environ.get("FAKE_GRIPPER_ALLOW_STALLING", "1") == "1"
    if flavour == "parallel_gripper_command":
        from control_msgs.action import ParallelGripperCommand as Action
    else:
        from control_msgs.action import GripperCommand as Action
    rclpy.init()
    node = rclpy.create_node(node_name)
    pub = node.create_publisher(String, "/fake_gripper/goals", 10)
    lock = threading.Lock()
    st = {"mode": "ok", "abort_left": 0, "object": None, "position": None, "goals": []}
    active = {"handle": None}

    def on_mode(msg):
        with lock:
            st["mode"] = msg.data
            st["abort_left"] = int(msg.data.split(":")[1]) if msg.data.startswith("abort:") else 0
            st["object"] = float(msg.data.split(":")[1]) if msg.data.startswith("object:") else None

    def goal_cb(goal):
        if flavour == "parallel_gripper_command" and len(goal.command.position) != 1:
            with lock:
                st["goals"].append({"positions": list(goal.command.position), "outcome": "rejected"})
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def accepted_cb(handle):
        with lock:       # the controllers cancel the active goal when a new one arrives
            old, active["handle"] = active["handle"], handle
        if old is not None and old.is_active:
            old.preempted = True
        handle.preempted = False
        handle.execute()

    def execute_cb(handle):
        cmd = handle.request.command
        if flavour == "parallel_gripper_command":
            target = cmd.position[0]
            rec = {"position": target, "name": list(cmd.name), "effort": list(cmd.effort),
                   "velocity": list(cmd.velocity)}
        else:
            target = cmd.position
            rec = {"position": target, "max_effort": cmd.max_effort}
        res = Action.Result()

        def finish(outcome, pos, stalled=False, reached=False):
            with lock:
                st["position"] = pos
                rec["outcome"] = outcome
                st["goals"].append(rec)
            if flavour == "parallel_gripper_command":
                res.state.name = list(cmd.name)
                res.state.position = [float(pos)]
            else:
                res.position = float(pos)
            res.stalled, res.reached_goal = stalled, reached
            {"succeeded": handle.succeed, "aborted": handle.abort}.get(outcome, handle.abort)()
            return res

        with lock:
            start = st["position"] if st["position"] is not None else target
            abort = st["abort_left"] > 0
            st["abort_left"] -= int(abort)
            obj = st["object"]
        if flavour == "franka" and not 0 <= 2 * target <= FRANKA_MAX_WIDTH:
            return finish("aborted", start)          # "Commanding out of range width!"
        end = time.monotonic() + EXEC_S
        while time.monotonic() < end:
            if handle.preempted:
                with lock:
                    rec["outcome"] = "canceled"
                    st["goals"].append(rec)
                handle._update_state(GoalEvent.CANCEL_GOAL)
                handle.canceled()
                return res
            time.sleep(0.005)
        if abort:
            return finish("aborted", start)
        closing = obj is not None and ((start - target) * (start - obj) > 0) and abs(target - start) > abs(obj - start)
        if closing:                                  # the fingers stop on the object
            if flavour == "franka":
                ok = abs(2 * obj - 2 * target) <= FRANKA_EPSILON
                return finish("succeeded" if ok else "aborted", obj, reached=ok)
            if flavour == "parallel_gripper_command" and allow_stalling:
                return finish("succeeded", obj, stalled=True)
            return finish("aborted", obj, stalled=True)
        return finish("succeeded", target, reached=True)

    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    GoalEvent = _rclpy.GoalEvent
    action_name = "~/gripper_action" if flavour == "franka" else "~/gripper_cmd"
    ActionServer(node, Action, action_name, execute_cb, goal_callback=goal_cb, handle_accepted_callback=accepted_cb,
                 callback_group=ReentrantCallbackGroup())
    node.create_subscription(String, "/fake_gripper/mode", on_mode, 10)

    def report():
        with lock:
            pub.publish(String(data=json.dumps(st["goals"])))
    node.create_timer(0.05, report)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print(f"fake gripper ({flavour}) up", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
