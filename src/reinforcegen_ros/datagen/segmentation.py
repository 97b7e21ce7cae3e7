"""Split source demos into stages, and each stage into a connect and a skill segment.

Scripted demos carry their boundaries (``datagen_info/stage`` and
``datagen_info/phase``). Imported demos without phases are annotated by
:func:`annotate_phases`: a stage's skill segment starts at the first step where
the grip site comes within ``skill_radius`` of the stage's reference object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reinforcegen_ros.demos.episode import CONNECT, SKILL, Episode, initiation_poses_from_phases


class SegmentationError(ValueError):
    """A demo's stage/phase annotations are missing or inconsistent."""


@dataclass(frozen=True)
class StageSegment:
    """Step ranges of one stage of one demo: ``[start, skill_start)`` connect, ``[skill_start, end)`` skill."""

    stage: int
    start: int
    skill_start: int
    end: int

    @property
    def skill(self) -> slice:
        return slice(self.skill_start, self.end)


def segment_episode(ep: Episode, num_stages: int) -> list[StageSegment]:
    """Stage segments of an annotated episode; raises :class:`SegmentationError` if inconsistent."""
    check_annotations(ep, num_stages)
    segments = []
    for k in range(num_stages):
        idx = np.flatnonzero(ep.stage == k)
        skill = idx[ep.phase[idx] == SKILL]
        segments.append(StageSegment(k, int(idx[0]), int(skill[0]), int(idx[-1]) + 1))
    return segments


def check_annotations(ep: Episode, num_stages: int) -> None:
    """Raise :class:`SegmentationError` unless stages run 0..K-1 in order, each with connect then skill steps."""
    if np.any(np.diff(ep.stage) < 0) or np.any(np.diff(ep.stage) > 1):
        raise SegmentationError("stage labels must increase by one at a time")
    present = sorted(set(ep.stage.tolist()))
    if present != list(range(num_stages)):
        raise SegmentationError(f"stages {present} found, expected 0..{num_stages - 1}")
    if np.any(ep.phase < 0):
        raise SegmentationError("phases are not annotated (run 'reinforcegen demos annotate')")
    for k in range(num_stages):
        phases = ep.phase[ep.stage == k]
        if not np.any(phases == SKILL):
            raise SegmentationError(f"stage {k} has no skill segment")
        if np.any(np.diff(phases) < 0):
            raise SegmentationError(f"stage {k}: a connect step follows a skill step")


def annotate_phases(ep: Episode, reference_objects: list[str], skill_radius: list[float]) -> Episode:
    """Label connect/skill phases by grip-site distance to each stage's reference object."""
    phase = np.full(len(ep), CONNECT, dtype=np.int64)
    for k, (obj, radius) in enumerate(zip(reference_objects, skill_radius)):
        idx = np.flatnonzero(ep.stage == k)
        if idx.size == 0:
            continue
        dist = np.linalg.norm(ep.eef_pose[idx, :3, 3] - ep.object_poses[obj][idx, :3, 3], axis=1)
        near = np.flatnonzero(dist < radius)
        start = near[0] if near.size else max(0, idx.size - 1)
        start = min(max(start, 1), idx.size - 1) if idx.size > 1 else 0
        phase[idx[start:]] = SKILL
    ep.phase = phase
    ep.initiation_pose = initiation_poses_from_phases(ep.stage, phase, ep.eef_pose)
    return ep
