"""MoveIt 2 (``moveit_py``) behind the project's planner protocol, for ``planner:=moveit``.

:class:`MoveItPlanner` plans with MoveIt's planning pipeline and planning
scene (the robot's own collision model and sensors), so it needs a running
``move_group``-style setup with the robot description loaded. It returns the
joint waypoints and the tip link's poses, like the project's planners. Only
the ROS 2 runtime uses it; it is imported lazily and fails with a clear error
where ``moveit_py`` is not installed. (Not exercised on the verification
machine, which has no MoveIt.)
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.geometry import make_pose, quat_to_mat
from reinforcegen_ros.planning import PlanningFailed, Trajectory


def import_moveit():
    """``moveit.planning.MoveItPy`` and ``moveit.core.robot_state.RobotState``, or ImportError with a hint."""
    try:
        from moveit.core.robot_state import RobotState
        from moveit.planning import MoveItPy
    except ImportError as exc:
        raise ImportError(
            "planner 'moveit' needs MoveIt 2's Python API (moveit_py), which is not importable here "
            f"({exc}); install ros-$ROS_DISTRO-moveit-py or use planner:=ompl"
        ) from None
    return MoveItPy, RobotState


class MoveItPlanner:
    """Plans ``group`` motions to a ``tip_link`` pose (world frame = the planning frame of the robot description)."""

    def __init__(self, node_name: str = "reinforcegen_moveit", group: str = "panda_arm", tip_link: str = "panda_hand_tcp",
                 joint_names: list[str] | None = None, frame_id: str = "world"):
        MoveItPy, self._RobotState = import_moveit()
        self.moveit = MoveItPy(node_name=node_name)
        self.group, self.tip_link, self.frame_id = group, tip_link, frame_id
        self.component = self.moveit.get_planning_component(group)
        self.model = self.moveit.get_robot_model()
        self.joint_names = list(joint_names or [])

    def plan(self, start_joints, target_pose, touch=()) -> Trajectory:
        from geometry_msgs.msg import PoseStamped

        state = self._RobotState(self.model)
        state.set_joint_group_positions(self.group, np.asarray(start_joints, dtype=float))
        state.update()
        self.component.set_start_state(robot_state=state)
        goal = PoseStamped()
        goal.header.frame_id = self.frame_id
        target = np.asarray(target_pose, dtype=float)
        from reinforcegen_ros.geometry import mat_to_quat

        q = mat_to_quat(target[:3, :3])
        goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = (float(v) for v in target[:3, 3])
        goal.pose.orientation.x, goal.pose.orientation.y, goal.pose.orientation.z, goal.pose.orientation.w = (float(v) for v in q)
        self.component.set_goal_state(pose_stamped_msg=goal, pose_link=self.tip_link)
        result = self.component.plan()
        if not result:
            raise PlanningFailed("MoveIt found no plan to the target")
        traj = result.trajectory
        joints, poses = [], []
        for i in range(traj.get_waypoint_count() if hasattr(traj, "get_waypoint_count") else len(traj)):
            wp = traj.get_waypoint(i) if hasattr(traj, "get_waypoint") else traj[i]
            joints.append(np.asarray(wp.get_joint_group_positions(self.group), dtype=float))
            tf = np.asarray(wp.get_global_link_transform(self.tip_link), dtype=float)
            poses.append(tf if tf.shape == (4, 4) else make_pose(tf[:3], quat_to_mat(tf[3:])))
        if not poses:
            raise PlanningFailed("MoveIt returned an empty trajectory")
        poses[-1] = target
        return Trajectory(poses=np.stack(poses), joints=np.stack(joints))
