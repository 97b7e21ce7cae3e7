"""Inference latency of one hybrid-skill-policy agent tick at batch 1 on the CPU.

Usage: python benchmarks/agent_latency.py [--task coffee] [--ticks 2000] [--warmup 100]
       [--threads N] [--config config/hsp.yaml] [--policy-head mlp|gmm] [--recurrent] [--json out.json]

One tick calls each learned component once on a single observation, as the
hybrid executor does at most per control step: ``predict_pose`` +
``act`` + ``termination_prob`` (each includes turning the observation dict into
tensors). The networks have the default sizes (``config/hsp.yaml``) and
untrained weights (latency does not depend on the weight values). Observations
are synthetic with the task's layout: proprioception, the privileged object
vector, and in rgb mode one 84x84 uint8 image per camera of the task YAML.
Each tick uses a fresh random observation from a pool of 64. Both observation
modes are measured; times in milliseconds, p99 = 99th percentile. Wall-clock
latency is what a control loop sees; "cpu" columns are the thread's CPU time
per tick, which excludes time the process waited for a core (on a busy
machine wall-clock tails are mostly such waits). The load average is printed
for context.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from reinforcegen_ros.policies.configuration_hsp import load_config
from reinforcegen_ros.policies.encoders import POSE_DIM, ObservationSpec
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.tasks import env_class, task_config

TARGET_P99_MS = 5.0


def synthetic_obs(rng: np.random.Generator, n_objects: int, cameras: list[str], size: int) -> dict:
    """One observation dict with the layout of ``TaskEnv.observe()``."""
    quats = rng.normal(size=(n_objects, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    obs = {
        "robot0_eef_pos": rng.uniform(-0.3, 0.3, 3) + [0.0, 0.0, 1.0],
        "robot0_eef_axis_angle": rng.normal(size=3),
        "robot0_gripper_qpos": rng.uniform(-0.04, 0.04, 2),
        "robot0_joint_pos": rng.uniform(-2, 2, 7),
        "object": np.concatenate([np.concatenate([rng.uniform(-0.3, 0.3, 3), q]) for q in quats]),
    }
    for cam in cameras:
        obs[f"{cam}_image"] = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return obs


def measure(task: str, obs_mode: str, ticks: int, warmup: int, overrides: dict, config_path: str | None) -> dict:
    """Latency statistics of ``ticks`` agent ticks."""
    cfg = load_config(config_path, task, obs_mode=obs_mode, **overrides)
    cls = env_class(task)
    cameras = list(cfg.cameras or task_config(task).get("cameras", [])) if obs_mode == "rgb" else []
    spec = ObservationSpec.for_mode(obs_mode, POSE_DIM * len(cls.OBJECTS), cfg, cameras)
    agent = HybridSkillPolicy(task, obs_mode, [s.name for s in cls.STAGES], spec, cfg)
    rng = np.random.default_rng(0)
    pool = [synthetic_obs(rng, len(cls.OBJECTS), cameras, cfg.image_size) for _ in range(64)]
    stage_of = rng.integers(agent.num_stages, size=warmup + ticks)
    times, cpu_times = [], []
    agent.reset()
    for i in range(warmup + ticks):
        obs, stage = pool[i % len(pool)], int(stage_of[i])
        c0, t0 = time.thread_time(), time.perf_counter()
        agent.predict_pose(obs, stage)
        agent.act(obs, stage)
        agent.termination_prob(obs, stage)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if i >= warmup:
            times.append(dt * 1e3)
            cpu_times.append(dc * 1e3)
    params = sum(p.numel() for p in agent.parameters())
    return {
        "task": task,
        "obs_mode": obs_mode,
        "cameras": cameras,
        "stages": agent.num_stages,
        "parameters": params,
        "policy_head": cfg.policy_head,
        "recurrent": cfg.recurrent,
        "ticks": ticks,
        "median_ms": statistics.median(times),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": max(times),
        "cpu_median_ms": statistics.median(cpu_times),
        "cpu_p99_ms": float(np.percentile(cpu_times, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="coffee")
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: the config's inference_threads)")
    parser.add_argument("--config", default=None, help="HSP settings YAML (default config/hsp.yaml)")
    parser.add_argument("--policy-head", choices=("mlp", "gmm"), default=None)
    parser.add_argument("--recurrent", action="store_true", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.ticks < 1000:
        parser.error("--ticks must be at least 1000 for a meaningful 99th percentile")
    overrides = {"inference_threads": args.threads, "policy_head": args.policy_head, "recurrent": args.recurrent}
    results = []
    threads = load_config(args.config, args.task, **overrides).inference_threads
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} threads, {args.ticks} ticks after {args.warmup} warm-up ticks")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<11} {'cameras':<32} {'params':>9} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'cpu med':>8} {'cpu p99':>8}  p99 < {TARGET_P99_MS} ms")
    for mode in ("rgb", "privileged"):
        r = measure(args.task, mode, args.ticks, args.warmup, overrides, args.config)
        results.append(r)
        ok = "yes" if r["p99_ms"] < TARGET_P99_MS else "NO"
        print(f"{mode:<11} {','.join(r['cameras']) or '-':<32} {r['parameters']:>9} {r['median_ms']:>10.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.2f} {r['cpu_median_ms']:>8.3f} {r['cpu_p99_ms']:>8.3f}  {ok}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
