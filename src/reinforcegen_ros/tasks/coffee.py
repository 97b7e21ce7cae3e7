"""Coffee: grasp a pod, insert it into the coffee machine's holder and close the lid.

Stages (paper Sec. III-A; ground truth on simulator state):

====  =====================  ================  ===============================================
 k    name                   reference object  termination
====  =====================  ================  ===============================================
 0    grasp_pod              pod               both finger pads touch the pod and its bottom
                                               is ``lift_height`` above the table
 1    insert_pod_close_lid   coffee_machine    pod seated upright in the holder and the lid
                                               hinge below ``lid_closed`` rad (= task success)
====  =====================  ================  ===============================================

The coffee machine's pose frame is its pod holder (floor centre, machine
orientation), so the insertion skill is object-centric. The lid starts open.
Placement ranges ("D2": machine x/y/yaw and pod x/y/yaw over broad ranges)
come from the YAML's ``env_kwargs.placement``; the pod is resampled until it
keeps ``pod_clearance`` from the machine's footprint and lies at least
``pod_front_margin`` nearer the robot (smaller x) than the holder, so that the
arm never sweeps through the open lid on its way to the pod.
"""

from __future__ import annotations

import numpy as np

from reinforcegen_ros.tasks.base import Stage, StagedTaskEnv, fixture_joints
from reinforcegen_ros.tasks.coffee_machine import (
    POD_HALF_HEIGHT,
    TRAY_HALF_Y,
    TRAY_X,
    CoffeeMachine,
    pod,
    pod_in_holder,
)

MACHINE_Z_GAP = 0.001  # fixtures float 1 mm above the table so they never rest in contact with it

DEFAULT_THRESHOLDS = {
    "lift_height": 0.03,  # m, pod bottom above the table for "lifted"
    "pod_radial": 0.012,  # m, pod axis distance from the holder axis
    "pod_height": 0.008,  # m, pod centre height error above the holder floor
    "pod_tilt": 0.35,  # rad, pod axis tilt
    "lid_closed": 0.1,  # rad, lid hinge angle for "closed"
}


def footprint_distance(local_xy: np.ndarray, margin: float = 0.0) -> float:
    """Distance from a point (machine-local x, y) to the machine's base rectangle (0 inside)."""
    half_y = TRAY_HALF_Y + margin
    dx = max(TRAY_X[0] - margin - local_xy[0], 0.0, local_xy[0] - TRAY_X[1] - margin)
    dy = max(abs(local_xy[1]) - half_y, 0.0)
    return float(np.hypot(dx, dy))


class CoffeeEnvMixin:
    """Shared coffee-machine/pod helpers for Coffee and Coffee Preparation."""

    machine: CoffeeMachine
    thresholds: dict

    def holder_pose(self) -> np.ndarray:
        """World pose of the pod holder (floor centre, machine orientation)."""
        return self.body_frame(self.machine.holder_body)

    def lid_angle(self) -> float:
        """Lid hinge angle (0 = closed)."""
        return self.joint_qpos(self.machine.lid_joint)

    def lid_closed(self) -> bool:
        return self.lid_angle() < self.thresholds["lid_closed"]

    def pod_inserted(self) -> bool:
        """Pod seated upright in the holder."""
        t = self.thresholds
        return pod_in_holder(self.holder_pose(), self.object_pose("pod"), t["pod_radial"], t["pod_height"], t["pod_tilt"])

    def pod_grasped_lifted(self) -> bool:
        """Pod between both finger pads and lifted off the table/drawer."""
        held = self.grasped("pod")
        return bool(held and self._pod_lifted())

    def pod_rest_height(self) -> float:
        """Height of the surface the pod rests on before it is grasped (the table)."""
        return float(self.table_offset[2])

    def _pod_lifted(self) -> bool:
        bottom = self.object_pose("pod")[2, 3] - POD_HALF_HEIGHT
        return bottom > self.pod_rest_height() + self.thresholds["lift_height"]

    def place_machine(self) -> np.ndarray:
        """Sample the machine's x/y/yaw, open its lid, and return its (x, y, yaw)."""
        x, y, yaw = (self.sample_range(f"machine_{k}") for k in ("x", "y", "yaw"))
        self.set_fixture_pose("coffee_machine", x, y, yaw)
        lo, hi = self.placement.get("lid_open", (1.92, 1.92))
        self.sim.data.set_joint_qpos(self.machine.lid_joint, float(self.rng.uniform(lo, hi)))
        self.sim.data.set_joint_qvel(self.machine.lid_joint, 0.0)
        return np.array([x, y, yaw])

    def clear_of_machine(self, xy: np.ndarray, machine_xyyaw: np.ndarray, clearance: float) -> bool:
        """Whether world point ``xy`` lies at least ``clearance`` outside the machine's footprint."""
        x, y, yaw = machine_xyyaw
        c, s = np.cos(yaw), np.sin(yaw)
        d = np.asarray(xy) - np.array([x, y])
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
        return footprint_distance(local) >= clearance


class Coffee(CoffeeEnvMixin, StagedTaskEnv):
    """Coffee task on a table: pod on the table, machine with an open lid."""

    STAGES = (
        Stage("grasp_pod", "pod", "grasp the coffee pod and lift it"),
        Stage("insert_pod_close_lid", "coffee_machine", "insert the pod into the holder and close the lid"),
    )
    OBJECTS = ("pod", "coffee_machine")

    def __init__(self, thresholds: dict | None = None, **kwargs):
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        super().__init__(**kwargs)

    def _build_objects(self):
        self.machine = CoffeeMachine("coffee_machine", joints=fixture_joints("coffee_machine"))
        self.machine.get_obj().set("pos", f"0 0 {self.table_offset[2] + MACHINE_Z_GAP}")
        return {"pod": pod("pod"), "coffee_machine": self.machine}

    def _place_objects(self) -> None:
        machine = self.place_machine()
        clearance = float(self.placement.get("pod_clearance", 0.1))
        front_margin = float(self.placement.get("pod_front_margin", 0.05))
        for _ in range(500):
            xy = np.array([self.sample_range("pod_x"), self.sample_range("pod_y")])
            # the arm must not reach past the open lid: the pod lies nearer the robot than the holder
            if self.clear_of_machine(xy, machine, clearance) and xy[0] <= machine[0] - front_margin:
                break
        else:
            raise RuntimeError("could not place the pod clear of the coffee machine; widen env_kwargs.placement")
        z = self.table_offset[2] + POD_HALF_HEIGHT + 0.001
        self.set_free_pose("pod", [xy[0], xy[1], z], self.yaw_quat_wxyz(self.sample_range("pod_yaw")))

    def object_pose(self, name: str) -> np.ndarray:
        """World pose of an object; the coffee machine's frame is its pod holder."""
        if name == "coffee_machine":
            return self.holder_pose()
        return super().object_pose(name)

    def stage_condition(self, stage: int) -> bool:
        """Stage 0: pod grasped and lifted (stage 1, pod inserted and lid closed, is success)."""
        return self.pod_grasped_lifted()

    def _check_success(self) -> bool:
        return bool(self.pod_inserted() and self.lid_closed())
