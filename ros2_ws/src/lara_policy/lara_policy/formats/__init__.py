"""Episode formats, ROS-free: the HDF5 episode store, rosbag2 bags (through rosbags), LeRobot v3,
the topic mapping, and Meta-World demonstrations written into a store. Imports sim and common only."""
