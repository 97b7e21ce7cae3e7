"""One episode: a seeded scene, an agent, and the hybrid executor ticking at 20 Hz.

The rollout is the only place where the executor's commands meet the
simulator: it resets the scene of ``seed``, feeds each observation to
:meth:`HybridExecutor.tick`, steps the environment with the returned action,
and records per-stage ground truth (whether the stage condition held when the
executor left the stage), steps per stage, re-plans and the failure reason.
A per-step hook (``on_frame``) sees the environment and the executor before
every control step (videos, and the states that fine-tuning collects).
``action_noise`` perturbs the skill actions (paper Fig. 8, :class:`SkillActionNoise`).

Shared by evaluation, and by the training code that needs rollouts (RL,
termination fine-tuning, distillation); it imports neither.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from reinforcegen_ros.hybrid import HybridExecutor, Phase

FrameHook = Callable[[object, HybridExecutor, int], None]  # (env, executor, step) before each control step


@dataclass
class EpisodeResult:
    """Outcome of one evaluation episode."""

    index: int
    seed: int
    success: bool
    stage_success: list[bool]  # stage condition held (ground truth) when the executor left the stage
    stage_steps: list[int]  # control steps spent in each stage (connect + skill)
    steps: int
    skill_steps: list[int] | None = None  # ... of them in the stage's skill (None in logs from before it was recorded)
    failure_stage: int | None = None
    failure_kind: str = ""  # the executor's kinds, or horizon / not_successful / error
    failure_reason: str = ""
    replans: int = 0
    replans_per_stage: list[int] = field(default_factory=list)
    scene: list[float] = field(default_factory=list)  # initial object poses: the same seed gives the same scene
    seconds: float = 0.0
    video: str | None = None
    goal_held_at_failure: bool | None = None  # ground truth of the failed stage when the episode ended

    def to_dict(self) -> dict:
        return asdict(self)


class SkillActionNoise:
    """Zero-mean Gaussian noise of std ``sigma`` on the arm's 6 delta-pose dims of every skill action (paper Fig. 8).

    Only commands of the SKILL phase (the skill policy's actions) are perturbed; the connect
    segment's commands (the planner's path, followed in delta-pose steps) and the gripper
    dim are sent as issued. ``sigma`` is in normalised action units (actions lie in
    [-1, 1]; the environment clips the noisy action as any other). The noise comes from its
    own generator seeded by the episode seed, apart from the agent's, so an episode
    replays exactly; ``sigma == 0`` draws nothing and changes nothing.
    """

    STREAM = 0xAC710  # second word of the generator's seed: this stream, whatever else the seed feeds

    def __init__(self, sigma: float, seed: int):
        if not (math.isfinite(sigma) and sigma >= 0.0):
            raise ValueError(f"action noise must be a finite number >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.rng = np.random.default_rng([int(seed), self.STREAM])

    def __call__(self, command) -> np.ndarray:
        """The action to send for ``command``: its own, with noise on the arm dims if it is a skill action."""
        if self.sigma == 0.0 or command.phase != Phase.SKILL:
            return command.action
        action = np.array(command.action, dtype=float)
        action[:6] += self.rng.normal(0.0, self.sigma, 6)
        return action


def run_episode(env, executor: HybridExecutor, seed: int, horizon: int, index: int = 0, on_frame: FrameHook | None = None,
                action_noise: float = 0.0) -> EpisodeResult:
    """Run one episode of ``executor`` in the scene of ``seed`` for at most ``horizon`` control steps.

    ``action_noise``: std of the Gaussian noise added to the skill actions (:class:`SkillActionNoise`).
    """
    noise = SkillActionNoise(action_noise, seed)
    start = time.perf_counter()
    agent = executor.agent
    if hasattr(agent, "set_episode_seed"):
        agent.set_episode_seed(seed)
    obs = env.reset(seed=seed)
    executor.reset()
    num = executor.num_stages
    result = EpisodeResult(index, seed, False, [False] * num, [0] * num, 0, scene=np.asarray(obs["object"], dtype=float).tolist())
    try:
        while result.steps < horizon:
            stage = executor.stage
            command = executor.tick(obs)
            _record_stage_exits(env, executor, stage, result)
            if on_frame is not None:
                on_frame(env, executor, result.steps)
            if executor.finished:
                break
            obs = env.step(noise(command))
            result.steps += 1
    except Exception as exc:  # a simulator blow-up is a failed episode, not a crashed evaluation
        _fail(result, executor.stage, "error", f"{type(exc).__name__}: {exc}")
    status = executor.status
    result.stage_steps, result.skill_steps = list(status.stage_steps), list(status.skill_steps)
    result.replans, result.replans_per_stage = status.replans, list(status.replans_per_stage)
    if not result.failure_kind:
        _outcome(env, status, result, horizon)
    if result.failure_kind and result.failure_stage is not None and result.failure_kind != "error":
        result.goal_held_at_failure = bool(env.stage_done(result.failure_stage))
    result.seconds = time.perf_counter() - start
    return result


def _record_stage_exits(env, executor: HybridExecutor, before: int, result: EpisodeResult) -> None:
    """Ground truth of every stage the last tick left (the tick itself does not move the world)."""
    after = executor.stage + (1 if executor.phase == Phase.DONE else 0)
    for k in range(before, after):
        result.stage_success[k] = env.stage_done(k)


def _outcome(env, status, result: EpisodeResult, horizon: int) -> None:
    if status.phase == Phase.FAILED:
        _fail(result, status.stage, status.failure_kind, status.failure_reason)
    elif status.phase != Phase.DONE:
        _fail(result, status.stage, "horizon", f"stage {status.stage} {status.phase.value}: horizon of {horizon} steps reached")
    elif not env.success():
        wrong = [k for k, ok in enumerate(result.stage_success) if not ok]
        stage = wrong[0] if wrong else status.stage
        _fail(result, stage, "not_successful", f"all stages terminated but the task is not solved (stage {stage} condition false)")
    else:
        result.success = True


def _fail(result: EpisodeResult, stage: int, kind: str, reason: str) -> None:
    result.success, result.failure_stage, result.failure_kind, result.failure_reason = False, stage, kind, reason


def make_executor(env, agent, config, planning: dict | None = None) -> HybridExecutor:
    """A :class:`HybridExecutor` for ``agent`` in a TaskEnv: its planner, reference objects and oracle.

    The oracle is the ground truth (``env.stage_done``), gated by the agent's termination predictors
    where it carries them (paper Sec. IV-C, :func:`~reinforcegen_ros.finetune.termination_ft.fine_tuned_oracle`).
    """
    from reinforcegen_ros.policies.fine_tuned_termination import fine_tuned_oracle
    from reinforcegen_ros.planning import make_planner
    from reinforcegen_ros.planning.kinematics import ArmKinematics

    if agent.num_stages != len(env.stages):
        raise ValueError(f"agent has {agent.num_stages} stages, task '{env.task}' has {len(env.stages)}")
    planner = make_planner(config.planner, env, ArmKinematics(env), planning)
    refs = [s.reference_object for s in env.stages]
    oracle = fine_tuned_oracle(env, agent) if config.termination == "oracle" else env.stage_done
    return HybridExecutor(agent, planner, config, reference_objects=refs, oracle=oracle)
