"""`lara bringup gazebo.yaml` / `isaac.yaml` as a user meets them, against stand-in publishers with
those bridges' topic names, message types and QoS, and a /clock under use_sim_time, including a
simulator reset that jumps the clock back:

  gazebo: ros_gz_bridge camera /camera/image (sensor_msgs/Image rgb8, reliable), joint_state_broadcaster
          /joint_states, ros_gz_bridge /clock (rosgraph_msgs/Clock)
  isaac:  Isaac Sim ROS 2 bridge camera helper /rgb (Image rgb8, reliable), /isaac_joint_states, /clock

plus /lara/ee_pose and /lara/goal (no tf2_ros here; on a ROS install ee_pose_source auto uses tf)
and MoveIt Servo as the fake Jazzy servo_node (tests/ros/fake_servo.py). Processes: the fake Servo,
`lara bringup CONFIG --arm` (policy_node + command_node + recorder in one process, as the CLI runs
it) and this test (the simulator stand-in). Slow: 1-4 min per config (torch and language-model start-up)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PointStamped, PoseStamped  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

import servo_interfaces  # noqa: E402
from helpers_runtime import OutputReader, kill, wait_for  # noqa: E402
from lara_msgs.msg import SafetyStatus  # noqa: E402
from lara_policy.ros.codec import rgb_to_image_msg, sec_to_stamp  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent

BRIDGES = {
    "gazebo": {"image": "/camera/image", "joints": "/joint_states"},
    "isaac": {"image": "/rgb", "joints": "/isaac_joint_states"},
}


class SimStandIn:
    """Publishes what the bridge would, stamped on its own sim clock (published on /clock)."""

    def __init__(self, harness, image_topic, joints_topic):
        self.n = harness.node("sim_bridge_standin")
        self.t = 100.0
        reliable10 = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.clock = self.n.create_publisher(Clock, "/clock", reliable10)
        self.cam = self.n.create_publisher(Image, image_topic, reliable10)
        self.js = self.n.create_publisher(JointState, joints_topic, reliable10)
        self.pose = self.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self.goal = self.n.create_publisher(PointStamped, "/lara/goal", 10)
        self.instr = self.n.create_publisher(String, "/lara/instruction", 10)
        self.status: list[SafetyStatus] = []
        self.n.create_subscription(SafetyStatus, "/lara/safety_status", self.status.append, 50)
        self.servo: dict = {}
        self.n.create_subscription(String, "/fake_servo/state", lambda m: self.servo.update(json.loads(m.data)), 10)
        self.img = rgb_to_image_msg(np.full((64, 64, 3), 90, np.uint8), 0.0)
        self.k = 0
        self.n.create_timer(0.01, self._clock)
        self.n.create_timer(1.0 / 30.0, self._frame)
        self.n.create_timer(1.0, lambda: self.instr.publish(String(data="reach the goal")))

    def _clock(self):
        self.t += 0.01
        self.clock.publish(Clock(clock=sec_to_stamp(self.t)))

    def _frame(self):
        stamp = sec_to_stamp(self.t)
        self.img.header.stamp = stamp
        self.cam.publish(self.img)
        js = JointState(name=["j1", "j2", "gripper"], position=[0.0, 0.1, 1.0])
        js.header.stamp = stamp
        self.js.publish(js)
        p = PoseStamped()
        p.header.stamp, p.header.frame_id = stamp, "base"
        p.pose.position.x, p.pose.position.y, p.pose.position.z = 0.5, 0.0, 0.3
        p.pose.orientation.w = 1.0
        self.pose.publish(p)
        g = PointStamped()
        g.header.stamp, g.header.frame_id = stamp, "base"
        g.point.x, g.point.y, g.point.z = 0.6, 0.1, 0.3
        self.goal.publish(g)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["gazebo", "isaac"])
def test_sim_bridge_config_drives_servo_and_survives_a_sim_reset(harness, tiny_checkpoint, config):
    env = servo_interfaces.env(servo_interfaces.build())
    sim = SimStandIn(harness, BRIDGES[config]["image"], BRIDGES[config]["joints"])
    servo = subprocess.Popen([sys.executable, str(HERE / "fake_servo.py"), "jazzy"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    OutputReader(servo)
    lara = subprocess.Popen([sys.executable, "-m", "lara_policy.cli", "bringup", f"{config}.yaml", "--arm",
                             "--no-record", "--duration", "400", "--checkpoint", str(tiny_checkpoint)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = OutputReader(lara)
    try:
        # Servo activated (switch_command_type TWIST) and accepting LARA's twists on sim time
        assert wait_for(lambda: sim.servo.get("accepted", 0) > 5, 60.0, period=0.2), (sim.servo, out.text()[-3000:])
        assert "switch_command_type:1" in sim.servo["calls"]
        # the first chunk waits for torch + the language model to load (a minute or more on a loaded CPU)
        assert wait_for(lambda: sim.status and sim.status[-1].state == "armed" and sim.status[-1].moving, 240.0,
                        period=0.2), ([(s.state, s.reason) for s in sim.status[-5:]], out.text()[-3000:])
        t_armed = sim.t
        # simulator reset: /clock and every stamp jump back 60 s
        sim.t -= 60.0
        assert wait_for(lambda: any("clock jumped back" in s.reason or "in the future" in s.reason
                                    for s in sim.status), 10.0, period=0.1), [s.reason for s in sim.status[-5:]]
        n = sim.servo["accepted"]
        # recovery on the new clock without any operator action
        assert wait_for(lambda: sim.servo["accepted"] > n + 5 and sim.status[-1].state == "armed", 30.0,
                        period=0.2), ([s.reason for s in sim.status[-5:]], out.text()[-3000:])
        assert sim.t < t_armed
        reasons = sorted({s.reason.split(":")[0] for s in sim.status if s.state == "fault"})
        print(f"{config}: armed on sim time, reset -60 s -> faults {reasons}, recovered; "
              f"Servo accepted {sim.servo['accepted']} twists")
    finally:
        kill(lara, 2)
        kill(servo, 9)
