"""The waypoint engine shared by all scripted demonstrators.

A demonstrator describes each stage as a list of :class:`Waypoint` s. Targets
are functions of the live (privileged) scene, so they follow objects as they
move. Waypoints marked ``connect`` form the stage's connect segment (free-space
motion to the skill's initiation pose); the rest form its skill segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reinforcegen_ros.demos.episode import PHASES, Episode, EpisodeRecorder
from reinforcegen_ros.geometry import delta_pose_action, rotation_angle

GRIPPER_OPEN, GRIPPER_CLOSED = -1.0, 1.0


def frozen(target: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """A waypoint target evaluated once (when its waypoint starts) and then held."""
    cache: list[np.ndarray] = []

    def held(env) -> np.ndarray:
        if not cache:
            cache.append(target(env))
        return cache[0]

    return held


class DemoFailed(RuntimeError):
    """A scripted episode did not reach a stage's termination or the task's success."""


@dataclass
class Waypoint:
    """Drive the grip site to ``target(env)`` with a fixed gripper command."""

    target: Callable[..., np.ndarray]
    gripper: float = GRIPPER_OPEN
    phase: str = "skill"
    tol_pos: float = 0.005
    tol_rot: float = 0.05
    max_steps: int = 120
    hold_steps: int = 0
    speed: float = 1.0
    gain: float = 1.0
    until: Callable[..., bool] | None = None  # finish early once this holds
    name: str = ""


class ScriptedDemonstrator:
    """Runs a task's per-stage waypoint programs and records an :class:`Episode`.

    Subclasses implement :meth:`stage_program`. ``config`` is the ``demonstrator``
    section of the task's YAML.
    """

    def __init__(self, config: dict | None = None):
        self.config = dict(config or {})

    def stage_program(self, env, stage: int) -> list[Waypoint]:
        """The waypoints of ``stage`` (connect waypoints first, then the skill)."""
        raise NotImplementedError

    def run(self, env, seed: int, settle_steps: int = 10) -> Episode:
        """Reset to ``seed``, run every stage, and return the recorded episode.

        Raises :class:`DemoFailed` with a reason when a stage does not terminate
        or the task does not succeed.
        """
        obs = env.reset(seed=seed)
        rec = EpisodeRecorder(env)
        for stage in range(len(env.stages)):
            for wp in self.stage_program(env, stage):
                obs = self._drive(env, rec, obs, wp, stage)
            obs = self._settle(env, rec, obs, stage, settle_steps)
            if not env.stage_done(stage):
                raise DemoFailed(f"stage {stage} ({env.stages[stage].name}) did not terminate")
        if not env.success():
            raise DemoFailed("all stages ran but the task did not succeed")
        return rec.episode(success=True, seed=seed)

    def _drive(self, env, rec: EpisodeRecorder, obs: dict, wp: Waypoint, stage: int) -> dict:
        """Run one waypoint: move until reached (then hold) or ``max_steps``."""
        phase = PHASES[wp.phase]
        held = 0
        for _ in range(wp.max_steps):
            current, target = env.eef_pose(), wp.target(env)
            reached = (
                np.linalg.norm(target[:3, 3] - current[:3, 3]) < wp.tol_pos
                and rotation_angle(target[:3, :3], current[:3, :3]) < wp.tol_rot
            )
            if (wp.until is not None and wp.until(env)) or (reached and held >= wp.hold_steps):
                return obs
            held += int(reached)
            action = np.append(delta_pose_action(current, target, speed=wp.speed) * wp.gain, wp.gripper)
            rec.record(obs, action, stage, phase)
            obs = env.step(action)
        return obs

    def _settle(self, env, rec: EpisodeRecorder, obs: dict, stage: int, steps: int) -> dict:
        """Hold still (keeping the last gripper command) until the stage's condition holds."""
        gripper = rec.rows[-1]["action"][6] if rec.rows else GRIPPER_OPEN
        for _ in range(steps):
            if env.stage_done(stage):
                break
            action = np.array([0, 0, 0, 0, 0, 0, gripper], dtype=float)
            rec.record(obs, action, stage, PHASES["skill"])
            obs = env.step(action)
        return obs
