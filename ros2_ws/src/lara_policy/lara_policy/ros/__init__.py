"""Thin rclpy adapters over the LARA core: policy, command, recorder and sim nodes.

Importing this package needs rclpy and the colcon-built lara_msgs (`source env.sh`).
"""
