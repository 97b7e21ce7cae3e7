"""Threading: pick up a needle and push its tip through the ring of a tripod.

The needle is a free body: a box handle (the graspable part, whose centre is
the needle's frame, x axis pointing to the tip) and a long thin shaft. The
tripod is a fixture (three legs, a post and a ring of box geoms) mounted with
:func:`fixture_joints`; its frame is the ring's: origin at the ring centre, x
axis along the ring's axis (normal to the ring plane).

Stages (paper Sec. IV, Threading):
  0 ``grasp_needle``  (needle) - needle held by both finger pads and lifted;
  1 ``thread_needle`` (tripod) - the shaft crosses the ring plane inside the
    ring and the tip is past the plane on the side opposite the handle.
"""

from __future__ import annotations

import numpy as np
from robosuite.models.objects import CompositeObject
from robosuite.utils.mjcf_utils import array_to_string
from scipy.spatial.transform import Rotation

from reinforcegen_ros.tasks.base import Stage, StagedTaskEnv, fixture_joints

# ---------------------------------------------------------------- model dimensions (metres)
HANDLE_HALF = (0.035, 0.012, 0.015)  # handle half sizes; the handle centre is the needle frame
SHAFT_HALF_LENGTH = 0.065
SHAFT_HALF_WIDTH = 0.004
SHAFT_BASE_X = HANDLE_HALF[0]  # where the shaft leaves the handle, in the needle frame
TIP_X = SHAFT_BASE_X + 2 * SHAFT_HALF_LENGTH  # needle tip, in the needle frame

RING_INNER_RADIUS = 0.020
RING_OUTER_RADIUS = 0.028
RING_HALF_THICKNESS = 0.006  # half extent along the ring axis
RING_SEGMENTS = 12
RING_HEIGHT = 0.10  # ring centre above the table top
POST_HALF_WIDTH = 0.005
HUB_DEPTH = 0.02  # post length below the ring
LEG_HALF_WIDTH = 0.005
LEG_SPREAD = 0.07  # horizontal distance of the feet from the post
LEG_ANGLES = (np.pi / 2, 7 * np.pi / 6, 11 * np.pi / 6)  # feet directions in the ring frame
FOOT_CLEARANCE = 0.002  # the fixture floats just above the table so it never rubs on it

# ---------------------------------------------------------------- termination thresholds
LIFT_HEIGHT = 0.03  # needle frame above its resting height for "lifted"
THREAD_DEPTH = RING_HALF_THICKNESS + 0.01  # tip distance past the ring plane for "threaded"

NEEDLE_RGBA = (0.15, 0.15, 0.15, 1.0)
HANDLE_RGBA = (0.85, 0.45, 0.1, 1.0)
TRIPOD_RGBA = (0.3, 0.55, 0.8, 1.0)


def _quat_wxyz(rot: Rotation) -> tuple[float, ...]:
    """MJCF (w, x, y, z) quaternion of a scipy rotation."""
    x, y, z, w = rot.as_quat()
    return (w, x, y, z)


class NeedleObject(CompositeObject):
    """A needle: box handle centred on the body frame and a thin shaft along +x."""

    def __init__(self, name: str = "needle", density: float = 500.0):
        shaft_x = SHAFT_BASE_X + SHAFT_HALF_LENGTH
        super().__init__(
            name=name,
            total_size=[(TIP_X + HANDLE_HALF[0]) / 2, HANDLE_HALF[1], HANDLE_HALF[2]],
            geom_types=["box", "box"],
            geom_sizes=[list(HANDLE_HALF), [SHAFT_HALF_LENGTH, SHAFT_HALF_WIDTH, SHAFT_HALF_WIDTH]],
            geom_locations=[(0.0, 0.0, 0.0), (shaft_x, 0.0, 0.0)],
            geom_names=["handle", "shaft"],
            geom_rgbas=[HANDLE_RGBA, NEEDLE_RGBA],
            geom_frictions=[(1.5, 0.01, 0.001), (0.5, 0.005, 0.0001)],
            geom_condims=[4, 4],
            density=density,
            locations_relative_to_center=True,
            joints="default",
        )


class TripodObject(CompositeObject):
    """A tripod fixture whose body frame is the ring's (x = ring axis), with x/y/yaw placement joints."""

    def __init__(self, name: str = "tripod"):
        types, sizes, locs, quats, names = [], [], [], [], []

        def add(size, loc, quat, geom_name):
            types.append("box")
            sizes.append(list(size))
            locs.append(tuple(loc))
            quats.append(tuple(quat))
            names.append(geom_name)

        for size, loc, quat, geom_name in _ring_boxes() + _support_boxes():
            add(size, loc, quat, geom_name)
        n = len(types)
        joints = fixture_joints(name)
        super().__init__(
            name=name,
            total_size=[LEG_SPREAD, LEG_SPREAD, (RING_HEIGHT + RING_OUTER_RADIUS) / 2],
            geom_types=types,
            geom_sizes=sizes,
            geom_locations=locs,
            geom_quats=quats,
            geom_names=names,
            geom_rgbas=[TRIPOD_RGBA] * n,
            geom_frictions=[(0.5, 0.005, 0.0001)] * n,
            geom_condims=[4] * n,
            density=500.0,
            locations_relative_to_center=True,
            joints=joints,
        )


def _ring_boxes() -> list[tuple]:
    """Box geoms (half size, centre, quat) approximating the ring in the ring frame's y-z plane."""
    radial_half = (RING_OUTER_RADIUS - RING_INNER_RADIUS) / 2
    tangential_half = RING_OUTER_RADIUS * np.tan(np.pi / RING_SEGMENTS)
    mid = RING_INNER_RADIUS + radial_half
    boxes = []
    for i in range(RING_SEGMENTS):
        phi = 2 * np.pi * i / RING_SEGMENTS
        centre = (0.0, mid * np.cos(phi), mid * np.sin(phi))
        quat = _quat_wxyz(Rotation.from_rotvec([phi, 0.0, 0.0]))  # local y -> radial direction
        boxes.append(((RING_HALF_THICKNESS, radial_half, tangential_half), centre, quat, f"ring_{i}"))
    return boxes


def _support_boxes() -> list[tuple]:
    """Post under the ring and three legs down to the table, in the ring frame."""
    hub_z = -RING_OUTER_RADIUS - HUB_DEPTH
    post_half = HUB_DEPTH / 2
    boxes = [((POST_HALF_WIDTH, POST_HALF_WIDTH, post_half), (0.0, 0.0, hub_z + post_half), (1, 0, 0, 0), "post")]
    foot_z = -RING_HEIGHT + FOOT_CLEARANCE + LEG_HALF_WIDTH
    for i, angle in enumerate(LEG_ANGLES):
        top = np.array([0.0, 0.0, hub_z])
        foot = np.array([LEG_SPREAD * np.cos(angle), LEG_SPREAD * np.sin(angle), foot_z])
        axis = foot - top
        length = float(np.linalg.norm(axis))
        rot, _ = Rotation.align_vectors([axis / length], [[0.0, 0.0, 1.0]])
        boxes.append(((LEG_HALF_WIDTH, LEG_HALF_WIDTH, length / 2), (top + foot) / 2, _quat_wxyz(rot), f"leg_{i}"))
    return boxes


class Threading(StagedTaskEnv):
    """Grasp the needle, then thread it through the tripod's ring."""

    STAGES = (
        Stage("grasp_needle", "needle", "needle held by the gripper and lifted off the table"),
        Stage("thread_needle", "tripod", "needle tip pushed through the tripod's ring"),
    )
    OBJECTS = ("needle", "tripod")

    # ------------------------------------------------------------------ model
    def _build_objects(self) -> dict:
        needle = NeedleObject("needle")
        tripod = TripodObject("tripod")
        ring_origin = self.table_offset + np.array([0.0, 0.0, RING_HEIGHT])
        tripod.get_obj().set("pos", array_to_string(ring_origin))
        return {"needle": needle, "tripod": tripod}

    def _place_objects(self) -> None:
        """Sample tripod then needle poses (x, y, yaw) from the placement ranges, keeping them apart."""
        min_sep = float(self.placement.get("min_separation", 0.12))
        tries = int(self.placement.get("max_tries", 100))
        tripod_xy = np.array([self.sample_range("tripod_x"), self.sample_range("tripod_y")])
        tripod_yaw = self.sample_range("tripod_yaw")
        for _ in range(tries):
            needle_xy = np.array([self.sample_range("needle_x"), self.sample_range("needle_y")])
            needle_yaw = self.sample_range("needle_yaw")
            if self._clearance(needle_xy, needle_yaw, tripod_xy) >= min_sep:
                break
        else:
            raise RuntimeError("could not place the needle away from the tripod; widen env_kwargs.placement")
        self.set_fixture_pose("tripod", tripod_xy[0], tripod_xy[1], tripod_yaw)
        z = self.table_offset[2] + HANDLE_HALF[2] + 0.001
        self.set_free_pose("needle", [needle_xy[0], needle_xy[1], z], self.yaw_quat_wxyz(needle_yaw))

    @staticmethod
    def _clearance(needle_xy: np.ndarray, needle_yaw: float, tripod_xy: np.ndarray) -> float:
        """Smallest horizontal distance from the tripod's post to the needle's axis segment."""
        direction = np.array([np.cos(needle_yaw), np.sin(needle_yaw)])
        ends = [needle_xy - HANDLE_HALF[0] * direction, needle_xy + TIP_X * direction]
        seg = ends[1] - ends[0]
        t = np.clip(np.dot(tripod_xy - ends[0], seg) / np.dot(seg, seg), 0.0, 1.0)
        return float(np.linalg.norm(tripod_xy - (ends[0] + t * seg)))

    # ------------------------------------------------------------------ privileged geometry
    def needle_points(self) -> tuple[np.ndarray, np.ndarray]:
        """World positions of the shaft's base (at the handle) and of the needle tip."""
        pose = self.object_pose("needle")
        base = pose[:3, :3] @ np.array([SHAFT_BASE_X, 0.0, 0.0]) + pose[:3, 3]
        tip = pose[:3, :3] @ np.array([TIP_X, 0.0, 0.0]) + pose[:3, 3]
        return base, tip

    def needle_resting_z(self) -> float:
        """Height of the needle frame when the needle lies flat on the table."""
        return float(self.table_offset[2] + HANDLE_HALF[2])

    # ------------------------------------------------------------------ conditions
    def needle_grasped(self) -> bool:
        """Both finger pads touch the needle."""
        return self.grasped("needle")

    def needle_lifted(self) -> bool:
        """The needle frame is at least ``LIFT_HEIGHT`` above its resting height."""
        return self.object_pose("needle")[2, 3] > self.needle_resting_z() + LIFT_HEIGHT

    def needle_threaded(self) -> bool:
        """The shaft crosses the ring plane inside the ring, with the tip ``THREAD_DEPTH`` past it."""
        ring = self.object_pose("tripod")
        centre, axis = ring[:3, 3], ring[:3, 0]
        base, tip = self.needle_points()
        s_base, s_tip = float(axis @ (base - centre)), float(axis @ (tip - centre))
        if s_base * s_tip >= 0.0 or abs(s_tip) < THREAD_DEPTH:
            return False
        crossing = base + (s_base / (s_base - s_tip)) * (tip - base)
        offset = crossing - centre
        radial = offset - axis * float(axis @ offset)
        return float(np.linalg.norm(radial)) < RING_INNER_RADIUS

    def stage_condition(self, stage: int) -> bool:
        """Stage 0: needle grasped and lifted (stage 1, needle threaded, is success)."""
        return self.needle_grasped() and self.needle_lifted()

    def _check_success(self) -> bool:
        return self.needle_threaded()
