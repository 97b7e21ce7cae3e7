"""Per-tick cores of the component nodes: pose predictor (+ planning), skill policy, termination.

Each ROS node calls ONE method of one of these classes per control tick
(:meth:`PosePredictorCore.tick`, :meth:`SkillPolicyCore.act`,
:meth:`TerminationCore.estimate`), with an observation dict built by
:class:`~reinforcegen_ros.deployment.observation.SensorCache` and the active
stage read from ``/stage_status``. None of them raises on bad agent output:
they return a result with a reason instead.

The pose predictor decides when to (re)plan: at a new stage, or when its
prediction has moved more than ``epsilon`` (paper eq. 5-7 pose distance) from
the target of the current plan. Planning itself (:meth:`PosePredictorCore.plan`)
is separate so that the node runs it in a background thread while its timer
keeps predicting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from reinforcegen_ros.deployment.guards import Check, check_matrix_pose
from reinforcegen_ros.geometry import pose_distance
from reinforcegen_ros.planning import PlanningFailed, Trajectory


# ---------------------------------------------------------------------- agents
def load_agent(path: str | Path, task: str):
    """A trained :class:`~reinforcegen_ros.policies.hsp.HybridSkillPolicy` for ``task``.

    Raises ``ValueError`` with a one-line reason for a directory of another task,
    a missing or corrupt checkpoint.
    """
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    if not str(path):
        raise ValueError("no agent directory given (parameter 'agent')")
    agent = HybridSkillPolicy.load(path, task=task)
    from reinforcegen_ros.tasks import stages

    if agent.num_stages != len(stages(task)):
        raise ValueError(f"'{path}' has {agent.num_stages} stages, task '{task}' has {len(stages(task))}")
    return agent


def agent_inputs(agent) -> tuple[bool, list[str]]:
    """(needs privileged object poses, cameras) of an agent."""
    spec = getattr(agent, "spec", None)
    cameras = list(getattr(spec, "cameras", None) or [])
    return getattr(agent, "obs_mode", "privileged") == "privileged", cameras


# ---------------------------------------------------------------------- pose predictor
@dataclass
class PlanRequest:
    """A planning job: from ``joints`` to ``target`` for ``stage``, answering the status stamped ``stamp_ns``."""

    stage: int
    stamp_ns: int
    joints: np.ndarray
    target: np.ndarray
    touch: tuple[str, ...] = ()
    scene_state: np.ndarray | None = None  # flattened simulator state for the planning scene (simulation only)


@dataclass
class PlanResult:
    """A finished planning job: the trajectory, or None with the reason."""

    request: PlanRequest
    trajectory: Trajectory | None
    reason: str = ""
    seconds: float = 0.0


@dataclass
class PoseTick:
    """One pose-predictor tick: the prediction (None with ``reason`` when invalid) and a plan to start, if any."""

    pose: np.ndarray | None
    plan: PlanRequest | None = None
    reason: str = ""


class ScenePlanner(Protocol):
    """A planner that can first load a planning scene (``set_scene``) and then ``plan``."""

    def plan(self, start_joints: np.ndarray, target_pose: np.ndarray, touch=()) -> Trajectory: ...


class SimulationScenePlanner:
    """The project's planner (OMPL or straight line) on a MuJoCo model of the task scene.

    The scene is synchronised from the flattened simulator state of each request
    (the ``/sim_state`` topic of the simulation bridge); without one it plans in
    the scene of its last state (a freshly reset scene at first).
    """

    def __init__(self, task: str, planner: str = "ompl", planning: dict | None = None):
        from reinforcegen_ros.planning import make_planner
        from reinforcegen_ros.planning.kinematics import ArmKinematics
        from reinforcegen_ros.tasks import task_config
        from reinforcegen_ros.tasks.environment import TaskEnv

        cfg = task_config(task)
        self.env = TaskEnv(task, config=cfg, render=False)
        self.env.reset(seed=0)
        self.planner = make_planner(planner, self.env, ArmKinematics(self.env), planning if planning is not None else cfg.get("planning"))

    def set_scene(self, state: np.ndarray | None) -> None:
        if state is not None:
            self.env.reset_to(np.asarray(state, dtype=float))

    def plan(self, start_joints, target_pose, touch=()) -> Trajectory:
        return self.planner.plan(start_joints, target_pose, touch=touch)

    def close(self) -> None:
        """Release the scene model's simulator (shutdown)."""
        self.env.close()


class PosePredictorCore:
    """Predicts the active stage's initiation pose each tick and decides when to (re)plan."""

    def __init__(self, agent, planner, epsilon: float = 0.05, replan: bool = True, reference_objects: Sequence[str] = ()):
        self.agent, self.planner = agent, planner
        self.epsilon, self.replan = float(epsilon), bool(replan)
        self.reference_objects = tuple(reference_objects)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget plans (a new goal)."""
        with self._lock:
            self.stage: int | None = None
            self.planned: np.ndarray | None = None  # target of the last successful plan of ``stage``
            self.busy = False
            self.failed_target: np.ndarray | None = None

    def tick(self, obs: dict, stage: int, stamp_ns: int, scene_state: np.ndarray | None = None) -> PoseTick:
        """Prediction for ``stage`` and, if needed and no plan is running, the plan request to run."""
        try:
            pose = np.asarray(self.agent.predict_pose(obs, stage), dtype=float)
        except Exception as exc:  # a broken agent must not kill the node
            return PoseTick(None, reason=f"pose predictor raised {type(exc).__name__}: {exc}")
        check = check_matrix_pose(pose)
        if not check.ok:
            return PoseTick(None, reason=f"predicted initiation pose rejected: {check.reason}")
        with self._lock:
            if stage != self.stage:
                self.stage, self.planned, self.failed_target = stage, None, None
            if self.busy:
                return PoseTick(pose)
            if self.planned is not None and (not self.replan or pose_distance(pose, self.planned) <= self.epsilon):
                return PoseTick(pose)
            if self.failed_target is not None and pose_distance(pose, self.failed_target) <= self.epsilon:
                return PoseTick(pose)  # do not retry the same failed target every tick
            self.busy = True
        touch = (self.reference_objects[stage],) if stage < len(self.reference_objects) else ()
        joints = np.asarray(obs["robot0_joint_pos"], dtype=float).copy()
        return PoseTick(pose, PlanRequest(stage, int(stamp_ns), joints, pose, touch, scene_state))

    def plan(self, request: PlanRequest) -> PlanResult:
        """Run one planning job (slow: call it off the control loop); never raises."""
        import time

        t0 = time.perf_counter()
        try:
            if hasattr(self.planner, "set_scene"):
                self.planner.set_scene(request.scene_state)
            traj = self.planner.plan(request.joints, request.target, touch=request.touch)
            result = PlanResult(request, traj)
        except PlanningFailed as exc:
            result = PlanResult(request, None, f"planning failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported, the node stays alive
            result = PlanResult(request, None, f"planner raised {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - t0
        with self._lock:
            self.busy = False
            if request.stage == self.stage:
                if result.trajectory is not None:
                    self.planned, self.failed_target = request.target, None
                else:
                    self.failed_target = request.target
        return result


# ---------------------------------------------------------------------- skill policy
class ResidualPolicy(Protocol):
    """A residual on top of the base skill policy (ReinforceGen's pi = pi_base + pi_res)."""

    def act(self, obs: dict, stage: int) -> np.ndarray: ...


class ZeroResidual:
    """No residual: the base policy alone (the imitation-learned HSP)."""

    def act(self, obs: dict, stage: int) -> np.ndarray:
        return np.zeros(7)


@dataclass
class SkillAction:
    """A bounded skill action (None with ``reason`` when the policy output was unusable)."""

    action: np.ndarray | None
    base: np.ndarray | None = None
    residual: np.ndarray | None = None
    reason: str = ""


class SkillPolicyCore:
    """Base skill policy + residual, summed and bounded to [-bound, bound] (gripper to [-1, 1])."""

    def __init__(self, agent, residual: ResidualPolicy | None = None, residual_scale: float = 1.0, bound: float = 1.0):
        if not 0 < bound <= 1:
            raise ValueError(f"the action bound must be in (0, 1], got {bound}")
        self.agent, self.residual = agent, residual or ZeroResidual()
        self.residual_scale, self.bound = float(residual_scale), float(bound)

    def reset(self) -> None:
        self.agent.reset()

    def act(self, obs: dict, stage: int) -> SkillAction:
        """The action of ``stage``'s skill on ``obs``."""
        try:
            base = np.asarray(self.agent.act(obs, stage), dtype=float).reshape(-1)
            res = np.asarray(self.residual.act(obs, stage), dtype=float).reshape(-1) * self.residual_scale
        except Exception as exc:  # noqa: BLE001
            return SkillAction(None, reason=f"skill policy raised {type(exc).__name__}: {exc}")
        if base.shape != (7,) or res.shape != (7,):
            return SkillAction(None, reason=f"skill policy outputs must have 7 values, got {base.size} + {res.size}")
        if not (np.all(np.isfinite(base)) and np.all(np.isfinite(res))):
            return SkillAction(None, reason="skill policy output contains NaN or inf")
        action = base + res
        action[:6] = np.clip(action[:6], -self.bound, self.bound)
        action[6] = np.clip(action[6], -1.0, 1.0)
        return SkillAction(action, base, res)


class PolicyResidual:
    """A residual stored as a hybrid-skill-policy directory: its skill policies' outputs are the residual."""

    def __init__(self, path: str | Path, task: str):
        from reinforcegen_ros.policies.residual import has_residual

        if has_residual(path):  # a fine-tuned agent applies its own residual (policies/residual.py)
            raise ValueError(f"'{path}' is a fine-tuned agent (base + residual): pass it as the agent, not as a residual")
        self.policy = load_agent(path, task)

    def act(self, obs: dict, stage: int) -> np.ndarray:
        out = np.asarray(self.policy.act(obs, stage), dtype=float).copy()
        out[6] = 0.0  # the gripper stays the base policy's decision
        return out


# ---------------------------------------------------------------------- termination
@dataclass
class TerminationEstimate:
    """Termination probability of the active stage and whether the stage end is accepted."""

    probability: float
    accepted: bool
    reason: str = ""


class TerminationCore:
    """The termination classifier with its decision threshold (the stage ends when p > threshold)."""

    def __init__(self, agent, threshold: float = 0.5):
        self.agent, self.threshold = agent, float(threshold)

    def estimate(self, obs: dict, stage: int) -> TerminationEstimate:
        try:
            p = float(self.agent.termination_prob(obs, stage))
        except Exception as exc:  # noqa: BLE001
            return TerminationEstimate(0.0, False, f"termination classifier raised {type(exc).__name__}: {exc}")
        if not np.isfinite(p) or not 0.0 <= p <= 1.0:
            return TerminationEstimate(0.0, False, f"termination probability {p} is not in [0, 1]")
        return TerminationEstimate(p, p > self.threshold)


def check_stage(stage: int, num_stages: int) -> Check:
    """The status names a stage this agent has."""
    if not 0 <= int(stage) < num_stages:
        return Check(False, f"stage {stage} out of range (the agent has {num_stages} stages)")
    return Check(True)
