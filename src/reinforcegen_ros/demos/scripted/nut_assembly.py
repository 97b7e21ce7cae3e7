"""Scripted demonstrator for Nut Assembly (privileged state, waypoint engine).

Per nut: grasp stage = hover above the handle with the fingers closing across
it, descend, close, lift; insert stage = carry the nut above its peg with its
yaw aligned to the peg (square nut: nearest multiple of 90 degrees; round nut:
any yaw), lower it over the peg, release, and move the gripper up and away.
While carrying, targets are computed from the nut's live pose, so the grasp
offset measured in simulation (not an assumed one) is what gets aligned.
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z

# Per stage: (nut, peg) handled by that stage; even stages grasp, odd stages insert.
STAGE_NUTS = ("square_nut", "square_nut", "round_nut", "round_nut")
STAGE_PEGS = ("square_peg", "square_peg", "round_peg", "round_peg")
# Rotational symmetry of each nut about its peg axis (the round nut fits at any yaw).
NUT_SYMMETRY = {"square_nut": np.pi / 2, "round_nut": None}

DEFAULTS = {
    "approach_height": 0.08,  # hover above the handle before descending (m)
    "grasp_z_offset": 0.0,  # grip-site height relative to the handle centre (m)
    "close_steps": 10,  # steps holding still while the fingers close
    "lift_height": 0.17,  # straight lift after closing (m)
    "carry_height": 0.17,  # nut centre above the peg centre while carrying (m)
    "release_height": 0.035,  # nut centre above the peg centre when the gripper opens (m)
    "retreat_height": 0.2,  # grip-site lift after releasing (m)
    "open_steps": 8,  # steps holding still while the fingers open
    "slow_speed": 0.4,  # normalised speed cap for the contact-rich motions
    "tol_pos": 0.005,
    "tol_rot": 0.04,
    "align_tol_pos": 0.003,  # position tolerance of the nut above the peg before lowering (m)
}


def _wrap(angle: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _yaw(rot: np.ndarray) -> float:
    """Heading of a rotation's x axis in the world xy plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def top_down_grasp_rot(finger_axis_yaw: float) -> np.ndarray:
    """Grip-site rotation pointing down with the fingers closing along ``finger_axis_yaw``.

    On the Panda grip site the fingers close along the site's x axis and the
    approach direction is its z axis.
    """
    x_axis = np.array([np.cos(finger_axis_yaw), np.sin(finger_axis_yaw), 0.0])
    z_axis = np.array([0.0, 0.0, -1.0])
    return np.column_stack([x_axis, np.cross(z_axis, x_axis), z_axis])


class Latch:
    """A waypoint target evaluated once (when its waypoint starts) and then held."""

    def __init__(self, fn):
        self.fn = fn
        self.value: np.ndarray | None = None

    def __call__(self, env) -> np.ndarray:
        if self.value is None:
            self.value = self.fn(env)
        return self.value


class NutAssemblyDemonstrator(ScriptedDemonstrator):
    """Waypoint programs for the four Nut Assembly stages."""

    def __init__(self, config: dict | None = None):
        super().__init__({**DEFAULTS, **dict(config or {})})

    def stage_program(self, env, stage: int) -> list[Waypoint]:
        """Grasp program on even stages, insert program on odd ones."""
        nut, peg = STAGE_NUTS[stage], STAGE_PEGS[stage]
        return self._grasp_program(env, nut) if stage % 2 == 0 else self._insert_program(env, nut, peg)

    # ------------------------------------------------------------------ grasp
    def grasp_pose(self, env, nut: str, height: float) -> np.ndarray:
        """Grip-site pose ``height`` above the nut's handle, fingers across the handle."""
        c = self.config
        task = env.env
        nut_rot = task.object_pose(nut)[:3, :3]
        across = _yaw(nut_rot) + np.pi / 2  # nut y axis: across the handle
        current = _yaw(env.eef_pose()[:3, :3])
        # the two finger orders are equivalent; pick the one needing the smaller wrist turn
        if abs(_wrap(across - current)) > np.pi / 2:
            across += np.pi
        pos = task.handle_pos(nut) + np.array([0.0, 0.0, c["grasp_z_offset"] + height])
        return make_pose(pos, top_down_grasp_rot(across))

    def _grasp_program(self, env, nut: str) -> list[Waypoint]:
        c = self.config
        task = env.env
        grasp = Latch(lambda e: self.grasp_pose(e, nut, 0.0))
        lifted = Latch(lambda e: _shifted(e.eef_pose(), c["lift_height"]))
        return [
            Waypoint(lambda e: self.grasp_pose(e, nut, c["approach_height"]), GRIPPER_OPEN, "connect",
                     tol_pos=c["tol_pos"], tol_rot=c["tol_rot"], max_steps=150, name="approach"),
            Waypoint(grasp, GRIPPER_OPEN, "skill", tol_pos=0.003, tol_rot=c["tol_rot"], max_steps=80,
                     speed=c["slow_speed"], name="descend"),
            Waypoint(grasp, GRIPPER_CLOSED, "skill", tol_pos=0.01, tol_rot=0.2, max_steps=c["close_steps"],
                     hold_steps=c["close_steps"], name="close"),
            Waypoint(lifted, GRIPPER_CLOSED, "skill", tol_pos=0.01, tol_rot=0.1, max_steps=80,
                     speed=c["slow_speed"], until=lambda e: _lifted_enough(task, nut, c["lift_height"]), name="lift"),
        ]

    # ------------------------------------------------------------------ insert
    def nut_goal(self, env, nut: str, peg: str, height: float) -> np.ndarray:
        """Nut pose ``height`` above the peg centre, upright, yaw snapped to the peg's symmetry."""
        task = env.env
        peg_pose = task.object_pose(peg)
        yaw = _yaw(task.object_pose(nut)[:3, :3])
        step = NUT_SYMMETRY[nut]
        if step is not None:
            peg_yaw = _yaw(peg_pose[:3, :3])
            yaw = peg_yaw + step * np.round(_wrap(yaw - peg_yaw) / step)
        return make_pose(peg_pose[:3, 3] + np.array([0.0, 0.0, height]), rot_z(yaw))

    def carry_target(self, env, nut: str, peg: str, height: float) -> np.ndarray:
        """Grip-site pose that puts the held nut at :meth:`nut_goal`, using the live grasp offset."""
        eef_in_nut = pose_inv(env.env.object_pose(nut)) @ env.eef_pose()
        return self.nut_goal(env, nut, peg, height) @ eef_in_nut

    def _insert_program(self, env, nut: str, peg: str) -> list[Waypoint]:
        c = self.config
        release = Latch(lambda e: self.carry_target(e, nut, peg, c["release_height"]))
        retreat = Latch(lambda e: _shifted(e.eef_pose(), c["retreat_height"]))
        return [
            Waypoint(lambda e: self.carry_target(e, nut, peg, c["carry_height"]), GRIPPER_CLOSED, "connect",
                     tol_pos=c["tol_pos"], tol_rot=c["tol_rot"], max_steps=200, name="carry"),
            Waypoint(lambda e: self.carry_target(e, nut, peg, c["carry_height"] - 0.05), GRIPPER_CLOSED, "skill",
                     tol_pos=c["align_tol_pos"], tol_rot=c["tol_rot"], max_steps=80, speed=c["slow_speed"],
                     name="align"),
            Waypoint(lambda e: self.carry_target(e, nut, peg, c["release_height"]), GRIPPER_CLOSED, "skill",
                     tol_pos=c["align_tol_pos"], tol_rot=c["tol_rot"], max_steps=120, speed=c["slow_speed"],
                     name="lower"),
            Waypoint(release, GRIPPER_OPEN, "skill", tol_pos=0.02, tol_rot=0.3, max_steps=c["open_steps"],
                     hold_steps=c["open_steps"], name="release"),
            Waypoint(retreat, GRIPPER_OPEN, "skill", tol_pos=0.01, tol_rot=0.1, max_steps=60, name="retreat"),
        ]


def _shifted(pose: np.ndarray, dz: float) -> np.ndarray:
    """``pose`` moved ``dz`` along world z."""
    out = pose.copy()
    out[2, 3] += dz
    return out


def _lifted_enough(task, nut: str, height: float) -> bool:
    """The nut is held and its centre is ``height`` above its resting height."""
    rest_z = task.table_offset[2] + 0.01
    return task.nut_grasped(nut) and task.object_pose(nut)[2, 3] > rest_z + height - 0.01
