"""One demonstration episode in memory, recorded step by step.

Besides robomimic's ``actions``/``obs``/``states`` every step carries what data
generation and the hybrid skill policy need as labels: stage index, phase
(connect or skill segment), eef pose, reference-object poses and the
ground-truth termination signal of every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONNECT, SKILL = 0, 1
PHASES = {"connect": CONNECT, "skill": SKILL}
OBJECT_KEY = "object"  # obs key of the privileged object poses


@dataclass
class Episode:
    """Arrays of one episode; step ``t`` holds the state *before* ``actions[t]``."""

    actions: np.ndarray
    states: np.ndarray
    obs: dict[str, np.ndarray]
    stage: np.ndarray
    phase: np.ndarray
    eef_pose: np.ndarray
    object_poses: dict[str, np.ndarray]
    term_signals: dict[str, np.ndarray]
    rewards: np.ndarray
    success: bool
    attrs: dict = field(default_factory=dict)
    initiation_pose: np.ndarray | None = None  # (T, 4, 4): the current stage's skill initiation pose

    def __len__(self) -> int:
        return len(self.actions)


def initiation_poses_from_phases(stage: np.ndarray, phase: np.ndarray, eef_pose: np.ndarray) -> np.ndarray:
    """Per-step initiation pose: the eef pose at the first skill step of each step's stage.

    Stages without a skill step (unannotated phases) use their last step.
    """
    out = np.empty_like(eef_pose)
    for k in np.unique(stage):
        idx = np.flatnonzero(stage == k)
        skill = idx[phase[idx] == SKILL]
        out[idx] = eef_pose[skill[0] if skill.size else idx[-1]]
    return out


class EpisodeRecorder:
    """Collects per-step data from a :class:`~reinforcegen_ros.tasks.environment.TaskEnv`."""

    def __init__(self, env):
        self.env = env
        self.rows: list[dict] = []

    def record(self, obs: dict, action: np.ndarray, stage: int, phase: int) -> None:
        """Store the current state and observation with the action about to be applied."""
        env = self.env
        self.rows.append(
            {
                "obs": {k: np.array(v) for k, v in obs.items()},
                "action": np.asarray(action, dtype=np.float64).copy(),
                "state": env.get_state(),
                "stage": stage,
                "phase": phase,
                "eef_pose": env.eef_pose(),
                "object_poses": env.object_poses(),
                "term": [env.stage_done(k) for k in range(len(env.stages))],
                "success": float(env.success()),
            }
        )

    def _rewards(self) -> np.ndarray:
        """robomimic's convention: ``rewards[t]`` is the task success *after* ``actions[t]``."""
        later = [r["success"] for r in self.rows[1:]]
        return np.array(later + [float(self.env.success())])

    def episode(self, success: bool, **attrs) -> Episode:
        """Stack the recorded rows into an :class:`Episode`."""
        if not self.rows:
            raise ValueError("no steps were recorded")
        rows = self.rows
        stage_names = [s.name for s in self.env.stages]
        stage = np.array([r["stage"] for r in rows], dtype=np.int64)
        phase = np.array([r["phase"] for r in rows], dtype=np.int64)
        eef_pose = np.stack([r["eef_pose"] for r in rows])
        return Episode(
            actions=np.stack([r["action"] for r in rows]),
            states=np.stack([r["state"] for r in rows]),
            obs={k: np.stack([r["obs"][k] for r in rows]) for k in rows[0]["obs"]},
            stage=stage,
            phase=phase,
            eef_pose=eef_pose,
            object_poses={k: np.stack([r["object_poses"][k] for r in rows]) for k in rows[0]["object_poses"]},
            term_signals={name: np.array([r["term"][i] for r in rows], dtype=np.int64) for i, name in enumerate(stage_names)},
            rewards=self._rewards(),
            success=success,
            attrs=attrs,
            initiation_pose=initiation_poses_from_phases(stage, phase, eef_pose),
        )
