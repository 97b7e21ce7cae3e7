"""An agent's held-out demos, replayed through its components in batches.

``reinforcegen pose-errors`` and ``reinforcegen term-check`` both load an agent
with the dataset it was trained on, take its validation episodes (or every
episode of another dataset) and run one component of each stage over them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def held_out_episodes(policy, fingerprint: dict, which: str) -> np.ndarray | None:
    """The agent's validation episodes when ``dataset`` is the one it was trained on (None = all episodes)."""
    if which == "all":
        return None
    trained_on = {k: v for k, v in policy.info.get("dataset", {}).items() if k != "term_negatives"}
    if trained_on != fingerprint:
        raise ValueError(
            f"'{fingerprint['name']}' ({fingerprint['episodes']} demos, {fingerprint['steps']} steps) is not the dataset the agent "
            f"was trained on ({trained_on}); its held-out episodes are unknown (pass --episodes all for another dataset)"
        )
    return np.asarray(policy.info["val_episodes"], dtype=np.int64)


def load_held_out(task: str, agent: str | Path, dataset, episodes: str, term_negatives: str | Path | None = None) -> dict:
    """The agent (eval mode), the dataset's steps and the chosen episode ids (``held_out`` says which)."""
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.training.hsp_dataset import prepare_data

    policy = HybridSkillPolicy.load(agent, task=task)
    policy.eval()
    data, _, stage_names, fingerprint = prepare_data(task, dataset, policy.config, term_negatives)
    demos = {k: v for k, v in fingerprint.items() if k != "term_negatives"}
    chosen = held_out_episodes(policy, demos, episodes)
    return {"policy": policy, "data": data, "stage_names": stage_names, "fingerprint": fingerprint,
            "ids": np.arange(data.num_episodes) if chosen is None else chosen, "held_out": chosen is not None}


def run_batched(policy, data, idx: np.ndarray, forward: Callable, batch: int = 256) -> list[np.ndarray]:
    """``forward(lowdim, images)`` (without gradients) over the steps ``idx``, one numpy array per batch."""
    import torch

    from reinforcegen_ros.training.imitation import batch_inputs

    out = []
    for start in range(0, len(idx), batch):
        lowdim, images = batch_inputs(policy, data, idx[start : start + batch])
        with torch.no_grad():
            out.append(forward(lowdim, images).double().numpy())
    return out


__all__ = ["held_out_episodes", "load_held_out", "run_batched"]
