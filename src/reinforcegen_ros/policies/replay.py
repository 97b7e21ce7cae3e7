"""An oracle agent that replays transformed source skills (an upper bound and a test double).

:class:`SourceReplayAgent` implements the agent interface without learning:
initiation poses come from the :class:`~reinforcegen_ros.policies.teacher.PrivilegedTeacher`,
skill actions replay the chosen source segment's commanded targets re-expressed
relative to the reference object (``SkillSource.transformed``) through the same
delta-pose action as data generation, holding the last gripper command once the
targets run out, and termination is the ground-truth stage condition. The
targets are transformed with the reference pose at the skill's first step,
which equals data generation's transform whenever the object did not move
during the connect motion. Together with the hybrid executor it re-enacts data
generation, so its success rate bounds what a learned agent can reach from the
same source demos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from reinforcegen_ros.geometry import delta_pose_action, pose_from_pos_quat
from reinforcegen_ros.policies.teacher import PrivilegedTeacher


class SourceReplayAgent:
    """Teacher initiation pose + replayed transformed source skill + ground-truth termination."""

    obs_mode = "privileged"

    def __init__(self, task: str, teacher: PrivilegedTeacher, oracle: Callable[[int], bool]):
        self.task, self.teacher, self.oracle = task, teacher, oracle
        self.num_stages = teacher.num_stages
        self._replay: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._step: dict[int, int] = {}

    @classmethod
    def from_dataset(cls, path: str | Path, env, strategy: str | None = None, nearest_k: int | None = None) -> "SourceReplayAgent":
        """Replay agent over the source demos in ``path`` for a :class:`TaskEnv` (its ``stage_done`` is the oracle)."""
        teacher = PrivilegedTeacher.from_dataset(path, env.task, strategy=strategy, nearest_k=nearest_k)
        return cls(env.task, teacher, env.stage_done)

    def set_episode_seed(self, seed: int) -> None:
        """Restart the source selection RNG (the same seed picks the same segments as data generation)."""
        self.teacher.reset(seed)

    def reset(self) -> None:
        self.teacher.reset()
        self._replay.clear()
        self._step.clear()

    def predict_pose(self, obs: dict, stage: int) -> np.ndarray:
        return self.teacher.predict_pose(obs, stage)

    def act(self, obs: dict, stage: int) -> np.ndarray:
        """Next transformed source target as a delta-pose action; hold once the segment is replayed."""
        if stage not in self._replay:
            source = self.teacher.source(obs, stage)
            _, targets = source.transformed(self.teacher.reference_pose(obs, stage))
            self._replay[stage], self._step[stage] = (targets, source.gripper), 0
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
