"""ROS 2 output: the results as ROS4HRI voice topics (`python -m realtime.consumers.ros2`, docs/ros2.md)."""
