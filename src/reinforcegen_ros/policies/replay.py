"""An oracle agent that replays source skills as data generation does (an upper bound and a test double).

:class:`SourceReplayAgent` implements the agent interface without learning.
For each stage it picks a source skill segment and re-expresses it in the live
scene with the generator's own
:class:`~reinforcegen_ros.datagen.object_centric.SkillAdapter` (seeded choice
among reachable candidates, object-centric transform, held-object grasp
correction, the better-reaching turn of symmetric grasps). Its initiation pose follows the reference object while the arm
connects; at the skill's first step the adapted targets are re-expressed
relative to the reference object's pose then, and replayed through the same
delta-pose action as data generation, holding the last gripper command once
they run out. The connect motion holds the gripper command the skill starts
with, and termination is the ground-truth stage condition. Through the hybrid
executor it re-enacts data generation, so its success rate bounds what a
learned agent can reach from the same source demos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from reinforcegen_ros.datagen.object_centric import SkillAdapter, SkillSource, skill_sources
from reinforcegen_ros.geometry import delta_pose_action, pose_from_pos_quat, pose_inv
from reinforcegen_ros.policies.teacher import reference_frame_from_obs
from reinforcegen_ros.tasks.base import Stage


class SourceReplayAgent:
    """Generation's source choice and skill adaptation, replayed, with ground-truth termination."""

    obs_mode = "privileged"

    def __init__(self, task: str, adapter: SkillAdapter, stages: Sequence[Stage], objects: Sequence[str], oracle: Callable[[int], bool], seed: int = 0):
        self.task, self.adapter, self.oracle = task, adapter, oracle
        self.stages, self.objects = tuple(stages), tuple(objects)
        self.num_stages = len(self.stages)
        self.rng = np.random.default_rng(seed)
        self._chosen: dict[int, SkillSource] = {}
        self._adapted: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # stage -> (reference, init, targets)
        self._replay: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._step: dict[int, int] = {}

    @classmethod
    def from_dataset(cls, path: str | Path, env, strategy: str | None = None, nearest_k: int | None = None) -> "SourceReplayAgent":
        """Replay agent over the source demos in ``path`` for a :class:`TaskEnv` (its ``stage_done`` is the oracle)."""
        from dataclasses import replace

        from reinforcegen_ros.datagen.generator import GenerationConfig
        from reinforcegen_ros.demos.dataset import iter_episodes
        from reinforcegen_ros.planning.kinematics import ArmKinematics

        config = GenerationConfig.from_dict(env.config.get("datagen"))
        config = replace(config, source_strategy=strategy or config.source_strategy, nearest_k=nearest_k or config.nearest_k)
        sources = skill_sources(iter_episodes(path, obs_keys=[]), env.stages, config.held_objects)
        if any(not s for s in sources):
            raise ValueError(f"'{path}' lacks a skill segment for some stage of '{env.task}'")
        adapter = SkillAdapter(env, ArmKinematics(env), sources, config)
        return cls(env.task, adapter, env.stages, env.objects, env.stage_done)

    def set_episode_seed(self, seed: int) -> None:
        """Restart the source selection RNG (the same seed picks the same segments as data generation)."""
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self._chosen.clear()
        self._adapted.clear()
        self._replay.clear()
        self._step.clear()

    def _skill(self, obs: dict, stage: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(motion, init, targets): the skill adapted at the stage's first query, and how its reference frame moved since."""
        reference = reference_frame_from_obs(obs, self.objects, self.stages[stage])
        if stage not in self._adapted:
            self._chosen[stage], init, targets = self.adapter.choose(stage, self.rng)
            self._adapted[stage] = (reference, init, targets)
        chosen_at, init, targets = self._adapted[stage]
        return reference @ pose_inv(chosen_at), init, targets

    def predict_pose(self, obs: dict, stage: int) -> np.ndarray:
        moved, init, _ = self._skill(obs, stage)
        return moved @ init

    def connect_gripper(self, stage: int) -> float | None:
        """The gripper command the chosen skill starts with (None before the stage's source is chosen)."""
        source = self._chosen.get(stage)
        return None if source is None else float(source.gripper[0])

    def act(self, obs: dict, stage: int) -> np.ndarray:
        """Next adapted source target as a delta-pose action; hold once the segment is replayed."""
        if stage not in self._replay:
            moved, _, targets = self._skill(obs, stage)
            self._replay[stage], self._step[stage] = (moved @ targets, self._chosen[stage].gripper), 0
        targets, gripper = self._replay[stage]
        i = self._step[stage]
        self._step[stage] = i + 1
        if i >= len(targets):
            return np.array([0, 0, 0, 0, 0, 0, gripper[-1]], dtype=float)
        eef = pose_from_pos_quat(obs["robot0_eef_pos"], obs["robot0_eef_quat"])
        return np.append(delta_pose_action(eef, targets[i]), gripper[i])

    def termination_prob(self, obs: dict, stage: int) -> float:
        """1.0 when the stage's ground-truth condition holds, else 0.0."""
        return float(bool(self.oracle(stage)))
