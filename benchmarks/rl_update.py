"""Time of one residual-RL update (``ResidualTD3.update``, batch 256) for the low-dimensional and the image learner.

Usage: python benchmarks/rl_update.py [--task coffee] [--device cpu|cuda] [--updates 10] [--warmup 2]
       [--batch-size 256] [--image-size 84] [--threads 1] [--only lowdim|image] [--json out.json]

Both learners have ``config/finetune.yaml``'s settings (the image one with ``encoder: image``:
DrQ-v2's feature dim 50, hidden 1024, 32-channel convolutions, random shift 4) and
``critic_warmup: 0``, so every ``actor_delay``-th update also steps the actor and the
targets, as in a run past its warm-up. The agents are untrained default-size ones of the
task (privileged for the low-dimensional learner; rgb with the task's cameras at
``--image-size`` for the image learner); the replay buffer holds 2 x batch random
transitions (uint8 frames for the image learner). Each update samples a batch from the
buffer (included in the time) and runs on ``--device`` (default: cuda when available).
Printed: median and mean milliseconds per update over ``--updates`` timed updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from reinforcegen_ros.finetune.config import load_config, resolve_device
from reinforcegen_ros.finetune.encoders import make_encoder
from reinforcegen_ros.finetune.residual_rl import ResidualTD3
from reinforcegen_ros.policies.configuration_hsp import load_config as load_hsp_config
from reinforcegen_ros.policies.encoders import POSE_DIM, ObservationSpec
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.policies.residual import SkillResidual
from reinforcegen_ros.tasks import env_class, task_config


def learner_and_buffer(task: str, encoder: str, args: argparse.Namespace):
    """(learner, filled replay buffer, config) of ``encoder`` on an untrained default agent of ``task``."""
    cfg = load_config(None, None, encoder=encoder, device=args.device, batch_size=args.batch_size, critic_warmup=0)
    hsp = load_hsp_config()
    mode = "rgb" if encoder == "image" else "privileged"
    cameras = list(hsp.cameras or task_config(task).get("cameras", [])) if mode == "rgb" else []
    hsp = hsp.replace(obs_mode=mode, image_size=args.image_size)
    spec = ObservationSpec.for_mode(mode, POSE_DIM * len(env_class(task).OBJECTS), hsp, cameras)
    agent = HybridSkillPolicy(task, mode, ["stage"], spec, hsp)
    torch.manual_seed(0)
    residual = SkillResidual.for_agent(agent, cfg.residual_config(), stages=[0])
    enc, actor = make_encoder(residual.net(0), residual.feature_dim, residual.spec, cfg)
    learner = ResidualTD3(actor, residual.feature_dim, cfg, torch.Generator().manual_seed(1), enc, resolve_device(cfg.device))
    buffer = enc.make_buffer(2 * cfg.batch_size)
    rng = np.random.default_rng(0)
    for _ in range(buffer.capacity):
        obs = rng.normal(size=residual.feature_dim).astype(np.float32)
        if encoder == "image":
            obs = {"obs": obs, "frames": rng.integers(0, 256, enc.frame_shape, dtype=np.uint8)}
        buffer.add(obs, rng.uniform(-1, 1, 7), np.r_[rng.uniform(-0.1, 0.1, 6), 0.0], rng.normal(), False, rng.random() < 0.02, obs,
                   rng.uniform(-1, 1, 7))
    return learner, buffer, cfg


def time_updates(learner: ResidualTD3, buffer, cfg, updates: int, warmup: int) -> list[float]:
    """Milliseconds of each timed update (sampling included; CUDA synchronised)."""
    rng = np.random.default_rng(1)
    sync = torch.cuda.synchronize if learner.device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + updates):
        sync()
        start = time.perf_counter()
        learner.update(buffer.sample(cfg.batch_size, cfg.nstep, cfg.discount, rng))
        sync()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - start))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="coffee")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=84)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--only", choices=("lowdim", "image"), default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for encoder in [args.only] if args.only else ["lowdim", "image"]:
        learner, buffer, cfg = learner_and_buffer(args.task, encoder, args)
        times = time_updates(learner, buffer, cfg, args.updates, args.warmup)
        params = sum(p.numel() for name, m in learner.modules().items() if not name.endswith("_target") for p in m.parameters())
        rows.append({"encoder": encoder, "device": args.device, "batch": cfg.batch_size, "feature_dim": learner.encoder.out_dim,
                     "parameters": params, "median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "updates": len(times),
                     "bytes_per_transition": getattr(buffer, "bytes_per_transition", None)})
        r = rows[-1]
        print(f"{encoder:<7} {args.device:<5} batch {r['batch']}: {r['median_ms']:9.2f} ms/update median, {r['mean_ms']:9.2f} mean "
              f"({r['updates']} updates, ~{r['parameters']:,} parameters, features {r['feature_dim']})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "threads": args.threads, "image_size": args.image_size, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
