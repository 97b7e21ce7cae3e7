"""Collision checking of arm configurations against the live scene.

A :class:`CollisionChecker` keeps its own scratch ``MjData`` on the live
model: :meth:`CollisionChecker.sync` snapshots the live positions (objects,
fixtures, gripper opening), and each query sets only the seven arm joints,
runs ``mj_kinematics`` + ``mj_collision`` and keeps the contacts that involve
the robot (arm, gripper, mount) or an object it holds, with a penetration
deeper than ``margin``. Contacts among scene objects (a pod resting on the
table) and inside the gripper (finger against finger) never count.

Objects held by the gripper are detected at :meth:`sync` (touched by both
fingers) and *attached*: they follow the grip site in every query, their
contacts with the robot are ignored and their contacts with the scene count.
Further pairs can be ignored explicitly, e.g. ``("gripper", "pod")`` while
approaching a pod to grasp it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import mujoco
import numpy as np

from reinforcegen_ros.geometry import make_pose, mat_to_quat, pose_inv

ROBOT = "robot"  # selector: every geom of the robot (arm, gripper, mount)
GRIPPER = "gripper"  # selector: the gripper's geoms (hand and fingers)


@dataclass(frozen=True)
class Contact:
    """A contact that makes a configuration invalid."""

    geom1: str
    geom2: str
    depth: float  # penetration depth in metres (positive = overlapping)

    def __str__(self) -> str:
        return f"{self.geom1} <-> {self.geom2} ({1000 * self.depth:.1f} mm)"


class CollisionChecker:
    """Robot-vs-scene collision queries for arm joint configurations.

    ``margin`` is the penetration depth (m) tolerated before a contact counts;
    ``ignore`` is an iterable of selector pairs (see :meth:`resolve`) whose
    mutual contacts never count.
    """

    def __init__(self, env, margin: float = 0.002, ignore: Iterable[tuple[str, str]] = (), attach_held: bool = True):
        self.env = env.env if hasattr(env, "env") else env
        self.sim = self.env.sim
        self.model = self.sim.model._model
        self.data = mujoco.MjData(self.model)
        self.margin = float(margin)
        self.attach_held = attach_held
        robot = self.env.robots[0]
        gripper = robot.gripper["right"]
        self.qpos_idx = np.array(robot._ref_joint_pos_indexes)
        self.site_id = robot.eef_site_id["right"]
        self.robot_geoms = self._subtree_geoms(self._body_id(robot.robot_model.root_body))
        self.gripper_geoms = self._subtree_geoms(self._body_id(gripper.root_body))
        self.finger_geoms = tuple(
            frozenset(self._geom_id(name) for name in gripper.important_geoms[key]) for key in ("left_finger", "right_finger")
        )
        self.ignored = [(self.resolve(a), self.resolve(b)) for a, b in ignore]
        self.attached: dict[int, np.ndarray] = {}  # free-joint qpos address -> object pose in the grip-site frame
        self.attached_geoms: frozenset[int] = frozenset()
        self.sync()

    # ------------------------------------------------------------------ scene
    def sync(self) -> None:
        """Snapshot the live scene and (re)detect held objects."""
        self.data.qpos[:] = self.sim.data.qpos
        self.base_qpos = self.data.qpos.copy()
        self.attached, self.attached_geoms = {}, frozenset()
        self._robot_side = self.robot_geoms
        if self.attach_held:
            for body in self.held_bodies():
                self.attach(body)

    def held_bodies(self) -> list[int]:
        """Free-jointed bodies currently touched by both fingers (live positions)."""
        self.data.qpos[:] = self.base_qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_collision(self.model, self.data)
        touched: list[set[int]] = [set(), set()]
        for c in self.data.contact[: self.data.ncon]:
            for finger, side in zip(self.finger_geoms, touched):
                if c.geom1 in finger:
                    side.add(int(self.model.geom_bodyid[c.geom2]))
                elif c.geom2 in finger:
                    side.add(int(self.model.geom_bodyid[c.geom1]))
        roots = {int(self.model.body_rootid[b]) for b in touched[0] & touched[1]}
        return sorted(b for b in roots if self._free_joint_adr(b) is not None)

    def attach(self, body: int | str) -> None:
        """Make a free-jointed body follow the grip site (keeping its current relative pose)."""
        body_id = self._body_id(body) if isinstance(body, str) else int(body)
        adr = self._free_joint_adr(body_id)
        if adr is None:
            raise ValueError(f"body '{self._body_name(body_id)}' has no free joint and cannot be attached")
        self.data.qpos[:] = self.base_qpos
        mujoco.mj_kinematics(self.model, self.data)
        site = make_pose(self.data.site_xpos[self.site_id], self.data.site_xmat[self.site_id].reshape(3, 3))
        obj = make_pose(self.data.xpos[body_id], self.data.xmat[body_id].reshape(3, 3))
        self.attached[adr] = pose_inv(site) @ obj
        self.attached_geoms = self.attached_geoms | self._subtree_geoms(body_id)
        self._robot_side = self.robot_geoms | self.attached_geoms

    # ------------------------------------------------------------------ queries
    def set_joints(self, joints: np.ndarray) -> np.ndarray:
        """Place the arm (and attached objects) at ``joints``; return the grip-site pose."""
        self.data.qpos[:] = self.base_qpos
        self.data.qpos[self.qpos_idx] = joints
        mujoco.mj_kinematics(self.model, self.data)
        site = make_pose(self.data.site_xpos[self.site_id], self.data.site_xmat[self.site_id].reshape(3, 3))
        if self.attached:
            for adr, rel in self.attached.items():
                pose = site @ rel
                quat = mat_to_quat(pose[:3, :3])
                self.data.qpos[adr : adr + 7] = np.concatenate([pose[:3, 3], [quat[3], quat[0], quat[1], quat[2]]])
            mujoco.mj_kinematics(self.model, self.data)
        return site

    def contacts(self, joints: np.ndarray, ignore: Iterable[tuple[frozenset, frozenset]] = ()) -> list[Contact]:
        """Invalidating contacts at ``joints``; ``ignore`` adds resolved pairs for this query."""
        self.set_joints(joints)
        return self.current_contacts(ignore)

    def current_contacts(self, ignore: Iterable[tuple[frozenset, frozenset]] = (), first_only: bool = False) -> list[Contact]:
        """Invalidating contacts of the configuration last set with :meth:`set_joints`."""
        mujoco.mj_collision(self.model, self.data)
        pairs = self.ignored + list(ignore)
        found = []
        for c in self.data.contact[: self.data.ncon]:
            if -c.dist > self.margin and self._counts(int(c.geom1), int(c.geom2), pairs):
                found.append(Contact(self._geom_name(c.geom1), self._geom_name(c.geom2), float(-c.dist)))
                if first_only:
                    break
        return found

    def in_collision(self, joints: np.ndarray, ignore: Iterable[tuple[frozenset, frozenset]] = ()) -> bool:
        """Whether any invalidating contact exists at ``joints``."""
        self.set_joints(joints)
        return bool(self.current_contacts(ignore, first_only=True))

    def contact_pairs(self, joints: np.ndarray) -> list[tuple[frozenset, frozenset]]:
        """Invalidating contacts at ``joints`` as single-geom ignore pairs (to tolerate them later)."""
        self.set_joints(joints)
        mujoco.mj_collision(self.model, self.data)
        out = []
        for c in self.data.contact[: self.data.ncon]:
            if -c.dist > self.margin and self._counts(int(c.geom1), int(c.geom2), self.ignored):
                out.append((frozenset([int(c.geom1)]), frozenset([int(c.geom2)])))
        return out

    # ------------------------------------------------------------------ selectors
    def resolve(self, selector: str) -> frozenset[int]:
        """Geom ids of a selector: ``"robot"``, ``"gripper"``, a task object, a body (subtree) or a geom name."""
        if selector == ROBOT:
            return self.robot_geoms
        if selector == GRIPPER:
            return self.gripper_geoms
        objects = getattr(self.env, "mujoco_objects", {}) or {}
        if selector in objects:
            return self._subtree_geoms(self._body_id(objects[selector].root_body))
        body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, selector)
        if body >= 0:
            return self._subtree_geoms(body)
        geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, selector)
        if geom >= 0:
            return frozenset([geom])
        raise ValueError(f"unknown collision selector '{selector}' (not robot/gripper, a task object, a body or a geom)")

    def _counts(self, g1: int, g2: int, ignored: list[tuple[frozenset, frozenset]]) -> bool:
        """Whether a contact between two geoms invalidates the configuration."""
        in1, in2 = g1 in self._robot_side, g2 in self._robot_side
        if not (in1 or in2):
            return False  # scene-internal (object on the table)
        if g1 in self.gripper_geoms and g2 in self.gripper_geoms:
            return False  # finger against finger or hand
        if (g1 in self.attached_geoms and in2) or (g2 in self.attached_geoms and in1):
            return False  # a held object touching the robot holding it
        for a, b in ignored:
            if (g1 in a and g2 in b) or (g1 in b and g2 in a):
                return False
        return True

    # ------------------------------------------------------------------ model lookups
    def _subtree_geoms(self, root: int) -> frozenset[int]:
        bodies = {root}
        for b in range(root + 1, self.model.nbody):  # bodies are numbered depth-first
            if int(self.model.body_parentid[b]) in bodies:
                bodies.add(b)
        return frozenset(g for g in range(self.model.ngeom) if int(self.model.geom_bodyid[g]) in bodies)

    def _free_joint_adr(self, body: int) -> int | None:
        adr, num = int(self.model.body_jntadr[body]), int(self.model.body_jntnum[body])
        if num == 1 and self.model.jnt_type[adr] == mujoco.mjtJoint.mjJNT_FREE:
            return int(self.model.jnt_qposadr[adr])
        return None

    def _body_id(self, name: str) -> int:
        body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body < 0:
            raise ValueError(f"no body named '{name}'")
        return body

    def _geom_id(self, name: str) -> int:
        geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if geom < 0:
            raise ValueError(f"no geom named '{name}'")
        return geom

    def _body_name(self, body: int) -> str:
        return mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, body) or f"body{body}"

    def _geom_name(self, geom: int) -> str:
        name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_GEOM, int(geom))
        return name or f"{self._body_name(int(self.model.geom_bodyid[geom]))}/geom{int(geom)}"
