"""Per-tick latency of each ROS node's core call against the 50 ms control tick (20 Hz), without ROS.

Usage: python benchmarks/node_latency.py [--task coffee] [--episodes 3] [--source data/coffee_source.hdf5]
       [--planner ompl] [--ticks 1000] [--json out.json]

Two measurements, both on the CPU, times in milliseconds (median and 99th percentile):

1. The graph's cores run together in one process (``deployment.loopback``) on
   real Coffee scenes, with the source-replay agent so that every stage goes
   through predict, plan, connect and skill: the stage sequencer's tick (hybrid
   executor + relays + guards), the robosuite bridge's step (physics + frame:
   poses, TF, simulator state; no cameras), the sensor cache's observation
   assembly, and the pose predictor's planning jobs (they run in a background
   thread in the node, so they are not part of a tick).
2. The component cores with a hybrid skill policy of the default network sizes
   (``config/hsp.yaml``; untrained weights: latency does not depend on their
   values) on the observations recorded in (1): the pose predictor's tick
   (prediction + re-plan decision), the skill policy (base + zero residual,
   bounded) and the termination classifier, in privileged and rgb mode (two
   84x84 cameras with random pixels; rendering itself is the bridge's cost and
   is not included).

Wall-clock times include waits for a core on a busy machine; the "cpu" column
(thread CPU time, component calls only) excludes them. Message (de)serialisation and DDS transport are not included: they are ROS's
cost, measured on a machine with ROS by the launch test's timings if needed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

TICK_MS = 50.0


def stats(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"n": int(arr.size), "median_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}


def graph_latencies(task: str, source: Path, planner: str, episodes: int) -> tuple[dict, list[dict], list[str]]:
    """Loopback runs with the source-replay agent: per-call latencies, the observations seen, the outcomes."""
    from reinforcegen_ros.deployment.components import SimulationScenePlanner
    from reinforcegen_ros.deployment.config import load_deployment_config
    from reinforcegen_ros.deployment.loopback import LoopbackGraph
    from reinforcegen_ros.policies.replay import SourceReplayAgent
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    env = TaskEnv(task, config=task_config(task))
    agent = SourceReplayAgent.from_dataset(source, env)
    graph = LoopbackGraph(task, agent, SimulationScenePlanner(task, planner), load_deployment_config(), env=env)
    calls: dict[str, list[float]] = {"observation": []}
    observations: list[dict] = []
    outcomes = []

    def record(g, frame, out):
        t0 = time.perf_counter()
        obs, _, _ = g.cache.observation(frame.stamp_ns, 1.0)
        calls["observation"].append(1e3 * (time.perf_counter() - t0))
        if obs is not None and len(observations) < 2000:
            observations.append(obs)

    for seed in range(episodes):
        agent.set_episode_seed(seed)
        run = graph.run_goal(seed, on_step=record)
        outcomes.append(f"seed {seed}: {'success' if run.result and run.result.success else run.result.reason if run.result else 'unfinished'} ({run.steps} steps)")
        for key, values in run.latencies_ms.items():
            if key in ("sequencer", "bridge", "planning"):
                calls.setdefault(key, []).extend(values)
    return calls, observations, outcomes


def component_latencies(task: str, obs_mode: str, observations: list[dict], ticks: int) -> dict:
    """Pose predictor, skill policy and termination core calls with a default-size hybrid skill policy."""
    from reinforcegen_ros.deployment.components import PosePredictorCore, SkillPolicyCore, TerminationCore
    from reinforcegen_ros.planning import Trajectory
    from reinforcegen_ros.policies.configuration_hsp import load_config
    from reinforcegen_ros.policies.encoders import POSE_DIM, ObservationSpec
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy, limit_threads
    from reinforcegen_ros.tasks import env_class, task_config

    cfg = load_config(None, task, obs_mode=obs_mode)
    cls = env_class(task)
    cameras = list(cfg.cameras or task_config(task).get("cameras", [])) if obs_mode == "rgb" else []
    spec = ObservationSpec.for_mode(obs_mode, POSE_DIM * len(cls.OBJECTS), cfg, cameras)
    agent = HybridSkillPolicy(task, obs_mode, [s.name for s in cls.STAGES], spec, cfg)
    limit_threads(cfg.inference_threads)
    rng = np.random.default_rng(0)
    if cameras:
        observations = [dict(o, **{f"{c}_image": rng.integers(0, 256, (cfg.image_size,) * 2 + (3,), dtype=np.uint8) for c in cameras})
                        for o in observations[:256]]

    class NoPlanner:  # the re-plan decision only; planning is measured in the graph
        def plan(self, start, target, touch=()):
            return Trajectory(poses=target[None])

    pose = PosePredictorCore(agent, NoPlanner(), epsilon=0.05)
    skill, term = SkillPolicyCore(agent), TerminationCore(agent)
    names = ("pose_predictor", "skill_policy", "termination")
    calls = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for i in range(ticks + 50):
        obs, stage = observations[i % len(observations)], i % agent.num_stages
        for name in names:
            c0, t0 = time.thread_time(), time.perf_counter()
            if name == "pose_predictor":
                tick = pose.tick(obs, stage, i + 1)
            elif name == "skill_policy":
                skill.act(obs, stage)
            else:
                term.estimate(obs, stage)
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            if i >= 50:  # warm-up
                calls[name].append(1e3 * dt)
                cpu[name].append(1e3 * dc)
            if name == "pose_predictor" and tick.plan is not None:
                pose.plan(tick.plan)
    return calls, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="coffee")
    parser.add_argument("--source", default=None, help="source demos for the replay agent (default: data/<task>_source.hdf5, else 2 collected now)")
    parser.add_argument("--planner", default="ompl")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    source = Path(args.source or f"data/{args.task}_source.hdf5")
    if not source.is_file():
        from reinforcegen_ros.demos.collect import collect

        source = Path(tempfile.mkdtemp()) / "source.hdf5"
        collect(args.task, 2, source, seed=0, progress=False)
    calls, observations, outcomes = graph_latencies(args.task, source, args.planner, args.episodes)
    rows = {f"{k} (graph)": stats(v) for k, v in calls.items() if v}
    for mode in ("privileged", "rgb"):
        wall, cpu = component_latencies(args.task, mode, observations, args.ticks)
        for k, v in wall.items():
            rows[f"{k} ({mode})"] = dict(stats(v), cpu=stats(cpu[k]))
    print(f"task {args.task}; {args.episodes} loopback episodes ({'; '.join(outcomes)}); load average {os.getloadavg()[0]:.2f}")
    print(f"| core call | calls | median ms | p99 ms | p99 / {TICK_MS:.0f} ms tick | cpu median / p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, s in rows.items():
        c = f"{s['cpu']['median_ms']:.2f} / {s['cpu']['p99_ms']:.2f}" if "cpu" in s else "-"
        print(f"| {name} | {s['n']} | {s['median_ms']:.2f} | {s['p99_ms']:.2f} | {100 * s['p99_ms'] / TICK_MS:.1f}% | {c} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"task": args.task, "outcomes": outcomes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
