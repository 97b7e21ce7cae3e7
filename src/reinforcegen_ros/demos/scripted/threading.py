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

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint, frozen
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z
from reinforcegen_ros.tasks.threading import TIP_X

# Top-down gripper orientation at yaw 0: fingers close along world y, gripper z points down.
TOP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
REACH_WEIGHT = 10.0  # rad of yaw violation counted per metre of reach violation when ranking plans

DEFAULTS = {
    "approach_height": 0.10,  # pre-grasp height above the handle
    "grasp_z_offset": 0.004,  # grasp point above the handle centre
    "lift_height": 0.18,  # handle height above the table after the grasp
    "carry_height": 0.08,  # needle height above the ring centre while moving over the tripod
    "pre_thread_gap": 0.03,  # tip distance in front of the ring plane before pushing
    "thread_depth": 0.035,  # tip distance past the ring plane at the end of the push
    "yaw_window": [-2.0, 3.6],  # reachable gripper yaw, relative to the heading from the robot base
    "reach": [0.40, 0.78],  # allowed horizontal gripper distance from the robot base while threading
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
    def _fit_window(yaw: float, window: tuple[float, float]) -> tuple[float, float]:
        """(representative of ``yaw`` mod 2 pi nearest ``window``, its distance outside the window)."""
        low, high = window
        above = low + (yaw - low) % (2 * np.pi)  # smallest representative >= low
        if above <= high:
            return above, 0.0
        below = above - 2 * np.pi  # largest representative < low
        return (above, above - high) if above - high <= low - below else (below, low - below)

    def _current_yaw(self, env) -> float:
        """The gripper's unwrapped yaw (its representative in, or nearest, the reachable window)."""
        eef = env.eef_pose()
        return self._fit_window(_yaw_of(eef[:3, 1]), self._window(env, eef[:2, 3]))[0]

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

            wps.append(Waypoint(frozen(target), gripper, "connect", tol_pos=0.02, tol_rot=0.1, max_steps=60, name="turn"))
        return wps

    # ------------------------------------------------------------------ planning
    def _thread_choice(self, env, grip_sign: float) -> tuple[float, float, float, np.ndarray]:
        """Best push direction for a grasp with ``eef_y = grip_sign * needle_x``.

        Returns (violation, reach, gripper yaw while threading, push direction):
        ``violation`` (0 when feasible) adds how far the yaw falls outside the
        wrist's window and the gripper outside the allowed reach; ``reach`` is the
        gripper's horizontal distance from the robot base. Feasible and then
        nearer options rank first.
        """
        ring = env.object_poses()["tripod"]
        base = env.env.sim.data.get_body_xpos(env.env.robots[0].robot_model.root_body)
        low, high = self.config["reach"]
        options = []
        for direction in (ring[:3, 0], -ring[:3, 0]):
            direction = np.array([direction[0], direction[1], 0.0]) / np.linalg.norm(direction[:2])
            grip_xy = (ring[:3, 3] - direction * (TIP_X + self.config["thread_depth"]))[:2]
            yaw, yaw_out = self._fit_window(_yaw_of(grip_sign * direction), self._window(env, grip_xy))
            reach = float(np.linalg.norm(grip_xy - base[:2]))
            violation = yaw_out + max(0.0, low - reach, reach - high) * REACH_WEIGHT
            options.append((violation, reach, yaw, direction))
        return min(options, key=lambda o: o[:2])

    def _grasp_choice(self, env) -> float:
        """Gripper yaw at the grasp: the finger orientation that makes the whole task reachable, nearest the robot."""
        needle = env.object_poses()["needle"]
        window = self._window(env, needle[:2, 3])
        options = []
        for sign in (1.0, -1.0):
            yaw, yaw_out = self._fit_window(_yaw_of(sign * needle[:3, 0]), window)
            violation, reach, _, _ = self._thread_choice(env, sign)
            options.append((yaw_out + violation, reach, yaw))
        return min(options)[2]

    # ------------------------------------------------------------------ stage 0
    def _grasp_program(self, env) -> list[Waypoint]:
        c = self.config
        yaw = self._grasp_choice(env)
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
            Waypoint(frozen(above_handle(c["grasp_z_offset"])), GRIPPER_CLOSED, "skill", max_steps=c["close_steps"], tol_pos=0.0, name="close"),
            Waypoint(lifted, GRIPPER_CLOSED, "skill", speed=c["travel_speed"], tol_pos=0.01, max_steps=100, name="lift"),
        ]

    # ------------------------------------------------------------------ stage 1
    def _thread_program(self, env) -> list[Waypoint]:
        c = self.config
        needle, eef = env.object_poses()["needle"], env.eef_pose()
        sign = 1.0 if float(eef[:3, 1] @ needle[:3, 0]) >= 0 else -1.0
        _, _, yaw, direction = self._thread_choice(env, sign)

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
