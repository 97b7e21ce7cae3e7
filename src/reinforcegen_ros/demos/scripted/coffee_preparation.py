"""Scripted Coffee Preparation demonstrator.

Stage 0 (grasp_mug): the hand turns horizontal, pointing along the machine's
inward axis, approaches the mug from the side and closes on it.
Stage 1 (place_mug): carry the mug in front of the machine, slide it under the
head onto the tray below the spout, release and back out.
Stage 2 (open_drawer): a closed finger pair is lowered between the handle bar
and the drawer front and pulls the drawer out.
Stage 3 (grasp_pod): top-down grasp of the pod in the open drawer.
Stage 4 (insert_pod_close_lid): as in Coffee (insert, release, sweep the lid).
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.coffee import CoffeeDemonstrator, down, frozen, nearest_yaw
from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, Waypoint
from reinforcegen_ros.geometry import make_pose, rot_z
from reinforcegen_ros.tasks.coffee_machine import HEAD_Z, HANDLE_GAP, HANDLE_RADIUS, MUG_HALF_HEIGHT, TRAY_TOP, DrawerCabinet

# Grip-site orientation pointing horizontally along world +x, finger axis along world y.
FORWARD = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

DEFAULTS = {
    "mug_grip_dz": 0.006,  # grip site above the mug's centre
    "mug_grip_depth": 0.004,  # grip site short of the mug axis (along the approach)
    "mug_pre_grasp": 0.12,  # approach distance before closing in on the mug
    "mug_lift": 0.04,  # mug bottom above the table while carrying
    "mug_pre_place": 0.09,  # mug centre in front of the spot before sliding in
    "mug_slide_height": 0.008,  # mug bottom above the tray while sliding
    "mug_set_height": 0.002,  # mug bottom above the tray when released
    "mug_retreat": 0.11,  # back-out distance after releasing
    "hook_above": 0.08,  # fingers above the handle before hooking
    "hook_dz": 0.0,  # grip site height relative to the bar centre
    "pull_lead": 0.03,  # pull target ahead of the handle
    "pull_open": 0.108,  # drawer opening to reach (m)
}


def forward(yaw: float) -> np.ndarray:
    """Horizontal grip orientation pointing along ``yaw``."""
    return rot_z(yaw) @ FORWARD


class CoffeePreparationDemonstrator(CoffeeDemonstrator):
    """Waypoint programs for :class:`~reinforcegen_ros.tasks.coffee_preparation.CoffeePreparation`."""

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **(config or {})})

    # ------------------------------------------------------------ scene queries
    @staticmethod
    def inward(env) -> np.ndarray:
        """Horizontal unit vector from the machine's front toward its back (the mug's slide-in direction)."""
        axis = env.env.holder_pose()[:3, 0]
        axis = np.array([axis[0], axis[1], 0.0])
        return axis / np.linalg.norm(axis)

    def inward_yaw(self, env) -> float:
        d = self.inward(env)
        return float(np.arctan2(d[1], d[0]))

    @staticmethod
    def cabinet_yaw(env) -> float:
        """Cabinet yaw modulo pi closest to home: the finger axis then lies along the handle bar."""
        rot = env.env.object_pose("drawer")[:3, :3]
        return nearest_yaw(float(np.arctan2(rot[1, 0], rot[0, 0])), 0.0)

    def mug_carry_target(self, env, mug_goal: np.ndarray, yaw: float) -> np.ndarray:
        """Grip pose that puts the held mug's centre at ``mug_goal``."""
        eef = env.eef_pose()[:3, 3]
        mug = env.object_poses()["mug"][:3, 3]
        return make_pose(eef + (mug_goal - mug), forward(yaw))

    def tray_spot(self, env, bottom_above_tray: float, back_off: float = 0.0) -> np.ndarray:
        """Mug centre over the tray spot under the spout, ``back_off`` in front of it."""
        holder = env.env.holder_pose()
        spot = holder[:3, 3] - holder[:3, 2] * (HEAD_Z[1] - TRAY_TOP - MUG_HALF_HEIGHT - bottom_above_tray)
        return spot - self.inward(env) * back_off

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
        """Connect: hand horizontal in front of the mug. Skill: close in, grasp, lift."""
        c = self.config
        yaw = self.inward_yaw(env)
        d = self.inward(env)

        def at_mug(e, back: float, dz: float = 0.0) -> np.ndarray:
            mug = e.object_poses()["mug"][:3, 3]
            pos = mug + np.array([0.0, 0.0, c["mug_grip_dz"] + dz]) - d * back
            return make_pose(pos, forward(yaw))

        grasp = at_mug(env, c["mug_grip_depth"])
        return [
            Waypoint(lambda e: at_mug(e, c["mug_pre_grasp"], 0.08), GRIPPER_OPEN, "connect", tol_pos=0.02, tol_rot=0.1, max_steps=150, name="above_pre_grasp"),
            Waypoint(lambda e: at_mug(e, c["mug_pre_grasp"]), GRIPPER_OPEN, "connect", tol_pos=0.008, max_steps=100, name="pre_grasp"),
            Waypoint(lambda e: at_mug(e, c["mug_grip_depth"]), GRIPPER_OPEN, tol_pos=0.004, max_steps=100, name="close_in"),
            Waypoint(frozen(lambda e: at_mug(e, c["mug_grip_depth"])), GRIPPER_CLOSED, tol_pos=0.01, hold_steps=10, max_steps=40, name="close"),
            Waypoint(
                lambda e: make_pose(grasp[:3, 3] + [0, 0, c["mug_lift"] + 0.01], forward(yaw)),
                GRIPPER_CLOSED,
                tol_pos=0.01,
                max_steps=60,
                until=lambda e: e.stage_done(0) and e.object_poses()["mug"][2, 3] - MUG_HALF_HEIGHT > e.env.table_offset[2] + c["mug_lift"],
                name="lift",
            ),
        ]

    def place_mug(self, env) -> list[Waypoint]:
        """Connect: carry the mug in front of the spot. Skill: slide in under the head, set down, release, back out."""
        c = self.config
        yaw = self.inward_yaw(env)
        d = self.inward(env)
        carry_z = env.env.table_offset[2] + c["mug_lift"] + MUG_HALF_HEIGHT

        def pre_place_high(e):
            goal = self.tray_spot(e, c["mug_slide_height"], c["mug_pre_place"])
            goal[2] = max(goal[2], carry_z)
            return self.mug_carry_target(e, goal, yaw)

        def retreat(e):
            pose = e.eef_pose()
            return make_pose(self.tray_spot(e, 0.0, c["mug_retreat"]) + (pose[:3, 3] - e.object_poses()["mug"][:3, 3]) * [0, 0, 1], forward(yaw))

        return [
            Waypoint(pre_place_high, GRIPPER_CLOSED, "connect", tol_pos=0.01, max_steps=150, name="carry"),
            Waypoint(lambda e: self.mug_carry_target(e, self.tray_spot(e, c["mug_slide_height"], c["mug_pre_place"]), yaw), GRIPPER_CLOSED, tol_pos=0.005, max_steps=80, name="pre_place"),
            Waypoint(lambda e: self.mug_carry_target(e, self.tray_spot(e, c["mug_slide_height"]), yaw), GRIPPER_CLOSED, tol_pos=0.004, max_steps=100, name="slide_in"),
            Waypoint(lambda e: self.mug_carry_target(e, self.tray_spot(e, c["mug_set_height"]), yaw), GRIPPER_CLOSED, tol_pos=0.003, max_steps=40, name="set_down"),
            Waypoint(frozen(lambda e: e.eef_pose()), GRIPPER_OPEN, tol_pos=1.0, tol_rot=3.2, hold_steps=10, max_steps=12, name="release"),
            Waypoint(frozen(retreat), GRIPPER_OPEN, tol_pos=0.01, max_steps=80, name="back_out"),
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
