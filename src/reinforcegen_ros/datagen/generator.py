"""Generate one new demonstration in a fresh scene (ReinforceGen Sec. III-B).

For each stage: pick a source demo's skill segment, re-express it relative to
the stage's reference object in the new scene, plan a connect motion to the
transformed initiation pose, execute the plan and then the skill through the
same delta-pose controller, and check the stage's termination condition. The
episode is kept only if the task succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reinforcegen_ros.datagen.object_centric import SkillAdapter, skill_sources
from reinforcegen_ros.demos.episode import CONNECT, SKILL, Episode, EpisodeRecorder
from reinforcegen_ros.geometry import delta_pose_action
from reinforcegen_ros.planning import PlanningFailed, TrajectoryFollower, make_planner
from reinforcegen_ros.planning.kinematics import ArmKinematics
from reinforcegen_ros.tasks.environment import TaskEnv


class GenerationFailed(RuntimeError):
    """A generation attempt failed at ``stage`` for ``reason``."""

    def __init__(self, stage: int, reason: str):
        super().__init__(f"stage {stage}: {reason}")
        self.stage, self.reason = stage, reason


@dataclass
class GenerationConfig:
    """Knobs of one generation attempt (the ``datagen`` section of the task YAML)."""

    source_strategy: str = "nearest"
    nearest_k: int = 3
    planner: str = "ompl"
    connect_max_steps: int = 300
    settle_steps: int = 15
    final_hold_steps: int = 5  # steps recorded after success, so the last stage's termination has positives
    follow_gain: float = 2.0  # TrajectoryFollower gain along connect paths
    follow_lookahead: int = 1
    # stages whose skill may be turned by 180 deg about the grip axis (the parallel gripper is
    # symmetric, so an empty-handed grasp or a symmetric held object gives the same physical skill);
    # the generator picks the turn that keeps the arm farther from its joint limits
    symmetric_stages: tuple[int, ...] = ()
    # stage -> object held during that stage's skill: the skill is corrected for the difference
    # between the source grasp and the grasp achieved in the new scene (held object follows the source)
    held_objects: dict = field(default_factory=dict)
    symmetric_objects: tuple[str, ...] = ()  # held objects symmetric about their axis: correct position only

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "GenerationConfig":
        cfg = dict(cfg or {})
        known = {k: cfg.pop(k) for k in list(cfg) if k in cls.__dataclass_fields__}
        if "symmetric_stages" in known:
            known["symmetric_stages"] = tuple(known["symmetric_stages"])
        if "symmetric_objects" in known:
            known["symmetric_objects"] = tuple(known["symmetric_objects"])
        if "held_objects" in known:
            known["held_objects"] = {int(k): v for k, v in known["held_objects"].items()}
        return cls(**known)


class ObjectCentricGenerator:
    """Turns source demos into new demos in new scenes of the same task."""

    def __init__(self, env: TaskEnv, sources: list[Episode], config: GenerationConfig, planner_config: dict | None = None):
        self.env, self.config = env, config
        self.sources = skill_sources(sources, env.stages, config.held_objects)
        self.kinematics = ArmKinematics(env)
        self.adapter = SkillAdapter(env, self.kinematics, self.sources, config)
        self.planner = make_planner(config.planner, env, self.kinematics, planner_config)

    def generate(self, seed: int) -> Episode:
        """One attempt in the scene of ``seed``; raises :class:`GenerationFailed`."""
        rng = np.random.default_rng(seed)
        env = self.env
        obs = env.reset(seed=seed)
        rec = EpisodeRecorder(env)
        inits: list[np.ndarray] = []
        used = []
        for k in range(len(env.stages)):
            source, init_pose, targets = self.adapter.choose(k, rng)
            used.append(source.demo)
            n0 = len(rec.rows)
            obs = self._connect(rec, obs, k, init_pose, source.gripper[0], env.stages[k].reference_object)
            obs = self._skill(rec, obs, k, targets, source.gripper)
            inits.extend([init_pose] * (len(rec.rows) - n0))
            if not env.stage_done(k):
                raise GenerationFailed(k, "termination condition not reached after the skill")
        if not env.success():
            raise GenerationFailed(len(env.stages) - 1, "task not successful after the last stage")
        obs = self._hold(rec, obs, len(env.stages) - 1, rec.rows[-1]["action"][6], self.config.final_hold_steps)
        inits.extend([inits[-1]] * self.config.final_hold_steps)
        ep = rec.episode(success=True, seed=seed, source_demos=used)
        ep.initiation_pose = np.stack(inits)
        return ep

    def _connect(self, rec: EpisodeRecorder, obs: dict, stage: int, target: np.ndarray, gripper: float, reference: str) -> dict:
        """Plan to the initiation pose (the reference object may be touched there) and follow the plan."""
        try:
            traj = self.planner.plan(self.kinematics.current_joints(), target, touch=(reference,))
        except PlanningFailed as exc:
            raise GenerationFailed(stage, f"planning failed: {exc}") from None
        follower = TrajectoryFollower(traj, lookahead=self.config.follow_lookahead, gain=self.config.follow_gain)
        for _ in range(self.config.connect_max_steps):
            eef = self.env.eef_pose()
            if follower.done(eef):
                return obs
            action = np.append(follower.action(eef), gripper)
            rec.record(obs, action, stage, CONNECT)
            obs = self.env.step(action)
        raise GenerationFailed(stage, "connect motion did not reach the initiation pose")

    def _skill(self, rec: EpisodeRecorder, obs: dict, stage: int, targets: np.ndarray, gripper: np.ndarray) -> dict:
        """Track the transformed skill targets, then let the stage settle."""
        for target, grip in zip(targets, gripper):
            action = np.append(delta_pose_action(self.env.eef_pose(), target), grip)
            rec.record(obs, action, stage, SKILL)
            obs = self.env.step(action)
        return self._hold(rec, obs, stage, gripper[-1], self.config.settle_steps, until_done=True)

    def _hold(self, rec: EpisodeRecorder, obs: dict, stage: int, gripper: float, steps: int, until_done: bool = False) -> dict:
        """Record up to ``steps`` still steps (stopping once the stage is done when ``until_done``)."""
        hold = np.array([0, 0, 0, 0, 0, 0, gripper], dtype=float)
        for _ in range(steps):
            if until_done and self.env.stage_done(stage):
                break
            rec.record(obs, hold, stage, SKILL)
            obs = self.env.step(hold)
        return obs
