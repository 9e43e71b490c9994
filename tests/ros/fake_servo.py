"""A FAKE MoveIt Servo node (test double, run as its own process) with the upstream node name,
service names and types, status topic and twist acceptance rules, as read in moveit2's
servo_node.cpp:

  jazzy (Jazzy, Kilted, Rolling): ~/switch_command_type (moveit_msgs/srv/ServoCommandType),
      ~/pause_servo (std_srvs/srv/SetBool), ~/status (moveit_msgs/msg/ServoStatus). Twists on
      ~/delta_twist_cmds are dropped ("Command type has not been set, cannot accept input")
      until the command type is TWIST, and ignored while paused.
  humble: ~/start_servo, ~/stop_servo, ~/pause_servo, ~/unpause_servo (std_srvs/srv/Trigger),
      ~/status (std_msgs/msg/Int8). Twists are processed only after start_servo, not while paused.

Test hooks (not upstream): /fake_servo/set_status (std_msgs/Int8) sets the status code it
publishes; /fake_servo/state (std_msgs/String, JSON) reports what it accepted/refused.
Usage: python fake_servo.py jazzy|humble"""
import json
import sys

import rclpy
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Int8, String
from std_srvs.srv import SetBool, Trigger

MESSAGES = {5: "Collision detected, emergency stop", 2: "Very close to a singularity, emergency stop"}


def main():
    distro = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("servo_node")
    st = {"distro": distro, "command_type": None, "paused": False, "started": False, "accepted": 0,
          "refused": 0, "while_paused": 0, "last_x": None, "code": 0, "calls": []}
    log = node.get_logger()

    def on_twist(msg):
        if distro == "jazzy":
            ok_type = st["command_type"] == 1
        else:
            ok_type = st["started"]
        if st["paused"]:
            st["while_paused"] += 1
        elif not ok_type:
            st["refused"] += 1
            log.warning("Command type has not been set, cannot accept input", throttle_duration_sec=1.0)
        else:
            st["accepted"] += 1
            st["last_x"] = msg.twist.linear.x
    node.create_subscription(TwistStamped, "~/delta_twist_cmds", on_twist, 10)

    if distro == "jazzy":
        from moveit_msgs.msg import ServoStatus
        from moveit_msgs.srv import ServoCommandType

        def switch(req, resp):
            st["calls"].append(f"switch_command_type:{req.command_type}")
            if 0 <= req.command_type <= 2:
                st["command_type"] = req.command_type
            resp.success = req.command_type == st["command_type"]
            return resp

        def pause(req, resp):
            st["calls"].append(f"pause_servo:{req.data}")
            if st["paused"] == req.data:
                resp.success, resp.message = True, "Requested pause state is already active."
                return resp
            st["paused"] = req.data
            resp.success, resp.message = True, "Servoing disabled" if req.data else "Servoing enabled"
            return resp
        node.create_service(ServoCommandType, "~/switch_command_type", switch)
        node.create_service(SetBool, "~/pause_servo", pause)
        status_pub = node.create_publisher(ServoStatus, "~/status", 10)

        def status():
            status_pub.publish(ServoStatus(code=st["code"], message=MESSAGES.get(st["code"], "No warnings")))
    else:
        def trig(name, **changes):
            def cb(req, resp):
                st["calls"].append(name)
                st.update(changes)
                resp.success = True
                return resp
            node.create_service(Trigger, f"~/{name}", cb)
        trig("start_servo", started=True, paused=False)
        trig("stop_servo", paused=True)
        trig("pause_servo", paused=True)
        trig("unpause_servo", paused=False)
        status_pub = node.create_publisher(Int8, "~/status", 10)

        def status():
            status_pub.publish(Int8(data=st["code"]))

    node.create_subscription(Int8, "/fake_servo/set_status", lambda m: st.update(code=m.data), 10)
    state_pub = node.create_publisher(String, "/fake_servo/state", 10)
    node.create_timer(0.05, status)
    node.create_timer(0.05, lambda: state_pub.publish(String(data=json.dumps(st))))
    print("fake servo up", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
