"""The object-centric transform of skill segments (ReinforceGen Sec. III-B).

A source skill segment is stored as the controller targets it commanded
(eef pose advanced by each delta-pose action) plus its gripper actions. In a
new scene the targets are re-expressed relative to the stage's reference
object, ``T_W^{A'} = T_W^{R'} (T_W^{R})^{-1} T_W^{A}``, and so is the skill's
initiation pose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reinforcegen_ros.datagen.segmentation import StageSegment, segment_episode
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.geometry import make_pose, pose_distance, pose_inv, rot_from_rotvec, rot_z, transform_relative
from reinforcegen_ros.tasks.base import Stage

SOURCE_STRATEGIES = ("random", "nearest")


@dataclass
class SkillSource:
    """One stage's skill segment of one source demo, ready to be transformed."""

    demo: int
    stage: int
    reference_pose: np.ndarray  # (4, 4) the stage's reference frame at the skill's first step
    initiation_pose: np.ndarray  # (4, 4) eef pose at the skill's first step
    targets: np.ndarray  # (T, 4, 4) commanded eef targets
    gripper: np.ndarray  # (T,) gripper actions
    held_in_hand: np.ndarray | None = None  # (4, 4) held object in the eef frame at the skill's first step
    handover: np.ndarray | None = None  # (4, 4) the next stage's held object in the eef frame at the segment's end

    def grasp_corrected(
        self, init: np.ndarray, targets: np.ndarray, held_in_hand_now: np.ndarray, position_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move the eef so the *held object* follows the source trajectory despite another grasp.

        With H the held object's pose in the eef frame, right-multiplying every eef
        target by ``H_src @ inv(H_now)`` puts the object exactly where the
        transformed source had it. For objects symmetric about their axis (a pod, a
        mug) the in-hand yaw is arbitrary, so ``position_only`` corrects only the
        object's position (a translation ``p_src - p_now`` in the eef frame).
        Only the targets while the object is held are corrected: from the first
        open-gripper command on (the object let go, e.g. before the lid of the
        coffee machine is swept shut) the skill follows the source's own targets.
        """
        if position_only:
            correction = make_pose(self.held_in_hand[:3, 3] - held_in_hand_now[:3, 3], np.eye(3))
        else:
            correction = self.held_in_hand @ pose_inv(held_in_hand_now)
        opened = np.flatnonzero(self.gripper[: len(targets)] < 0)
        held = int(opened[0]) if opened.size else len(targets)
        corrected = np.array(targets, copy=True)
        corrected[:held] = targets[:held] @ correction
        return init @ correction, corrected

    def transformed(self, reference_now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(initiation pose, targets) re-expressed relative to the reference object's current pose."""
        init = transform_relative(self.initiation_pose, self.reference_pose, reference_now)
        return init, transform_relative(self.targets, self.reference_pose, reference_now)


def commanded_targets(eef_pose: np.ndarray, actions: np.ndarray, max_pos: float = 0.05, max_rot: float = 0.5) -> np.ndarray:
    """Targets the OSC_POSE controller was asked to reach: eef pose advanced by each world-frame delta."""
    out = np.empty_like(eef_pose)
    for t, (pose, a) in enumerate(zip(eef_pose, actions)):
        out[t] = make_pose(pose[:3, 3] + a[:3] * max_pos, rot_from_rotvec(a[3:6] * max_rot) @ pose[:3, :3])
    return out


def skill_source(
    ep: Episode, demo: int, seg: StageSegment, stage: Stage, held_object: str | None = None, next_held: str | None = None
) -> SkillSource:
    """Extract the skill segment of ``seg`` from a source episode, with the grasps of the held objects.

    ``held_object`` is carried during this skill (its grasp at the skill's first
    step is recorded); ``next_held`` is carried by the next stage (its grasp at
    this segment's last step is recorded, to foresee the next stage's correction).
    """
    sl = seg.skill
    held = handover = None
    if held_object is not None:
        held = pose_inv(ep.eef_pose[seg.skill_start]) @ ep.object_poses[held_object][seg.skill_start]
    if next_held is not None:
        handover = pose_inv(ep.eef_pose[seg.end - 1]) @ ep.object_poses[next_held][seg.end - 1]
    return SkillSource(
        demo=demo,
        stage=seg.stage,
        reference_pose=stage.reference_frame({name: poses[seg.skill_start] for name, poses in ep.object_poses.items()}),
        initiation_pose=ep.eef_pose[seg.skill_start],
        targets=commanded_targets(ep.eef_pose[sl], ep.actions[sl]),
        gripper=ep.actions[sl, 6].copy(),
        held_in_hand=held,
        handover=handover,
    )


def skill_sources(episodes, stages: Sequence[Stage], held_objects: dict | None = None) -> list[list[SkillSource]]:
    """Every stage's skill segments of the annotated ``episodes`` (``held_objects``: stage -> object held during it)."""
    held_objects = held_objects or {}
    sources: list[list[SkillSource]] = [[] for _ in stages]
    for i, ep in enumerate(episodes):
        for seg in segment_episode(ep, len(stages)):
            k = seg.stage
            sources[k].append(skill_source(ep, i, seg, stages[k], held_objects.get(k), held_objects.get(k + 1)))
    return sources


def candidate_sources(sources: list[SkillSource], reference_now: np.ndarray, strategy: str, nearest_k: int = 3) -> list[SkillSource]:
    """The segments a selection draws from: all of them (random), or the ``nearest_k`` closest reference poses."""
    if strategy == "random":
        return list(sources)
    if strategy == "nearest":
        dists = np.array([pose_distance(s.reference_pose, reference_now) for s in sources])
        return [sources[int(i)] for i in np.argsort(dists, kind="stable")[: max(1, nearest_k)]]
    raise ValueError(f"unknown source selection strategy '{strategy}'; choose one of {', '.join(SOURCE_STRATEGIES)}")


def choose_source(sources: list[SkillSource], reference_now: np.ndarray, strategy: str, rng: np.random.Generator, nearest_k: int = 3) -> SkillSource:
    """Pick a source segment uniformly among :func:`candidate_sources`."""
    pool = candidate_sources(sources, reference_now, strategy, nearest_k)
    return pool[int(rng.integers(len(pool)))]


class SkillAdapter:
    """Chooses a source skill for a stage and re-expresses it in the live scene (data generation's procedure).

    Adapting a source takes up to three steps: the object-centric transform
    (:meth:`SkillSource.transformed`); for stages that carry an object
    (``held_objects``), the correction for the grasp achieved in this scene
    (:meth:`SkillSource.grasp_corrected`); for ``symmetric_stages`` (grasps the
    parallel gripper can make turned 180 deg about its axis), the variant with
    the better reach: its own initiation pose and, when the next stage carries
    what this one grasps, the next stage's grasp-corrected initiation poses
    must have IK solutions, as far from the joint limits as possible.
    :meth:`choose` draws among the candidate sources whose adapted initiation
    pose is reachable and returns the drawn one adapted. The generator and the source-replay agent both use it,
    so the replay agent re-enacts generation.
    """

    def __init__(self, env, kinematics, sources: list[list[SkillSource]], config):
        self.env, self.kinematics, self.sources, self.config = env, kinematics, sources, config

    def choose(self, stage: int, rng: np.random.Generator) -> tuple[SkillSource, np.ndarray, np.ndarray]:
        """(source, initiation pose, skill targets): a candidate for ``stage`` drawn uniformly among the reachable ones
        (all, if none is), adapted to the current scene."""
        cfg = self.config
        pool = candidate_sources(self.sources[stage], self.env.reference_pose(stage), cfg.source_strategy, cfg.nearest_k)
        adapted = [(s, *self(stage, s)) for s in pool]
        reachable = [a for a in adapted if self._margin(a[1]) > -np.inf] if len(adapted) > 1 else adapted
        adapted = reachable or adapted
        return adapted[int(rng.integers(len(adapted)))]

    def __call__(self, stage: int, source: SkillSource) -> tuple[np.ndarray, np.ndarray]:
        """(initiation pose, skill targets) of ``source`` for ``stage`` in the current scene."""
        held = self.config.held_objects.get(stage)
        in_hand = None
        if held is not None and source.held_in_hand is not None:
            in_hand = pose_inv(self.env.eef_pose()) @ self.env.object_poses()[held]
        init, targets = self._adapted(stage, source, in_hand)
        if stage not in self.config.symmetric_stages:
            return init, targets
        turn = make_pose(np.zeros(3), rot_z(np.pi))
        variants = [(init, targets, np.eye(4)), (init @ turn, targets @ turn, turn)]
        best = max(variants, key=lambda v: self._reach_score(stage, source, v[0], v[2]))
        return best[0], best[1]

    def _adapted(self, stage: int, source: SkillSource, in_hand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Transformed to the live reference pose, grasp-corrected when ``in_hand`` (held object in the eef frame) is given."""
        init, targets = source.transformed(self.env.reference_pose(stage))
        if in_hand is None:
            return init, targets
        held = self.config.held_objects[stage]
        return source.grasp_corrected(init, targets, in_hand, held in self.config.symmetric_objects)

    def _reach_score(self, stage: int, source: SkillSource, init: np.ndarray, turn: np.ndarray) -> tuple[int, float]:
        """(reachable initiation poses, smallest joint-limit margin among them) of a grasp variant and the stage after it.

        The next stage's poses are solved from this variant's own IK solution
        with the joint limits relaxed: the arm moves on continuously from the
        grasp (the task-space controller does not jump to another IK branch),
        so a pose whose solution on that branch lies beyond a limit counts as
        unreachable.
        """
        after = stage + 1
        nexts = []
        if source.handover is not None and self.config.held_objects.get(after) is not None and after < len(self.sources):
            in_hand = pose_inv(turn) @ source.handover  # the grasp this variant leaves the next stage
            pool = candidate_sources(self.sources[after], self.env.reference_pose(after), self.config.source_strategy, self.config.nearest_k)
            nexts = [self._adapted(after, nxt, in_hand)[0] for nxt in pool if nxt.held_in_hand is not None]
        best = (0, -np.inf)
        for seed in self.kinematics.wrist_turns(self.kinematics.current_joints()):  # either way round of the wrist
            margin, q = self._solve(init, seed)
            if q is None:
                continue
            margins = [margin] + [self._solve(pose, q, slack=np.pi)[0] for pose in nexts]
            reachable = [m for m in margins if m >= 0.0]
            best = max(best, (len(reachable), min(reachable, default=-np.inf)))
        return best

    def _margin(self, pose: np.ndarray) -> float:
        """Smallest distance to a joint limit of an IK solution for ``pose`` (-inf when IK fails)."""
        return self._solve(pose)[0]

    def _solve(self, pose: np.ndarray, seed: np.ndarray | None = None, slack: float = 0.0) -> tuple[float, np.ndarray | None]:
        """(joint-limit margin, IK solution) for ``pose`` from ``seed`` (default: the current joints); (-inf, None) when IK fails.

        With ``slack`` the solution may exceed the limits; its margin is then negative.
        """
        kin = self.kinematics
        q = kin.inverse(pose, kin.current_joints() if seed is None else seed, slack=slack)
        if q is None:
            return -np.inf, None
        return float(np.min(np.minimum(q - kin.lower, kin.upper - q))), q



