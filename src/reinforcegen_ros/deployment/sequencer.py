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

Between goals it keeps publishing an ``idle`` status at the control rate. A
goal on a simulated robot first waits (phase ``reset``) until the scene has been
reset to the goal's seed (:meth:`StageSequencer.scene_ready`); observations from
before the reset are never used. Every command it emits carries a stamp
strictly later than the previous one (:meth:`StageSequencer.command_stamp`), so
a robot's stamp gate never refuses a command of the sequencer as a duplicate
(the e-stop hold included). It also keeps the figures of ``/diagnostics``
(:meth:`StageSequencer.diagnostics`) and the episode boundaries of a recording
(:meth:`StageSequencer.take_episode_events`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reinforcegen_ros.deployment.config import settings_from_dict
from reinforcegen_ros.deployment.guards import NS, OK, Check, CommandGuard, check_matrix_pose, hold_action
from reinforcegen_ros.hybrid import HybridConfig, HybridExecutor, Phase
from reinforcegen_ros.planning import PlanningFailed, Trajectory

PHASES = ("predict", "plan", "connect", "skill")
SEED_NEXT, SEED_KEEP = -1, -2  # ExecuteTask goal seeds: the bridge's next scene; no reset (as in reinforcegen_msgs)
DIAG_OK, DIAG_WARN, DIAG_ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


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
    reset_timeout: float = 10.0  # s waiting for a simulated scene reset before the goal fails
    diagnostics_window: float = 2.0  # s (wall) over which /diagnostics measures the tick rate and answer timeouts

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
    seed: int = SEED_KEEP  # scene seed the goal ran on (SEED_KEEP: the scene was not reset)


@dataclass
class TickOutput:
    """Part of a sequencer tick: the command to publish (None: none), the status to publish, the result when the goal ended."""

    command: np.ndarray | None
    status: StatusData | None
    result: GoalResult | None = None
    warnings: list[str] = field(default_factory=list)
    pending: bool = False  # a request: publish the status, collect the answers, then call complete()
    stamp_ns: int = 0  # stamp of ``command`` (strictly later than every earlier command's)


@dataclass
class EpisodeEvent:
    """An episode boundary for ``/episode`` (a recording of goals reads back as one episode per goal)."""

    event: int  # 0 START (stamped with the goal's first command), 1 END (stamped with its last)
    stamp_ns: int
    episode_index: int
    task: str
    stage_names: list[str]
    num_steps: int = 0
    success: bool = False
    attrs: dict = field(default_factory=dict)

    @property
    def attrs_json(self) -> str:
        return json.dumps(self.attrs, sort_keys=True)


@dataclass
class DiagnosticData:
    """One ``diagnostic_msgs/DiagnosticStatus``: level (0 OK, 1 WARN, 2 ERROR), name, message, key-value pairs."""

    level: int
    name: str
    message: str
    values: dict[str, str]
    hardware_id: str = ""


class RateWindow:
    """Events in the last ``window`` seconds of a clock: their count and rate."""

    def __init__(self, window: float):
        self.window = float(window)
        self.times: deque[float] = deque()

    def add(self, t: float) -> None:
        self.times.append(float(t))

    def count(self, now: float) -> int:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()
        return len(self.times)

    def rate(self, now: float) -> float:
        return self.count(now) / self.window


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
        self.status_wall: dict[int, float] = {}  # wall time each remembered status went out (planning latency)
        self.pose: _Answer | None = None
        self.path_ok: dict[int, _Answer] = {}
        self.path_failed: dict[int, _Answer] = {}
        self.action: _Answer | None = None
        self.term: _Answer | None = None

    def note_status(self, stamp_ns: int, stage: int, wall: float = 0.0) -> None:
        stamp_ns = int(stamp_ns)
        if stamp_ns not in self.status_stage:
            self.status_wall[stamp_ns] = float(wall)
        self.status_stage[stamp_ns] = int(stage)
        while len(self.status_stage) > self.history:
            old, _ = self.status_stage.popitem(last=False)
            self.status_wall.pop(old, None)

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
    """ExecuteTask goals on the hybrid executor with safety around it (see module docstring).

    ``can_reset``: the robot's scene can be reset to a seed (a simulation bridge); a real robot's goals ignore
    their seed. ``clock``: the wall clock of the diagnostics (injected by tests).
    """

    def __init__(
        self,
        task: str,
        stage_names: list[str],
        hybrid: HybridConfig,
        config: SequencerConfig | None = None,
        guard: CommandGuard | None = None,
        horizon: int = 1000,
        can_reset: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.task, self.stage_names = task, list(stage_names)
        self.config = config or SequencerConfig()
        self.guard = guard or CommandGuard()
        self.horizon = int(horizon)
        self.can_reset, self.clock = bool(can_reset), clock
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
        self.last_status: StatusData | None = None
        self.last_command_ns = 0  # stamp of the last command emitted (never reset: stamps only grow)
        self.last_idle_ns: int | None = None
        self.resetting: tuple[int, int] | None = None  # (requested seed, since ns) while waiting for the scene reset
        self.min_obs_ns = 0  # observations stamped earlier show the scene before the goal's reset
        self.seed = SEED_KEEP
        self.goals = 0
        self._events: list[EpisodeEvent] = []
        self._episode_started = False
        self._goal_wall: float | None = None  # wall time of the goal's first command (rates are judged after a full window)
        self.steps = 0  # commands emitted during the running goal
        self.tick_counts = {"answered": 0, "late": 0}
        window = self.config.diagnostics_window
        self.stats = {"ticks": RateWindow(window), "late": RateWindow(window), "statuses": RateWindow(window)}
        self.totals = {"ticks": 0, "late": 0, "rejected": 0, "plans": 0, "goals_succeeded": 0, "goals_failed": 0}
        self.planning_ms: deque[float] = deque(maxlen=50)
        self.last_result: GoalResult | None = None

    # ------------------------------------------------------------------ goals
    def start(self, task: str, time_limit: float, now_ns: int, seed: int = SEED_NEXT) -> Check:
        """Accept or reject an ExecuteTask goal.

        On a robot that ``can_reset``, a ``seed`` other than ``SEED_KEEP`` makes the goal wait (phase ``reset``)
        for :meth:`scene_ready`; the node asks the bridge for the reset (:attr:`reset_seed`). Elsewhere the seed
        is ignored (the check's reason says so).
        """
        if self.estop:
            return Check(False, "emergency stop is latched; publish false on /emergency_stop to release it")
        if self.active:
            return Check(False, "a goal is already running")
        if task != self.task:
            return Check(False, f"this sequencer runs task '{self.task}' (its agent's task), not '{task}'")
        if not np.isfinite(time_limit) or time_limit < 0:
            return Check(False, f"time_limit must be >= 0 s, got {time_limit}")
        if int(seed) < SEED_KEEP:
            return Check(False, f"seed must be >= 0, {SEED_NEXT} (the next scene) or {SEED_KEEP} (keep the scene), got {seed}")
        self.time_limit = float(time_limit) or self.horizon / self.config.control_rate
        self.relay.clear()
        self.executor.reset()
        self.agent.gripper = float(self.executor.config.initial_gripper)
        self.active, self._final_hold = True, False
        self.start_ns = self.phase_ns = self.stale_since = self.waiting_since = int(now_ns)
        self.last_obs_ns, self.rejected, self.pending = 0, 0, None
        self.tick_counts = {"answered": 0, "late": 0}  # completed ticks with all answers to their own status, or without
        self.phase = "predict"
        self.last_status = None
        self.goals += 1
        self.steps, self._episode_started, self._goal_wall = 0, False, None
        note = ""
        if self.can_reset and int(seed) != SEED_KEEP:
            self.resetting, self.seed = (int(seed), int(now_ns)), int(seed)
        else:
            self.resetting, self.seed = None, SEED_KEEP
            self.min_obs_ns = 0
            if int(seed) != SEED_KEEP and not self.can_reset:
                note = f"seed {seed} ignored: this robot's scene is not reset"
        return Check(True, note)

    @property
    def reset_seed(self) -> int | None:
        """The seed the robot's scene must be reset to before the running goal starts (None: no reset pending)."""
        return self.resetting[0] if self.resetting is not None else None

    def scene_ready(self, stamp_ns: int, seed: int, now_ns: int) -> None:
        """The scene was reset to ``seed``; its first observation is stamped ``stamp_ns``. The goal's clocks start now."""
        if not self.active or self.resetting is None:
            return
        self.resetting, self.seed = None, int(seed)
        self.min_obs_ns = int(stamp_ns)
        self.start_ns = self.phase_ns = self.stale_since = self.waiting_since = int(now_ns)

    def reset_failed(self, reason: str, now_ns: int) -> GoalResult | None:
        """The scene reset was refused or never answered: the goal fails."""
        if not self.active or self.resetting is None:
            return None
        return self._finish(now_ns, False, f"scene reset failed: {reason}")

    def cancel(self, now_ns: int, reason: str = "canceled") -> GoalResult | None:
        """End the running goal (the robot is held still)."""
        return self._finish(now_ns, False, reason) if self.active else None

    def set_emergency_stop(self, active: bool, now_ns: int) -> GoalResult | None:
        """``True`` latches the stop (and aborts a running goal); ``False`` releases the latch.

        The node then sends :meth:`hold_command` on ``True``.
        """
        self.estop = bool(active)
        if self.estop and self.active:
            return self._finish(now_ns, False, "emergency stop")
        return None

    def hold_command(self, now_ns: int) -> tuple[np.ndarray, int]:
        """A hold-still command outside a tick (the emergency stop) and its stamp, later than every earlier command's."""
        return hold_action(self.agent.gripper), self.command_stamp(now_ns)

    def shutdown(self, now_ns: int) -> GoalResult | None:
        """The node is shutting down: end a running goal ("shutdown") so that its action call returns."""
        return self.cancel(now_ns, "node shutting down")

    def command_stamp(self, proposed_ns: int) -> int:
        """Stamp of the next command: ``proposed_ns`` (the observation it answers) unless that is not later than the
        last command's stamp, then 1 ns after it. Every command the node publishes takes its stamp from here."""
        stamp = max(int(proposed_ns), self.last_command_ns + 1, 1)
        self.last_command_ns = stamp
        return stamp

    def take_episode_events(self) -> list[EpisodeEvent]:
        """Episode boundaries since the last call (to publish on ``/episode``)."""
        events, self._events = self._events, []
        return events

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
            self._note_plan(stamp_ns)
            self.relay.path_failed[stage] = _Answer(int(stamp_ns), stage, reason or "the pose predictor could not plan a path to its prediction")
            return OK
        poses = np.asarray(poses, dtype=float)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not np.all(np.isfinite(poses)):
            return Check(False, "path must be finite 4x4 poses")
        self._note_plan(stamp_ns)
        old = self.relay.path_ok.get(stage)
        if old is None or stamp_ns > old.stamp_ns:
            self.relay.path_ok[stage] = _Answer(int(stamp_ns), stage, poses)
        return OK

    def _note_plan(self, stamp_ns: int) -> None:
        """Planning latency: wall time from the status that asked for the plan to its answer."""
        sent = self.relay.status_wall.get(int(stamp_ns))
        if sent is not None:
            self.planning_ms.append(1e3 * max(0.0, self.clock() - sent))
            self.totals["plans"] += 1

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

        Returns either a finished output (a hold, the result, or between goals the idle status at the
        control rate) or a *request* (``pending``): the status to publish, stamped with the observation, which
        the component nodes answer; then call :meth:`complete` once :meth:`answers_ready` or after the answer
        timeout.
        """
        now_ns = int(now_ns)
        tick_stamp = int(obs_stamp_ns) if obs is not None and obs_stamp_ns > 0 else now_ns
        if not self.active:
            if self._final_hold:  # one explicit hold after a goal ended (stamped with the observation)
                self._final_hold = False
                return self._command(hold_action(self.agent.gripper), tick_stamp)
            return TickOutput(None, self._idle_status(now_ns, tick_stamp))
        cfg = self.config
        if self.resetting is not None:
            if (now_ns - self.resetting[1]) / NS > cfg.reset_timeout:
                return self._end(now_ns, False, f"scene reset failed: no new scene within {cfg.reset_timeout:g} s", tick_stamp)
            return TickOutput(None, self._waiting_status(tick_stamp, now_ns))
        if (now_ns - self.start_ns) / NS > self.time_limit:
            return self._end(now_ns, False, f"time limit of {self.time_limit:g} s reached", tick_stamp)
        limit = cfg.phase_limits.get(self.phase)
        if limit is not None and (now_ns - self.phase_ns) / NS > limit:
            return self._end(now_ns, False, f"phase {self.phase} of stage {self.executor.stage} exceeded its limit of {limit:g} s", tick_stamp)
        # watchdog: only a new, fresh observation of the goal's scene advances the executor
        before_reset = obs is not None and obs_stamp_ns < self.min_obs_ns
        fresh = obs is not None and not before_reset and obs_stamp_ns > self.last_obs_ns and (now_ns - obs_stamp_ns) / NS <= cfg.max_obs_age
        if not fresh:
            if before_reset:
                why = "no observation of the reset scene yet"
            else:
                why = obs_problem or ("no new observation" if obs is not None and obs_stamp_ns <= self.last_obs_ns else "observation is stale")
            if (now_ns - self.stale_since) / NS > cfg.watchdog_timeout:
                return self._end(now_ns, False, f"watchdog: {why} for more than {cfg.watchdog_timeout:g} s", tick_stamp)
            return self._hold(now_ns, [f"holding still: {why}"], tick_stamp)
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
        answered = self.answers_ready()
        self.tick_counts["answered" if answered else "late"] += 1
        wall = self.clock()
        self.stats["ticks"].add(wall)
        self.totals["ticks"] += 1
        if not answered:
            self.stats["late"].add(wall)
            self.totals["late"] += 1
        self.pending = None
        now_ns, cfg = int(now_ns), self.config
        self.agent.now_ns = stamp
        missing = self._missing_inputs(stamp)
        if missing:
            if (now_ns - self.waiting_since) / NS > cfg.input_timeout:
                return self._end(now_ns, False, f"no fresh {missing} for more than {cfg.input_timeout:g} s", stamp)
            return self._command(hold_action(self.agent.gripper), stamp)
        self.waiting_since = now_ns
        command = self.executor.tick(obs)
        warnings = []
        action = command.action
        if self.executor.phase in (Phase.CONNECT, Phase.SKILL) or command.phase in (Phase.CONNECT, Phase.SKILL):
            action, check = self.guard.filter(command.action, obs.get("robot0_eef_pos"))
            if not check.ok:
                self.rejected += 1
                self.totals["rejected"] += 1
                warnings.append(f"command rejected, holding still: {check.reason}")
                if self.rejected > cfg.max_rejected_commands:
                    return self._end(now_ns, False, f"{self.rejected} consecutive commands rejected by the safety guard ({check.reason})", stamp)
                action = hold_action(self.agent.gripper)
            else:
                self.rejected = 0
        self.agent.gripper = float(action[6])
        if self.executor.finished:
            st = self.executor.status
            ok = st.phase == Phase.DONE
            out = self._end(now_ns, ok, "success" if ok else st.failure_reason, stamp)
            out.warnings[:0] = warnings
            return out
        out = self._command(action, stamp)
        out.warnings = warnings
        return out

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

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self, now_ns: int) -> DiagnosticData:
        """The sequencer's state for ``/diagnostics``: tick rate, answer timeouts, planning latency, e-stop, goals."""
        wall, cfg = self.clock(), self.config
        rate = self.stats["ticks"].rate(wall)
        late = self.stats["late"].count(wall)
        ticks = self.stats["ticks"].count(wall)
        plans = list(self.planning_ms)
        state = "idle"
        if self.active:
            state = "resetting the scene" if self.resetting is not None else f"stage {self.executor.stage} {self.phase}"
        values = {
            "state": state,
            "goal_active": str(self.active).lower(),
            "emergency_stop": str(self.estop).lower(),
            "tick_rate_hz": f"{rate:.2f}",
            "control_rate_hz": f"{cfg.control_rate:g}",
            "status_rate_hz": f"{self.stats['statuses'].rate(wall):.2f}",
            "answer_timeouts_in_window": str(late),
            "ticks_in_window": str(ticks),
            "window_s": f"{cfg.diagnostics_window:g}",
            "answer_timeouts_total": str(self.totals["late"]),
            "ticks_total": str(self.totals["ticks"]),
            "commands_rejected_total": str(self.totals["rejected"]),
            "plans_received": str(self.totals["plans"]),
            "planning_latency_ms_last": f"{plans[-1]:.1f}" if plans else "",
            "planning_latency_ms_max": f"{max(plans):.1f}" if plans else "",
            "goals_succeeded": str(self.totals["goals_succeeded"]),
            "goals_failed": str(self.totals["goals_failed"]),
            "last_result": (("success" if self.last_result.success else self.last_result.reason) if self.last_result else ""),
            "scene_seed": str(self.seed) if self.seed != SEED_KEEP else "",
        }
        level, message = DIAG_OK, state
        if self.estop:
            level, message = DIAG_ERROR, "emergency stop latched"
        elif self.active and self._goal_wall is not None and wall - self._goal_wall >= cfg.diagnostics_window:
            if rate < 0.5 * cfg.control_rate:
                level, message = DIAG_WARN, f"{state}: ticking at {rate:.1f} Hz, below half the control rate ({cfg.control_rate:g} Hz)"
            elif ticks and late > ticks / 2:
                level, message = DIAG_WARN, f"{state}: {late} of {ticks} ticks waited out answer_timeout ({cfg.answer_timeout:g} s)"
        return DiagnosticData(level, "reinforcegen: stage_sequencer", message, values, hardware_id=self.task)

    # ------------------------------------------------------------------ helpers
    def _command(self, action: np.ndarray, stamp_ns: int, status: StatusData | None = None) -> TickOutput:
        """A command with its stamp; during a goal it counts as a step of the goal's episode."""
        stamp = self.command_stamp(stamp_ns)
        if self.active:
            self.steps += 1
            if not self._episode_started:
                self._episode_started = True
                self._goal_wall = self.clock()
                self._events.append(EpisodeEvent(0, stamp, self.goals - 1, self.task, self.stage_names, attrs=self._episode_attrs()))
        return TickOutput(action, status, stamp_ns=stamp)

    def _episode_attrs(self) -> dict:
        return {"seed": self.seed if self.seed != SEED_KEEP else None, "goal": self.goals - 1, "source": "stage_sequencer"}

    def _idle_status(self, now_ns: int, stamp_ns: int) -> StatusData | None:
        """The idle status, at most at the control rate (None when the last one is more recent)."""
        period = NS / self.config.control_rate
        if self.last_idle_ns is not None and 0 <= now_ns - self.last_idle_ns < 0.999 * period:
            return None
        self.last_idle_ns = now_ns
        self.stats["statuses"].add(self.clock())
        return StatusData(stamp_ns=int(stamp_ns), stage_index=-1, stage_name="", phase="idle", target=None,
                          termination_probability=0.0, replan_count=0)

    def _waiting_status(self, stamp_ns: int, now_ns: int) -> StatusData:
        """The status while the goal waits for its scene reset."""
        self.stats["statuses"].add(self.clock())
        status = StatusData(stamp_ns=int(stamp_ns), stage_index=-1, stage_name="", phase="reset", target=None,
                            termination_probability=0.0, replan_count=0)
        self.last_status = status
        return status

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
        wall = self.clock()
        self.relay.note_status(stamp_ns, k, wall)
        self.stats["statuses"].add(wall)
        self.last_status = status
        return status

    def _hold(self, now_ns: int, warnings: list[str], stamp_ns: int) -> TickOutput:
        status = self._status(stamp_ns, now_ns)
        out = self._command(hold_action(self.agent.gripper), stamp_ns, status)
        out.warnings = warnings
        return out

    def _end(self, now_ns: int, success: bool, reason: str, stamp_ns: int) -> TickOutput:
        out = self._command(hold_action(self.agent.gripper), stamp_ns)
        out.result = self._finish(now_ns, success, reason)
        out.status = self.last_status
        return out

    def _finish(self, now_ns: int, success: bool, reason: str) -> GoalResult:
        st = self.executor.status
        completed = len(self.stage_names) if st.phase == Phase.DONE else int(st.stage)
        if self.resetting is not None:
            status = self._waiting_status(now_ns, now_ns)
            status.failure_reason = reason
        else:
            status = self._status(now_ns, now_ns, "" if success else reason)
        status.phase = "done" if success else "failed"
        if self._episode_started:
            self._events.append(EpisodeEvent(1, self.last_command_ns, self.goals - 1, self.task, self.stage_names,
                                             num_steps=self.steps, success=success, attrs={**self._episode_attrs(), "reason": reason}))
        self.active, self._final_hold, self.pending, self.resetting = False, True, None, None
        self.totals["goals_succeeded" if success else "goals_failed"] += 1
        self.last_result = GoalResult(success, reason, completed, (int(now_ns) - self.start_ns) / NS, self.seed)
        return self.last_result
