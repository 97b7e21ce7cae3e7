"""The cheap fallback planner: a straight line in task space.

Position is interpolated linearly and rotation by slerp, with waypoints spaced
so that consecutive poses differ by at most ``max_step`` metres (or
``max_rot_step`` radians). It does not check collisions; it is what MimicGen-style
generation uses for transits when a collision-aware planner is not needed.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from reinforcegen_ros.geometry import make_pose, rotation_angle
from reinforcegen_ros.planning.base import PlanningFailed, Trajectory


class StraightLinePlanner:
    """Task-space straight-line interpolation from the current grip-site pose."""

    def __init__(self, forward_kinematics, max_step: float = 0.02, max_rot_step: float = 0.15):
        self.fk = forward_kinematics
        self.max_step = max_step
        self.max_rot_step = max_rot_step

    def plan(self, start_joints: np.ndarray, target_pose: np.ndarray, touch=()) -> Trajectory:
        """Interpolate from the grip-site pose at ``start_joints`` to ``target_pose`` (``touch`` is unused)."""
        t0 = time.perf_counter()
        if not np.all(np.isfinite(target_pose)):
            raise PlanningFailed("target pose contains NaN or inf")
        start = self.fk(start_joints)
        return Trajectory(poses=interpolate_poses(start, target_pose, self.max_step, self.max_rot_step), planning_time=time.perf_counter() - t0)


def interpolate_poses(start: np.ndarray, goal: np.ndarray, max_step: float, max_rot_step: float) -> np.ndarray:
    """Poses from ``start`` (exclusive) to ``goal`` (inclusive) with bounded spacing."""
    dist = np.linalg.norm(goal[:3, 3] - start[:3, 3])
    angle = rotation_angle(start[:3, :3], goal[:3, :3])
    n = max(1, int(np.ceil(max(dist / max_step, angle / max_rot_step))))
    fractions = np.linspace(0.0, 1.0, n + 1)[1:]
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([start[:3, :3], goal[:3, :3]])))
    rots = slerp(fractions).as_matrix()
    return np.stack([make_pose(start[:3, 3] + f * (goal[:3, 3] - start[:3, 3]), r) for f, r in zip(fractions, rots)])
