"""Imitation learning of the hybrid skill policy (paper Sec. III-C), one component at a time.

Per stage k, three components learn from the generated demos (samples:
:mod:`.hsp_dataset`):

* initiation pose predictor I_k: connect steps -> the stage's initiation pose
  (normalised position MSE + ``rot_loss_weight`` x geodesic rotation angle);
* skill policy pi_k: skill steps -> actions (MSE, or the GMM's negative
  log-likelihood; BC-RNN windows of ``rnn_seq_len`` steps when recurrent);
* termination classifier T_k: skill steps of k and the first steps of k+1 (and
  termination negatives) -> the ground-truth termination signal (weighted BCE).

Each ``(stage, component)`` pair is a :class:`Job`: its samples and its own
AdamW optimizer. One gradient step reads as robomimic's
``process_batch_for_training -> _compute_losses -> _train_step``:
:func:`batch_inputs` -> :func:`compute_loss` -> :func:`train_step`. The epoch
loop, checkpoints and logs are in :mod:`.loop`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reinforcegen_ros.policies.configuration_hsp import COMPONENTS, HSPConfig
from reinforcegen_ros.training.checkpoint import Key, key_label

# torch is imported inside the functions that use it (see .loop).
if TYPE_CHECKING:
    import torch

    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.training.hsp_dataset import StepData


# ---------------------------------------------------------------------- samples
@dataclass
class Job:
    """One component of one stage: its samples and its optimizer."""

    stage: int
    component: str  # "pose" | "policy" | "term"
    train: np.ndarray  # step indices, or (M, L) windows for the recurrent policy
    val: np.ndarray
    train_mask: np.ndarray | None = None  # (M, L) validity of the windows' steps
    val_mask: np.ndarray | None = None
    pos_weight: float = 1.0  # BCE weight of positive termination labels
    optimizer: torch.optim.Optimizer | None = None

    @property
    def key(self) -> Key:
        return (self.stage, self.component)

    @property
    def label(self) -> str:
        return key_label(self.key)


def make_jobs(data: StepData, cfg: HSPConfig, train_eps: np.ndarray, val_eps: np.ndarray) -> list[Job]:
    """The (stage, component) training jobs with their sample indices."""
    from reinforcegen_ros.training.hsp_dataset import component_indices, require_samples, sequence_windows

    jobs = []
    for k in range(len(data.stage_names)):
        for comp in COMPONENTS:
            train = component_indices(data, k, comp, train_eps, cfg.term_next_stage_steps)
            val = component_indices(data, k, comp, val_eps, cfg.term_next_stage_steps)
            require_samples(data, k, comp, train)
            job = Job(k, comp, train, val)
            if comp == "policy" and cfg.recurrent:
                job.train, job.train_mask = sequence_windows(data, train, cfg.rnn_seq_len)
                job.val, job.val_mask = sequence_windows(data, val, cfg.rnn_seq_len)
            if comp == "term":
                job.pos_weight = positive_weight(data, k, train, cfg.term_pos_weight)
            jobs.append(job)
    return jobs


def positive_weight(data: StepData, stage: int, train: np.ndarray, configured: float | None) -> float:
    """The configured BCE weight of positives, or #negatives / #positives of the training samples (None)."""
    if configured is not None:
        return float(configured)
    labels = data.term[train, stage]
    n_pos = float(labels.sum())
    if n_pos > 0:
        return (len(labels) - n_pos) / n_pos
    warnings.warn(f"stage '{data.stage_names[stage]}': no positive termination labels in the training episodes")
    return 1.0


def set_statistics(policy: HybridSkillPolicy, data: StepData, jobs: list[Job], train_eps: np.ndarray, floor: float) -> None:
    """Input and output normalisation from the training episodes."""
    from reinforcegen_ros.training.hsp_dataset import mean_std

    policy.set_obs_stats(*mean_std(data.lowdim[np.isin(data.episode, train_eps)], floor))
    for job in jobs:
        idx = job.train.reshape(-1) if job.train_mask is None else job.train[job.train_mask]
        comp = policy.component(job.stage, job.component)
        if job.component == "pose":
            comp.set_stats(*mean_std(data.init_pose[idx, :3, 3], floor))
        elif job.component == "policy":
            comp.set_stats(*mean_std(data.actions[idx], floor))


def sample_counts(job: Job, data: StepData) -> dict:
    """Training/validation sample counts of a job (and positives for the termination classifier)."""
    counts = {"train": len(job.train), "val": len(job.val)}
    if job.component == "term":
        counts["train_positives"] = int(data.term[job.train, job.stage].sum())
        counts["val_positives"] = int(data.term[job.val, job.stage].sum())
    return counts


# ---------------------------------------------------------------------- one batch
def batch_inputs(policy: HybridSkillPolicy, data: StepData, idx: np.ndarray):
    """Normalised low-dim tensor and image tensors for step indices of any shape."""
    import torch

    lowdim = policy.normalise(torch.from_numpy(data.lowdim[idx]))
    images = {cam: torch.from_numpy(arr[idx]) for cam, arr in data.images.items()} or None
    return lowdim, images


def compute_loss(policy: HybridSkillPolicy, job: Job, data: StepData, idx: np.ndarray, mask: np.ndarray | None, cfg: HSPConfig):
    """(loss tensor, metrics) of one batch of ``job``'s samples."""
    import torch

    comp = policy.component(job.stage, job.component)
    lowdim, images = batch_inputs(policy, data, idx)
    if job.component == "pose":  # I_k: initiation pose of the stage
        return comp.loss(lowdim, images, torch.from_numpy(data.init_pose[idx]), cfg.rot_loss_weight)
    if job.component == "policy":  # pi_k: the demo's action (masked padding of recurrent windows)
        m = torch.from_numpy(mask) if mask is not None else None
        return comp.loss(lowdim, images, torch.from_numpy(data.actions[idx]), m)
    # T_k: ground-truth termination signal of stage k
    return comp.loss(lowdim, images, torch.from_numpy(data.term[idx, job.stage]), job.pos_weight)


def train_step(policy: HybridSkillPolicy, job: Job, data: StepData, idx: np.ndarray, mask: np.ndarray | None, cfg: HSPConfig) -> float:
    """One AdamW step of ``job``'s component on a batch; the batch loss."""
    import torch

    loss, _ = compute_loss(policy, job, data, idx, mask, cfg)
    job.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in job.optimizer.param_groups for p in group["params"]], cfg.grad_clip)
    job.optimizer.step()
    return loss.item()


def budgeted(cfg: HSPConfig) -> bool:
    """Whether some component trains for a step budget rather than for ``epochs`` passes."""
    return any(cfg.step_budget(comp) is not None for comp in COMPONENTS)


def batch_size(job: Job, cfg: HSPConfig) -> int:
    """Samples per batch; sequences count as ``rnn_seq_len`` steps."""
    return max(1, cfg.batch_size // cfg.rnn_seq_len) if job.train_mask is not None else cfg.batch_size


def num_batches(job: Job, cfg: HSPConfig) -> int:
    return -(-len(job.train) // batch_size(job, cfg))


# ---------------------------------------------------------------------- one epoch
def train_epoch(policy: HybridSkillPolicy, jobs: list[Job], data: StepData, cfg: HSPConfig, epoch: int, progress: bool,
                on_step=None, max_batches: dict[Key, int] | None = None) -> dict[Key, float]:
    """One pass over every job's training samples in a seeded order; mean training loss per job.

    ``max_batches[key]`` cuts a job's pass short (what is left of its step
    budget). ``on_step(job)`` is called after every optimizer step (the loop's
    step counters).
    """
    import torch
    from tqdm import tqdm

    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)
    policy.train()
    out = {}
    limit = {job.key: min(num_batches(job, cfg), (max_batches or {}).get(job.key, num_batches(job, cfg))) for job in jobs}
    total = sum(limit.values())
    with tqdm(total=total, desc=f"epoch {epoch + 1}" + ("" if budgeted(cfg) else f"/{cfg.epochs}"), unit="batch", disable=not progress, leave=False) as bar:
        for job in jobs:
            order = rng.permutation(len(job.train))
            size = batch_size(job, cfg)
            losses = []
            for start in range(0, limit[job.key] * size, size):
                sel = order[start : start + size]
                mask = job.train_mask[sel] if job.train_mask is not None else None
                losses.append(train_step(policy, job, data, job.train[sel], mask, cfg))
                if on_step is not None:
                    on_step(job)
                bar.update(1)
                bar.set_postfix_str(f"{job.label} {losses[-1]:.4f}")
            if losses:
                out[job.key] = float(np.mean(losses))
    policy.eval()
    return out


def evaluate(policy: HybridSkillPolicy, job: Job, data: StepData, cfg: HSPConfig) -> dict | None:
    """Mean validation loss and metrics of one job (None without validation samples)."""
    import torch

    if len(job.val) == 0:
        return None
    size = batch_size(job, cfg)
    totals: dict[str, float] = {}
    weight = 0.0
    for start in range(0, len(job.val), size):
        idx = job.val[start : start + size]
        mask = job.val_mask[start : start + size] if job.val_mask is not None else None
        with torch.no_grad():
            loss, metrics = compute_loss(policy, job, data, idx, mask, cfg)
        w = float(mask.sum()) if mask is not None else float(len(idx))
        for name, value in {"loss": loss.item(), **metrics}.items():
            totals[name] = totals.get(name, 0.0) + w * value
        weight += w
    return {name: value / weight for name, value in totals.items()}


def validate(policy: HybridSkillPolicy, jobs: list[Job], data: StepData, cfg: HSPConfig) -> dict[Key, dict | None]:
    """Validation loss and metrics of every job."""
    policy.eval()
    return {job.key: evaluate(policy, job, data, cfg) for job in jobs}


__all__ = ["Job", "make_jobs", "set_statistics", "sample_counts", "batch_inputs", "compute_loss", "train_step",
           "train_epoch", "evaluate", "validate"]
