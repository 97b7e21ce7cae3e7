"""The planner protocol shared by every motion planner (OMPL, straight line, MoveIt).

A planner turns the robot's current joints and a target grip-site pose into a
:class:`Trajectory` of grip-site waypoints (and joint waypoints when it plans in
joint space). The trajectory is executed through the same delta-pose controller
as the skills (:func:`follow_action`), so connect and skill segments share one
action space. Re-targeting while executing is simply calling ``plan`` again
from the current joints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from reinforcegen_ros.geometry import delta_pose_action, rotation_angle


class PlanningFailed(RuntimeError):
    """The target is unreachable, in collision, or no path was found in time."""


@dataclass
class Trajectory:
    """Grip-site waypoints in the world frame, spaced for execution at the control rate."""

    poses: np.ndarray  # (N, 4, 4)
    joints: np.ndarray | None = None  # (N, 7) when planned in joint space
    planning_time: float = 0.0

    def __len__(self) -> int:
        return len(self.poses)


class Planner(Protocol):
    """Plans a collision-free motion of the grip site to ``target_pose``.

    ``touch`` names objects the gripper, or an object it holds, may touch close
    to the target (e.g. the stage's reference object when the skill starts in
    contact with it).
    """

    def plan(self, start_joints: np.ndarray, target_pose: np.ndarray, touch: Iterable[str] = ()) -> Trajectory: ...


class TrajectoryFollower:
    """Turns a trajectory into delta-pose actions, one control tick at a time.

    The follower aims at a waypoint ``lookahead`` steps ahead of the closest one,
    so the arm tracks the path without stopping at every waypoint, and reports
    ``done`` once the final pose is reached within tolerance. ``gain`` scales
    the delta toward that waypoint (OSC_POSE tracks a delta with lag, so a gain
    above 1 moves faster along the path without cutting its corners).
    """

    # "Closest" weighs position and rotation in units of the planners' waypoint spacing, and looks only
    # ``window`` waypoints ahead: where the wrist turns in place, the waypoints differ in rotation alone,
    # and a position-only match would skip the turn, letting OSC take the short way into a joint limit.
    position_unit, rotation_unit, window = 0.02, 0.15, 10

    def __init__(self, trajectory: Trajectory, tol_pos: float = 0.005, tol_rot: float = 0.05, lookahead: int = 1, gain: float = 1.0):
        self.trajectory = trajectory
        self.tol_pos, self.tol_rot, self.lookahead, self.gain = tol_pos, tol_rot, lookahead, gain
        self.index = 0

    def done(self, eef_pose: np.ndarray) -> bool:
        """Whether the final waypoint is reached."""
        goal = self.trajectory.poses[-1]
        return bool(
            np.linalg.norm(goal[:3, 3] - eef_pose[:3, 3]) < self.tol_pos
            and rotation_angle(goal[:3, :3], eef_pose[:3, :3]) < self.tol_rot
        )

    def action(self, eef_pose: np.ndarray) -> np.ndarray:
        """6-D delta-pose action toward the next waypoint."""
        poses = self.trajectory.poses
        ahead = poses[self.index : self.index + self.window]
        dists = [
            np.linalg.norm(p[:3, 3] - eef_pose[:3, 3]) / self.position_unit + rotation_angle(p[:3, :3], eef_pose[:3, :3]) / self.rotation_unit
            for p in ahead
        ]
        self.index += int(np.argmin(dists))
        target = poses[min(self.index + self.lookahead, len(poses) - 1)]
        return np.clip(delta_pose_action(eef_pose, target) * self.gain, -1.0, 1.0)
