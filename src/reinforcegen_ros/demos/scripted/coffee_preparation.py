"""Scripted Coffee Preparation demonstrator.

Stage 0 (grasp_mug): top-down grasp around the mug's upper body, the hand's
thin side facing the nearest fixture.
Stage 1 (place_mug): carry the mug over the tray spot, turning it so the hand's
thin side faces the machine, lower it onto the tray, release, lift away.
Stage 2 (open_drawer): a closed finger pair is lowered between the handle bar
and the drawer front and pulls the drawer out.
Stage 3 (grasp_pod): top-down grasp of the pod in the open drawer.
Stage 4 (insert_pod_close_lid): as in Coffee (insert, release, sweep the lid).
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.coffee import CoffeeDemonstrator, down, nearest_yaw
from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, Waypoint, frozen
from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.tasks.coffee_machine import HANDLE_GAP, HANDLE_RADIUS, MUG_HALF_HEIGHT, DrawerCabinet, tray_spot

DEFAULTS = {
    "mug_approach_height": 0.08,  # grip site above the mug's rim before descending
    "mug_grip_depth": 0.015,  # grip site below the rim
    "mug_carry_height": 0.1,  # mug bottom above the tray while travelling (clears the cabinet top)
    "carry_speed": 0.3,  # cap on the normalised action while the mug turns in the hand
    "mug_set_height": 0.003,  # mug bottom above the tray when released
    "mug_release_lift": 0.08,  # lift after releasing
    "hook_above": 0.08,  # fingers above the handle before hooking
    "hook_dz": 0.0,  # grip site height relative to the bar centre
    "pull_lead": 0.03,  # pull target ahead of the handle
    "pull_open": 0.108,  # drawer opening to reach (m)
}


class CoffeePreparationDemonstrator(CoffeeDemonstrator):
    """Waypoint programs for :class:`~reinforcegen_ros.tasks.coffee_preparation.CoffeePreparation`."""

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **(config or {})})

    # ------------------------------------------------------------ scene queries
    @staticmethod
    def cabinet_yaw(env) -> float:
        """Cabinet yaw modulo pi closest to home: the finger axis then lies along the handle bar."""
        rot = env.env.object_pose("drawer")[:3, :3]
        return nearest_yaw(float(np.arctan2(rot[1, 0], rot[0, 0])), 0.0)

    @staticmethod
    def mug_grasp_yaw(env) -> float:
        """Top-down mug grasp yaw: the hand's thin side faces the nearest fixture."""
        mug = env.object_poses()["mug"][:3, 3]
        centres = [tray_spot(env.env.holder_pose()), env.env.object_pose("drawer")[:3, 3]]
        near = min(centres, key=lambda c: np.linalg.norm((c - mug)[:2]))
        return nearest_yaw(float(np.arctan2(near[1] - mug[1], near[0] - mug[0])), 0.0)

    def mug_carry_target(self, env, mug_goal: np.ndarray, yaw: float) -> np.ndarray:
        """Grip pose that puts the held mug's centre at ``mug_goal``."""
        eef = env.eef_pose()[:3, 3]
        mug = env.object_poses()["mug"][:3, 3]
        return make_pose(eef + (mug_goal - mug), down(yaw))

    @staticmethod
    def spot_goal(env, bottom_above_tray: float) -> np.ndarray:
        """Mug centre over the tray spot with its bottom ``bottom_above_tray`` above the tray."""
        return tray_spot(env.env.holder_pose()) + np.array([0.0, 0.0, MUG_HALF_HEIGHT + bottom_above_tray])

    # ------------------------------------------------------------ programs
    def stage_program(self, env, stage: int) -> list[Waypoint]:
        programs = {
            0: self.grasp_mug,
            1: self.place_mug,
            2: self.open_drawer,
            3: lambda e: self.grasp_pod(e, 3, self.cabinet_yaw(e)),
            4: self.insert_pod_close_lid,
        }
        if stage not in programs:
            raise IndexError(stage)
        return programs[stage](env)

    def grasp_mug(self, env) -> list[Waypoint]:
        """Connect above the mug; skill: descend around it, close, lift."""
        c = self.config
        yaw = self.mug_grasp_yaw(env)

        def at_rim(e, dz: float) -> np.ndarray:
            mug = e.object_poses()["mug"][:3, 3]
            return make_pose(mug + np.array([0.0, 0.0, MUG_HALF_HEIGHT + dz]), down(yaw))

        grasp = at_rim(env, -c["mug_grip_depth"])
        return [
            Waypoint(lambda e: at_rim(e, c["mug_approach_height"]), GRIPPER_OPEN, "connect", tol_pos=0.01, max_steps=150, name="above_mug"),
            Waypoint(lambda e: at_rim(e, 0.03), GRIPPER_OPEN, tol_pos=0.004, tol_rot=0.03, hold_steps=2, max_steps=80, name="align"),
            Waypoint(lambda e: at_rim(e, -c["mug_grip_depth"]), GRIPPER_OPEN, tol_pos=0.004, max_steps=80, speed=0.5, name="descend"),
            Waypoint(frozen(lambda e: at_rim(e, -c["mug_grip_depth"])), GRIPPER_CLOSED, tol_pos=0.01, hold_steps=10, max_steps=40, name="close"),
            Waypoint(
                lambda e: make_pose(grasp[:3, 3] + [0.0, 0.0, c["mug_carry_height"] + 0.02], down(yaw)),
                GRIPPER_CLOSED,
                tol_pos=0.01,
                max_steps=60,
                until=lambda e: e.stage_done(0) and e.eef_pose()[2, 3] > grasp[2, 3] + 0.04,
                name="lift",
            ),
        ]

    def place_mug(self, env) -> list[Waypoint]:
        """Connect: carry the mug over the tray spot. Skill: lower it onto the tray, release, lift away."""
        c = self.config
        yaw = self.machine_yaw(env)
        carry = c["mug_carry_height"]

        grasp_yaw = self.mug_grasp_yaw(env)

        def raise_up(e):
            goal = e.object_poses()["mug"][:3, 3].copy()
            goal[2] = self.spot_goal(e, carry)[2]
            return self.mug_carry_target(e, goal, grasp_yaw)

        def release_lift(e):
            pose = e.eef_pose().copy()
            pose[2, 3] += c["mug_release_lift"]
            return make_pose(pose[:3, 3], down(yaw))

        return [
            Waypoint(raise_up, GRIPPER_CLOSED, "connect", tol_pos=0.015, max_steps=60, name="raise"),
            Waypoint(lambda e: self.mug_carry_target(e, self.spot_goal(e, carry), yaw), GRIPPER_CLOSED, "connect", tol_pos=0.01, max_steps=150, speed=c["carry_speed"], name="above_spot"),
            Waypoint(lambda e: self.mug_carry_target(e, self.spot_goal(e, 0.02), yaw), GRIPPER_CLOSED, tol_pos=0.003, max_steps=100, name="align"),
            Waypoint(lambda e: self.mug_carry_target(e, self.spot_goal(e, c["mug_set_height"]), yaw), GRIPPER_CLOSED, tol_pos=0.003, max_steps=60, name="set_down"),
            Waypoint(frozen(lambda e: e.eef_pose()), GRIPPER_OPEN, tol_pos=1.0, tol_rot=3.2, hold_steps=10, max_steps=12, name="release"),
            Waypoint(frozen(release_lift), GRIPPER_OPEN, tol_pos=0.01, max_steps=60, name="lift_away"),
        ]

    def hook_point(self, env, dz: float = 0.0) -> np.ndarray:
        """Grip pose between the handle bar and the drawer front (closed fingers)."""
        drawer = env.env.object_pose("drawer")
        local = DrawerCabinet.handle_point() + np.array([HANDLE_RADIUS + HANDLE_GAP / 2.0, 0.0, self.config["hook_dz"] + dz])
        return make_pose(drawer[:3, :3] @ local + drawer[:3, 3], down(self.cabinet_yaw(env)))

    def open_drawer(self, env) -> list[Waypoint]:
        """Connect: closed fingers above the gap behind the handle. Skill: hook, pull, lift out."""
        c = self.config

        def pull(e):
            pose = self.hook_point(e)
            pose[:3, 3] -= e.env.object_pose("drawer")[:3, 0] * c["pull_lead"]
            return pose

        def lift_out(e):
            pose = e.eef_pose().copy()
            pose[2, 3] = self.hook_point(e, c["hook_above"])[2, 3]
            return make_pose(pose[:3, 3], down(self.cabinet_yaw(e)))

        return [
            Waypoint(lambda e: self.hook_point(e, c["hook_above"]), GRIPPER_CLOSED, "connect", tol_pos=0.01, tol_rot=0.08, max_steps=200, name="above_handle"),
            Waypoint(lambda e: self.hook_point(e), GRIPPER_CLOSED, tol_pos=0.005, max_steps=80, name="hook"),
            Waypoint(pull, GRIPPER_CLOSED, tol_pos=0.0, max_steps=120, until=lambda e: e.env.drawer_opening() > c["pull_open"], name="pull"),
            Waypoint(frozen(lift_out), GRIPPER_CLOSED, tol_pos=0.01, max_steps=40, name="lift_out"),
        ]
