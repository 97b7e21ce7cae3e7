"""Cost of one imitation-training step of each component (issue 16, item 2), on one CPU thread.

For a task's dataset it builds the privileged hybrid skill policy as ``reinforcegen train`` does and times
one AdamW step (batch -> loss -> backward -> clip -> step) of the stage-0 pose predictor, skill policy and
termination classifier, for the feed-forward GMM policy and the recurrent (GRU, BC-RNN style) one, with
torch's fused AdamW kernel and with its per-parameter loop. Variants are interleaved round by round, so a
loaded machine slows them alike; report medians and ratios.

    python benchmarks/training_step.py --task coffee --dataset data/coffee_source.hdf5 --steps 60
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def build(task: str, dataset: str, recurrent: bool, fused: bool):
    """(policy, jobs, data, config) with optimizers, as the training loop sets them up."""
    import torch

    from reinforcegen_ros.policies.configuration_hsp import resolve_config
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy, limit_threads
    from reinforcegen_ros.training.hsp_dataset import prepare_data, split_episodes
    from reinforcegen_ros.training.imitation import make_jobs, set_statistics

    cfg = resolve_config(None, task, obs_mode="privileged", recurrent=recurrent)
    limit_threads(1)
    data, spec, names, _ = prepare_data(task, dataset, cfg, None)
    train_eps, _ = split_episodes(data.num_episodes, cfg.val_fraction, cfg.seed)
    jobs = [j for j in make_jobs(data, cfg, train_eps, train_eps[:1]) if j.stage == 0]
    policy = HybridSkillPolicy(task, "privileged", names, spec, cfg)
    set_statistics(policy, data, jobs, train_eps, cfg.std_floor)
    for job in jobs:
        params = policy.component(job.stage, job.component).parameters()
        job.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    policy.train()
    return policy, jobs, data, cfg


def time_step(policy, job, data, cfg, rng) -> float:
    """Seconds of one training step on a random batch of ``job``'s samples."""
    from reinforcegen_ros.training.imitation import batch_size, train_step

    sel = rng.integers(0, len(job.train), batch_size(job, cfg))
    mask = job.train_mask[sel] if job.train_mask is not None else None
    start = time.perf_counter()
    train_step(policy, job, data, job.train[sel], mask, cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="coffee")
    parser.add_argument("--dataset", default="data/coffee_source.hdf5")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant and component (after 5 warm-up steps)")
    args = parser.parse_args()
    variants = {"gmm, fused AdamW": (False, True), "gmm, AdamW loop": (False, False), "gru+gmm, fused AdamW": (True, True)}
    built = {name: build(args.task, args.dataset, *v) for name, v in variants.items()}
    rng = np.random.default_rng(0)
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.steps + 5):
        for name, (policy, jobs, data, cfg) in built.items():
            for job in jobs:
                t = time_step(policy, job, data, cfg, rng)
                if round_ >= 5:
                    times.setdefault((name, job.component), []).append(t)
    base = {comp: np.median(times[("gmm, fused AdamW", comp)]) for comp in ("pose", "policy", "term")}
    print(f"| variant | component | median ms / step | ratio to gmm, fused AdamW |\n|---|---|---|---|")
    for (name, comp), ts in times.items():
        print(f"| {name} | {comp} | {1000 * np.median(ts):.2f} | {np.median(ts) / base[comp]:.2f} |")


if __name__ == "__main__":
    main()
