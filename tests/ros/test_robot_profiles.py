"""The robot profiles (lara_bringup/config/ur5e_robotiq.yaml, franka_fr3.yaml) against facts read
in the upstream drivers, each named with its file (the profiles cite the same lines):

- Robotiq 2F-85 (PickNikRobotics/ros2_robotiq_gripper main): the controlled joint
  robotiq_85_left_knuckle_joint (robotiq_controllers.yaml) runs 0.0 (open) .. 0.8 rad
  (robotiq_2f_85_macro.urdf.xacro limit), closed = 0.7929 (2f_85.ros2_control.xacro
  gripper_closed_position); main uses parallel_gripper_action_controller (ParallelGripperCommand)
  at robotiq_gripper_controller/gripper_cmd.
- Franka hand (frankaemika/franka_ros2 franka_gripper gripper_action_server.cpp): GripperCommand
  at franka_gripper/gripper_action, target width = 2 x position, a width above max_width 0.08 m
  aborts, max_effort = grasp force; the finger joint fr3_finger_joint1 runs 0.0 .. 0.04
  (franka_description franka_hand.xacro).
- Every value a robot dictates carries a comment naming the upstream repository it came from.
The values are also driven over DDS against fakes with these semantics in test_gripper_command.py."""
from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("rclpy")

from lara_bringup import config_dir  # noqa: E402
from lara_policy.ros.params import load_params_yaml, node_params  # noqa: E402

ROBOTIQ_KNUCKLE_MAX = 0.8            # robotiq_2f_85_macro.urdf.xacro: limit lower 0.0 upper 0.8
ROBOTIQ_CLOSED = 0.7929              # 2f_85.ros2_control.xacro: gripper_closed_position
FRANKA_MAX_WIDTH = 0.08              # gripper_action_server.cpp: width above max_width aborts
ROBOT_KEYS = ("frame_id", "ee_link", "gripper_joint_name", "gripper_open_position", "gripper_closed_position",
              "gripper_interface", "gripper_action", "gripper_joint", "gripper_max_effort", "twist_topic",
              "servo_node", "joint_names", "moveit_controller_actions")
UPSTREAM = ("Universal_Robots_ROS2_Driver", "ros2_robotiq_gripper", "ros2_controllers", "franka_ros2",
            "franka_description", "moveit2", "UR ", "RQ ", "RC ", "FR ", "FD ")


def _profile(name):
    path = os.path.join(config_dir(), f"{name}.yaml")
    cfg = load_params_yaml(path)
    return path, node_params(cfg, "policy_node"), node_params(cfg, "command_node")


def test_ur5e_robotiq_profile_matches_the_upstream_drivers():
    _, pol, cmd = _profile("ur5e_robotiq")
    assert cmd["gripper_interface"] == "parallel_gripper_command"
    assert cmd["gripper_action"] == "/robotiq_gripper_controller/gripper_cmd"
    assert cmd["gripper_joint"] == pol["gripper_joint_name"] == "robotiq_85_left_knuckle_joint"
    for p in (pol, cmd):
        assert p["gripper_open_position"] == 0.0 and p["gripper_closed_position"] == pytest.approx(ROBOTIQ_CLOSED)
        assert 0.0 <= p["gripper_closed_position"] <= ROBOTIQ_KNUCKLE_MAX
    assert cmd["gripper_max_effort"] > 0
    assert pol["frame_id"] == cmd["frame_id"] == "base_link" and pol["ee_link"] == cmd["ee_link"] == "tool0"
    assert cmd["twist_topic"] == "/servo_node/delta_twist_cmds" and cmd["servo_node"] == "/servo_node"
    assert len(cmd["joint_names"]) == 6 and cmd["joint_names"][0] == "shoulder_pan_joint"
    assert cmd["max_not_following_s"] > 0 and cmd["max_clock_offset_s"] > 0


def test_franka_fr3_profile_matches_the_upstream_drivers():
    _, pol, cmd = _profile("franka_fr3")
    assert cmd["gripper_interface"] == "gripper_command"
    assert cmd["gripper_action"] == "/franka_gripper/gripper_action"
    assert pol["gripper_joint_name"] == "fr3_finger_joint1"
    for p in (pol, cmd):
        for k in ("gripper_open_position", "gripper_closed_position"):
            assert 0.0 <= 2 * p[k] <= FRANKA_MAX_WIDTH, (k, p[k])   # width = 2 x position
        assert p["gripper_open_position"] > p["gripper_closed_position"]
    assert cmd["gripper_max_effort"] > 0                            # grasp force (N)
    assert pol["frame_id"] == cmd["frame_id"] == "fr3_link0" and cmd["ee_link"] == "fr3_hand_tcp"
    assert cmd["joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)]
    assert cmd["max_not_following_s"] > 0 and cmd["max_clock_offset_s"] > 0


@pytest.mark.parametrize("name", ["ur5e_robotiq", "franka_fr3"])
def test_every_robot_value_names_its_upstream_source(name):
    path, _, _ = _profile(name)
    missing = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        m = re.match(r"^\s+(\w+):\s*(.*)$", line)
        if not m or m.group(1) not in ROBOT_KEYS:
            continue
        comment = line.split("#", 1)[1] if "#" in line else ""
        if not any(u in comment for u in UPSTREAM):
            missing.append(f"{n}: {line.rstrip()}")
    assert not missing, f"{name}.yaml values without an upstream source comment:\n" + "\n".join(missing)


def test_generic_real_arm_placeholders_are_refused_with_the_list():
    path = os.path.join(config_dir(), "real_arm.yaml")
    with pytest.raises(ValueError) as e:
        load_params_yaml(path)
    text = str(e.value)
    for key in ("policy_node.frame_id", "policy_node.ee_link", "policy_node.gripper_joint_name",
                "policy_node.gripper_open_position", "command_node.gripper_interface", "command_node.gripper_action",
                "command_node.gripper_max_effort", "command_node.joint_names", "command_node.workspace_min"):
        assert f"{key} = YOUR_" in text, (key, text)
    assert "ur5e_robotiq.yaml, franka_fr3.yaml" in text
