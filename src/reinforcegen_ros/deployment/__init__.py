"""The ROS 2 deployment layer without ROS: what the nodes in :mod:`reinforcegen_ros.nodes` decide.

One concept per module:

- :mod:`.guards` - command safety filter, pose and stamp checks (``(ok, reason)``, never raising);
- :mod:`.observation` - observations assembled from the latest sensor messages;
- :mod:`.components` - per-tick cores of the pose predictor (+ re-plan decision and planning),
  skill policy (base + residual, bounded) and termination classifier nodes;
- :mod:`.sequencer` - the ExecuteTask stage sequencer around the hybrid executor;
- :mod:`.bridge` - a task environment stepping as a ROS robot;
- :mod:`.loopback` - all cores wired as the ROS graph wires them, in one process;
- :mod:`.lifecycle` - shutdown within a deadline, the planning worker thread;
- :mod:`.franka` - delta-pose commands as franka_ros2 Cartesian pose commands (the adapter's law);
- :mod:`.config` - ``config/ros/*.yaml``.

Nothing here imports rclpy; the nodes convert messages and call these cores.
"""
