"""Demonstration transitions of one stage's skill for the critic (ResFiT: half of each batch from the demos).

A generated demo's skill segment of stage k becomes a run of transitions in the
residual's terms: the features the agent reads, the frozen base policy's action
(deterministic: the mean of its most probable mode), the residual that turns
it into the demo's action (clipped to the residual's bound), and the stage's
reward: 1 at the step after which the recorded ground-truth termination signal
holds, which ends the run, minus alpha * |a_res|^2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reinforcegen_ros.finetune.replay_buffer import ReplayBuffer


@torch.no_grad()
def base_actions(agent, stage: int, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """The frozen base skill policy's deterministic actions (N, 7) on normalised features (feed-forward policies only)."""
    policy = agent.component(stage, "policy")
    if policy.recurrent:
        raise ValueError("demo transitions need a feed-forward base skill policy (this one is recurrent)")
    out = [policy.action(torch.from_numpy(features[i : i + batch]))[0] for i in range(0, len(features), batch)]
    return np.clip(torch.cat(out).numpy(), -1.0, 1.0) if out else np.zeros((0, 7), np.float32)


def demo_buffer(dataset: str | Path | Sequence, agent, stage: int, bound: np.ndarray, alpha: float) -> ReplayBuffer:
    """Stage ``stage``'s skill segments of ``dataset`` (HDF5 path or episodes) as residual transitions."""
    from reinforcegen_ros.demos.episode import SKILL
    from reinforcegen_ros.training.hsp_dataset import load_steps

    data = load_steps(dataset, agent.spec, agent.stage_names)
    feats = agent.normalise(torch.from_numpy(data.lowdim)).numpy().astype(np.float32)
    base = base_actions(agent, stage, feats)
    rows = np.flatnonzero((data.stage == stage) & (data.phase == SKILL))
    runs = [r for r in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1) if len(r)]
    buf = ReplayBuffer(max(len(rows), 1), feats.shape[1])
    for run in runs:
        for i in run:
            nxt = i + 1 if i + 1 < len(data) and data.episode[i + 1] == data.episode[i] else i
            res = np.clip(data.actions[i] - base[i], -bound, bound)
            done = nxt != i and data.term[nxt, stage] > 0.5
            reward = float(done) - alpha * float(np.sum(res**2))
            buf.add(feats[i], base[i], res, reward, done, i == run[-1] or nxt == i, feats[nxt], base[nxt])
            if done:
                break
    if not len(buf):
        raise ValueError(f"the demos hold no skill steps of stage {stage}")
    return buf


__all__ = ["demo_buffer", "base_actions"]
