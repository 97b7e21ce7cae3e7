"""Scripted Coffee demonstrator: grasp the pod, drop it into the holder, sweep the lid closed.

Stage 0 (grasp_pod): connect above the pod, descend, close, lift.
Stage 1 (insert_pod_close_lid): connect above the holder carrying the pod, then
the skill: align the pod over the holder, lower it part-way in, release it,
retreat, move behind the open lid's free edge and sweep the lid closed with the
closed fingers, following the lid's live hinge angle.

Parameters (YAML ``demonstrator`` section, defaults in :data:`DEFAULTS`) are
heights and tolerances in metres/radians.
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint, frozen
from reinforcegen_ros.geometry import make_pose, rot_z
from reinforcegen_ros.tasks.coffee_machine import (
    HOLDER_DEPTH,
    LID_HALF_THICKNESS,
    LID_LENGTH,
    POD_HALF_HEIGHT,
    lid_point,
)

# Grip-site orientation pointing down with the finger axis along world y (the Panda's home yaw).
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])

DEFAULTS = {
    "approach_height": 0.10,  # grip site above the pod before descending
    "grip_depth": 0.014,  # grip site below the pod's top face
    "lift_height": 0.08,  # lift after grasping
    "close_steps": 8,
    "carry_clearance": 0.10,  # pod bottom above the holder rim while travelling
    "align_height": 0.02,  # pod bottom above the rim when aligning
    "insert_depth": 0.012,  # pod bottom below the rim when releasing
    "release_steps": 10,
    "retreat_height": 0.10,  # grip site above the rim after releasing
    "lid_grip_inset": 0.012,  # finger centre from the lid's free edge (along the lid)
    "lid_offset": 0.022,  # finger centre from the lid's top face (along its normal)
    "lid_pre_angle": 0.35,  # rad beyond the open lid for the pre-push pose
    "lid_lead": 0.3,  # rad the sweep target leads the lid
    "lid_min_angle": -0.05,  # rad, sweep target is clamped here (presses the closed lid)
    "sweep_steps": 160,
    "final_lift": 0.05,  # lift off the closed lid at the end
}


def down(yaw: float) -> np.ndarray:
    """Top-down grip orientation rotated by ``yaw`` about world z."""
    return rot_z(yaw) @ DOWN


def nearest_yaw(yaw: float, reference: float, period: float = np.pi) -> float:
    """``yaw`` shifted by multiples of ``period`` to be closest to ``reference``."""
    return float(reference + (yaw - reference + period / 2.0) % period - period / 2.0)


class CoffeeDemonstrator(ScriptedDemonstrator):
    """Waypoint programs for :class:`~reinforcegen_ros.tasks.coffee.Coffee`."""

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **(config or {})})

    # ------------------------------------------------------------ scene queries
    @staticmethod
    def machine_yaw(env) -> float:
        """Insertion yaw: the holder frame's yaw modulo pi, closest to the Panda's home yaw (0)."""
        rot = env.env.holder_pose()[:3, :3]
        return nearest_yaw(float(np.arctan2(rot[1, 0], rot[0, 0])), 0.0)

    @staticmethod
    def grasp_yaw(env, obj: str = "pod") -> float:
        """Top-down grasp yaw of a round object: the hand's thin side faces the machine.

        The hand is 20 cm wide along the finger axis and 6.4 cm thick across it,
        so this keeps it clear of the machine; modulo pi, closest to home yaw so
        the wrist stays far from its joint limits.
        """
        pos = env.object_poses()[obj][:3, 3]
        holder = env.env.holder_pose()[:3, 3]
        return nearest_yaw(float(np.arctan2(holder[1] - pos[1], holder[0] - pos[0])), 0.0)

    def carry_target(self, env, pod_goal: np.ndarray, yaw: float) -> np.ndarray:
        """Grip pose that puts the held pod's centre at ``pod_goal`` (keeps the in-hand offset)."""
        eef = env.eef_pose()[:3, 3]
        pod = env.object_poses()["pod"][:3, 3]
        return make_pose(eef + (pod_goal - pod), down(yaw))

    def holder_goal(self, env, bottom_above_rim: float) -> np.ndarray:
        """Pod centre on the holder axis with its bottom ``bottom_above_rim`` above the rim."""
        holder = env.env.holder_pose()
        return holder[:3, 3] + holder[:3, 2] * (HOLDER_DEPTH + bottom_above_rim + POD_HALF_HEIGHT)

    def lid_target(self, env, angle: float) -> np.ndarray:
        """Grip pose behind the lid's top face near its free edge, with the lid at ``angle``."""
        c = self.config
        point = np.array([-(LID_LENGTH - c["lid_grip_inset"]), 0.0, LID_HALF_THICKNESS + c["lid_offset"]])
        return make_pose(lid_point(env.env.holder_pose(), angle, point), down(self.machine_yaw(env)))

    # ------------------------------------------------------------ programs
    def stage_program(self, env, stage: int) -> list[Waypoint]:
        if stage == 0:
            return self.grasp_pod(env, stage, self.grasp_yaw(env, "pod"))
        if stage == 1:
            return self.insert_pod_close_lid(env)
        raise IndexError(stage)

    def grasp_pod(self, env, stage: int, yaw: float) -> list[Waypoint]:
        """Connect above the pod; skill: descend, close, lift until ``stage`` terminates."""
        c = self.config

        def pod_top(env, dz: float) -> np.ndarray:
            pod = env.object_poses()["pod"][:3, 3]
            return make_pose(pod + np.array([0.0, 0.0, POD_HALF_HEIGHT + dz]), down(yaw))

        grasp = pod_top(env, -c["grip_depth"])  # the pod rests still until it is grasped
        return [
            Waypoint(lambda e: pod_top(e, c["approach_height"]), GRIPPER_OPEN, "connect", tol_pos=0.01, max_steps=150, name="above_pod"),
            Waypoint(lambda e: pod_top(e, -c["grip_depth"]), GRIPPER_OPEN, tol_pos=0.004, max_steps=80, name="descend"),
            Waypoint(frozen(lambda e: pod_top(e, -c["grip_depth"])), GRIPPER_CLOSED, tol_pos=0.01, hold_steps=c["close_steps"], max_steps=40, name="close"),
            Waypoint(
                lambda e: make_pose(e.eef_pose()[:3, 3] * [1, 1, 0] + [0, 0, grasp[2, 3] + c["lift_height"]], down(yaw)),
                GRIPPER_CLOSED,
                tol_pos=0.01,
                max_steps=60,
                until=lambda e: e.stage_done(stage) and e.eef_pose()[2, 3] > grasp[2, 3] + 0.5 * c["lift_height"],
                name="lift",
            ),
        ]

    def insert_pod_close_lid(self, env) -> list[Waypoint]:
        """Connect: carry the pod above the holder. Skill: insert, release, sweep the lid closed."""
        c = self.config
        yaw = self.machine_yaw(env)
        travel_z = self.holder_goal(env, c["carry_clearance"])[2]

        def raise_up(e):
            goal = e.object_poses()["pod"][:3, 3].copy()
            goal[2] = travel_z
            return self.carry_target(e, goal, yaw)

        def rim_up(e, dz):
            holder = e.env.holder_pose()
            return make_pose(holder[:3, 3] + holder[:3, 2] * (HOLDER_DEPTH + dz), down(yaw))

        def push_target(e):
            angle = max(e.env.lid_angle() - c["lid_lead"], c["lid_min_angle"])
            return self.lid_target(e, angle)

        pre_angle = env.env.lid_angle() + c["lid_pre_angle"]

        def lift_off(e):
            pose = e.eef_pose().copy()
            pose[2, 3] += c["final_lift"]
            return make_pose(pose[:3, 3], down(yaw))

        def above_pre_push(e):
            pose = self.lid_target(e, pre_angle)
            pose[2, 3] += 0.06
            return pose

        return [
            Waypoint(raise_up, GRIPPER_CLOSED, "connect", tol_pos=0.015, max_steps=80, name="raise"),
            Waypoint(lambda e: self.carry_target(e, self.holder_goal(e, c["carry_clearance"]), yaw), GRIPPER_CLOSED, "connect", tol_pos=0.01, max_steps=150, name="above_holder"),
            Waypoint(lambda e: self.carry_target(e, self.holder_goal(e, c["align_height"]), yaw), GRIPPER_CLOSED, tol_pos=0.003, max_steps=100, name="align"),
            Waypoint(lambda e: self.carry_target(e, self.holder_goal(e, -c["insert_depth"]), yaw), GRIPPER_CLOSED, tol_pos=0.003, max_steps=80, name="insert"),
            Waypoint(frozen(lambda e: e.eef_pose()), GRIPPER_OPEN, tol_pos=1.0, tol_rot=3.2, hold_steps=c["release_steps"], max_steps=c["release_steps"] + 2, name="release"),
            Waypoint(lambda e: rim_up(e, c["retreat_height"]), GRIPPER_OPEN, tol_pos=0.01, max_steps=60, name="retreat"),
            Waypoint(above_pre_push, GRIPPER_CLOSED, tol_pos=0.01, max_steps=100, name="above_lid"),
            Waypoint(lambda e: self.lid_target(e, pre_angle), GRIPPER_CLOSED, tol_pos=0.006, max_steps=80, name="behind_lid"),
            Waypoint(push_target, GRIPPER_CLOSED, tol_pos=0.0, max_steps=c["sweep_steps"], until=lambda e: e.env.lid_closed() and e.env.pod_inserted(), name="sweep"),
            Waypoint(frozen(lift_off), GRIPPER_CLOSED, tol_pos=0.01, max_steps=30, name="lift_off"),
        ]
