"""Three Piece Assembly: stack two pieces onto a base, each over a square peg.

The scene has three objects made of primitive boxes:

* ``base``: a fixture (x/y/yaw randomised through :func:`fixture_joints`), a
  square plate with a square peg sticking up from its centre;
* ``piece_1``: a free block with a blind square hole in its bottom face (it
  slides down over the base's peg) and a square peg on its top face;
* ``piece_2``: a free block with the same blind hole, seated over piece 1's peg.

Holes are a few millimetres wider than the pegs, so a piece only goes down when
it is aligned in position and in yaw (modulo the square's 90 degree symmetry):
the assembly is contact-rich. Every frame used here has its origin at the
centre of the object's bottom face; a seated piece's origin coincides with the
top face of what it sits on.

Stages (all conditions on simulator state):

0. ``grasp_piece_1`` (ref ``piece_1``): both finger pads touch piece 1 and it is lifted;
1. ``place_piece_1`` (ref ``base``): piece 1 seated on the base;
2. ``grasp_piece_2`` (ref ``piece_2``): both finger pads touch piece 2 and it is lifted;
3. ``place_piece_2`` (ref ``piece_1``): piece 2 seated on piece 1 and piece 1 on the base (task success).
"""

from __future__ import annotations

import numpy as np
from robosuite.models.objects import CompositeObject
from robosuite.utils.mjcf_utils import array_to_string

from reinforcegen_ros.geometry import pose_inv
from reinforcegen_ros.tasks import task_config
from reinforcegen_ros.tasks.base import Stage, StagedTaskEnv, fixture_joints

# Physical model dimensions (metres).
PEG_HALF = 0.012  # half side of the square pegs
PEG_HEIGHT = 0.018
HOLE_CLEARANCE = 0.002  # radial play between a peg and its hole, per side
HOLE_HALF = PEG_HALF + HOLE_CLEARANCE
HOLE_DEPTH = 0.020  # deeper than the peg is tall, so a seated piece rests on its bottom face
PIECE_HALF = 0.025  # half side of a piece's square body
PIECE_HEIGHT = 0.040  # body height (piece 1's top peg comes on top of this)
BASE_HALF = 0.04
BASE_THICKNESS = 0.012
PIECE_DENSITY = 400.0
BASE_LIFT = 2e-4  # gap between the base plate and the table, avoids a resting contact

BASE_RGBA = (0.35, 0.35, 0.38, 1.0)
PIECE_1_RGBA = (0.80, 0.25, 0.20, 1.0)
PIECE_2_RGBA = (0.20, 0.40, 0.80, 1.0)

# Height of a seated piece's origin in the frame of what it sits on.
SEAT_HEIGHT = {"base": BASE_THICKNESS, "piece_1": PIECE_HEIGHT}
QUARTER_TURN = np.pi / 2


def _box(name: str, half: tuple[float, float, float], pos: tuple[float, float, float], rgba) -> dict:
    """One box geom description for :class:`CompositeObject`."""
    return {"name": name, "half": half, "pos": pos, "rgba": rgba}


def _holed_body(rgba) -> list[dict]:
    """Boxes of a piece body: four walls around a blind square hole, capped by a top slab."""
    wall = PIECE_HALF - HOLE_HALF
    z_wall = HOLE_DEPTH / 2
    slab = (PIECE_HEIGHT - HOLE_DEPTH) / 2
    return [
        _box("wall_py", (PIECE_HALF, wall / 2, z_wall), (0.0, HOLE_HALF + wall / 2, z_wall), rgba),
        _box("wall_ny", (PIECE_HALF, wall / 2, z_wall), (0.0, -HOLE_HALF - wall / 2, z_wall), rgba),
        _box("wall_px", (wall / 2, HOLE_HALF, z_wall), (HOLE_HALF + wall / 2, 0.0, z_wall), rgba),
        _box("wall_nx", (wall / 2, HOLE_HALF, z_wall), (-HOLE_HALF - wall / 2, 0.0, z_wall), rgba),
        _box("top", (PIECE_HALF, PIECE_HALF, slab), (0.0, 0.0, HOLE_DEPTH + slab), rgba),
    ]


def _peg(z_bottom: float, rgba) -> dict:
    """Box of a square peg standing on height ``z_bottom``."""
    return _box("peg", (PEG_HALF, PEG_HALF, PEG_HEIGHT / 2), (0.0, 0.0, z_bottom + PEG_HEIGHT / 2), rgba)


def _composite(name: str, boxes: list[dict], joints, density: float) -> CompositeObject:
    """A :class:`CompositeObject` of boxes whose frame is the centre of its bottom face."""
    top = max(b["pos"][2] + b["half"][2] for b in boxes)
    half_xy = max(max(abs(b["pos"][0]) + b["half"][0], abs(b["pos"][1]) + b["half"][1]) for b in boxes)
    return CompositeObject(
        name=name,
        total_size=(half_xy, half_xy, top / 2),
        geom_types=["box"] * len(boxes),
        geom_sizes=[b["half"] for b in boxes],
        geom_locations=[b["pos"] for b in boxes],
        geom_names=[b["name"] for b in boxes],
        geom_rgbas=[b["rgba"] for b in boxes],
        density=density,
        locations_relative_to_center=True,
        joints=joints,
    )


def make_base(name: str = "assembly_base", key: str = "base") -> CompositeObject:
    """The base fixture: a square plate with a square peg, on :func:`fixture_joints` named after ``key``.

    The MuJoCo name must differ from ``key``: robosuite does not prefix a joint
    name that already starts with the object's prefix, which would break
    ``set_fixture_pose(key, ...)`` if both were ``base``.
    """
    boxes = [
        _box("plate", (BASE_HALF, BASE_HALF, BASE_THICKNESS / 2), (0.0, 0.0, BASE_THICKNESS / 2), BASE_RGBA),
        _peg(BASE_THICKNESS, BASE_RGBA),
    ]
    return _composite(name, boxes, fixture_joints(key), density=1000.0)


def make_piece_1(name: str = "piece_1") -> CompositeObject:
    """Piece 1: a holed block with a square peg on top."""
    return _composite(name, _holed_body(PIECE_1_RGBA) + [_peg(PIECE_HEIGHT, PIECE_1_RGBA)], "default", PIECE_DENSITY)


def make_piece_2(name: str = "piece_2") -> CompositeObject:
    """Piece 2: a holed block with a flat top."""
    return _composite(name, _holed_body(PIECE_2_RGBA), "default", PIECE_DENSITY)


# ---------------------------------------------------------------------- symmetric-yaw helpers
def yaw_of(pose: np.ndarray) -> float:
    """Yaw of a pose's x axis about world z."""
    return float(np.arctan2(pose[1, 0], pose[0, 0]))


def wrap_quarter(angle: float) -> float:
    """``angle`` wrapped to [-pi/4, pi/4): the yaw error of a square (90-degree symmetric) fit."""
    return float((angle + QUARTER_TURN / 2) % QUARTER_TURN - QUARTER_TURN / 2)


def tilt_of(pose: np.ndarray) -> float:
    """Angle between a pose's z axis and the z axis of the frame it is expressed in."""
    return float(np.arccos(np.clip(pose[2, 2], -1.0, 1.0)))


def _yaml_env_kwargs() -> dict:
    """``env_kwargs`` of ``config/tasks/three_piece_assembly.yaml``: the defaults of every tunable number."""
    return task_config("three_piece_assembly").get("env_kwargs", {})


class ThreePieceAssembly(StagedTaskEnv):
    """Put piece 1 over the base's peg, then piece 2 over piece 1's peg.

    ``seat_tolerance`` (keys ``xy``, ``z``, ``yaw``, ``tilt``) bounds a seated
    piece's offset from its seat, in the frame of what it sits on; ``lift_height``
    is how far a grasped piece's bottom must be above the table to count as lifted;
    ``placement`` holds the initialisation ranges. Values not given come from the
    task's YAML ``env_kwargs``.
    """

    STAGES = (
        Stage("grasp_piece_1", "piece_1", "grasp piece 1 and lift it"),
        Stage("place_piece_1", "base", "insert piece 1 over the base's peg"),
        Stage("grasp_piece_2", "piece_2", "grasp piece 2 and lift it"),
        Stage("place_piece_2", "piece_1", "insert piece 2 over piece 1's peg"),
    )
    OBJECTS = ("base", "piece_1", "piece_2")

    def __init__(self, seat_tolerance: dict | None = None, lift_height: float | None = None, **kwargs):
        defaults = _yaml_env_kwargs()
        self.seat_tolerance = {**defaults["seat_tolerance"], **(seat_tolerance or {})}
        self.lift_height = float(defaults["lift_height"] if lift_height is None else lift_height)
        kwargs.setdefault("placement", defaults["placement"])
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ model
    def _build_objects(self) -> dict:
        base = make_base()
        base.get_obj().set("pos", array_to_string((0.0, 0.0, self.table_offset[2] + BASE_LIFT)))
        return {
            "base": base,
            "piece_1": make_piece_1("piece_1"),
            "piece_2": make_piece_2("piece_2"),
        }

    def _place_objects(self) -> None:
        """Sample the base's x/y/yaw and both pieces' x/y/yaw on the table from ``placement``."""
        self.set_fixture_pose("base", self.sample_range("base_x"), self.sample_range("base_y"), self.sample_range("base_yaw"))
        for name in ("piece_1", "piece_2"):
            pos = (self.sample_range(f"{name}_x"), self.sample_range(f"{name}_y"), self.table_offset[2])
            self.set_free_pose(name, pos, self.yaw_quat_wxyz(self.sample_range(f"{name}_yaw")))

    # ------------------------------------------------------------------ conditions
    def is_grasped(self, name: str) -> bool:
        """Both finger pads of the gripper touch the object."""
        return self.grasped(name)

    def is_lifted(self, name: str) -> bool:
        """The object's bottom is at least ``lift_height`` above the table."""
        return bool(self.object_pose(name)[2, 3] > self.table_offset[2] + self.lift_height)

    def seat_error(self, piece: str, receiver: str) -> dict[str, float]:
        """Offset of ``piece`` from its seat on ``receiver``: xy distance, height, yaw (mod 90 deg), tilt."""
        rel = pose_inv(self.object_pose(receiver)) @ self.object_pose(piece)
        return {
            "xy": float(np.linalg.norm(rel[:2, 3])),
            "z": float(abs(rel[2, 3] - SEAT_HEIGHT[receiver])),
            "yaw": abs(wrap_quarter(yaw_of(rel))),
            "tilt": tilt_of(rel),
        }

    def is_seated(self, piece: str, receiver: str) -> bool:
        """``piece`` rests fully down over ``receiver``'s peg (within ``seat_tolerance``)."""
        err = self.seat_error(piece, receiver)
        return all(err[key] <= self.seat_tolerance[key] for key in ("xy", "z", "yaw", "tilt"))

    def stage_condition(self, stage: int) -> bool:
        """Grasp stages: piece held and lifted. Stage 1: piece 1 seated on the base, the hand withdrawn."""
        if stage == 0:
            return self.is_grasped("piece_1") and self.is_lifted("piece_1")
        if stage == 1:
            return self.is_seated("piece_1", "base") and self.withdrawn("piece_1")
        return self.is_grasped("piece_2") and self.is_lifted("piece_2")

    def _check_success(self) -> bool:
        """Piece 2 seated on piece 1, which is seated on the base."""
        return self.is_seated("piece_2", "piece_1") and self.is_seated("piece_1", "base")
