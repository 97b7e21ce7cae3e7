"""Coffee-station models shared by the Coffee and Coffee Preparation tasks.

Everything is built from primitive geoms with robosuite's modeling API:

* :class:`CoffeeMachine` - a fixture with a drip tray in front of a body
  block. A *pod holder* (a cup of wall boxes) sits on top of the body and a
  *lid* on a hinge behind the holder covers it. The mug spot on the tray is in
  front of the body, below a spout arm (visual only: nothing solid hangs over
  the spot, so a mug can be set there top-down). The machine's local frame
  has its origin under the holder axis at the table surface; its front faces
  local ``-x``. The lid hinge angle is 0 when closed and grows as it opens.
* :func:`pod` - the cylindrical coffee pod that fits into the holder.
* :func:`mug` - a handle-free cylindrical mug (a cup of wall boxes).
* :class:`DrawerCabinet` - a fixture with one drawer on a slide joint and a
  bar handle on its front.

Geometric helpers on simulator state (lid angle, points on the lid, the tray
spot, pod seated in the holder) live next to the models they describe.
"""

from __future__ import annotations

import numpy as np
from robosuite.models.objects import CompositeBodyObject, CompositeObject, CylinderObject

from reinforcegen_ros.geometry import make_pose, pose_inv

# ---------------------------------------------------------------- machine dimensions (metres)
TRAY_X = (-0.15, 0.075)  # drip tray / base plate extent along local x
TRAY_HALF_Y = 0.065
TRAY_TOP = 0.012
BODY_X = (-0.04, 0.075)  # the machine's body block (front face at BODY_X[0])
BODY_HALF_Y = 0.055
BODY_TOP = 0.15  # the body top is the holder's floor
MUG_SPOT_X = -0.095  # tray spot under the spout: a mug there clears the front face by 2.5 cm
SPOUT_Z = (0.098, 0.108)  # spout arm (visual) on the front face, above the mug spot's back
SPOUT_REACH = 0.02

HOLDER_INNER_RADIUS = 0.026
HOLDER_WALL = 0.006
HOLDER_DEPTH = 0.042
HOLDER_SEGMENTS = 12

LID_LENGTH = 0.075
LID_HALF_WIDTH = 0.037
LID_HALF_THICKNESS = 0.004
LID_HINGE_X = 0.036  # hinge axis position in the holder frame (x), axis along local y
LID_OPEN_LIMIT = 1.92  # rad; past vertical so that gravity keeps an open lid open

POD_RADIUS = 0.02
POD_HALF_HEIGHT = 0.018

MUG_OUTER_RADIUS = 0.03
MUG_WALL = 0.005
MUG_HALF_HEIGHT = 0.04
MUG_BOTTOM = 0.006
MUG_SEGMENTS = 24

# Drawer cabinet (local frame: origin at the base centre on the table, front faces -x).
CAB_X = (-0.08, 0.08)
CAB_HALF_Y = 0.115
CAB_TOP = 0.085
CAB_WALL = 0.008
DRAWER_X = (-0.075, 0.068)  # drawer box (behind its front panel) when closed
DRAWER_HALF_Y = 0.103  # outer half width; the interior is DRAWER_HALF_Y - DRAWER_WALL
DRAWER_WALL = 0.006
DRAWER_FLOOR = (0.010, 0.014)  # floor bottom / top
DRAWER_WALL_TOP = 0.05
DRAWER_FRONT_X = (-0.086, -0.075)
DRAWER_FRONT_TOP = 0.074
DRAWER_TRAVEL = 0.12  # slide range (m)
HANDLE_RADIUS = 0.007
HANDLE_HALF_LENGTH = 0.065
HANDLE_GAP = 0.03  # clear gap between the bar and the drawer front (a closed finger pair is 2 cm thick)
HANDLE_Z = 0.064
HANDLE_POST_Y = 0.05

MACHINE_RGBA = (0.18, 0.18, 0.2, 1.0)
HOLDER_RGBA = (0.55, 0.55, 0.6, 1.0)
GRATE_RGBA = (0.35, 0.35, 0.38, 1.0)
LID_RGBA = (0.75, 0.2, 0.15, 1.0)
POD_RGBA = (0.85, 0.65, 0.1, 1.0)
MUG_RGBA = (0.2, 0.45, 0.8, 1.0)
CABINET_RGBA = (0.55, 0.4, 0.28, 1.0)
DRAWER_RGBA = (0.7, 0.55, 0.38, 1.0)
HANDLE_RGBA = (0.8, 0.8, 0.82, 1.0)


def _ring(inner_radius: float, wall: float, height: float, segments: int, z0: float = 0.0):
    """Box walls approximating a cylindrical ring: (types, sizes, locations, quats)."""
    mid = inner_radius + wall / 2.0
    half_tangent = mid * np.tan(np.pi / segments) + wall / 2.0
    types, sizes, locs, quats = [], [], [], []
    for k in range(segments):
        ang = 2.0 * np.pi * k / segments
        types.append("box")
        sizes.append([wall / 2.0, half_tangent, height / 2.0])
        locs.append([mid * np.cos(ang), mid * np.sin(ang), z0 + height / 2.0])
        quats.append([np.cos(ang / 2.0), 0.0, 0.0, np.sin(ang / 2.0)])
    return types, sizes, locs, quats


def _box(x: tuple[float, float], half_y: float, z: tuple[float, float], y0: float = 0.0):
    """Size and centre of an axis-aligned box given its x and z extents."""
    size = [(x[1] - x[0]) / 2.0, half_y, (z[1] - z[0]) / 2.0]
    loc = [(x[0] + x[1]) / 2.0, y0, (z[0] + z[1]) / 2.0]
    return size, loc


def _composite(name: str, types, sizes, locs, rgba, quats=None, density=500.0, friction=(1.0, 0.005, 0.0001), rgbas=None):
    """A jointless :class:`CompositeObject` whose geom locations are relative to its body origin."""
    sizes = [list(map(float, s)) for s in sizes]
    extent = np.max(np.abs(np.array(locs)) + np.array([CompositeObject._size_to_cartesian_half_lengths(t, s) for t, s in zip(types, sizes)]), axis=0)
    return CompositeObject(
        name=name,
        total_size=extent.tolist(),
        geom_types=types,
        geom_sizes=sizes,
        geom_locations=locs,
        geom_quats=quats,
        geom_frictions=[list(friction)] * len(types),
        geom_rgbas=[list(c) for c in rgbas] if rgbas is not None else None,
        rgba=list(rgba),
        density=density,
        locations_relative_to_center=True,
        joints=None,
    )


class CoffeeMachine(CompositeBodyObject):
    """Coffee machine fixture: tray, body block, pod holder on top and hinged lid.

    The mug spot on the tray sits in front of the body under a (visual) spout;
    it is open from above so a top-down grasp can set a mug there.

    ``joints`` are the root joints (normally :func:`~reinforcegen_ros.tasks.base.fixture_joints`).
    The lid hinge is named ``<name>_lid_hinge`` after prefixing.
    """

    def __init__(self, name: str = "coffee_machine", joints: list[dict] | None = None):
        body = self._body()
        holder = self._holder()
        lid = self._lid()
        hinge = {
            "name": "lid_hinge",
            "type": "hinge",
            "axis": "0 1 0",
            "pos": "0 0 0",
            "limited": "true",
            "range": f"0 {LID_OPEN_LIMIT}",
            "damping": "0.002",
            "armature": "0.0002",
        }
        super().__init__(
            name=name,
            objects=[body, holder, lid],
            object_locations=[
                [0.0, 0.0, 0.0],
                [0.0, 0.0, BODY_TOP],
                [LID_HINGE_X, 0.0, HOLDER_DEPTH + LID_HALF_THICKNESS],
            ],
            object_parents=[None, None, holder.root_body],
            joints=joints,
            body_joints={lid.root_body: [hinge]},
        )

    @staticmethod
    def _body() -> CompositeObject:
        """Tray and body block (collision), spout arm and drip grate (visual only)."""
        parts = [
            _box(TRAY_X, TRAY_HALF_Y, (0.0, TRAY_TOP)),
            _box(BODY_X, BODY_HALF_Y, (TRAY_TOP, BODY_TOP)),
            _box((BODY_X[0] - SPOUT_REACH, BODY_X[0]), 0.008, SPOUT_Z),
        ]
        types = ["box"] * len(parts) + ["cylinder"]
        sizes = [p[0] for p in parts] + [[0.034, 0.0005]]
        locs = [p[1] for p in parts] + [[MUG_SPOT_X, 0.0, TRAY_TOP + 0.0005]]
        return CompositeObject(
            name="body",
            total_size=[(TRAY_X[1] - TRAY_X[0]) / 2.0, TRAY_HALF_Y, BODY_TOP / 2.0],
            geom_types=types,
            geom_sizes=[list(map(float, x)) for x in sizes],
            geom_locations=locs,
            geom_rgbas=[list(MACHINE_RGBA), list(MACHINE_RGBA), list(HOLDER_RGBA), list(GRATE_RGBA)],
            obj_types=["all", "all", "visual", "visual"],
            density=300.0,
            locations_relative_to_center=True,
            joints=None,
        )

    @staticmethod
    def _holder() -> CompositeObject:
        """Pod holder: a ring of walls on the body top (the floor) plus the lid's hinge mount."""
        types, sizes, locs, quats = _ring(HOLDER_INNER_RADIUS, HOLDER_WALL, HOLDER_DEPTH, HOLDER_SEGMENTS)
        mount_size, mount_loc = _box((LID_HINGE_X - 0.004, LID_HINGE_X + 0.01), 0.02, (0.0, HOLDER_DEPTH - 0.003))
        types.append("box")
        sizes.append(mount_size)
        locs.append(mount_loc)
        quats.append([1.0, 0.0, 0.0, 0.0])
        return _composite("holder", types, sizes, locs, HOLDER_RGBA, quats=quats, density=300.0)

    @staticmethod
    def _lid() -> CompositeObject:
        """Lid plate whose body frame is on the hinge axis; closed it covers the holder."""
        return _composite(
            "lid",
            ["box"],
            [[LID_LENGTH / 2.0, LID_HALF_WIDTH, LID_HALF_THICKNESS]],
            [[-LID_LENGTH / 2.0, 0.0, 0.0]],
            LID_RGBA,
            density=400.0,
        )

    # ------------------------------------------------------------ names after prefixing
    @property
    def holder_body(self) -> str:
        return f"{self.naming_prefix}holder_root"

    @property
    def lid_body(self) -> str:
        return f"{self.naming_prefix}lid_root"

    @property
    def lid_joint(self) -> str:
        return f"{self.naming_prefix}lid_hinge"


def pod(name: str = "pod") -> CylinderObject:
    """The coffee pod: a free cylinder that fits into the holder with a few millimetres of clearance."""
    return CylinderObject(
        name=name,
        size=[POD_RADIUS, POD_HALF_HEIGHT],
        rgba=list(POD_RGBA),
        density=400.0,
        friction=[1.5, 0.01, 0.001],
    )


def mug(name: str = "mug") -> CompositeObject:
    """A handle-free cylindrical mug (walls and a bottom), with a free joint; origin at its centre."""
    types, sizes, locs, quats = _ring(MUG_OUTER_RADIUS - MUG_WALL, MUG_WALL, 2 * MUG_HALF_HEIGHT, MUG_SEGMENTS, z0=-MUG_HALF_HEIGHT)
    types.append("cylinder")
    sizes.append([MUG_OUTER_RADIUS - MUG_WALL / 2.0, MUG_BOTTOM / 2.0])
    locs.append([0.0, 0.0, -MUG_HALF_HEIGHT + MUG_BOTTOM / 2.0])
    quats.append([1.0, 0.0, 0.0, 0.0])
    sizes = [list(map(float, s)) for s in sizes]
    return CompositeObject(
        name=name,
        total_size=[MUG_OUTER_RADIUS, MUG_OUTER_RADIUS, MUG_HALF_HEIGHT],
        geom_types=types,
        geom_sizes=sizes,
        geom_locations=locs,
        geom_quats=quats,
        geom_frictions=[[1.5, 0.02, 0.001]] * len(types),
        geom_condims=[4] * len(types),  # torsional friction: the mug must not pivot between the pads
        rgba=list(MUG_RGBA),
        density=700.0,
        solref=(0.01, 1.0),
        locations_relative_to_center=True,
        joints=[{"type": "free", "damping": "0.0005"}],
    )


class DrawerCabinet(CompositeBodyObject):
    """Cabinet fixture with one drawer on a slide joint (``<name>_drawer_slide``, 0 = closed).

    The drawer opens toward local ``-x`` and has a bar handle standing off its
    front panel, so a closed finger pair can hook behind the bar and pull.
    """

    def __init__(self, name: str = "cabinet", joints: list[dict] | None = None):
        shell = self._shell()
        drawer = self._drawer()
        slide = {
            "name": "drawer_slide",
            "type": "slide",
            "axis": "-1 0 0",
            "pos": "0 0 0",
            "limited": "true",
            "range": f"0 {DRAWER_TRAVEL}",
            "damping": "5",
            "armature": "0.05",
            "frictionloss": "0.2",
        }
        super().__init__(
            name=name,
            objects=[shell, drawer],
            object_locations=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            object_parents=[None, None],
            joints=joints,
            body_joints={drawer.root_body: [slide]},
        )

    @staticmethod
    def _shell() -> CompositeObject:
        """Bottom, top, sides and back of the cabinet (open at the front)."""
        w, hy = CAB_WALL, CAB_HALF_Y
        parts = [
            _box(CAB_X, hy, (0.0, DRAWER_FLOOR[0] - 0.002)),
            _box(CAB_X, hy, (CAB_TOP - w, CAB_TOP)),
            _box(CAB_X, w / 2.0, (0.0, CAB_TOP), y0=hy - w / 2.0),
            _box(CAB_X, w / 2.0, (0.0, CAB_TOP), y0=-(hy - w / 2.0)),
            _box((CAB_X[1] - w, CAB_X[1]), hy, (0.0, CAB_TOP)),
        ]
        return _composite("shell", ["box"] * len(parts), [p[0] for p in parts], [p[1] for p in parts], CABINET_RGBA, density=300.0)

    @staticmethod
    def _drawer() -> CompositeObject:
        """Drawer box, front panel and bar handle; geoms are in the cabinet frame when closed."""
        w, hy = DRAWER_WALL, DRAWER_HALF_Y
        bar_x = DRAWER_FRONT_X[0] - HANDLE_GAP - HANDLE_RADIUS
        parts = [
            _box(DRAWER_X, hy, DRAWER_FLOOR),
            _box(DRAWER_X, w / 2.0, (DRAWER_FLOOR[1], DRAWER_WALL_TOP), y0=hy - w / 2.0),
            _box(DRAWER_X, w / 2.0, (DRAWER_FLOOR[1], DRAWER_WALL_TOP), y0=-(hy - w / 2.0)),
            _box((DRAWER_X[1] - w, DRAWER_X[1]), hy, (DRAWER_FLOOR[1], DRAWER_WALL_TOP)),
            _box(DRAWER_FRONT_X, hy + 0.004, (DRAWER_FLOOR[0], DRAWER_FRONT_TOP)),
            _box((bar_x, DRAWER_FRONT_X[0]), 0.005, (HANDLE_Z - 0.005, HANDLE_Z + 0.005), y0=HANDLE_POST_Y),
            _box((bar_x, DRAWER_FRONT_X[0]), 0.005, (HANDLE_Z - 0.005, HANDLE_Z + 0.005), y0=-HANDLE_POST_Y),
        ]
        types = ["box"] * len(parts) + ["cylinder"]
        sizes = [p[0] for p in parts] + [[HANDLE_RADIUS, HANDLE_HALF_LENGTH]]
        locs = [p[1] for p in parts] + [[bar_x, 0.0, HANDLE_Z]]
        quats = [[1.0, 0.0, 0.0, 0.0]] * len(parts) + [[np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]]
        rgbas = [DRAWER_RGBA] * 5 + [HANDLE_RGBA] * 3
        return _composite("drawer", types, sizes, locs, DRAWER_RGBA, quats=quats, density=300.0, rgbas=rgbas)

    @property
    def drawer_body(self) -> str:
        return f"{self.naming_prefix}drawer_root"

    @property
    def slide_joint(self) -> str:
        return f"{self.naming_prefix}drawer_slide"

    @staticmethod
    def handle_point() -> np.ndarray:
        """Centre of the handle bar in the drawer frame."""
        return np.array([DRAWER_FRONT_X[0] - HANDLE_GAP - HANDLE_RADIUS, 0.0, HANDLE_Z])


# ---------------------------------------------------------------- predicates on simulator state
def body_pose(sim, body: str) -> np.ndarray:
    """World pose (4x4) of a MuJoCo body."""
    bid = sim.model.body_name2id(body)
    return make_pose(sim.data.body_xpos[bid], sim.data.body_xmat[bid].reshape(3, 3))


def lid_angle(sim, machine: CoffeeMachine) -> float:
    """Lid hinge angle in radians (0 = closed)."""
    return float(sim.data.get_joint_qpos(machine.lid_joint))


def lid_point(holder_pose: np.ndarray, angle: float, point_in_lid: np.ndarray) -> np.ndarray:
    """World position of a point given in the closed lid's hinge frame, with the lid at ``angle``.

    The hinge frame has the holder's orientation and its origin on the hinge axis.
    """
    c, s = np.cos(angle), np.sin(angle)
    rot_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    hinge = np.array([LID_HINGE_X, 0.0, HOLDER_DEPTH + LID_HALF_THICKNESS])
    local = hinge + rot_y @ np.asarray(point_in_lid, dtype=float)
    return holder_pose[:3, :3] @ local + holder_pose[:3, 3]


def tray_spot(holder_pose: np.ndarray) -> np.ndarray:
    """World position of the mug spot on the tray's top face (under the spout)."""
    local = np.array([MUG_SPOT_X, 0.0, TRAY_TOP - BODY_TOP])
    return holder_pose[:3, :3] @ local + holder_pose[:3, 3]


def pod_in_holder(holder_pose: np.ndarray, pod_pose: np.ndarray, radial_tol: float, height_tol: float, tilt_tol: float) -> bool:
    """Pod seated in the holder: centred, resting near the floor and upright."""
    rel = pose_inv(holder_pose) @ pod_pose
    radial = float(np.linalg.norm(rel[:2, 3]))
    seated = abs(rel[2, 3] - POD_HALF_HEIGHT) < height_tol
    upright = float(np.arccos(np.clip(rel[2, 2], -1.0, 1.0))) < tilt_tol
    return radial < radial_tol and seated and upright
