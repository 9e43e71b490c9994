"""A FAKE gripper action server (test double, own process) with the interface of ros2_controllers'
gripper_action_controller: control_msgs/action/GripperCommand at /gripper_controller/gripper_cmd
(the controller's `~/gripper_cmd`). Every goal it receives is reported on /fake_gripper/goals
(std_msgs/String, JSON) and succeeds at once with reached_goal = true."""
import json

import rclpy
from control_msgs.action import GripperCommand
from rclpy.action import ActionServer
from std_msgs.msg import String


def main():
    rclpy.init()
    node = rclpy.create_node("gripper_controller")
    pub = node.create_publisher(String, "/fake_gripper/goals", 10)
    goals = []

    def execute(handle):
        cmd = handle.request.command
        goals.append({"position": cmd.position, "max_effort": cmd.max_effort})
        handle.succeed()
        result = GripperCommand.Result()
        result.position, result.reached_goal = cmd.position, True
        return result
    ActionServer(node, GripperCommand, "~/gripper_cmd", execute)
    node.create_timer(0.05, lambda: pub.publish(String(data=json.dumps(goals))))
    print("fake gripper up", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
