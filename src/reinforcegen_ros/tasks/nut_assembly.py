"""Nut Assembly: put the square nut on the square peg and the round nut on the round peg.

Built on robosuite's own :class:`~robosuite.environments.manipulation.nut_assembly.NutAssembly`
(its arena, nuts, pegs and success check), with the stage structure of the
ReinforceGen benchmark and the broad "D2" nut placement: each nut's x in
(-0.15, 0.15), y in a wide band on its own side of the table, any yaw.

The class name differs from robosuite's ``NutAssembly`` because robosuite
registers every environment subclass under its class name.
"""

from __future__ import annotations

import numpy as np
from robosuite.environments.manipulation.nut_assembly import NutAssembly
from robosuite.utils.mjcf_utils import string_to_array
from robosuite.utils.placement_samplers import SequentialCompositeSampler, UniformRandomSampler

from reinforcegen_ros.tasks.base import Stage, StagedTask

# robosuite's nut and peg models (SquareNutObject, RoundNutObject, PegsArena).
NUT_NAMES = {"square_nut": "SquareNut", "round_nut": "RoundNut"}
PEG_BODIES = {"square_peg": "peg1", "round_peg": "peg2"}
NUT_HALF_HEIGHT = 0.01  # half thickness of the nut plates
NUT_BOTTOM_OFFSET = 0.05  # robosuite's bottom_site sits 5 cm below the nut centre
SPAWN_GAP = 0.001  # nuts are spawned this far above the table instead of dropped from 6 cm
# Panda hand footprint about the grip site, (along the nut handle, across it): robosuite's hand
# collision mesh spans +-0.032 m along the handle and +-0.104 m along the finger-closing axis.
HAND_HALF_EXTENT = np.array([0.032, 0.104])

# Stage thresholds, defined on simulator state only.
LIFT_HEIGHT = 0.03  # a grasped nut counts as lifted once its centre is this far above its rest height
MAX_PLACEMENT_TRIES = 1000

DEFAULT_PLACEMENT = {
    "nut_x": [-0.15, 0.15],
    "square_nut_y": [0.0, 0.26],
    "round_nut_y": [-0.26, 0.0],
    "peg_clearance": 0.12,
    "hand_clearance": 0.04,
}


class NutPlacementSampler(SequentialCompositeSampler):
    """robosuite's sequential sampler, re-sampled until both nuts are clear of the pegs.

    A placement is kept when, for every nut and peg, the nut centre is at least
    ``peg_clearance`` from the peg axis (nut reach incl. handle + peg radius)
    and a top-down Panda hand closed on the handle (footprint ``HAND_HALF_EXTENT``
    about the handle, long side across it) stays ``hand_clearance`` from the
    peg axis, so that every nut can be picked by its handle. ``pegs_xy`` (the peg
    axes) is set once the arena is built.
    """

    def __init__(self, name: str, peg_clearance: float, hand_clearance: float):
        super().__init__(name=name)
        self.pegs_xy = np.zeros((0, 2))
        self.peg_clearance = float(peg_clearance)
        self.hand_clearance = float(hand_clearance)

    def sample(self, fixtures=None, reference=None, on_top=True):
        for _ in range(MAX_PLACEMENT_TRIES):
            placements = super().sample(fixtures=fixtures, reference=reference, on_top=on_top)
            if all(self.clear_of_pegs(pos, quat, obj) for pos, quat, obj in placements.values()):
                return placements
        raise RuntimeError(f"no nut placement clear of the pegs after {MAX_PLACEMENT_TRIES} tries")

    def clear_of_pegs(self, pos, quat_wxyz, nut) -> bool:
        """Whether a nut at ``pos`` with yaw from ``quat_wxyz`` keeps its body and its grasp clear of the pegs."""
        w, _, _, z = quat_wxyz
        yaw = 2.0 * np.arctan2(z, w)
        axes = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])  # rows: nut x, nut y
        centre = np.asarray(pos[:2], dtype=float)
        handle = centre + handle_offset(nut) * axes[0]
        for peg in self.pegs_xy:
            if np.linalg.norm(peg - centre) < self.peg_clearance:
                return False
            local = np.abs(axes @ (peg - handle))  # peg in the handle frame (along, across the handle)
            outside = np.maximum(local - HAND_HALF_EXTENT, 0.0)
            if np.linalg.norm(outside) < self.hand_clearance:
                return False
        return True


def handle_offset(nut) -> float:
    """Distance from a robosuite nut's centre to its handle site (along the nut's x axis)."""
    site = nut.worldbody.find(f".//site[@name='{nut.important_sites['handle']}']")
    return float(string_to_array(site.get("pos"))[0])


class NutAssemblyStaged(StagedTask, NutAssembly):
    """robosuite's Nut Assembly with ReinforceGen's four stages and D2 nut placement.

    ``placement`` (the YAML's ``env_kwargs.placement``) holds ``nut_x``,
    ``square_nut_y``, ``round_nut_y`` ([low, high] offsets from the table centre),
    ``peg_clearance`` and ``hand_clearance`` (see :class:`NutPlacementSampler`).
    """

    STAGES = (
        Stage("grasp_square_nut", "square_nut", "square nut held by its handle and lifted"),
        Stage("insert_square_nut", "square_peg", "square nut lowered around the square peg"),
        Stage("grasp_round_nut", "round_nut", "round nut held by its handle and lifted"),
        Stage("insert_round_nut", "round_peg", "both nuts around their pegs, gripper clear (task success)"),
    )
    OBJECTS = ("square_nut", "round_nut", "square_peg", "round_peg")
    OBJECT_BODIES = PEG_BODIES

    def __init__(self, robots="Panda", placement: dict | None = None, **kwargs):
        self.placement = {**DEFAULT_PLACEMENT, **dict(placement or {})}
        self.mujoco_objects = {}
        kwargs.setdefault("use_camera_obs", False)
        kwargs.setdefault("single_object_mode", 0)
        if kwargs["single_object_mode"] != 0:
            raise ValueError("NutAssemblyStaged needs both nuts (single_object_mode=0)")
        super().__init__(robots=robots, **kwargs)

    # ------------------------------------------------------------------ model
    def _load_model(self):
        self.placement_initializer = self._make_placement_sampler()
        super()._load_model()
        self.mujoco_objects = {key: nut for key, nut in zip(NUT_NAMES, self.nuts)}
        arena = self.model.mujoco_arena
        pegs = (arena.peg1_body, arena.peg2_body)
        self.placement_initializer.pegs_xy = np.array([string_to_array(b.get("pos"))[:2] for b in pegs])

    def _make_placement_sampler(self) -> NutPlacementSampler:
        """One uniform sampler per nut (robosuite names them ``<Nut>Sampler``), any yaw."""
        sampler = NutPlacementSampler("NutPlacement", self.placement["peg_clearance"], self.placement["hand_clearance"])
        for key, nut_name in NUT_NAMES.items():
            sampler.append_sampler(
                UniformRandomSampler(
                    name=f"{nut_name}Sampler",
                    x_range=list(self.placement["nut_x"]),
                    y_range=list(self.placement[f"{key}_y"]),
                    rotation=None,
                    rotation_axis="z",
                    ensure_object_boundary_in_range=False,
                    ensure_valid_placement=True,
                    reference_pos=np.array(self.table_offset),
                    z_offset=SPAWN_GAP + NUT_HALF_HEIGHT - NUT_BOTTOM_OFFSET,
                    rng=self.rng,
                )
            )
        return sampler

    # ------------------------------------------------------------------ poses

    def handle_pos(self, nut: str) -> np.ndarray:
        """World position of a nut's handle site."""
        site = self.sim.model.site_name2id(self.mujoco_objects[nut].important_sites["handle"])
        return np.array(self.sim.data.site_xpos[site])

    # ------------------------------------------------------------------ conditions
    def nut_grasped(self, nut: str) -> bool:
        """Both finger pads touch the nut."""
        return self.grasped(nut)

    def nut_height(self, nut: str) -> float:
        """Height of the nut's centre above its resting height on the table."""
        return float(self.object_pose(nut)[2, 3] - (self.table_offset[2] + NUT_HALF_HEIGHT))

    def nut_lifted(self, nut: str) -> bool:
        """The nut's centre is ``LIFT_HEIGHT`` above its resting height on the table."""
        return self.nut_height(nut) > LIFT_HEIGHT

    def nut_on_peg(self, nut: str) -> bool:
        """robosuite's on-peg test: nut centred on its peg (3 cm) and down near the table."""
        peg_id = list(NUT_NAMES).index(nut)
        return bool(self.on_peg(self.object_pose(nut)[:3, 3], peg_id))

    def stage_condition(self, stage: int) -> bool:
        """Grasp stages: nut held and lifted. Stage 1: square nut on its peg, the hand withdrawn."""
        if stage == 0:
            return self.nut_grasped("square_nut") and self.nut_lifted("square_nut")
        if stage == 1:
            return self.nut_on_peg("square_nut") and self.withdrawn("square_nut")
        return self.nut_grasped("round_nut") and self.nut_lifted("round_nut")
