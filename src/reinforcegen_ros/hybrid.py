"""The hybrid skill policy executor: a tick-driven state machine (ReinforceGen Algorithm 1).

Each stage runs PREDICT (the agent's initiation pose) -> PLAN (a collision-free
connect motion to it) -> CONNECT (follow the plan; the pose predictor runs every
tick and a prediction that moved more than ``epsilon`` triggers a re-plan from
the current joints) -> SKILL (the agent's actions until the termination
probability exceeds the threshold), then the next stage, and finally DONE.
Timeouts, planning failures, invalid observations and invalid agent outputs
end in FAILED with a reason; no exception escapes :meth:`HybridExecutor.tick`.

The executor never touches a simulator: the robot state comes from the
observation (``robot0_eef_pos``, ``robot0_eef_quat``, ``robot0_joint_pos``),
so the same object can be driven by a ROS 2 timer. Only the optional
``oracle`` callable (ground-truth stage termination, paper Table III) and the
planner's own scene model look at the world.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import yaml

from reinforcegen_ros.geometry import pose_distance, pose_from_pos_quat
from reinforcegen_ros.planning import PlanningFailed, TrajectoryFollower

CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "hybrid.yaml"
TERMINATION_MODES = ("learned", "oracle")
ROBOT_KEYS = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_joint_pos": 7}
MAX_TRANSITIONS = 16  # phase changes within one tick before it must have produced an action


class Agent(Protocol):
    """What the executor calls (implemented by HybridSkillPolicy and the test doubles)."""

    task: str
    obs_mode: str
    num_stages: int

    def reset(self) -> None: ...
    def predict_pose(self, obs: dict, stage: int) -> np.ndarray | None: ...  # None: no prediction yet, hold still
    def act(self, obs: dict, stage: int) -> np.ndarray: ...
    def termination_prob(self, obs: dict, stage: int) -> float: ...
    # optional: def connect_gripper(self, stage: int) -> float | None  (gripper command held while connecting)


class Phase(str, Enum):
    """Executor phases; PREDICT and PLAN take no control step."""

    PREDICT = "predict"
    PLAN = "plan"
    CONNECT = "connect"
    SKILL = "skill"
    DONE = "done"
    FAILED = "failed"


@dataclass
class HybridConfig:
    """Executor settings (``config/hybrid.yaml``, a task YAML's ``hybrid`` section, overrides).

    The defaults equal ``config/hybrid.yaml`` (``test/test_config_defaults.py`` holds them equal).
    """

    replan: bool = True
    epsilon: float = 0.05
    termination: str = "learned"
    termination_threshold: float = 0.5
    termination_confirm_ticks: int = 3
    min_skill_steps: int = 1
    planner: str = "ompl"
    follow_gain: float = 2.0
    follow_lookahead: int = 1
    keep_plan_on_replan_failure: bool = False
    connect_max_steps: int = 300
    skill_max_steps: int = 400
    initial_gripper: float = -1.0
    episode_horizon: int | None = None

    def __post_init__(self):
        if self.termination_confirm_ticks < 1:
            raise ValueError("termination_confirm_ticks must be at least 1")
        if self.termination not in TERMINATION_MODES:
            raise ValueError(f"unknown termination '{self.termination}'; choose one of {', '.join(TERMINATION_MODES)}")

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "HybridConfig":
        """Config from a dict; unknown keys are an error (a typo must not pass silently)."""
        cfg = dict(cfg or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown hybrid executor settings: {', '.join(unknown)}")
        return cls(**cfg)

    @classmethod
    def load(cls, task_config: dict | None = None, path: str | Path | None = None, **overrides) -> "HybridConfig":
        """``config/hybrid.yaml`` (or ``path``), then the task's ``hybrid`` section, then ``overrides``."""
        with open(Path(path) if path else CONFIG_PATH) as fh:
            cfg = yaml.safe_load(fh) or {}
        cfg.update((task_config or {}).get("hybrid") or {})
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(cfg)


@dataclass(frozen=True)
class Command:
    """What one tick asks the robot to do."""

    action: np.ndarray  # (7,) normalised delta pose (world frame) + gripper, in [-1, 1]
    stage: int
    phase: Phase  # the phase that produced the command (DONE/FAILED: hold still)
    joint_target: np.ndarray | None = None  # (7,) joint waypoint of the connect plan, when planned in joint space


@dataclass
class Status:
    """Read-only view of the executor (a copy is returned by :attr:`HybridExecutor.status`)."""

    stage: int = 0
    phase: Phase = Phase.PREDICT
    target: np.ndarray | None = None  # current initiation pose target (4x4)
    path: np.ndarray | None = None  # planned grip-site poses (N, 4, 4) of the current connect
    termination_prob: float = 0.0
    replans: int = 0
    replans_per_stage: list[int] = field(default_factory=list)
    failed_replans: int = 0  # re-plans that found no path while the current plan was kept
    stage_steps: list[int] = field(default_factory=list)  # commands issued per stage
    skill_steps: list[int] = field(default_factory=list)  # ... of them by the stage's skill policy
    phase_steps: int = 0  # commands issued in the current connect or skill phase
    ticks: int = 0
    failure_kind: str = ""  # invalid_observation, invalid_pose, invalid_action, planning_failed, connect_timeout, skill_timeout, error
    failure_reason: str = ""
    transitions: list[tuple[int, int, str]] = field(default_factory=list)  # (tick, stage, phase entered)

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FAILED)


class HybridExecutor:
    """Runs an :class:`Agent` stage by stage: planned connect motions, learned skills.

    ``planner`` implements the planning protocol (``plan(start_joints, target,
    touch)``); ``reference_objects`` names each stage's reference object, which
    the gripper may touch at the end of the connect motion; ``oracle(stage)``
    returns the ground-truth termination, required for ``termination: oracle``.
    """

    def __init__(
        self,
        agent: Agent,
        planner,
        config: HybridConfig | None = None,
        reference_objects: Sequence[str] = (),
        oracle: Callable[[int], bool] | None = None,
    ):
        self.agent, self.planner = agent, planner
        self.config = config or HybridConfig()
        if self.config.termination == "oracle" and oracle is None:
            raise ValueError("termination 'oracle' needs an oracle callable (ground-truth stage_done)")
        self.reference_objects = tuple(reference_objects)
        self.oracle = oracle
        self.num_stages = int(agent.num_stages)
        self.reset()

    # ------------------------------------------------------------------ public
    def reset(self) -> None:
        """Start a new episode at stage 0 (also clears the agent's recurrent state)."""
        self.agent.reset()
        self._status = Status(replans_per_stage=[0] * self.num_stages, stage_steps=[0] * self.num_stages, skill_steps=[0] * self.num_stages)
        self._follower: TrajectoryFollower | None = None
        self._gripper = float(self.config.initial_gripper)
        self._predicted_at = -1  # tick of the last pose prediction
        self._above = 0  # consecutive skill ticks with the termination probability above the threshold
        self._failed_target: np.ndarray | None = None  # prediction whose re-plan failed (keep_plan_on_replan_failure)
        self._enter(Phase.PREDICT)

    @property
    def status(self) -> Status:
        """A snapshot of the executor's state."""
        return copy.deepcopy(self._status)

    @property
    def finished(self) -> bool:
        return self._status.finished

    @property
    def stage(self) -> int:
        return self._status.stage

    @property
    def phase(self) -> Phase:
        return self._status.phase

    def tick(self, obs: dict) -> Command:
        """Advance the state machine on one observation and return the command for this control step."""
        st = self._status
        if st.finished:
            return self._hold()
        st.ticks += 1
        try:
            problem = check_observation(obs)
            if problem:
                return self._fail("invalid_observation", problem)
            eef = pose_from_pos_quat(obs["robot0_eef_pos"], obs["robot0_eef_quat"])
            for _ in range(MAX_TRANSITIONS):
                command = self._handlers[st.phase](self, obs, eef)
                if command is not None:
                    return command
            return self._fail("error", f"no action after {MAX_TRANSITIONS} phase changes in one tick")
        except Exception as exc:  # an agent or planner bug must not take the robot's control loop down
            return self._fail("error", f"{type(exc).__name__} in {st.phase.value}: {exc}")

    # ------------------------------------------------------------------ phases
    def _predict(self, obs: dict, eef: np.ndarray) -> Command | None:
        target = self._prediction(obs)
        if target is None:
            return self._hold()
        self._status.target = target
        self._gripper = self._connect_gripper()
        self._enter(Phase.PLAN)
        return None

    def _plan_phase(self, obs: dict, eef: np.ndarray) -> Command | None:
        if not self._plan(obs, self._status.target):
            return self._hold()
        self._status.phase_steps = 0
        self._enter(Phase.CONNECT)
        return None

    def _connect(self, obs: dict, eef: np.ndarray) -> Command | None:
        st, cfg = self._status, self.config
        if self._predicted_at != st.ticks:  # the pose predictor runs every connect tick
            new = self._prediction(obs)
            if new is None:
                return self._hold()
            if cfg.replan and pose_distance(new, st.target) > cfg.epsilon and self._worth_replanning(new):
                if self._plan(obs, new, fatal=not cfg.keep_plan_on_replan_failure):
                    st.target, self._failed_target = new, None
                    st.replans += 1
                    st.replans_per_stage[st.stage] += 1
                elif st.finished:
                    return self._hold()
                else:  # keep following the current plan; retry once the prediction moves on
                    self._failed_target = new
                    st.failed_replans += 1
        if self._follower.done(eef):
            st.phase_steps = 0
            self._enter(Phase.SKILL)
            return None
        if st.phase_steps >= cfg.connect_max_steps:
            return self._fail("connect_timeout", f"initiation pose not reached in {cfg.connect_max_steps} connect steps")
        action = np.append(self._follower.action(eef), self._gripper)
        return self._issue(action, Phase.CONNECT, self._joint_target())

    def _skill(self, obs: dict, eef: np.ndarray) -> Command | None:
        st, cfg = self._status, self.config
        if st.phase_steps >= cfg.min_skill_steps:
            st.termination_prob = self._termination(obs)
            self._above = self._above + 1 if st.termination_prob > cfg.termination_threshold else 0
            if self._above >= cfg.termination_confirm_ticks:
                self._next_stage()
                return None
        if st.phase_steps >= cfg.skill_max_steps:
            return self._fail("skill_timeout", f"stage not terminated within {cfg.skill_max_steps} skill steps")
        action = np.asarray(self.agent.act(obs, st.stage), dtype=float)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            return self._fail("invalid_action", f"agent action must be 7 finite numbers, got shape {action.shape}")
        action = np.clip(action, -1.0, 1.0)
        self._gripper = float(action[6])
        return self._issue(action, Phase.SKILL)

    def _finished(self, obs: dict, eef: np.ndarray) -> Command:
        return self._hold()

    _handlers = {
        Phase.PREDICT: _predict,
        Phase.PLAN: _plan_phase,
        Phase.CONNECT: _connect,
        Phase.SKILL: _skill,
        Phase.DONE: _finished,
        Phase.FAILED: _finished,
    }

    # ------------------------------------------------------------------ helpers
    def _prediction(self, obs: dict) -> np.ndarray | None:
        """The agent's initiation pose; None if the agent has none yet (hold still) or (FAILED) it is not a finite 4x4 pose."""
        self._predicted_at = self._status.ticks
        pose = self.agent.predict_pose(obs, self._status.stage)
        if pose is None:  # e.g. a pose predictor node that has not answered for this stage yet
            return None
        pose = np.asarray(pose, dtype=float)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            self._fail("invalid_pose", f"predicted initiation pose must be a finite 4x4 matrix, got shape {pose.shape}")
            return None
        return pose

    def _connect_gripper(self) -> float:
        """The gripper command to hold while connecting: the agent's choice for this stage, else the last one."""
        choose = getattr(self.agent, "connect_gripper", None)
        value = choose(self._status.stage) if choose is not None else None
        if value is None or not np.isfinite(value):
            return self._gripper
        return float(np.clip(value, -1.0, 1.0))

    def _worth_replanning(self, new: np.ndarray) -> bool:
        """False while ``new`` is within epsilon of a prediction whose re-plan already failed."""
        failed = self._failed_target
        return failed is None or pose_distance(new, failed) > self.config.epsilon

    def _plan(self, obs: dict, target: np.ndarray, fatal: bool = True) -> bool:
        """Plan from the observed joints to ``target``; False on planning failure (and FAILED if ``fatal``)."""
        k = self._status.stage
        touch = (self.reference_objects[k],) if k < len(self.reference_objects) else ()
        try:
            traj = self.planner.plan(np.asarray(obs["robot0_joint_pos"], dtype=float), target, touch=touch)
        except PlanningFailed as exc:
            if fatal:
                self._fail("planning_failed", f"planning failed: {exc}")
            return False
        self._follower = TrajectoryFollower(traj, lookahead=self.config.follow_lookahead, gain=self.config.follow_gain)
        self._status.path = traj.poses
        return True

    def _termination(self, obs: dict) -> float:
        k = self._status.stage
        if self.config.termination == "oracle":
            return float(bool(self.oracle(k)))
        prob = float(self.agent.termination_prob(obs, k))
        if not np.isfinite(prob):
            raise ValueError(f"termination probability is {prob}")
        return prob

    def _joint_target(self) -> np.ndarray | None:
        traj = self._follower.trajectory
        if traj.joints is None:
            return None
        return np.array(traj.joints[min(self._follower.index + self.config.follow_lookahead, len(traj.joints) - 1)])

    def _issue(self, action: np.ndarray, phase: Phase, joint_target: np.ndarray | None = None) -> Command:
        st = self._status
        st.phase_steps += 1
        st.stage_steps[st.stage] += 1
        st.skill_steps[st.stage] += phase == Phase.SKILL
        return Command(action=action, stage=st.stage, phase=phase, joint_target=joint_target)

    def _next_stage(self) -> None:
        st = self._status
        self._above, self._failed_target = 0, None
        st.stage += 1
        st.path, self._follower = None, None
        if st.stage >= self.num_stages:
            st.stage = self.num_stages - 1
            self._enter(Phase.DONE)
        else:
            st.target, st.termination_prob = None, 0.0
            self._enter(Phase.PREDICT)

    def _enter(self, phase: Phase) -> None:
        st = self._status
        st.phase = phase
        st.transitions.append((st.ticks, st.stage, phase.value))

    def _fail(self, kind: str, reason: str) -> Command:
        st = self._status
        if not st.finished:
            st.failure_kind, st.failure_reason = kind, f"stage {st.stage} {st.phase.value}: {reason}"
            self._enter(Phase.FAILED)
        return self._hold()

    def _hold(self) -> Command:
        """Stay still with the gripper as last commanded."""
        action = np.zeros(7)
        action[6] = self._gripper
        return Command(action=action, stage=self._status.stage, phase=self._status.phase)


def check_observation(obs: dict) -> str:
    """Why ``obs`` cannot be acted on ('' if it can): missing robot keys, wrong sizes, NaN or inf."""
    if not isinstance(obs, dict):
        return f"observation must be a dict, got {type(obs).__name__}"
    for key, size in ROBOT_KEYS.items():
        if key not in obs:
            return f"observation lacks '{key}'"
        if np.size(obs[key]) != size:
            return f"'{key}' has {np.size(obs[key])} values, expected {size}"
    for key, value in obs.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            return f"'{key}' contains NaN or inf"
        if arr.dtype.kind not in "fcbiu":
            return f"'{key}' is not numeric"
    return ""
