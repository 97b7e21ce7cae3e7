"""Scripted demonstrator for Threading.

Stage 0: top-down grasp of the needle's handle and lift. Stage 1: carry the
needle above the ring, lower it so that it lies on the ring's axis just in
front of the ring, then push it along the axis until the tip is through.

The needle can be pushed through the ring from either side and grasped with
either of the two finger orientations. The program picks the combination that
keeps the gripper's yaw inside the wrist's reachable window (Panda's last joint
stops about 2.1 rad one way and 3.7 rad the other way from its home angle) and,
among those, the one that leaves the gripper closest to the robot. Threading
targets are needle poses converted to gripper poses through the live
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
    "yaw_window": [-2.0, 3.6],  # reachable gripper yaw, relative to the heading from the robot base
    "max_reach": 0.78,  # largest horizontal gripper distance from the robot base while threading
    "max_turn": 2.5,  # largest yaw change in one waypoint (longer turns get intermediate waypoints)
    "close_steps": 12,
    "hold_steps": 5,
    "travel_speed": 0.6,
    "fine_speed": 0.25,
    "fine_tol_pos": 0.003,
    "fine_tol_rot": 0.03,
}


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

    # ------------------------------------------------------------------ yaw bookkeeping
    def _window(self, env, xy: np.ndarray) -> tuple[float, float]:
        """Reachable gripper-yaw interval for a gripper at ``xy`` (it turns with the arm's base joint)."""
        base = env.env.sim.data.get_body_xpos(env.env.robots[0].robot_model.root_body)
        heading = float(np.arctan2(xy[1] - base[1], xy[0] - base[0]))
        low, high = self.config["yaw_window"]
        return heading + low, heading + high

    @staticmethod
    def _in_window(yaw: float, window: tuple[float, float]) -> float | None:
        """The representative of ``yaw`` (mod 2 pi) inside ``window``, or None."""
        low, high = window
        rep = low + (yaw - low) % (2 * np.pi)
        return rep if rep <= high else None

    def _current_yaw(self, env) -> float:
        """The gripper's unwrapped yaw (its representative inside the reachable window)."""
        eef = env.eef_pose()
        yaw = _yaw_of(eef[:3, 1])
        rep = self._in_window(yaw, self._window(env, eef[:2, 3]))
        return yaw if rep is None else rep

    def _turns(self, start: float, goal: float) -> list[float]:
        """Intermediate yaws so that no single waypoint turns more than ``max_turn``."""
        n = int(np.ceil(abs(goal - start) / self.config["max_turn"]))
        return [start + (goal - start) * k / n for k in range(1, n)]

    def _turn_in_place(self, yaws: list[float], gripper: float) -> list[Waypoint]:
        """Connect waypoints turning the gripper about its current position."""
        wps = []
        for yaw in yaws:
            def target(e, yaw=yaw) -> np.ndarray:
                return make_pose(e.eef_pose()[:3, 3], rot_z(yaw) @ TOP_DOWN)

            wps.append(Waypoint(_frozen(target), gripper, "connect", tol_pos=0.02, tol_rot=0.1, max_steps=60, name="turn"))
        return wps

    # ------------------------------------------------------------------ planning
    def _thread_choice(self, env, grip_sign: float) -> tuple[float, np.ndarray, float] | None:
        """Best push direction for a grasp with ``eef_y = grip_sign * needle_x``.

        Returns (gripper yaw while threading, push direction, gripper distance
        from the robot base) or None when neither direction keeps yaw and position reachable.
        """
        ring = env.object_poses()["tripod"]
        base = env.env.sim.data.get_body_xpos(env.env.robots[0].robot_model.root_body)
        best = None
        for direction in (ring[:3, 0], -ring[:3, 0]):
            direction = np.array([direction[0], direction[1], 0.0]) / np.linalg.norm(direction[:2])
            grip_xy = (ring[:3, 3] - direction * (TIP_X + self.config["thread_depth"]))[:2]
            yaw = self._in_window(_yaw_of(grip_sign * direction), self._window(env, grip_xy))
            reach = float(np.linalg.norm(grip_xy - base[:2]))
            if yaw is None or reach > self.config["max_reach"]:
                continue
            if best is None or reach < best[2]:
                best = (yaw, direction, reach)
        return best

    def _grasp_choice(self, env) -> tuple[float, float]:
        """(gripper yaw at the grasp, grip sign) that makes the whole task reachable, nearest the robot."""
        needle = env.object_poses()["needle"]
        window = self._window(env, needle[:2, 3])
        options = []
        for sign in (1.0, -1.0):
            yaw = self._in_window(_yaw_of(sign * needle[:3, 0]), window)
            thread = self._thread_choice(env, sign)
            if yaw is not None and thread is not None:
                options.append((thread[2], abs(yaw - self._current_yaw(env)), yaw, sign))
        if not options:  # nothing fully reachable: grasp with the finger orientation nearest the current yaw
            current = self._current_yaw(env)
            sign = 1.0 if np.cos(_yaw_of(needle[:3, 0]) - current) >= 0 else -1.0
            return current + np.arctan2(np.sin(_yaw_of(sign * needle[:3, 0]) - current), np.cos(_yaw_of(sign * needle[:3, 0]) - current)), sign
        _, _, yaw, sign = min(options)
        return yaw, sign

    # ------------------------------------------------------------------ stage 0
    def _grasp_program(self, env) -> list[Waypoint]:
        c = self.config
        yaw, _ = self._grasp_choice(env)
        rot = rot_z(yaw) @ TOP_DOWN

        def above_handle(height: float):
            def target(e) -> np.ndarray:
                handle = e.object_poses()["needle"][:3, 3]
                return make_pose(handle + np.array([0.0, 0.0, height]), rot)

            return target

        def lifted(e) -> np.ndarray:
            handle = e.object_poses()["needle"][:3, 3]
            return make_pose(np.array([handle[0], handle[1], e.env.table_offset[2] + c["lift_height"]]), rot)

        fine = dict(tol_pos=c["fine_tol_pos"], tol_rot=c["fine_tol_rot"])
        return self._turn_in_place(self._turns(self._current_yaw(env), yaw), GRIPPER_OPEN) + [
            Waypoint(above_handle(c["approach_height"]), GRIPPER_OPEN, "connect", speed=c["travel_speed"], tol_pos=0.01, max_steps=150, name="pre_grasp"),
            Waypoint(above_handle(c["grasp_z_offset"]), GRIPPER_OPEN, "skill", speed=c["fine_speed"], max_steps=100, **fine, name="descend"),
            Waypoint(_frozen(above_handle(c["grasp_z_offset"])), GRIPPER_CLOSED, "skill", max_steps=c["close_steps"], tol_pos=0.0, name="close"),
            Waypoint(lifted, GRIPPER_CLOSED, "skill", speed=c["travel_speed"], tol_pos=0.01, max_steps=100, name="lift"),
        ]

    # ------------------------------------------------------------------ stage 1
    def _thread_program(self, env) -> list[Waypoint]:
        c = self.config
        needle, eef = env.object_poses()["needle"], env.eef_pose()
        sign = 1.0 if float(eef[:3, 1] @ needle[:3, 0]) >= 0 else -1.0
        choice = self._thread_choice(env, sign)
        if choice is None:  # no reachable yaw: push along the axis direction nearest the current yaw
            axis = env.object_poses()["tripod"][:3, 0]
            direction = axis if float(sign * axis @ eef[:3, 1]) >= 0 else -axis
            yaw = self._current_yaw(env)
        else:
            yaw, direction, _ = choice

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
        return self._turn_in_place(self._turns(self._current_yaw(env), yaw), GRIPPER_CLOSED) + [
            Waypoint(needle_goal(pre, c["carry_height"]), GRIPPER_CLOSED, "connect", speed=c["travel_speed"], tol_pos=0.01, tol_rot=0.05, max_steps=200, name="over_ring"),
            Waypoint(needle_goal(pre, 0.0), GRIPPER_CLOSED, "connect", speed=c["fine_speed"], max_steps=150, **fine, name="pre_thread"),
            Waypoint(needle_goal(c["thread_depth"], 0.0), GRIPPER_CLOSED, "skill", speed=c["fine_speed"], max_steps=150, **fine, name="push"),
            Waypoint(needle_goal(c["thread_depth"], 0.0), GRIPPER_CLOSED, "skill", max_steps=c["hold_steps"], tol_pos=0.0, name="hold"),
        ]
