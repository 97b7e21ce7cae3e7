"""Scripted demonstrator for Nut Assembly (privileged state, waypoint engine).

Per nut: grasp stage = hover above the handle with the fingers closing across
it, descend, close, lift; insert stage = carry the nut above its peg with its
yaw aligned to the peg (square nut: a multiple of 90 degrees; round nut: any
yaw), lower it over the peg, release, and move the gripper up.

The pegs sit near the edge of the Panda's workspace, so the nut is put down
with its handle turned toward the robot where the wrist allows it; the grasp
side of the handle is chosen with that in mind. Wrist yaws are tracked
relative to the arm's heading so that no turn runs through the wrist's joint
limit. While carrying, targets come from the nut's live pose, so the grasp
offset measured in simulation (not an assumed one) is what gets aligned.
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint, frozen
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z

# Per stage: the nut and peg it handles; even stages grasp, odd stages insert.
STAGE_NUTS = ("square_nut", "square_nut", "round_nut", "round_nut")
STAGE_PEGS = ("square_peg", "square_peg", "round_peg", "round_peg")
# Yaw step between the nut poses that fit its peg (the round nut fits at any yaw; a 15 deg grid is enough).
NUT_YAW_STEP = {"square_nut": np.pi / 2, "round_nut": np.pi / 12}

# Keys of the ``demonstrator`` section of config/tasks/nut_assembly.yaml (all required).
CONFIG_KEYS = (
    "approach_height", "grasp_z_offset", "close_steps", "lift_height", "carry_height", "align_height",
    "release_height", "retreat_height", "open_steps", "slow_speed", "tol_pos", "tol_rot", "align_tol_pos",
    "wrist_yaw_range", "max_turn", "min_turn", "handle_offset",
)


def _wrap(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _yaw(rot: np.ndarray) -> float:
    """Heading of a rotation's x axis in the world xy plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def _shifted(pose: np.ndarray, dz: float) -> np.ndarray:
    """``pose`` moved ``dz`` along world z."""
    out = pose.copy()
    out[2, 3] += dz
    return out


def top_down_grasp_rot(eef_yaw: float) -> np.ndarray:
    """Grip-site rotation pointing down whose x axis (the Panda's finger-closing axis) has heading ``eef_yaw``."""
    x_axis = np.array([np.cos(eef_yaw), np.sin(eef_yaw), 0.0])
    z_axis = np.array([0.0, 0.0, -1.0])
    return np.column_stack([x_axis, np.cross(z_axis, x_axis), z_axis])


class NutAssemblyDemonstrator(ScriptedDemonstrator):
    """Waypoint programs for the four Nut Assembly stages."""

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        missing = [key for key in CONFIG_KEYS if key not in self.config]
        if missing:
            raise KeyError(f"demonstrator config lacks {', '.join(missing)} (see config/tasks/nut_assembly.yaml)")
        lo, hi = np.radians(self.config["wrist_yaw_range"])
        self.wrist_lo, self.wrist_hi = float(lo), float(hi)
        self.max_turn = float(np.radians(self.config["max_turn"]))
        self.min_turn = float(np.radians(self.config["min_turn"]))

    def stage_program(self, env, stage: int) -> list[Waypoint]:
        """Grasp program on even stages, insert program on odd ones."""
        nut, peg = STAGE_NUTS[stage], STAGE_PEGS[stage]
        return self._grasp_program(env, nut) if stage % 2 == 0 else self._insert_program(env, nut, peg)

    # ------------------------------------------------------------------ wrist bookkeeping
    def heading(self, env, pos: np.ndarray) -> float:
        """Direction from the robot base to ``pos`` in the world xy plane."""
        base = env.env.robots[0].base_pos
        return float(np.arctan2(pos[1] - base[1], pos[0] - base[0]))

    def wrist_yaw(self, env, eef_yaw: float, pos: np.ndarray) -> float:
        """Grip-site yaw relative to the arm's heading toward ``pos``, unwrapped around the wrist's range."""
        centre = 0.5 * (self.wrist_lo + self.wrist_hi)
        return centre + _wrap(eef_yaw - self.heading(env, pos) - centre)

    def wrist_ok(self, wrist: float) -> bool:
        """Whether a relative wrist yaw is inside the comfortable range."""
        return self.wrist_lo <= wrist <= self.wrist_hi

    def current_wrist(self, env) -> float:
        """Relative wrist yaw of the gripper now."""
        eef = env.eef_pose()
        return self.wrist_yaw(env, _yaw(eef[:3, :3]), eef[:3, 3])

    def turn_in_place(self, env, goal: np.ndarray, gripper: float) -> list[Waypoint]:
        """Connect waypoints turning the gripper in place toward ``goal``'s yaw, the way the wrist allows.

        The turn is the world-yaw change that keeps the wrist inside its range
        (not necessarily the shortest one), split into pieces of at most
        ``max_turn`` so each piece's shortest rotation is the intended one.
        Short turns are left to the following motion.
        """
        eef = env.eef_pose()
        wrist_goal = self.wrist_yaw(env, _yaw(goal[:3, :3]), goal[:3, 3])
        turn = wrist_goal - self.current_wrist(env) + self.heading(env, goal[:3, 3]) - self.heading(env, eef[:3, 3])
        if abs(turn) <= self.min_turn:
            return []
        pieces = int(np.ceil(abs(turn) / self.max_turn))
        return [
            Waypoint(_constant(make_pose(eef[:3, 3], rot_z(turn * k / pieces) @ eef[:3, :3])), gripper, "connect",
                     tol_pos=0.02, tol_rot=0.15 if k < pieces else self.config["tol_rot"], max_steps=40, name="turn")
            for k in range(1, pieces + 1)
        ]

    # ------------------------------------------------------------------ grasp
    def choose_grasp_yaw(self, env, nut: str) -> float:
        """Grip-site yaw for grasping the handle (fingers across it).

        Prefer the side that later lets the nut go down with its handle toward
        the robot at a central wrist yaw (grip yaw = nut yaw - 90 deg); use the
        other side when the wrist cannot reach that one here.
        """
        nut_yaw = _yaw(env.env.object_pose(nut)[:3, :3])
        handle = env.env.handle_pos(nut)
        preferred = nut_yaw - np.pi / 2
        return preferred if self.wrist_ok(self.wrist_yaw(env, preferred, handle)) else preferred + np.pi

    def _grasp_program(self, env, nut: str) -> list[Waypoint]:
        c = self.config
        task = env.env
        eef_yaw = self.choose_grasp_yaw(env, nut)

        def above(e, height: float) -> np.ndarray:
            nut_x = task.object_pose(nut)[:3, 0]
            pos = task.handle_pos(nut) + c["handle_offset"] * nut_x + np.array([0.0, 0.0, c["grasp_z_offset"] + height])
            return make_pose(pos, top_down_grasp_rot(eef_yaw))

        grasp = frozen(lambda e: above(e, 0.0))
        lifted = frozen(lambda e: _shifted(e.eef_pose(), c["lift_height"]))
        return self.turn_in_place(env, above(env, c["approach_height"]), GRIPPER_OPEN) + [
            Waypoint(lambda e: above(e, c["approach_height"]), GRIPPER_OPEN, "connect",
                     tol_pos=c["tol_pos"], tol_rot=c["tol_rot"], max_steps=150, name="approach"),
            Waypoint(grasp, GRIPPER_OPEN, "skill", tol_pos=0.003, tol_rot=c["tol_rot"], max_steps=80,
                     speed=c["slow_speed"], name="descend"),
            Waypoint(grasp, GRIPPER_CLOSED, "skill", tol_pos=0.01, tol_rot=0.2, max_steps=c["close_steps"],
                     hold_steps=c["close_steps"], name="close"),
            Waypoint(lifted, GRIPPER_CLOSED, "skill", tol_pos=0.01, tol_rot=0.1, max_steps=80,
                     speed=c["slow_speed"], until=lambda e: _lifted_enough(task, nut, c["lift_height"]), name="lift"),
        ]

    # ------------------------------------------------------------------ insert
    def choose_nut_yaw(self, env, nut: str, peg: str) -> float:
        """Nut yaw on the peg: a fitting yaw the wrist reaches, handle as close to pointing at the robot as possible."""
        task = env.env
        nut_yaw = _yaw(task.object_pose(nut)[:3, :3])
        grip_offset = _wrap(_yaw(env.eef_pose()[:3, :3]) - nut_yaw)
        peg_pose = task.object_pose(peg)
        toward_robot = self.heading(env, peg_pose[:3, 3]) + np.pi
        step = NUT_YAW_STEP[nut]
        if nut == "square_nut":  # snap onto the peg's square
            peg_yaw = _yaw(peg_pose[:3, :3])
            nut_yaw = peg_yaw + step * np.round(_wrap(nut_yaw - peg_yaw) / step)
        candidates = [nut_yaw + k * step for k in range(int(round(2 * np.pi / step)))]
        now = self.current_wrist(env)

        def cost(yaw: float) -> tuple[bool, float, float]:
            wrist = self.wrist_yaw(env, yaw + grip_offset, peg_pose[:3, 3])
            return (not self.wrist_ok(wrist), abs(_wrap(yaw - toward_robot)), abs(wrist - now))

        return min(candidates, key=cost)

    def nut_goal(self, env, peg: str, nut_yaw: float, height: float) -> np.ndarray:
        """Upright nut pose ``height`` above the peg centre with yaw ``nut_yaw``."""
        peg_pos = env.env.object_pose(peg)[:3, 3]
        return make_pose(peg_pos + np.array([0.0, 0.0, height]), rot_z(nut_yaw))

    def carry_target(self, env, nut: str, nut_goal: np.ndarray) -> np.ndarray:
        """Grip-site pose that brings the held nut to ``nut_goal``, using the live grasp offset."""
        eef_in_nut = pose_inv(env.env.object_pose(nut)) @ env.eef_pose()
        return nut_goal @ eef_in_nut

    def _insert_program(self, env, nut: str, peg: str) -> list[Waypoint]:
        c = self.config
        nut_yaw = self.choose_nut_yaw(env, nut, peg)

        def at(height: float):
            return lambda e: self.carry_target(e, nut, self.nut_goal(e, peg, nut_yaw, height))

        program = self.turn_in_place(env, at(c["carry_height"])(env), GRIPPER_CLOSED)
        release = frozen(at(c["release_height"]))
        retreat = frozen(lambda e: _shifted(e.eef_pose(), c["retreat_height"]))
        return program + [
            Waypoint(at(c["carry_height"]), GRIPPER_CLOSED, "connect",
                     tol_pos=c["tol_pos"], tol_rot=c["tol_rot"], max_steps=200, name="carry"),
            Waypoint(at(c["align_height"]), GRIPPER_CLOSED, "skill",
                     tol_pos=c["align_tol_pos"], tol_rot=c["tol_rot"], max_steps=80, speed=c["slow_speed"],
                     name="align"),
            Waypoint(at(c["release_height"]), GRIPPER_CLOSED, "skill",
                     tol_pos=c["align_tol_pos"], tol_rot=c["tol_rot"], max_steps=120, speed=c["slow_speed"],
                     name="lower"),
            Waypoint(release, GRIPPER_OPEN, "skill", tol_pos=0.02, tol_rot=0.3, max_steps=c["open_steps"],
                     hold_steps=c["open_steps"], name="release"),
            Waypoint(retreat, GRIPPER_OPEN, "skill", tol_pos=0.01, tol_rot=0.1, max_steps=60, name="retreat"),
        ]


def _constant(pose: np.ndarray):
    """A waypoint target that stays at ``pose``."""
    return lambda env: pose


def _lifted_enough(task, nut: str, height: float) -> bool:
    """The nut is held and its centre is within 1 cm of ``height`` above its resting height."""
    return task.nut_grasped(nut) and task.nut_height(nut) > height - 0.01
