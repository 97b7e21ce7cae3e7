"""Scripted demonstrator for Three Piece Assembly.

Grasp stages: hover above the piece with the fingers square to its faces,
descend, close, lift. Place stages: carry the held piece above the receiving
peg with its yaw matched modulo 90 degrees, align precisely just above the peg
tip, push it down until seated, release and retreat. Place targets are
computed from the live grasp (eef pose in the held piece's frame), so the
piece, not the hand, is driven onto its seat.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from reinforcegen_ros.demos.scripted.engine import GRIPPER_CLOSED, GRIPPER_OPEN, ScriptedDemonstrator, Waypoint, frozen
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z
from reinforcegen_ros.tasks import task_config
from reinforcegen_ros.tasks.three_piece_assembly import PIECE_HEIGHT, SEAT_HEIGHT, wrap_quarter, yaw_of

# Top-down grip-site orientation at yaw 0: its axes are square to world x/y, approach axis pointing down.
TOP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])

# stage -> (held piece, receiver) for place stages; grasp stages name their piece.
GRASPS = {0: "piece_1", 2: "piece_2"}
PLACES = {1: ("piece_1", "base"), 3: ("piece_2", "piece_1")}


def _raised(pose: np.ndarray, dz: float) -> np.ndarray:
    """``pose`` moved by ``dz`` along world z."""
    out = pose.copy()
    out[2, 3] += dz
    return out


class ThreePieceAssemblyDemonstrator(ScriptedDemonstrator):
    """Waypoint programs for the four stages of Three Piece Assembly."""

    def __init__(self, config: dict | None = None):
        """``config`` overrides the ``demonstrator`` section of the task's YAML, which supplies the defaults."""
        super().__init__({**task_config("three_piece_assembly").get("demonstrator", {}), **(config or {})})

    def stage_program(self, env, stage: int) -> list[Waypoint]:
        if stage in GRASPS:
            return self._grasp_program(env, GRASPS[stage])
        if stage in PLACES:
            return self._place_program(env, stage, *PLACES[stage])
        raise IndexError(f"no program for stage {stage}")

    # ------------------------------------------------------------------ grasp
    def grasp_pose(self, env, piece: str, yaw: float) -> np.ndarray:
        """Grip-site pose that grasps ``piece`` just below its top face, fingers at ``yaw``."""
        pose = env.env.object_pose(piece)
        pos = pose[:3, 3] + pose[:3, 2] * (PIECE_HEIGHT - self.config["grasp_depth"])
        return make_pose(pos, rot_z(yaw) @ TOP_DOWN)

    def _grasp_program(self, env, piece: str) -> list[Waypoint]:
        """Hover, descend, close, lift."""
        cfg = self.config
        yaw = wrap_quarter(yaw_of(env.env.object_pose(piece)))  # smallest wrist turn square to the faces

        def grasp(e):
            return self.grasp_pose(e, piece, yaw)

        return [
            Waypoint(lambda e: _raised(grasp(e), cfg["approach_height"]), GRIPPER_OPEN, "connect", tol_pos=0.01, max_steps=150, name="hover"),
            Waypoint(grasp, GRIPPER_OPEN, "skill", tol_pos=0.003, speed=cfg["grasp_speed"], max_steps=80, name="descend"),
            Waypoint(frozen(grasp), GRIPPER_CLOSED, "skill", tol_pos=0.01, tol_rot=0.2, hold_steps=cfg["close_steps"], max_steps=40, name="close"),
            Waypoint(frozen(lambda e: _raised(e.eef_pose(), cfg["approach_height"])), GRIPPER_CLOSED, "skill", tol_pos=0.01, max_steps=80, name="lift"),
        ]

    # ------------------------------------------------------------------ place
    def seat_pose(self, env, piece: str, receiver: str, quarter_turns: int, height: float) -> np.ndarray:
        """Upright pose of ``piece`` ``height`` above its seat on ``receiver``, yaw matched up to ``quarter_turns``."""
        recv = env.env.object_pose(receiver)
        pos = recv[:3, 3] + recv[:3, 2] * SEAT_HEIGHT[receiver] + np.array([0.0, 0.0, height])
        return make_pose(pos, rot_z(yaw_of(recv) + quarter_turns * np.pi / 2))

    def eef_target(self, env, piece: str, piece_goal: np.ndarray) -> np.ndarray:
        """Grip-site pose that brings the held ``piece`` to ``piece_goal`` under the current grasp."""
        grasp = pose_inv(env.env.object_pose(piece)) @ env.eef_pose()
        return piece_goal @ grasp

    def _place_program(self, env, stage: int, piece: str, receiver: str) -> list[Waypoint]:
        """Carry above the peg, align, insert, release, retreat."""
        cfg = self.config
        offset = yaw_of(env.env.object_pose(piece)) - yaw_of(env.env.object_pose(receiver))
        turns = int(round((offset - wrap_quarter(offset)) / (np.pi / 2)))  # seat yaw nearest to the current one

        def at(height: float) -> Callable:
            return lambda e: self.eef_target(e, piece, self.seat_pose(e, piece, receiver, turns, height))

        def seated(e) -> bool:
            return e.env.is_seated(piece, receiver)

        return [
            Waypoint(at(cfg["carry_height"]), GRIPPER_CLOSED, "connect", tol_pos=0.01, tol_rot=0.05, max_steps=150, name="carry"),
            Waypoint(
                at(cfg["pre_insert_height"]),
                GRIPPER_CLOSED,
                "skill",
                tol_pos=cfg["align_tol_pos"],
                tol_rot=cfg["align_tol_rot"],
                hold_steps=cfg["align_hold_steps"],
                speed=0.5,
                max_steps=100,
                name="align",
            ),
            Waypoint(at(-cfg["insert_depth"]), GRIPPER_CLOSED, "skill", tol_pos=0.002, speed=cfg["insert_speed"], max_steps=80, until=seated, name="insert"),
            Waypoint(frozen(lambda e: e.eef_pose()), GRIPPER_OPEN, "skill", tol_pos=0.01, tol_rot=0.2, hold_steps=cfg["release_steps"], max_steps=30, name="release"),
            Waypoint(frozen(lambda e: _raised(e.eef_pose(), cfg["retreat_height"])), GRIPPER_OPEN, "skill", tol_pos=0.01, max_steps=60, name="retreat"),
        ]
