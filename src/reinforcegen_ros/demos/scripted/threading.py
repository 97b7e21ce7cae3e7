"""Scripted demonstrator for Threading.

Stage 0: top-down grasp of the needle's handle and lift. Stage 1: carry the
needle above the ring, lower it so that it lies on the ring's axis just in
front of the ring, then push it along the axis until the tip is through.
Threading targets are needle poses converted to gripper poses through the live
gripper-to-needle transform, so any slip in the grasp is compensated.
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z
from reinforcegen_ros.tasks.threading import TIP_X

# Top-down gripper orientation at yaw 0: fingers close along world y, gripper z points down.
TOP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])

DEFAULTS = {
    "approach_height": 0.10,  # pre-grasp height above the handle
    "grasp_z_offset": 0.004,  # grasp point above the handle centre
    "lift_height": 0.18,  # handle height above the table after the grasp
    "carry_height": 0.08,  # needle height above the ring centre while moving over the tripod
    "pre_thread_gap": 0.03,  # tip distance in front of the ring plane before pushing
    "thread_depth": 0.035,  # tip distance past the ring plane at the end of the push
    "close_steps": 12,
    "hold_steps": 5,
    "travel_speed": 0.6,
    "fine_speed": 0.25,
    "fine_tol_pos": 0.003,
    "fine_tol_rot": 0.03,
}


def _wrap(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _yaw_of(vec: np.ndarray) -> float:
    """Heading of the horizontal part of ``vec``."""
    return float(np.arctan2(vec[1], vec[0]))


def _frozen(target):
    """A target that keeps the pose ``target`` gave on its first evaluation."""
    cache: list[np.ndarray] = []

    def frozen(env) -> np.ndarray:
        if not cache:
            cache.append(target(env))
        return cache[0]

    return frozen


class ThreadingDemonstrator(ScriptedDemonstrator):
    """Privileged waypoint program for the two Threading stages."""

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **dict(config or {})})

    def stage_program(self, env, stage: int) -> list[Waypoint]:
        if stage == 0:
            return self._grasp_program(env)
        if stage == 1:
            return self._thread_program(env)
        raise IndexError(f"Threading has 2 stages, got {stage}")

    # ------------------------------------------------------------------ stage 0
    def _grasp_yaw(self, env) -> float:
        """Gripper yaw that puts the fingers across the handle, the one of the two closest to the current yaw."""
        needle_yaw = _yaw_of(env.object_poses()["needle"][:3, 0])
        current = _yaw_of(env.eef_pose()[:3, 1])
        return min((needle_yaw, needle_yaw + np.pi), key=lambda y: abs(_wrap(y - current)))

    def _grasp_program(self, env) -> list[Waypoint]:
        c = self.config
        rot = rot_z(self._grasp_yaw(env)) @ TOP_DOWN

        def above_handle(height: float):
            def target(e) -> np.ndarray:
                handle = e.object_poses()["needle"][:3, 3]
                return make_pose(handle + np.array([0.0, 0.0, height]), rot)

            return target

        def lifted(e) -> np.ndarray:
            handle = e.object_poses()["needle"][:3, 3]
            table_z = e.env.table_offset[2]
            return make_pose(np.array([handle[0], handle[1], table_z + c["lift_height"]]), rot)

        fine = dict(tol_pos=c["fine_tol_pos"], tol_rot=c["fine_tol_rot"])
        return [
            Waypoint(above_handle(c["approach_height"]), GRIPPER_OPEN, "connect", speed=c["travel_speed"], tol_pos=0.01, max_steps=150, name="pre_grasp"),
            Waypoint(above_handle(c["grasp_z_offset"]), GRIPPER_OPEN, "skill", speed=c["fine_speed"], max_steps=100, **fine, name="descend"),
            Waypoint(_frozen(above_handle(c["grasp_z_offset"])), GRIPPER_CLOSED, "skill", max_steps=c["close_steps"], tol_pos=0.0, name="close"),
            Waypoint(lifted, GRIPPER_CLOSED, "skill", speed=c["travel_speed"], tol_pos=0.01, max_steps=100, name="lift"),
        ]

    # ------------------------------------------------------------------ stage 1
    def _thread_direction(self, env) -> np.ndarray:
        """Ring-axis direction (tip-ward) for the push, keeping the gripper's yaw closest to its current one."""
        ring = env.object_poses()["tripod"]
        needle, eef = env.object_poses()["needle"], env.eef_pose()
        axis = ring[:3, 0]
        # gripper yaw minus needle yaw is fixed by the grasp; stay near the neutral gripper yaw (0)
        offset = _yaw_of(eef[:3, 1]) - _yaw_of(needle[:3, 0])
        return min((axis, -axis), key=lambda d: abs(_wrap(_yaw_of(d) + offset)))

    def _thread_program(self, env) -> list[Waypoint]:
        c = self.config
        direction = self._thread_direction(env)

        def needle_goal(tip_along: float, height: float):
            """Gripper target putting the tip ``tip_along`` past the ring plane, ``height`` above the ring axis."""

            def target(e) -> np.ndarray:
                ring = e.object_poses()["tripod"]
                tip = ring[:3, 3] + direction * tip_along + np.array([0.0, 0.0, height])
                goal = make_pose(tip - direction * TIP_X, rot_z(_yaw_of(direction)))
                grasp = pose_inv(e.eef_pose()) @ e.object_poses()["needle"]  # needle in the gripper frame
                return goal @ pose_inv(grasp)

            return target

        fine = dict(tol_pos=c["fine_tol_pos"], tol_rot=c["fine_tol_rot"])
        pre = -c["pre_thread_gap"]
        return [
            Waypoint(needle_goal(pre, c["carry_height"]), GRIPPER_CLOSED, "connect", speed=c["travel_speed"], tol_pos=0.01, tol_rot=0.05, max_steps=200, name="over_ring"),
            Waypoint(needle_goal(pre, 0.0), GRIPPER_CLOSED, "connect", speed=c["fine_speed"], max_steps=150, **fine, name="pre_thread"),
            Waypoint(needle_goal(c["thread_depth"], 0.0), GRIPPER_CLOSED, "skill", speed=c["fine_speed"], max_steps=150, **fine, name="push"),
            Waypoint(needle_goal(c["thread_depth"], 0.0), GRIPPER_CLOSED, "skill", max_steps=c["hold_steps"], tol_pos=0.0, name="hold"),
        ]
