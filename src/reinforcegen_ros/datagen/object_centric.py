"""The object-centric transform of skill segments (ReinforceGen Sec. III-B).

A source skill segment is stored as the controller targets it commanded
(eef pose advanced by each delta-pose action) plus its gripper actions. In a
new scene the targets are re-expressed relative to the stage's reference
object, ``T_W^{A'} = T_W^{R'} (T_W^{R})^{-1} T_W^{A}``, and so is the skill's
initiation pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reinforcegen_ros.datagen.segmentation import StageSegment
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.geometry import make_pose, pose_distance, pose_inv, rot_from_rotvec, transform_relative

SOURCE_STRATEGIES = ("random", "nearest")


@dataclass
class SkillSource:
    """One stage's skill segment of one source demo, ready to be transformed."""

    demo: int
    stage: int
    reference_pose: np.ndarray  # (4, 4) reference object at the skill's first step
    initiation_pose: np.ndarray  # (4, 4) eef pose at the skill's first step
    targets: np.ndarray  # (T, 4, 4) commanded eef targets
    gripper: np.ndarray  # (T,) gripper actions
    held_in_hand: np.ndarray | None = None  # (4, 4) held object in the eef frame at the skill's first step

    def grasp_corrected(
        self, init: np.ndarray, targets: np.ndarray, held_in_hand_now: np.ndarray, position_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move the eef so the *held object* follows the source trajectory despite another grasp.

        With H the held object's pose in the eef frame, right-multiplying every eef
        target by ``H_src @ inv(H_now)`` puts the object exactly where the
        transformed source had it. For objects symmetric about their axis (a pod, a
        mug) the in-hand yaw is arbitrary, so ``position_only`` corrects only the
        object's position (a translation ``p_src - p_now`` in the eef frame).
        """
        if position_only:
            correction = make_pose(self.held_in_hand[:3, 3] - held_in_hand_now[:3, 3], np.eye(3))
        else:
            correction = self.held_in_hand @ pose_inv(held_in_hand_now)
        return init @ correction, targets @ correction

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


def skill_source(ep: Episode, demo: int, seg: StageSegment, reference_object: str, held_object: str | None = None) -> SkillSource:
    """Extract the skill segment of ``seg`` from a source episode (and the held object's grasp, if any)."""
    sl = seg.skill
    held = None
    if held_object is not None:
        held = pose_inv(ep.eef_pose[seg.skill_start]) @ ep.object_poses[held_object][seg.skill_start]
    return SkillSource(
        demo=demo,
        stage=seg.stage,
        reference_pose=ep.object_poses[reference_object][seg.skill_start],
        initiation_pose=ep.eef_pose[seg.skill_start],
        targets=commanded_targets(ep.eef_pose[sl], ep.actions[sl]),
        gripper=ep.actions[sl, 6].copy(),
        held_in_hand=held,
    )


def choose_source(sources: list[SkillSource], reference_now: np.ndarray, strategy: str, rng: np.random.Generator, nearest_k: int = 3) -> SkillSource:
    """Pick a source segment: uniformly at random, or among the ``nearest_k`` closest reference poses."""
    if strategy == "random":
        return sources[int(rng.integers(len(sources)))]
    if strategy == "nearest":
        dists = np.array([pose_distance(s.reference_pose, reference_now) for s in sources])
        pool = np.argsort(dists)[: max(1, nearest_k)]
        return sources[int(rng.choice(pool))]
    raise ValueError(f"unknown source selection strategy '{strategy}'; choose one of {', '.join(SOURCE_STRATEGIES)}")
