"""LARA-ROS: Latent Action Representation Alignment for VLA policies, on ROS 2."""

__version__ = "0.1.0"
