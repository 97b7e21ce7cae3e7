"""The stage sequencer: runs the hybrid executor (Algorithm 1) for one ``ExecuteTask`` goal from component outputs.

In the ROS graph the learned components live in their own nodes. The
sequencer owns a :class:`~reinforcegen_ros.hybrid.HybridExecutor` whose agent
and planner are *relays* of those nodes' latest outputs:

- a tick has two halves: :meth:`StageSequencer.begin` publishes
  ``/stage_status`` stamped with the tick's observation (the active stage and
  phase), the component nodes answer it on that same observation, and
  :meth:`StageSequencer.complete` runs the executor with the answers once they
  are all in (:meth:`StageSequencer.answers_ready`) or after ``answer_timeout``
  (then answers up to ``max_input_age`` old are used). So a skill action is
  computed on the observation of the tick that applies it;
- each answer is stamped with the stamp of the status it answers, so the
  sequencer knows which stage an answer belongs to (a map of its recent status
  stamps) and how old it is;
- the pose predictor publishes predictions and, from a background planner,
  planned paths; the executor's ``predict_pose`` returns the target of the
  latest path planned for the stage (so the executor's re-plan test with
  ``epsilon`` sees exactly what the pose predictor planned for) and its planner
  returns that path; the skill policy's and termination classifier's latest
  fresh answers become ``act`` and ``termination_prob``.

Around the executor the sequencer enforces what a robot needs: an emergency
stop that latches, a watchdog on stale observations, per-phase time limits, a
goal time limit, a timeout on missing component outputs, and the command
guard. Whenever something is wrong the robot is held still (zero delta, gripper
unchanged) and a reason is reported; nothing raises.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from reinforcegen_ros.deployment.config import settings_from_dict
from reinforcegen_ros.deployment.guards import NS, OK, Check, CommandGuard, check_matrix_pose, hold_action
from reinforcegen_ros.hybrid import HybridConfig, HybridExecutor, Phase
from reinforcegen_ros.planning import PlanningFailed, Trajectory

PHASES = ("predict", "plan", "connect", "skill")


@dataclass
class SequencerConfig:
    """Timing and safety settings (``sequencer`` section of ``config/ros/deployment.yaml``)."""

    control_rate: float = 20.0  # Hz
    max_obs_age: float = 0.25  # s: an older observation is stale (hold still)
    watchdog_timeout: float = 1.0  # s of stale observations before the goal fails
    max_input_age: float = 0.3  # s: older component answers are not used
    input_timeout: float = 5.0  # s waiting for a component answer (planning included) before the goal fails
    answer_timeout: float = 0.03  # s (wall) a tick waits for the answers to its own status before using older ones
    phase_limits: dict = field(default_factory=lambda: {"predict": 10.0, "plan": 10.0, "connect": 30.0, "skill": 40.0})
    max_rejected_commands: int = 20  # consecutive commands refused by the guard before the goal fails
    status_history: int = 400  # status stamps remembered to attribute component answers

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "SequencerConfig":
        out = settings_from_dict(cls, cfg, "sequencer")
        bad = sorted(set(out.phase_limits) - set(PHASES))
        if bad:
            raise ValueError(f"unknown phases in sequencer.phase_limits: {', '.join(bad)}")
        return out


@dataclass
class StatusData:
    """What ``/stage_status`` (and the action feedback) carries."""

    stamp_ns: int
    stage_index: int
    stage_name: str
    phase: str
    target: np.ndarray | None
    termination_probability: float
    replan_count: int
    failure_reason: str = ""


@dataclass
class GoalResult:
    """The ``ExecuteTask`` result."""

    success: bool
    reason: str
    stages_completed: int
    duration: float


@dataclass
class TickOutput:
    """Part of a sequencer tick: the command to publish (None: none), the status to publish, the result when the goal ended."""

    command: np.ndarray | None
    status: StatusData | None
    result: GoalResult | None = None
    warnings: list[str] = field(default_factory=list)
    pending: bool = False  # a request: publish the status, collect the answers, then call complete()


@dataclass
class _Answer:
    stamp_ns: int
    stage: int
    value: object


class ComponentRelay:
    """Latest answers of the component nodes, attributed to stages through the status stamps."""

    def __init__(self, history: int):
        self.history = history
        self.clear()

    def clear(self) -> None:
        self.status_stage: OrderedDict[int, int] = OrderedDict()
        self.pose: _Answer | None = None
        self.path_ok: dict[int, _Answer] = {}
        self.path_failed: dict[int, _Answer] = {}
        self.action: _Answer | None = None
        self.term: _Answer | None = None

    def note_status(self, stamp_ns: int, stage: int) -> None:
        self.status_stage[int(stamp_ns)] = int(stage)
        while len(self.status_stage) > self.history:
            self.status_stage.popitem(last=False)

    def stage_of(self, stamp_ns: int) -> int | None:
        return self.status_stage.get(int(stamp_ns))

    def fresh(self, answer: _Answer | None, stage: int, now_ns: int, max_age: float) -> bool:
        return answer is not None and answer.stage == stage and (now_ns - answer.stamp_ns) / NS <= max_age


class RelayAgent:
    """The agent interface of :class:`HybridExecutor` backed by the component nodes' answers."""

    def __init__(self, task: str, num_stages: int, relay: ComponentRelay, config: SequencerConfig):
        self.task, self.obs_mode, self.num_stages = task, "relay", num_stages
        self.relay, self.config = relay, config
        self.now_ns = 0
        self.gripper = -1.0

    def reset(self) -> None:
        pass

    def predict_pose(self, obs: dict, stage: int) -> np.ndarray | None:
        """Target of the latest path planned for ``stage``; the failed prediction if planning failed; else None (wait)."""
        if stage in self.relay.path_ok:
            return self.relay.path_ok[stage].value[-1]
        failed = self.relay.path_failed.get(stage)
        if failed is not None:
            pose = self.relay.pose
            return pose.value if pose is not None and pose.stage == stage else np.eye(4)
        return None

    def act(self, obs: dict, stage: int) -> np.ndarray:
        """The skill policy's latest fresh action for ``stage``; hold still without one."""
        if self.relay.fresh(self.relay.action, stage, self.now_ns, self.config.max_input_age):
            return np.asarray(self.relay.action.value, dtype=float)
        return hold_action(self.gripper)

    def termination_prob(self, obs: dict, stage: int) -> float:
        """The termination classifier's latest fresh probability for ``stage`` (0 without one)."""
        if self.relay.fresh(self.relay.term, stage, self.now_ns, self.config.max_input_age):
            return float(self.relay.term.value)
        return 0.0


class RelayPlanner:
    """The planner interface of :class:`HybridExecutor`: the pose predictor's path to the requested target."""

    def __init__(self, relay: ComponentRelay, executor_stage):
        self.relay, self.executor_stage = relay, executor_stage

    def plan(self, start_joints, target_pose, touch=()) -> Trajectory:
        stage = self.executor_stage()
        ok = self.relay.path_ok.get(stage)
        if ok is not None and np.allclose(ok.value[-1], target_pose, atol=1e-9):
            return Trajectory(poses=np.array(ok.value))
        failed = self.relay.path_failed.get(stage)
        raise PlanningFailed(failed.value if failed is not None else "the pose predictor has no path to this target")


class StageSequencer:
    """ExecuteTask goals on the hybrid executor with safety around it (see module docstring)."""

    def __init__(
        self,
        task: str,
        stage_names: list[str],
        hybrid: HybridConfig,
        config: SequencerConfig | None = None,
        guard: CommandGuard | None = None,
        horizon: int = 1000,
    ):
        self.task, self.stage_names = task, list(stage_names)
        self.config = config or SequencerConfig()
        self.guard = guard or CommandGuard()
        self.horizon = int(horizon)
        if hybrid.termination != "learned":
            raise ValueError("the ROS sequencer uses the learned termination classifier (no oracle on a robot)")
        self.relay = ComponentRelay(self.config.status_history)
        self.agent = RelayAgent(task, len(self.stage_names), self.relay, self.config)
        self.executor = HybridExecutor(self.agent, RelayPlanner(self.relay, lambda: self.executor.stage), hybrid)
        self.estop = False
        self.active = False
        self._final_hold = False
        self.last_obs_ns = 0
        self.pending: tuple | None = None

    # ------------------------------------------------------------------ goals
    def start(self, task: str, time_limit: float, now_ns: int) -> Check:
        """Accept or reject an ExecuteTask goal."""
        if self.estop:
            return Check(False, "emergency stop is latched; publish false on /emergency_stop to release it")
        if self.active:
            return Check(False, "a goal is already running")
        if task != self.task:
            return Check(False, f"this sequencer runs task '{self.task}' (its agent's task), not '{task}'")
        if not np.isfinite(time_limit) or time_limit < 0:
            return Check(False, f"time_limit must be >= 0 s, got {time_limit}")
        self.time_limit = float(time_limit) or self.horizon / self.config.control_rate
        self.relay.clear()
        self.executor.reset()
        self.agent.gripper = float(self.executor.config.initial_gripper)
        self.active, self._final_hold = True, False
        self.start_ns = self.phase_ns = self.stale_since = self.waiting_since = int(now_ns)
        self.last_obs_ns, self.rejected, self.pending = 0, 0, None
        self.tick_counts = {"answered": 0, "late": 0}  # completed ticks with all answers to their own status, or without
        self.phase = "predict"
        self.last_status: StatusData | None = None
        return OK

    def cancel(self, now_ns: int, reason: str = "canceled") -> GoalResult | None:
        """End the running goal (the robot is held still)."""
        return self._finish(now_ns, False, reason) if self.active else None

    def set_emergency_stop(self, active: bool, now_ns: int) -> GoalResult | None:
        """``True`` latches the stop (and aborts a running goal); ``False`` releases the latch."""
        self.estop = bool(active)
        if self.estop and self.active:
            return self._finish(now_ns, False, "emergency stop")
        return None

    # ------------------------------------------------------------------ component answers
    def on_predicted_pose(self, stamp_ns: int, pose: np.ndarray) -> Check:
        stage = self._stage_of(stamp_ns)
        if stage is None:
            return Check(False, "predicted pose answers no recent status")
        check = check_matrix_pose(pose)
        if not check.ok:
            return Check(False, f"predicted pose rejected: {check.reason}")
        self.relay.pose = _Answer(int(stamp_ns), stage, np.asarray(pose, dtype=float))
        return OK

    def on_path(self, stamp_ns: int, poses: np.ndarray | None, reason: str = "") -> Check:
        """A planned path (N,4,4) for the status stamped ``stamp_ns``; empty/None: planning failed."""
        stage = self._stage_of(stamp_ns)
        if stage is None:
            return Check(False, "path answers no recent status")
        if poses is None or len(poses) == 0:
            known = self.relay.path_failed.get(stage)
            if not reason and known is not None and known.stamp_ns == int(stamp_ns):
                return OK  # the reason for this failure came already
            self.relay.path_failed[stage] = _Answer(int(stamp_ns), stage, reason or "the pose predictor could not plan a path to its prediction")
            return OK
        poses = np.asarray(poses, dtype=float)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not np.all(np.isfinite(poses)):
            return Check(False, "path must be finite 4x4 poses")
        old = self.relay.path_ok.get(stage)
        if old is None or stamp_ns > old.stamp_ns:
            self.relay.path_ok[stage] = _Answer(int(stamp_ns), stage, poses)
        return OK

    def on_skill_command(self, stamp_ns: int, action: np.ndarray) -> Check:
        stage = self._stage_of(stamp_ns)
        if stage is None:
            return Check(False, "skill command answers no recent status")
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != (7,) or not np.all(np.isfinite(a)):
            return Check(False, "skill command must be 7 finite numbers")
        self.relay.action = _Answer(int(stamp_ns), stage, a)
        return OK

    def on_termination(self, stamp_ns: int, probability: float) -> Check:
        stage = self._stage_of(stamp_ns)
        if stage is None:
            return Check(False, "termination estimate answers no recent status")
        p = float(probability)
        if not np.isfinite(p) or not 0 <= p <= 1:
            return Check(False, f"termination probability {p} is not in [0, 1]")
        self.relay.term = _Answer(int(stamp_ns), stage, p)
        return OK

    def _stage_of(self, stamp_ns: int) -> int | None:
        return self.relay.stage_of(stamp_ns) if self.active else None

    # ------------------------------------------------------------------ the tick
    def begin(self, now_ns: int, obs: dict | None, obs_stamp_ns: int = 0, obs_problem: str = "") -> TickOutput:
        """Start a control tick at ``now_ns`` on the latest observation (None with ``obs_problem`` if unusable).

        Returns either a finished output (a hold, or the result) or a *request*
        (``pending``): the status to publish, stamped with the observation, which
        the component nodes answer; then call :meth:`complete` once
        :meth:`answers_ready` or after the answer timeout.
        """
        if not self.active:
            if self._final_hold:  # one explicit hold after a goal ended (stamp it with the observation)
                self._final_hold = False
                return TickOutput(hold_action(self.agent.gripper), None)
            return TickOutput(None, None)
        now_ns = int(now_ns)
        cfg = self.config
        if (now_ns - self.start_ns) / NS > self.time_limit:
            return self._end(now_ns, False, f"time limit of {self.time_limit:g} s reached")
        limit = cfg.phase_limits.get(self.phase)
        if limit is not None and (now_ns - self.phase_ns) / NS > limit:
            return self._end(now_ns, False, f"phase {self.phase} of stage {self.executor.stage} exceeded its limit of {limit:g} s")
        # watchdog: only a new, fresh observation advances the executor
        fresh = obs is not None and obs_stamp_ns > self.last_obs_ns and (now_ns - obs_stamp_ns) / NS <= cfg.max_obs_age
        if not fresh:
            why = obs_problem or ("no new observation" if obs is not None and obs_stamp_ns <= self.last_obs_ns else "observation is stale")
            if (now_ns - self.stale_since) / NS > cfg.watchdog_timeout:
                return self._end(now_ns, False, f"watchdog: {why} for more than {cfg.watchdog_timeout:g} s")
            return self._hold(now_ns, [f"holding still: {why}"])
        self.stale_since = now_ns
        self.last_obs_ns = obs_stamp_ns
        self.pending = (now_ns, obs, int(obs_stamp_ns))
        return TickOutput(None, self._status(obs_stamp_ns, now_ns), pending=True)

    def answers_ready(self) -> bool:
        """Whether the answers the pending tick needs, computed on its own observation, have all arrived."""
        if self.pending is None:
            return False
        relay, stage, stamp = self.relay, self.executor.stage, self.pending[2]
        phase = self.executor.phase
        if phase in (Phase.PREDICT, Phase.PLAN):
            return self.agent.predict_pose(None, stage) is not None
        exact = lambda answer: answer is not None and answer.stage == stage and answer.stamp_ns == stamp  # noqa: E731
        if phase == Phase.CONNECT:
            return exact(relay.pose)
        if phase == Phase.SKILL:
            return exact(relay.action) and exact(relay.term)
        return True

    def complete(self, now_ns: int) -> TickOutput:
        """Finish the pending tick with the answers at hand (older ones within ``max_input_age`` are used too)."""
        if self.pending is None or not self.active:
            return TickOutput(None, None)
        _, obs, stamp = self.pending
        self.tick_counts["answered" if self.answers_ready() else "late"] += 1
        self.pending = None
        now_ns, cfg = int(now_ns), self.config
        self.agent.now_ns = stamp
        missing = self._missing_inputs(stamp)
        if missing:
            if (now_ns - self.waiting_since) / NS > cfg.input_timeout:
                return self._end(now_ns, False, f"no fresh {missing} for more than {cfg.input_timeout:g} s")
            return TickOutput(hold_action(self.agent.gripper), None)
        self.waiting_since = now_ns
        command = self.executor.tick(obs)
        warnings = []
        action = command.action
        if self.executor.phase in (Phase.CONNECT, Phase.SKILL) or command.phase in (Phase.CONNECT, Phase.SKILL):
            action, check = self.guard.filter(command.action, obs.get("robot0_eef_pos"))
            if not check.ok:
                self.rejected += 1
                warnings.append(f"command rejected, holding still: {check.reason}")
                if self.rejected > cfg.max_rejected_commands:
                    return self._end(now_ns, False, f"{self.rejected} consecutive commands rejected by the safety guard ({check.reason})")
                action = hold_action(self.agent.gripper)
            else:
                self.rejected = 0
        self.agent.gripper = float(action[6])
        if self.executor.finished:
            st = self.executor.status
            ok = st.phase == Phase.DONE
            out = self._end(now_ns, ok, "success" if ok else st.failure_reason)
            out.warnings[:0] = warnings
            return out
        return TickOutput(action, None, None, warnings)

    def _missing_inputs(self, now_ns: int) -> str:
        """Which component answer the current phase waits for ('' if none)."""
        relay, age, stage = self.relay, self.config.max_input_age, self.executor.stage
        phase = self.executor.phase
        if phase == Phase.CONNECT and not relay.fresh(relay.pose, stage, now_ns, age):
            return "initiation pose prediction"
        if phase == Phase.SKILL:
            if not relay.fresh(relay.action, stage, now_ns, age):
                return "skill policy command"
            if not relay.fresh(relay.term, stage, now_ns, age):
                return "termination estimate"
        return ""

    # ------------------------------------------------------------------ helpers
    def _status(self, stamp_ns: int, now_ns: int, failure: str = "") -> StatusData:
        st = self.executor.status
        phase = st.phase.value
        if phase == "predict" and self.relay.pose is not None and self.relay.pose.stage == st.stage:
            phase = "plan"  # predicted; the planner is working on it
        if phase != self.phase:
            self.phase, self.phase_ns = phase, now_ns
        k = st.stage
        status = StatusData(
            stamp_ns=int(stamp_ns),
            stage_index=k,
            stage_name=self.stage_names[k] if 0 <= k < len(self.stage_names) else "",
            phase=phase,
            target=st.target,
            termination_probability=float(st.termination_prob),
            replan_count=int(st.replans_per_stage[k]) if 0 <= k < len(st.replans_per_stage) else 0,
            failure_reason=failure or st.failure_reason,
        )
        self.relay.note_status(stamp_ns, k)
        self.last_status = status
        return status

    def _hold(self, now_ns: int, warnings: list[str], stamp_ns: int | None = None) -> TickOutput:
        status = self._status(stamp_ns or now_ns, now_ns)
        return TickOutput(hold_action(self.agent.gripper), status, None, warnings)

    def _end(self, now_ns: int, success: bool, reason: str) -> TickOutput:
        result = self._finish(now_ns, success, reason)
        return TickOutput(hold_action(self.agent.gripper), self.last_status, result)

    def _finish(self, now_ns: int, success: bool, reason: str) -> GoalResult:
        st = self.executor.status
        completed = len(self.stage_names) if st.phase == Phase.DONE else int(st.stage)
        status = self._status(now_ns, now_ns, "" if success else reason)
        status.phase = "done" if success else "failed"
        self.active, self._final_hold, self.pending = False, True, None
        return GoalResult(success, reason, completed, (int(now_ns) - self.start_ns) / NS)
