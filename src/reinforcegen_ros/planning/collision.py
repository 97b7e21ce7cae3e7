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
Further pairs can be ignored, permanently (``ignore`` at construction) or per
query (a mask from :meth:`pair_mask`), e.g. ``("gripper", "pod")`` while
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
        return f"{self.geom1} <-> {self.geom2} ({1000 * self.depth:.1f} mm deep)"


class CollisionChecker:
    """Robot-vs-scene collision queries for arm joint configurations.

    ``margin`` is the penetration depth (m) tolerated before a contact counts;
    ``ignore`` is an iterable of selector pairs (see :meth:`resolve`) whose
    mutual contacts never count; ``attach_held`` attaches the objects held at
    :meth:`sync`.
    """

    def __init__(self, env, margin: float = 0.002, ignore: Iterable[tuple] = (), attach_held: bool = True):
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
        self.ignore_mask = self.pair_mask(ignore)
        self.base_qpos = np.array(self.sim.data.qpos)
        self.attached: dict[int, np.ndarray] = {}  # free-joint qpos address -> object pose in the grip-site frame
        self.attached_geoms: frozenset[int] = frozenset()
        self.sync()

    # ------------------------------------------------------------------ scene
    def sync(self) -> None:
        """Snapshot the live scene and (re)detect held objects."""
        self.base_qpos = np.array(self.sim.data.qpos)
        self.attached, self.attached_geoms = {}, frozenset()
        self._update_allowed()
        if self.attach_held:
            for body in self.held_bodies():
                self.attach(body)

    def held_bodies(self) -> list[int]:
        """Root bodies with a free joint that both fingers touch (live positions)."""
        self.data.qpos[:] = self.base_qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_collision(self.model, self.data)
        n = self.data.ncon
        pairs = self.data.contact.geom[:n]
        touched = []
        for finger in self.finger_geoms:
            bodies = {int(self.model.geom_bodyid[b]) for a, b in pairs if a in finger}
            bodies |= {int(self.model.geom_bodyid[a]) for a, b in pairs if b in finger}
            touched.append({int(self.model.body_rootid[body]) for body in bodies})
        return sorted(b for b in touched[0] & touched[1] if self._free_joint_adr(b) is not None)

    def attach(self, body: int | str) -> None:
        """Make a free-jointed body follow the grip site, keeping its current relative pose."""
        body_id = self._body_id(body) if isinstance(body, str) else int(body)
        adr = self._free_joint_adr(body_id)
        if adr is None:
            raise ValueError(f"body '{self._body_name(body_id)}' has no free joint and cannot be attached")
        self.data.qpos[:] = self.base_qpos
        mujoco.mj_kinematics(self.model, self.data)
        obj = make_pose(self.data.xpos[body_id], self.data.xmat[body_id].reshape(3, 3))
        self.attached[adr] = pose_inv(self._site_pose()) @ obj
        self.attached_geoms = self.attached_geoms | self._subtree_geoms(body_id)
        self._update_allowed()

    def attached_names(self) -> list[str]:
        """Names of the attached bodies."""
        adrs = set(self.attached)
        return [self._body_name(b) for b in range(self.model.nbody) if self._free_joint_adr(b) in adrs]

    # ------------------------------------------------------------------ queries
    def set_joints(self, joints: np.ndarray) -> np.ndarray:
        """Place the arm (and attached objects) at ``joints``; return the grip-site pose."""
        self.data.qpos[:] = self.base_qpos
        self.data.qpos[self.qpos_idx] = joints
        mujoco.mj_kinematics(self.model, self.data)
        site = self._site_pose()
        if self.attached:
            for adr, rel in self.attached.items():
                pose = site @ rel
                x, y, z, w = mat_to_quat(pose[:3, :3])
                self.data.qpos[adr : adr + 7] = (*pose[:3, 3], w, x, y, z)
            mujoco.mj_kinematics(self.model, self.data)
        return site

    def colliding(self, extra_ignore: np.ndarray | None = None) -> bool:
        """Whether the configuration last set with :meth:`set_joints` has an invalidating contact."""
        return bool(np.any(self._invalid(extra_ignore)))

    def current_contacts(self, extra_ignore: np.ndarray | None = None) -> list[Contact]:
        """Invalidating contacts of the configuration last set with :meth:`set_joints`, deepest first."""
        bad = self._invalid(extra_ignore)
        con = self.data.contact
        found = [Contact(self._geom_name(con.geom[k, 0]), self._geom_name(con.geom[k, 1]), float(-con.dist[k])) for k in np.flatnonzero(bad)]
        return sorted(found, key=lambda c: -c.depth)

    def contacts(self, joints: np.ndarray, extra_ignore: np.ndarray | None = None) -> list[Contact]:
        """Invalidating contacts at ``joints``, deepest first."""
        self.set_joints(joints)
        return self.current_contacts(extra_ignore)

    def in_collision(self, joints: np.ndarray, extra_ignore: np.ndarray | None = None) -> bool:
        """Whether any invalidating contact exists at ``joints``."""
        self.set_joints(joints)
        return self.colliding(extra_ignore)

    def contact_mask(self, joints: np.ndarray) -> np.ndarray:
        """Ignore mask of the geom pairs in invalidating contact at ``joints`` (to tolerate them later)."""
        self.set_joints(joints)
        bad = self._invalid(None)
        mask = np.zeros_like(self.ignore_mask)
        for a, b in self.data.contact.geom[: self.data.ncon][bad]:
            mask[a, b] = mask[b, a] = True
        return mask

    def _invalid(self, extra_ignore: np.ndarray | None) -> np.ndarray:
        """Per-contact flags: penetrating beyond the margin and not allowed."""
        mujoco.mj_collision(self.model, self.data)
        n = self.data.ncon
        if n == 0:
            return np.zeros(0, dtype=bool)
        g = self.data.contact.geom[:n]
        bad = (self.data.contact.dist[:n] < -self.margin) & ~self._allowed[g[:, 0], g[:, 1]]
        if extra_ignore is not None:
            bad &= ~extra_ignore[g[:, 0], g[:, 1]]
        return bad

    # ------------------------------------------------------------------ pair masks
    def pair_mask(self, pairs: Iterable[tuple]) -> np.ndarray:
        """Symmetric (ngeom, ngeom) mask of the geom pairs between each selector pair."""
        mask = np.zeros((self.model.ngeom, self.model.ngeom), dtype=bool)
        for a, b in pairs:
            ia, ib = self._geom_index(a), self._geom_index(b)
            mask[np.ix_(ia, ib)] = True
            mask[np.ix_(ib, ia)] = True
        return mask

    def resolve(self, selector: str) -> frozenset[int]:
        """Geom ids of a selector: ``"robot"``, ``"gripper"``, a task object, a body (its subtree) or a geom name."""
        if selector == ROBOT:
            return self.robot_geoms
        if selector == GRIPPER:
            return self.gripper_geoms
        objects = getattr(self.env, "mujoco_objects", None) or {}
        if selector in objects:
            return self._subtree_geoms(self._body_id(objects[selector].root_body))
        selector = getattr(self.env, "OBJECT_BODIES", {}).get(selector, selector)  # task objects that are arena bodies
        body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, selector)
        if body >= 0:
            return self._subtree_geoms(body)
        geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, selector)
        if geom >= 0:
            return frozenset([geom])
        raise ValueError(f"unknown collision selector '{selector}' (not robot/gripper, a task object, a body or a geom)")

    def _geom_index(self, selector) -> np.ndarray:
        ids = self.resolve(selector) if isinstance(selector, str) else selector
        return np.array(sorted(int(g) for g in ids), dtype=int)

    def _update_allowed(self) -> None:
        """Pairs that never count: scene-internal, inside the gripper, held object vs robot, ignored."""
        n = self.model.ngeom
        robot_side = np.zeros(n, dtype=bool)
        robot_side[list(self.robot_geoms | self.attached_geoms)] = True
        gripper = np.zeros(n, dtype=bool)
        gripper[list(self.gripper_geoms)] = True
        attached = np.zeros(n, dtype=bool)
        attached[list(self.attached_geoms)] = True
        allowed = ~(robot_side[:, None] | robot_side[None, :])
        allowed |= gripper[:, None] & gripper[None, :]
        allowed |= (attached[:, None] & robot_side[None, :]) | (robot_side[:, None] & attached[None, :])
        self._allowed = allowed | self.ignore_mask

    # ------------------------------------------------------------------ model lookups
    def _site_pose(self) -> np.ndarray:
        return make_pose(self.data.site_xpos[self.site_id], self.data.site_xmat[self.site_id].reshape(3, 3))

    def _subtree_geoms(self, root: int) -> frozenset[int]:
        bodies = {root}
        for b in range(root + 1, self.model.nbody):  # a body's parent always has a smaller id
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
        return mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, int(body)) or f"body{int(body)}"

    def _geom_name(self, geom: int) -> str:
        name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_GEOM, int(geom))
        return name or f"{self._body_name(int(self.model.geom_bodyid[geom]))}/geom{int(geom)}"
