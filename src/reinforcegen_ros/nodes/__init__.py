"""rclpy nodes of the ROS 2 runtime (the only package that imports rclpy).

Each node is thin: parameters, topics, actions, message conversion and
timers around one core object of :mod:`reinforcegen_ros.deployment`.
Entry points (``ros2 run reinforcegen_ros <node>``): ``robosuite_bridge``,
``stage_sequencer``, ``pose_predictor``, ``skill_policy``, ``termination``.
"""
