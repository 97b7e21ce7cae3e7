"""The ROS graph's node cores wired together in one process, without ROS.

:class:`LoopbackGraph` passes between the cores exactly what the nodes pass
as messages, in the same order and with the same stamps, one control step at
a time: the bridge's frame becomes each node's observation; the sequencer
begins its tick and publishes the status; the component cores answer it (pose
prediction and planned path, skill command, termination estimate) on the same
observation; the sequencer completes the tick with those answers and publishes
the command; the bridge applies it. A goal first resets the scene to its seed
as the bridge's ``~/reset`` service does (the sequencer waits in phase
``reset``), and between goals the sequencer's idle statuses and an emergency
stop (:meth:`LoopbackGraph.emergency_stop`) take the same paths as in the
graph. Planning runs synchronously here (a ROS node runs it in a background
thread). It serves the deployment tests, the latency benchmark and
``reinforcegen demo``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from reinforcegen_ros.deployment.bridge import BridgeConfig, RobosuiteBridge
from reinforcegen_ros.deployment.components import PosePredictorCore, SkillPolicyCore, TerminationCore, agent_inputs
from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.deployment.observation import SensorCache, pose_parts
from reinforcegen_ros.deployment.sequencer import GoalResult, SequencerConfig, StageSequencer
from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.messages import WORLD_FRAME


@dataclass
class LoopbackRun:
    """Outcome of :meth:`LoopbackGraph.run_goal`."""

    result: GoalResult | None
    steps: int
    phases: list[tuple[int, str]] = field(default_factory=list)  # (stage, phase) each time it changed
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # per core call
    warnings: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # commands the bridge refused (stamp gate, guard), with the reason


class LoopbackGraph:
    """bridge + stage sequencer + pose predictor + skill policy + termination, in-process."""

    def __init__(self, task: str, agent, planner, deployment: dict, hybrid: HybridConfig | None = None, env=None, horizon: int | None = None):
        from reinforcegen_ros.tasks import task_config

        tcfg = task_config(task)
        self.hybrid = hybrid or HybridConfig.load(tcfg, termination="learned")
        guard = CommandGuard(GuardConfig.from_dict(deployment.get("guards")))
        self.bridge = RobosuiteBridge(task, BridgeConfig.from_dict(deployment.get("bridge")), guard, env=env)
        names = self.bridge.stage_names
        refs = [s.reference_object for s in self.bridge.env.stages]
        self.sequencer = StageSequencer(
            task, names, self.hybrid, SequencerConfig.from_dict(deployment.get("sequencer")), guard,
            horizon=horizon or int(tcfg.get("horizon", 1000)), can_reset=True,
        )
        self.pose = PosePredictorCore(agent, planner, self.hybrid.epsilon, self.hybrid.replan, refs)
        sk = deployment.get("skill_policy") or {}
        self.skill = SkillPolicyCore(agent, None, float(sk.get("residual_scale", 1.0)), float(sk.get("bound", 1.0)))
        self.term = TerminationCore(agent, self.hybrid.termination_threshold)
        need_objects, cameras = agent_inputs(agent)
        self.cache = SensorCache(objects=self.bridge.env.objects, cameras=cameras, need_objects=need_objects)
        self.max_obs_age = float((deployment.get("sensors") or {}).get("max_obs_age", 0.25))
        self.run: LoopbackRun | None = None  # the goal being run

    def _observe(self, frame) -> None:
        c = self.cache
        c.put_joints(frame.stamp_ns, frame.joint_pos, frame.gripper_qpos)
        c.put_eef(frame.stamp_ns, *pose_parts(frame.eef_pose), WORLD_FRAME)
        c.put_objects(frame.stamp_ns, {n: pose_parts(p) for n, p in frame.object_poses.items()}, WORLD_FRAME)
        for cam, img in frame.images.items():
            c.put_image(cam, frame.stamp_ns, img)

    def run_goal(self, seed: int = -1, time_limit: float = 0.0, max_steps: int = 10_000, on_step=None) -> LoopbackRun:
        """Send one ExecuteTask goal on scene ``seed`` (-1: the bridge's next scene, -2: keep the scene) and run
        until its result (or ``max_steps``). ``on_step(graph, frame, out)`` is called after each bridge step."""
        self.pose.reset()
        self.skill.reset()
        self.run = run = LoopbackRun(None, 0, latencies_ms={k: [] for k in ("sequencer", "pose_predictor", "planning", "skill_policy", "termination", "bridge")})
        check = self.sequencer.start(self.bridge.task, time_limit, self.bridge.frame.stamp_ns, seed=seed)
        if not check.ok:
            run.result = GoalResult(False, check.reason, 0, 0.0)
            return run
        if self.sequencer.reset_seed is not None:  # what the sequencer node asks the bridge's ~/reset service for
            out = self.sequencer.begin(self.bridge.frame.stamp_ns, None, 0, "resetting")
            self._note(run, out)
            frame, reset = self.bridge.reset_scene(self.sequencer.reset_seed)
            if frame is None:
                run.result = self.sequencer.reset_failed(reset.reason, self.bridge.frame.stamp_ns)
                return run
            self.sequencer.scene_ready(frame.stamp_ns, self.bridge.seed, frame.stamp_ns)
        frame = self.bridge.frame
        lat = run.latencies_ms
        while run.steps < max_steps:
            out = self.tick(frame, lat)
            if out.result is not None:
                run.result = out.result
                break
            t0 = time.perf_counter()
            frame = self.bridge.step()
            lat["bridge"].append(1e3 * (time.perf_counter() - t0))
            run.steps += 1
            if on_step is not None:
                on_step(self, frame, out)
            if run.result is not None:  # ended outside a tick (emergency stop in on_step)
                break
        return run

    def tick(self, frame, lat: dict | None = None):
        """One sequencer tick on ``frame`` as the graph runs it: status out, answers in, command to the bridge."""
        lat = lat if lat is not None else {k: [] for k in ("sequencer", "pose_predictor", "planning", "skill_policy", "termination")}
        run = self.run or LoopbackRun(None, 0)
        self._observe(frame)
        obs, stamp, why = self.cache.observation(frame.stamp_ns, self.max_obs_age)
        t0 = time.perf_counter()
        out = self.sequencer.begin(frame.stamp_ns, obs, stamp, why.reason)
        spent = time.perf_counter() - t0
        if out.pending:  # the status goes out, the component nodes answer it, the tick completes
            self._note(run, out)
            self._answer(out.status, obs, lat)
            t0 = time.perf_counter()
            out = self.sequencer.complete(frame.stamp_ns)
            spent += time.perf_counter() - t0
        lat["sequencer"].append(1e3 * spent)
        self._note(run, out)
        if out.command is not None:
            self._send(out.command, out.stamp_ns)
        return out

    def emergency_stop(self, active: bool) -> None:
        """``/emergency_stop``: the sequencer's latch, and on ``True`` its hold sent at once (node clock = the bridge's)."""
        now = self.bridge.frame.stamp_ns
        result = self.sequencer.set_emergency_stop(active, now)
        if active:
            self._send(*self.sequencer.hold_command(now))
        if result is not None and self.run is not None:
            self.run.result = result

    def _send(self, command, stamp_ns: int) -> None:
        """``/eef_command`` to the bridge; what it refuses is noted in the run."""
        check = self.bridge.on_command(stamp_ns, command)
        if not check.ok and self.run is not None:
            self.run.refused.append(check.reason)

    @staticmethod
    def _note(run: LoopbackRun, out) -> None:
        run.warnings += out.warnings
        if out.status is not None and (not run.phases or run.phases[-1] != (out.status.stage_index, out.status.phase)):
            run.phases.append((out.status.stage_index, out.status.phase))

    def _answer(self, status, obs: dict, lat: dict) -> None:
        """What the component nodes publish in answer to one status message."""
        seq, stage, stamp = self.sequencer, status.stage_index, status.stamp_ns
        if status.phase in ("predict", "plan", "connect"):
            t0 = time.perf_counter()
            tick = self.pose.tick(obs, stage, stamp, self.bridge.frame.sim_state)
            lat["pose_predictor"].append(1e3 * (time.perf_counter() - t0))
            if tick.pose is not None:
                seq.on_predicted_pose(stamp, tick.pose)
            if tick.plan is not None:
                result = self.pose.plan(tick.plan)
                lat["planning"].append(1e3 * result.seconds)
                seq.on_path(stamp, None if result.trajectory is None else result.trajectory.poses, result.reason)
        elif status.phase == "skill":
            t0 = time.perf_counter()
            act = self.skill.act(obs, stage)
            lat["skill_policy"].append(1e3 * (time.perf_counter() - t0))
            if act.action is not None:
                seq.on_skill_command(stamp, act.action)
            t0 = time.perf_counter()
            est = self.term.estimate(obs, stage)
            lat["termination"].append(1e3 * (time.perf_counter() - t0))
            if not est.reason:
                seq.on_termination(stamp, est.probability)


def percentile(values: list[float], q: float) -> float:
    """``q``-th percentile (nan for no values)."""
    return float(np.percentile(values, q)) if values else float("nan")


def demo_report(task: str, agent_spec: str, seed: int = 1, planner: str = "ompl") -> list[str]:
    """One ExecuteTask goal through the graph's cores, as printable lines.

    ``agent_spec`` is ``replay:<source.hdf5>`` (the source-replay agent) or a
    trained agent's directory (e.g. ``models/coffee``), which plays with its own
    initiation poses and terminations, as it would on a robot.
    """
    from reinforcegen_ros.deployment.components import SimulationScenePlanner
    from reinforcegen_ros.deployment.config import load_deployment_config
    from reinforcegen_ros.evaluation.harness import REPLAY_PREFIX, agent_cameras
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.policies.replay import SourceReplayAgent
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    if agent_spec.startswith(REPLAY_PREFIX):
        env = TaskEnv(task, config=task_config(task))
        agent, name = SourceReplayAgent.from_dataset(agent_spec[len(REPLAY_PREFIX):], env), "source-replay agent"
    else:
        agent, name = HybridSkillPolicy.load(agent_spec, task=task), f"agent {agent_spec}"
        cameras, size = agent_cameras(agent)
        env = TaskEnv(task, obs_mode=agent.obs_mode, cameras=cameras, image_size=size, config=task_config(task))
    graph = LoopbackGraph(task, agent, SimulationScenePlanner(task, planner), load_deployment_config(), env=env)
    agent.set_episode_seed(seed)
    run = graph.run_goal(seed)
    r = run.result
    phases = " -> ".join(f"{k}:{p}" for k, p in run.phases)
    lines = [
        f"ExecuteTask '{task}' (scene seed {seed}, {name}, {planner} planner): "
        f"{'success' if r and r.success else 'failed: ' + (r.reason if r else 'unfinished')}, "
        f"{r.stages_completed if r else 0} stages in {r.duration if r else 0:.2f} s simulated ({run.steps} ticks)",
        f"stage status: {phases}",
    ]
    for key in ("sequencer", "bridge", "skill_policy", "termination", "planning"):
        if run.latencies_ms[key]:
            lines.append(f"  {key:<15} median {np.median(run.latencies_ms[key]):6.2f} ms  p99 {percentile(run.latencies_ms[key], 99):7.2f} ms")
    env.close()
    return lines
