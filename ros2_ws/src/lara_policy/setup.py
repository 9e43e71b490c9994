"""lara_policy: installs with colcon (ament_python) and with plain `pip install -e`.

The core (lara_policy.core, .data, .evaluation) imports without rclpy; the ROS
nodes (lara_policy.ros) need rclpy and lara_msgs.
"""
from setuptools import find_packages, setup

package_name = "lara_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy"],
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="LARA-ROS developers",
    maintainer_email="dev@example.com",
    description="LARA latent action alignment VLA: core library and ROS 2 nodes",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "lara = lara_policy.cli:main",
            # ROS 2 nodes (`ros2 run lara_policy <name>` on a ROS install)
            "policy_node = lara_policy.ros.policy_node:main",
            "command_node = lara_policy.ros.command_node:main",
            "recorder_node = lara_policy.ros.recorder_node:main",
            "sim_node = lara_policy.ros.sim_node:main",
            "camera_watch_node = lara_policy.ros.camera_watch_node:main",
        ],
    },
)
