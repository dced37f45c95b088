"""Consumers of the published results: the overlay page, Home Assistant discovery, ROS 2."""
