"""Staged table-top tasks on robosuite's modeling API.

A task is a robosuite ``ManipulationEnv`` that also declares its stages (paper
Sec. III-A): each stage has one reference object, a ground-truth termination
condition on simulator state, and the task has a success condition. Everything
else in the stack (demonstrators, data generation, the hybrid executor) only
talks to tasks through :class:`StagedTaskEnv`'s methods.

Fixtures whose pose is randomised (coffee machine, tripod, drawer cabinet, ...)
are mounted on two slide joints and one hinge with a very large armature: they
do not move under contact, yet their pose lives in ``qpos`` and therefore in
the flattened simulator state, so robomimic's ``reset_to(state)`` and our
render-from-state restore whole scenes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
from robosuite.models.arenas import TableArena
from robosuite.models.objects import MujocoObject
from robosuite.models.tasks import ManipulationTask

from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.tasks.contacts import GeomMasks, grasping, near_pairs

FIXTURE_ARMATURE = 1e5
FIXTURE_DAMPING = 1e5
WITHDRAWN_SPHERE_MARGIN = 1e-3  # m; bounding spheres this much beyond the clearance apart need no distance query


@dataclass(frozen=True)
class Stage:
    """One stage of a long-horizon task: a connect segment then a skill segment.

    The skill is expressed in the stage's reference frame: the reference
    object's pose, or, when ``orientation_object`` is set, the reference
    object's position with that object's orientation (for a reference object
    symmetric about its vertical axis lying in a fixture: a pod in a drawer is
    grasped square to the drawer's walls whatever the pod's own yaw).
    """

    name: str
    reference_object: str
    description: str
    orientation_object: str | None = None

    @property
    def frame_objects(self) -> tuple[str, ...]:
        """The objects whose poses make the reference frame."""
        return (self.reference_object,) + ((self.orientation_object,) if self.orientation_object else ())

    def reference_frame(self, poses: Mapping[str, np.ndarray]) -> np.ndarray:
        """The reference frame (4x4) from world poses of the objects by name."""
        frame = np.array(poses[self.reference_object], dtype=float)
        if self.orientation_object is not None:
            frame[:3, :3] = poses[self.orientation_object][:3, :3]
        return frame


def fixture_joints(name: str) -> list[dict]:
    """Joint specs (x, y slides and a z hinge) that let a fixture be placed per episode but not pushed."""
    common = {"armature": str(FIXTURE_ARMATURE), "damping": str(FIXTURE_DAMPING), "limited": "false"}
    return [
        {"name": f"{name}_x", "type": "slide", "axis": "1 0 0", **common},
        {"name": f"{name}_y", "type": "slide", "axis": "0 1 0", **common},
        {"name": f"{name}_yaw", "type": "hinge", "axis": "0 0 1", **common},
    ]


class StagedTask:
    """Mixin declaring a task's stages, privileged objects and ground-truth conditions.

    Used by :class:`StagedTaskEnv` (tasks built here) and by tasks that extend a
    stock robosuite environment (Nut Assembly). Subclasses set ``STAGES`` and
    ``OBJECTS`` and implement :meth:`stage_done` (and ``_check_success`` unless the
    robosuite environment they extend has it).
    """

    STAGES: tuple[Stage, ...] = ()
    OBJECTS: tuple[str, ...] = ()  # privileged objects, in observation order
    OBJECT_BODIES: dict[str, str] = {}  # objects that are plain bodies of the arena (name -> body name)
    RELEASE_CLEARANCE = 0.02  # m between the gripper and a placed object before its stage ends (withdrawn)
    mujoco_objects: dict[str, MujocoObject]

    def stage_done(self, stage: int) -> bool:
        """Ground-truth termination of ``stage`` on the current simulator state.

        The last stage terminates exactly when the task succeeds, so an episode
        whose every stage terminated is a solved episode (a later stage may undo
        an earlier one, e.g. knock the mug off the tray). Earlier stages use
        :meth:`stage_condition`.
        """
        if not 0 <= stage < len(self.STAGES):
            raise IndexError(f"stage {stage} out of range (0..{len(self.STAGES) - 1})")
        if stage == len(self.STAGES) - 1:
            return bool(self._check_success())
        return bool(self.stage_condition(stage))

    def stage_condition(self, stage: int) -> bool:
        """Termination condition of a stage before the last one.

        A stage that places a held object ends only once the hand has let go of
        it and withdrawn (:meth:`withdrawn`): the next connect motion must
        neither carry the object away nor start wedged against it.
        """
        raise NotImplementedError

    def grasped(self, name: str) -> bool:
        """Both finger pads touch object ``name``: robosuite's ``_check_grasp`` on precomputed geom masks."""
        masks, data = self.geom_masks(), self.sim.data._data
        obj = masks.get(f"object:{name}", lambda: self.mujoco_objects[name].contact_geoms)
        return any(grasping(data, self._pad_masks(arm, gripper), obj) for arm, gripper in self.robots[0].gripper.items())

    def released(self, name: str) -> bool:
        """The gripper no longer holds object ``name`` (at most one finger pad touches it)."""
        return not self.grasped(name)

    def withdrawn(self, name: str, clearance: float | None = None) -> bool:
        """Every gripper geom is at least ``clearance`` (default ``RELEASE_CLEARANCE``) from object ``name``.

        ``mj_geomDistance`` decides each pair, except pairs whose bounding spheres are
        ``WITHDRAWN_SPHERE_MARGIN`` farther apart than ``clearance``: their distance
        is at least that, far beyond the error of MuJoCo's native distance queries, so
        such a pair passes either way and the answer is the same. (Under the legacy
        collision pipeline, whose distances are inexact, every pair is measured.)
        """
        import mujoco

        clearance = self.RELEASE_CLEARANCE if clearance is None else clearance
        model, data, masks = self.sim.model._model, self.sim.data._data, self.geom_masks()
        gripper = self._model_cached(("geoms", "gripper:right"), lambda: np.flatnonzero(
            masks.get("gripper:right", lambda: self.robots[0].gripper["right"].contact_geoms)))
        obj = self._model_cached(("geoms", f"object:{name}"), lambda: np.flatnonzero(
            masks.get(f"object:{name}", lambda: self.mujoco_objects[name].contact_geoms)))
        limit = np.inf if model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_NATIVECCD else clearance + WITHDRAWN_SPHERE_MARGIN
        near = near_pairs(data.geom_xpos, model.geom_rbound, gripper, obj, limit)
        return all(mujoco.mj_geomDistance(model, data, int(g), int(o), clearance, None) >= clearance for g, o in near)

    def geom_masks(self) -> GeomMasks:
        """Geom-id masks of the gripper's and the objects' geom groups, rebuilt only with the MuJoCo model."""
        masks = getattr(self, "_geom_masks", None)
        if masks is None or masks.model is not self.sim.model._model:
            masks = self._geom_masks = GeomMasks(self.sim)
        return masks

    def _model_cached(self, key, compute):
        """``compute()`` for ``key`` once per MuJoCo model (ids and addresses looked up by name)."""
        cache = getattr(self, "_model_cache", None)
        if cache is None or cache[0] is not self.sim.model._model:
            cache = self._model_cache = (self.sim.model._model, {})
        value = cache[1].get(key)
        if value is None:
            value = cache[1][key] = compute()
        return value

    def joint_qpos(self, joint: str) -> float:
        """Position of a hinge or slide joint, by name."""
        return float(self.sim.data.qpos[self._model_cached(("joint", joint), lambda: self.sim.model.get_joint_qpos_addr(joint))])

    def body_frame(self, body: str) -> np.ndarray:
        """World pose (4x4) of a MuJoCo body, by name."""
        bid = self._model_cached(("body", body), lambda: self.sim.model.body_name2id(body))
        return make_pose(self.sim.data.body_xpos[bid], self.sim.data.body_xmat[bid].reshape(3, 3))

    def _pad_masks(self, arm: str, gripper) -> tuple[np.ndarray, np.ndarray]:
        """Masks of ``gripper``'s left and right finger-pad geoms (robosuite's grasp groups)."""
        masks = self.geom_masks()
        return tuple(masks.get(f"{arm}:{pad}", lambda pad=pad: gripper.important_geoms[pad]) for pad in ("left_fingerpad", "right_fingerpad"))

    # Task success is robosuite's own ``_check_success``: tasks built here define it,
    # tasks built on a stock robosuite environment inherit it from that environment.

    # ------------------------------------------------------------------ poses
    def object_pose(self, name: str) -> np.ndarray:
        """World pose (4x4) of a named object's root body; override for special frames."""
        root = self._model_cached(("object root", name), lambda: self.OBJECT_BODIES.get(name) or self.mujoco_objects[name].root_body)
        return self.body_frame(root)

    def object_poses(self) -> dict[str, np.ndarray]:
        """World poses of all privileged objects."""
        return {name: self.object_pose(name) for name in self.OBJECTS}

    def eef_pose(self) -> np.ndarray:
        """World pose of the gripper's grip site (the frame OSC_POSE controls)."""
        site = self.robots[0].eef_site_id["right"]
        return make_pose(self.sim.data.site_xpos[site], self.sim.data.site_xmat[site].reshape(3, 3))

    # ------------------------------------------------------------------ placement helpers
    def sample_range(self, key: str, default=(0.0, 0.0)) -> float:
        """Uniform sample from ``self.placement[key]`` (a [low, high] pair)."""
        low, high = self.placement.get(key, default)
        return float(self.rng.uniform(low, high))

    def set_free_pose(self, name: str, pos, quat_wxyz) -> None:
        """Place a free-jointed object (robosuite qpos quaternions are w, x, y, z)."""
        joint = self.mujoco_objects[name].joints[0]
        self.sim.data.set_joint_qpos(joint, np.concatenate([np.asarray(pos, float), np.asarray(quat_wxyz, float)]))

    def set_fixture_pose(self, name: str, x: float, y: float, yaw: float) -> None:
        """Place a fixture built with :func:`fixture_joints` (offsets from its model position)."""
        prefix = self.mujoco_objects[name].naming_prefix
        model_joints = set(self.sim.model.joint_names)
        for suffix, value in (("x", x), ("y", y), ("yaw", yaw)):
            # robosuite prefixes joint names unless they already start with the object's prefix
            joint = next(j for j in (f"{prefix}{name}_{suffix}", f"{name}_{suffix}") if j in model_joints)
            self.sim.data.set_joint_qpos(joint, value)
            self.sim.data.set_joint_qvel(joint, 0.0)

    @staticmethod
    def yaw_quat_wxyz(yaw: float) -> np.ndarray:
        """(w, x, y, z) quaternion of a rotation about world z."""
        return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class StagedTaskEnv(StagedTask, ManipulationEnv):
    """Single-arm table-top environment built on robosuite's modeling API.

    Subclasses implement :meth:`_build_objects` and :meth:`_place_objects` besides
    the :class:`StagedTask` hooks. ``placement`` holds the per-episode
    initialisation ranges (from the task's YAML).
    """

    def __init__(
        self,
        robots="Panda",
        placement: dict | None = None,
        table_full_size=(0.8, 0.8, 0.05),
        table_friction=(1.0, 5e-3, 1e-4),
        **kwargs,
    ):
        self.placement = dict(placement or {})
        self.table_full_size = table_full_size
        self.table_friction = table_friction
        self.table_offset = np.array((0.0, 0.0, 0.8))
        self.mujoco_objects = {}
        kwargs.setdefault("use_camera_obs", False)
        super().__init__(robots=robots, **kwargs)

    def _build_objects(self) -> dict[str, MujocoObject]:
        """Create the scene's objects (free and fixtures), keyed by name."""
        raise NotImplementedError

    def _place_objects(self) -> None:
        """Sample this episode's object and fixture poses (use ``self.rng``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ robosuite plumbing
    def _load_model(self):
        super()._load_model()
        xpos = self.robots[0].robot_model.base_xpos_offset["table"](self.table_full_size[0])
        self.robots[0].robot_model.set_base_xpos(xpos)
        arena = TableArena(
            table_full_size=self.table_full_size,
            table_friction=self.table_friction,
            table_offset=self.table_offset,
        )
        arena.set_origin([0, 0, 0])
        self.mujoco_objects = self._build_objects()
        self.model = ManipulationTask(
            mujoco_arena=arena,
            mujoco_robots=[robot.robot_model for robot in self.robots],
            mujoco_objects=list(self.mujoco_objects.values()),
        )

    def _reset_internal(self):
        super()._reset_internal()
        if not self.deterministic_reset:
            self._place_objects()
            self.sim.forward()

    def reward(self, action=None) -> float:
        """Sparse task-success reward."""
        return float(self._check_success())
