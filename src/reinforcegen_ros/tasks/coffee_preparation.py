"""Coffee Preparation: put a mug under the spout, fetch a pod from a drawer, brew.

Stages (paper Sec. III-A; ground truth on simulator state):

====  =====================  ================  ===============================================
 k    name                   reference object  termination
====  =====================  ================  ===============================================
 0    grasp_mug              mug               both finger pads touch the mug and its bottom
                                               is ``lift_height`` above the table
 1    place_mug              coffee_machine    mug upright, resting on the tray, its axis
                                               within ``mug_radial`` of the spot under the
                                               spout
 2    open_drawer            drawer            drawer slide opened more than ``drawer_open``
 3    grasp_pod              pod               both finger pads touch the pod and its bottom
                                               is ``lift_height`` above the drawer floor
 4    insert_pod_close_lid   coffee_machine    pod seated upright in the holder and the lid
                                               hinge below ``lid_closed`` rad
====  =====================  ================  ===============================================

Success: mug on the tray under the spout, pod in the holder and the lid closed.

The coffee machine's pose frame is its pod holder (the tray spot is fixed in
it); the drawer's pose frame is the moving drawer body (the handle is fixed in
it). The machine, the drawer cabinet and the mug are placed
at random x/y (the fixtures also at random yaw) without overlapping: each
fixture keeps clear a work area in front of it (where the hand sets the mug
down, where the open drawer and the hand go). The pod starts inside the closed
drawer. The mug is handle-free; it is grasped top-down around its body and set
on the tray spot in front of the machine's body, under its (visual) spout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reinforcegen_ros.tasks.base import Stage, StagedTaskEnv, fixture_joints
from reinforcegen_ros.tasks.coffee import MACHINE_Z_GAP, CoffeeEnvMixin
from reinforcegen_ros.tasks.coffee_machine import (
    CAB_HALF_Y,
    CAB_X,
    DRAWER_FLOOR,
    MUG_HALF_HEIGHT,
    POD_HALF_HEIGHT,
    BODY_X,
    TRAY_HALF_Y,
    TRAY_X,
    CoffeeMachine,
    DrawerCabinet,
    mug,
    pod,
    tray_spot,
)

HAND_HALF_WIDTH = 0.11  # half the Panda hand's width along its finger axis, with margin

DEFAULT_THRESHOLDS = {
    "lift_height": 0.03,  # m, object bottom above its support for "lifted"
    "mug_radial": 0.015,  # m, mug axis to the tray spot under the spout
    "mug_height": 0.008,  # m, mug bottom above the tray top
    "mug_tilt": 0.2,  # rad
    "drawer_open": 0.09,  # m, drawer slide opening
    "pod_radial": 0.012,
    "pod_height": 0.008,
    "pod_tilt": 0.35,
    "lid_closed": 0.1,
}


@dataclass(frozen=True)
class Footprint:
    """An axis-aligned rectangle in a fixture's frame, placed in the world at (x, y, yaw)."""

    x: float
    y: float
    yaw: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def distances(self, xy: np.ndarray) -> np.ndarray:
        """Distances from world points (N x 2) to the rectangle (0 inside)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(xy, dtype=float).reshape(-1, 2) - np.array([self.x, self.y])
        lx, ly = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]  # in the fixture's frame
        dx = np.maximum(np.maximum(self.x_range[0] - lx, 0.0), lx - self.x_range[1])
        dy = np.maximum(np.maximum(self.y_range[0] - ly, 0.0), ly - self.y_range[1])
        return np.hypot(dx, dy)

    def distance(self, xy: np.ndarray) -> float:
        """Distance from a world point to the rectangle (0 inside)."""
        return float(self.distances(xy)[0])

    def perimeter(self, step: float = 0.01) -> np.ndarray:
        """World points along the rectangle's outline, about ``step`` apart."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        edges = []
        for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
            t = np.linspace(0.0, 1.0, max(int(np.hypot(b[0] - a[0], b[1] - a[1]) / step), 1), endpoint=False)
            edges.append(np.stack([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])], axis=1))
        pts, c, s = np.concatenate(edges), np.cos(self.yaw), np.sin(self.yaw)
        return np.stack([self.x + c * pts[:, 0] - s * pts[:, 1], self.y + s * pts[:, 0] + c * pts[:, 1]], axis=1)


def footprint_gap(a: Footprint, b: Footprint) -> float:
    """Approximate clearance between two rectangles (0 when they overlap): outline points of each against the other."""
    return float(min(b.distances(a.perimeter()).min(), a.distances(b.perimeter()).min()))


def machine_footprints(x: float, y: float, yaw: float, front_space: float) -> list[Footprint]:
    """The machine's base and the work area over and in front of its tray (the hand is 20 cm wide)."""
    return [
        Footprint(x, y, yaw, TRAY_X, (-TRAY_HALF_Y, TRAY_HALF_Y)),
        Footprint(x, y, yaw, (TRAY_X[0] - front_space, BODY_X[0]), (-HAND_HALF_WIDTH, HAND_HALF_WIDTH)),
    ]


def cabinet_footprints(x: float, y: float, yaw: float, front_space: float) -> list[Footprint]:
    """The cabinet and the space in front of it used by the open drawer and the hand."""
    return [
        Footprint(x, y, yaw, CAB_X, (-CAB_HALF_Y, CAB_HALF_Y)),
        Footprint(x, y, yaw, (CAB_X[0] - front_space, CAB_X[0]), (-CAB_HALF_Y, CAB_HALF_Y)),
    ]


class CoffeePreparation(CoffeeEnvMixin, StagedTaskEnv):
    """Coffee Preparation task: mug, coffee machine, drawer cabinet with a pod inside."""

    STAGES = (
        Stage("grasp_mug", "mug", "grasp the mug around its body from above and lift it"),
        Stage("place_mug", "coffee_machine", "place the mug upright on the tray under the spout"),
        Stage("open_drawer", "drawer", "pull the drawer open by its handle"),
        Stage("grasp_pod", "pod", "grasp the pod inside the drawer and lift it", orientation_object="drawer"),
        Stage("insert_pod_close_lid", "coffee_machine", "insert the pod into the holder and close the lid"),
    )
    OBJECTS = ("mug", "coffee_machine", "drawer", "pod")

    def __init__(self, thresholds: dict | None = None, **kwargs):
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        super().__init__(**kwargs)

    # ------------------------------------------------------------ scene
    def _build_objects(self):
        z = self.table_offset[2] + MACHINE_Z_GAP
        self.machine = CoffeeMachine("coffee_machine", joints=fixture_joints("coffee_machine"))
        self.machine.get_obj().set("pos", f"0 0 {z}")
        self.cabinet = DrawerCabinet("cabinet", joints=fixture_joints("drawer"))
        self.cabinet.get_obj().set("pos", f"0 0 {z}")
        return {"mug": mug("mug"), "pod": pod("pod"), "coffee_machine": self.machine, "drawer": self.cabinet}

    def _place_objects(self) -> None:
        p = self.placement
        for _ in range(500):
            machine = self.place_machine()
            cab = np.array([self.sample_range(f"cabinet_{k}") for k in ("x", "y", "yaw")])
            m_fp = machine_footprints(*machine, float(p.get("machine_front_space", 0.05)))
            c_fp = cabinet_footprints(*cab, float(p.get("cabinet_front_space", 0.2)))
            if min(footprint_gap(a, b) for a in m_fp for b in c_fp) < float(p.get("fixture_gap", 0.03)):
                continue
            mug_xy = np.array([self.sample_range("mug_x"), self.sample_range("mug_y")])
            clear = float(p.get("mug_clearance", 0.08))
            if m_fp[0].distance(mug_xy) < clear or min(f.distance(mug_xy) for f in c_fp) < clear:
                continue
            break
        else:
            raise RuntimeError("could not place machine, cabinet and mug apart; widen env_kwargs.placement")
        self.set_fixture_pose("drawer", *cab)
        self.sim.data.set_joint_qpos(self.cabinet.slide_joint, 0.0)
        self.sim.data.set_joint_qvel(self.cabinet.slide_joint, 0.0)
        mug_z = self.table_offset[2] + MUG_HALF_HEIGHT + 0.001
        self.set_free_pose("mug", [mug_xy[0], mug_xy[1], mug_z], self.yaw_quat_wxyz(self.sample_range("mug_yaw")))
        self._place_pod_in_drawer(cab)

    def _place_pod_in_drawer(self, cab: np.ndarray) -> None:
        """Put the pod upright on the closed drawer's floor."""
        x, y, yaw = cab
        local = np.array([self.sample_range("pod_drawer_x"), self.sample_range("pod_drawer_y")])
        c, s = np.cos(yaw), np.sin(yaw)
        world = np.array([x + c * local[0] - s * local[1], y + s * local[0] + c * local[1]])
        z = self.table_offset[2] + MACHINE_Z_GAP + DRAWER_FLOOR[1] + POD_HALF_HEIGHT + 0.001
        self.set_free_pose("pod", [world[0], world[1], z], self.yaw_quat_wxyz(self.sample_range("pod_yaw")))

    # ------------------------------------------------------------ poses and predicates
    def object_pose(self, name: str) -> np.ndarray:
        """World pose of an object; the machine's frame is its holder, the drawer's its moving drawer."""
        if name == "coffee_machine":
            return self.holder_pose()
        if name == "drawer":
            return self.body_frame(self.cabinet.drawer_body)
        return super().object_pose(name)

    def drawer_opening(self) -> float:
        """Drawer slide position in metres (0 = closed, up to the travel limit)."""
        return self.joint_qpos(self.cabinet.slide_joint)

    def pod_rest_height(self) -> float:
        """Height of the drawer floor's top face (where the pod rests before grasping)."""
        drawer = self.object_pose("drawer")
        return float(drawer[2, 3] + DRAWER_FLOOR[1])

    def mug_grasped_lifted(self) -> bool:
        held = self.grasped("mug")
        bottom = self.object_pose("mug")[2, 3] - MUG_HALF_HEIGHT
        return bool(held and bottom > self.table_offset[2] + self.thresholds["lift_height"])

    def mug_on_tray(self) -> bool:
        """Mug upright, resting on the tray, its axis on the spot under the spout."""
        t = self.thresholds
        holder, cup = self.holder_pose(), self.object_pose("mug")
        spot = tray_spot(holder)
        rel = holder[:3, :3].T @ (cup[:3, 3] - spot)  # mug centre in the machine frame, from the spot
        spout_gap = float(np.linalg.norm(rel[:2]))
        bottom_gap = float(rel[2] - MUG_HALF_HEIGHT)
        tilt = float(np.arccos(np.clip(cup[2, 2], -1.0, 1.0)))
        return spout_gap < t["mug_radial"] and -0.003 < bottom_gap < t["mug_height"] and tilt < t["mug_tilt"]

    def stage_condition(self, stage: int) -> bool:
        """Mug grasped and lifted; mug on the tray, the hand withdrawn; drawer open, the hand withdrawn; pod grasped and lifted."""
        if stage == 0:
            return self.mug_grasped_lifted()
        if stage == 1:
            return self.mug_on_tray() and self.withdrawn("mug")
        if stage == 2:
            return self.drawer_opening() > self.thresholds["drawer_open"] and self.withdrawn("drawer")
        return self.pod_grasped_lifted()

    def _check_success(self) -> bool:
        return bool(self.mug_on_tray() and self.pod_inserted() and self.lid_closed())
