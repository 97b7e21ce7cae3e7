"""stage_sequencer node: the ExecuteTask action server running the hybrid skill policy on the robot.

Action: /execute_task (reinforcegen_msgs/action/ExecuteTask); feedback = the
stage status; the result says success, the reason, stages completed and the
duration (node clock: simulated time under use_sim_time).
Subscribes: /joint_states, /eef_pose (the robot state), /emergency_stop
(std_msgs/Bool: true latches a stop and aborts the goal, false releases the
latch), and the component nodes' answers /pose_predictor/pose,
/pose_predictor/path, /skill_policy/command, /termination/status.
Publishes: /stage_status (reinforcegen_msgs/StageStatus) each tick, between
goals too (phase idle, at the control rate), /eef_command
(reinforcegen_msgs/EefCommand, guarded; hold-still commands when anything is
missing, stale or refused; stamps strictly increasing), /diagnostics
(diagnostic_msgs/DiagnosticArray at 1 Hz: tick rate, answer timeouts, planning
latency, e-stop, goals) and /episode (reinforcegen_msgs/EpisodeMarker: START at
a goal's first command, END at its last, so a recording reads back as one
episode per goal).
Scene reset: on a simulated robot (robot.reset_service, sim.yaml) each goal
first calls the bridge's ResetScene service with the goal's seed and starts
when the new scene is there; a real robot (reset_service empty) ignores the
seed.
Ticks: on each new observation (robot.tick_on: observation, simulation in
lock-step) or on a timer at the control rate (tick_on: timer, real robots
with fast joint states); a watchdog timer ticks when observations stop.
Parameters: task, agent (optional: goals are refused when it is for another
task), config_file, robot_file.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Bool
from visualization_msgs.msg import Marker

from reinforcegen_ros import messages as M
from reinforcegen_ros.deployment.guards import Check, CommandGuard, GuardConfig
from reinforcegen_ros.deployment.observation import SensorCache
from reinforcegen_ros.deployment.sequencer import SEED_KEEP, SequencerConfig, StageSequencer
from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.nodes.common import (
    ACTION_EXECUTE_TASK, SENSOR_QOS, TOPIC_DIAGNOSTICS, TOPIC_STATUS_MARKER, TOPIC_EMERGENCY_STOP, TOPIC_PLANNED_PATH,
    TOPIC_PREDICTED_POSE, TOPIC_PLANNING_STATUS, TOPIC_SKILL_COMMAND, TOPIC_TERMINATION_STATUS, BaseNode, fatal, now_ns, spin,
    stamp_ns, subscribe_sensors,
)

DIAGNOSTICS_PERIOD = 1.0  # s (wall) between /diagnostics messages
from reinforcegen_ros.tasks import stages, task_config


class StageSequencerNode(BaseNode):
    def __init__(self):
        super().__init__("stage_sequencer")
        from rosidl_runtime_py.utilities import get_action

        agent_dir = self.declare_parameter("agent", "").value
        self.agent_problem = self._check_agent(agent_dir)
        tcfg = task_config(self.task)
        self.reset_service = str(self.robot.get("reset_service") or "")
        try:
            self.core = StageSequencer(
                self.task, [s.name for s in stages(self.task)], HybridConfig.load(tcfg, termination="learned"),
                SequencerConfig.from_dict(self.config.get("sequencer")), CommandGuard(GuardConfig.from_dict(self.config.get("guards"))),
                horizon=int(tcfg.get("horizon", 1000)), can_reset=bool(self.reset_service),
            )
        except ValueError as exc:
            fatal(self, f"bad configuration: {exc}")
        self.reset_client = None
        if self.reset_service:
            from rosidl_runtime_py.utilities import get_interface

            self.reset_client = self.create_client(get_interface("reinforcegen_msgs/srv/ResetScene"), self.reset_service,
                                                   callback_group=ReentrantCallbackGroup())
        self.lock = threading.RLock()
        self.cache = SensorCache(need_objects=False, known_frames=tuple(self.config["guards"].get("known_frames", ["world"])))
        self.period = 1.0 / float(self.core.config.control_rate)
        self.on_observation = self.robot.get("tick_on", "observation") == "observation"
        self.last_tick_ns = 0
        self.result = None
        self.result_ready = threading.Event()
        self.execute_returned = threading.Event()  # no execute callback running (set between goals)
        self.execute_returned.set()
        self.feedback = None
        ticks = MutuallyExclusiveCallbackGroup()
        subscribe_sensors(self, self.cache, self._maybe_tick if self.on_observation else None)
        self.pub_status = self.create_publisher(self.m.StageStatus, M.TOPIC_STAGE_STATUS, 10)
        self.pub_command = self.create_publisher(self.m.EefCommand, M.TOPIC_EEF_COMMAND, 10)
        self.pub_marker = self.create_publisher(Marker, TOPIC_STATUS_MARKER, 10)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.pub_episode = self.create_publisher(self.m.EpisodeMarker, M.TOPIC_EPISODE, 10)
        self.create_subscription(Bool, TOPIC_EMERGENCY_STOP, self._on_estop, 10)
        from nav_msgs.msg import Path

        self.create_subscription(self.m.PoseStamped, TOPIC_PREDICTED_POSE, self._answer(self._pose), SENSOR_QOS)
        self.create_subscription(Path, TOPIC_PLANNED_PATH, self._answer(self._path), SENSOR_QOS)
        self.create_subscription(self.m.StageStatus, TOPIC_PLANNING_STATUS, self._answer(self._planning_failure), SENSOR_QOS)
        self.create_subscription(self.m.EefCommand, TOPIC_SKILL_COMMAND, self._answer(self._skill), SENSOR_QOS)
        self.create_subscription(self.m.StageStatus, TOPIC_TERMINATION_STATUS, self._answer(self._term), SENSOR_QOS)
        self.create_timer(self.period / 2 if self.on_observation else self.period, self._on_timer, callback_group=ticks)
        # answers are awaited for at most answer_timeout wall seconds (simulated time stands still meanwhile)
        self.answer_timeout = float(self.core.config.answer_timeout)
        self.deadline = 0.0
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        # armed (reset) only while a tick waits for answers: an idle sequencer has no timer to wake it between ticks
        self.deadline_timer = self.create_timer(self.answer_timeout, self._on_deadline, callback_group=MutuallyExclusiveCallbackGroup(),
                                                clock=steady)
        self.deadline_timer.cancel()
        self.create_timer(DIAGNOSTICS_PERIOD, self._on_diagnostics, callback_group=MutuallyExclusiveCallbackGroup(), clock=steady)
        self.action = ActionServer(
            self, get_action("reinforcegen_msgs/action/ExecuteTask"), ACTION_EXECUTE_TASK,
            execute_callback=self._execute, goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self.get_logger().info(
            f"stage sequencer for '{self.task}' ready ({len(self.core.stage_names)} stages, ticks on {'observations' if self.on_observation else 'a timer'}, "
            f"{'goals reset the scene via ' + self.reset_service if self.reset_service else 'no scene reset'})"
        )

    def _check_agent(self, agent_dir: str) -> str:
        if not agent_dir:
            return ""
        from pathlib import Path

        from reinforcegen_ros.policies.hsp import read_agent_config

        try:
            meta = read_agent_config(Path(agent_dir))
        except ValueError as exc:
            return str(exc)
        if meta.get("task") != self.task:
            return f"'{agent_dir}' holds a policy for task '{meta.get('task')}', not '{self.task}'"
        return ""

    # ------------------------------------------------------------------ inputs
    def _answer(self, handler):
        def callback(msg):
            with self.lock:
                check = handler(msg)
                ready = self.core.pending is not None and self.core.answers_ready()
            if not check.ok:
                self.warn(f"component answer ignored: {check.reason}", check.reason[:24])
            if ready:
                self._complete()
        return callback

    def _pose(self, msg):
        try:
            pose = M.pose_from_msg(msg.pose)
        except ValueError as exc:
            return _fail(f"predicted pose rejected: {exc}")
        if msg.header.frame_id not in self.cache.known_frames:
            return _fail(f"predicted pose in unknown frame '{msg.header.frame_id}'")
        return self.core.on_predicted_pose(stamp_ns(msg), pose)

    def _path(self, msg):
        try:
            poses = np.stack([M.pose_from_msg(p.pose) for p in msg.poses]) if msg.poses else None
        except ValueError as exc:
            return _fail(f"path rejected: {exc}")
        if msg.header.frame_id not in self.cache.known_frames:
            return _fail(f"path in unknown frame '{msg.header.frame_id}'")
        return self.core.on_path(stamp_ns(msg), poses)

    def _planning_failure(self, msg):
        return self.core.on_path(stamp_ns(msg), None, msg.failure_reason or "planning failed")

    def _skill(self, msg):
        try:
            action = M.action_from_msg(msg)
        except ValueError as exc:
            return _fail(str(exc))
        return self.core.on_skill_command(stamp_ns(msg), action)

    def _term(self, msg):
        return self.core.on_termination(stamp_ns(msg), msg.termination_probability)

    def _on_estop(self, msg) -> None:
        with self.lock:
            result = self.core.set_emergency_stop(bool(msg.data), now_ns(self))
        if msg.data:
            self.get_logger().error("emergency stop: holding still, goals refused until false is published on /emergency_stop")
            with self.lock:
                action, stamp = self.core.hold_command(now_ns(self))  # stamped after every earlier command
            self._publish_command(action, stamp)
        else:
            self.get_logger().info("emergency stop released")
        if result is not None:
            self._deliver(result, publish_status=True)

    def _on_diagnostics(self) -> None:
        with self.lock:
            diag = self.core.diagnostics(now_ns(self))
        diag.name = f"{self.get_name()}: hybrid skill policy"
        self.pub_diagnostics.publish(M.diagnostics_to_msg([diag], max(now_ns(self), 1), self.m))

    # ------------------------------------------------------------------ ticks
    def _maybe_tick(self) -> None:
        stamp = self.cache.stamp()
        if stamp is not None and stamp > self.last_tick_ns:
            self._tick()

    def _on_timer(self) -> None:
        if not self.on_observation or (now_ns(self) - self.last_tick_ns) / 1e9 > 1.5 * self.period:
            self._tick()

    def _tick(self) -> None:
        """Begin a tick: publish the status the component nodes answer (or a hold); complete it when answered."""
        with self.lock:
            if self.core.pending is not None:  # the previous tick is still waiting: finish it first
                self._complete()
            now = now_ns(self)
            obs, stamp, why = self.cache.observation(now, self.core.config.max_obs_age)
            self.last_tick_ns = stamp if obs is not None else now
            out = self.core.begin(now, obs, stamp, why.reason)
            if out.pending:
                self.deadline = time.monotonic() + self.answer_timeout
                self.deadline_timer.reset()
            self._emit(out, obs)
            if out.pending and self.core.answers_ready():
                self._complete()

    def _complete(self) -> None:
        """Finish the pending tick with the answers at hand and publish its command (or result)."""
        with self.lock:
            if self.core.pending is None:
                return
            self._emit(self.core.complete(now_ns(self)), None)

    def _on_deadline(self) -> None:
        """answer_timeout after a tick went pending: complete it with the answers at hand (then disarm)."""
        with self.lock:
            if self.core.pending is not None and time.monotonic() < self.deadline - DEADLINE_SLACK:
                return  # a later tick re-armed the timer: its own deadline is not due yet
            self.deadline_timer.cancel()
            self._complete()

    def _emit(self, out, obs) -> None:
        for w in out.warnings:
            self.warn(w, w[:30])
        if out.status is not None:
            msg = self._status_msg(out.status)
            self.pub_status.publish(msg)
            self.pub_marker.publish(self._marker(out.status, obs))
            if out.status.phase != "idle":
                self.feedback = msg
        if out.command is not None:
            self._publish_command(out.command, out.stamp_ns)
        self._publish_episode_events()
        if out.result is not None:
            self._deliver(out.result)

    def _publish_episode_events(self) -> None:
        for e in self.core.take_episode_events():
            self.pub_episode.publish(M.episode_marker_to_msg(self.m, e.event, e.stamp_ns, e.episode_index, e.task, e.stage_names,
                                                             e.num_steps, e.success, e.attrs_json))

    def _status_msg(self, st):
        return M.stage_status_to_msg(
            st.stamp_ns, st.stage_index, st.stage_name, st.phase, self.m, target_pose=st.target,
            termination_probability=st.termination_probability, replan_count=st.replan_count, failure_reason=st.failure_reason,
        )

    def _marker(self, st, obs) -> Marker:
        """The stage status as a text marker for rviz (above the grip site)."""
        marker = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, ns="stage_status", id=0)
        marker.header = M.header_to_msg(st.stamp_ns, self.m)
        pos = obs["robot0_eef_pos"] if obs is not None else np.zeros(3)
        marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = float(pos[0]), float(pos[1]), float(pos[2]) + 0.15
        marker.pose.orientation.w = 1.0
        marker.scale.z = 0.04
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = (1.0, 0.3, 0.3, 1.0) if st.phase == "failed" else (1.0, 1.0, 1.0, 1.0)
        text = f"stage {st.stage_index} {st.stage_name}: {st.phase}  p_term={st.termination_probability:.2f}  replans={st.replan_count}"
        marker.text = text + (f"\n{st.failure_reason}" if st.failure_reason else "")
        return marker

    def _publish_command(self, action, stamp) -> None:
        self.pub_command.publish(M.action_to_msg(np.asarray(action, dtype=float), stamp, self.m))

    # ------------------------------------------------------------------ the action
    def _on_goal(self, goal) -> GoalResponse:
        if self.agent_problem:
            self.get_logger().error(f"goal refused: {self.agent_problem}")
            return GoalResponse.REJECT
        try:
            g = M.execute_task_goal_from_msg(goal)
        except ValueError as exc:
            self.get_logger().error(f"goal refused: {exc}")
            return GoalResponse.REJECT
        if self.reset_client is not None and g.seed != SEED_KEEP and not self.reset_client.service_is_ready():
            self.get_logger().error(f"goal refused: the scene reset service {self.reset_service} is not available (is the bridge running?)")
            return GoalResponse.REJECT
        with self.lock:
            check = self.core.start(g.task, g.time_limit, now_ns(self), seed=g.seed)
            seed = self.core.reset_seed
        if not check.ok:
            self.get_logger().error(f"goal refused: {check.reason}")
            return GoalResponse.REJECT
        if check.reason:
            self.get_logger().info(check.reason)
        self.result, self.feedback = None, None
        self.result_ready.clear()
        if seed is not None:
            request = self.reset_client.srv_type.Request(seed=int(seed))
            self.reset_client.call_async(request).add_done_callback(self._on_reset_done)
        self.get_logger().info(f"goal accepted: task '{g.task}', time limit {g.time_limit or 'task horizon'}"
                               + (f", scene seed {seed}" if seed is not None else ""))
        return GoalResponse.ACCEPT

    def _on_reset_done(self, future) -> None:
        """The bridge's answer to the scene reset of the goal just accepted."""
        try:
            response = future.result()
            ok, why = bool(response.success), str(response.message)
        except Exception as exc:  # noqa: BLE001 - the goal fails with the reason
            response, ok, why = None, False, f"{type(exc).__name__}: {exc}"
        with self.lock:
            if ok:
                self.core.scene_ready(M.stamp_from_msg(response.stamp), int(response.seed), now_ns(self))
                result = None
            else:
                result = self.core.reset_failed(why, now_ns(self))
        if ok:
            self.get_logger().info(f"scene reset to seed {response.seed}")
        elif result is not None:
            self._deliver(result, publish_status=True)

    def _deliver(self, result, publish_status: bool = False) -> None:
        if publish_status and self.core.last_status is not None:  # the final (failed) status, outside a tick
            self.pub_status.publish(self._status_msg(self.core.last_status))
        self.result = result
        self.result_ready.set()
        level = self.get_logger().info if result.success else self.get_logger().warning
        counts = self.core.tick_counts
        level(f"goal ended: {result.reason} ({result.stages_completed} stages, {result.duration:.2f} s; "
              f"{counts['answered']} ticks completed on answers to their own status, {counts['late']} after answer_timeout)")

    def _execute(self, goal_handle):
        from rosidl_runtime_py.utilities import get_action

        ExecuteTask = get_action("reinforcegen_msgs/action/ExecuteTask")
        self.execute_returned.clear()
        try:
            return self._run_goal(goal_handle, ExecuteTask)
        finally:
            self.execute_returned.set()

    def _run_goal(self, goal_handle, ExecuteTask):
        """Feedback until the core's result is ready, then the goal's end state and result message."""
        sent = None
        while not self.result_ready.wait(0.05):
            if goal_handle.is_cancel_requested:
                with self.lock:
                    result = self.core.cancel(now_ns(self))
                if result is not None:
                    self._deliver(result, publish_status=True)
                continue
            fb = self.feedback
            if fb is not None and fb is not sent:
                goal_handle.publish_feedback(ExecuteTask.Feedback(status=fb))
                sent = fb
        r = self.result
        try:
            if goal_handle.is_cancel_requested and not r.success:
                goal_handle.canceled()
            elif r.success:
                goal_handle.succeed()
            else:
                goal_handle.abort()
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().warning(f"could not report the goal's end: {exc}")
        return M.execute_task_result_to_msg(ExecuteTask.Result, r.success, r.reason, r.stages_completed, r.duration, r.seed)

    def add_shutdown_steps(self, plan) -> None:
        def end_goal(left):
            with self.lock:
                result = self.core.shutdown(now_ns(self))
            if result is None:
                return
            self.result = result
            self.result_ready.set()  # the action's execute callback returns
            # The executor no longer spins (Ctrl-C ended spin()): run it briefly so that the execute callback's
            # return and rclpy's result response reach the client ("node shutting down") before the node goes.
            executor = getattr(self, "executor", None)  # rclpy's Node.executor: the one it was added to
            if executor is None:
                return
            end = time.monotonic() + min(max(left, 0.0), GOAL_END_WAIT)
            while time.monotonic() < end and not self.execute_returned.is_set():
                executor.spin_once(timeout_sec=0.01)
            end = min(end, time.monotonic() + RESULT_SEND_WAIT)  # then the result response
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.01)
        plan.add("end running goal", end_goal)


DEADLINE_SLACK = 0.001  # s: the steady-clock timer and time.monotonic() may disagree by this much
GOAL_END_WAIT = 0.5  # s of the shutdown deadline the running goal's end may take to reach its client
RESULT_SEND_WAIT = 0.05  # s the executor keeps running after the execute callback returned (the result response)


def _fail(reason: str) -> Check:
    return Check(False, reason)


def main(args=None) -> None:
    spin(StageSequencerNode, args, threads=4)


if __name__ == "__main__":
    main()
