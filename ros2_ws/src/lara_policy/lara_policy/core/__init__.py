"""The ROS-free LARA core: models, training, inference. Imports without rclpy."""
