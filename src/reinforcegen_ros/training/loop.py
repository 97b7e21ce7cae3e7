"""The imitation training run: epochs over every job, checkpoints, logs, the agent, ``reinforcegen train``.

``train_hsp`` reads the dataset into memory once, splits it by episode into
training and validation sets, and trains each stage's pose predictor, skill
policy and termination classifier (:mod:`.imitation`), one epoch at a time:
``epochs`` passes over each component's samples, or, for a component with a
step budget (``policy_steps`` ...), as many epochs as that budget needs.
After every epoch it logs training and held-out validation losses (TensorBoard
under ``<out>/tb``, plus tqdm progress bars) and writes a checkpoint
(:mod:`.checkpoint`: weights, optimizer state and the best weights so far in
``checkpoint-eNNNN.safetensors``, counters, history and settings in
``checkpoint.json``), so a killed run resumes from the last complete epoch when
the same command is run again. When training ends ``<out>`` also holds the
agent: ``model.safetensors`` + ``config.json``, read by
``HybridSkillPolicy.load(<out>)``. Per component the checkpoint keeps the
weights of the epoch with the lowest validation loss; the agent gets the last
epoch's weights (``weights: last``) or those (``weights: best_val``), and
``config.json`` ``info`` records the validation losses and the epochs chosen.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reinforcegen_ros.policies.configuration_hsp import OBS_MODES, POLICY_HEADS, WEIGHT_CHOICES, HSPConfig, resolve_config
from reinforcegen_ros.training.checkpoint import CHECKPOINT_JSON, Checkpoint, Key, json_format, key_label, keyed_from_json, keyed_to_json

# torch and the networks are imported inside the functions that use them, so that
# registering the ``train`` subcommand does not slow every CLI command down by the
# torch import (about 2.5 s).
if TYPE_CHECKING:
    from reinforcegen_ros.demos.episode import Episode
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.training.imitation import Job

CHECKPOINT_FORMAT = "reinforcegen_hsp_checkpoint"
TB_DIR = "tb"


@dataclass
class TrainState:
    """Counters, history and best weights, saved in the checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps over all components
    component_steps: dict[Key, int] = field(default_factory=dict)
    history: list = field(default_factory=list)  # per epoch: {"epoch", "step", "train": {label: loss}, "val": {label: metrics}}
    best: dict[Key, dict] = field(default_factory=dict)  # {"epoch", "loss"} of each key's lowest validation loss
    best_weights: dict[Key, dict] = field(default_factory=dict)  # that epoch's component state dict


def train_hsp(
    task: str,
    dataset: str | Path | Sequence[Episode],
    out_dir: str | Path,
    obs_mode: str | None = None,
    config: HSPConfig | dict | str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    term_negatives: str | Path | None = None,
) -> dict:
    """Train every stage's pose predictor, skill policy and termination classifier; return a summary.

    ``dataset`` is an HDF5 path or a list of episodes; ``config`` an
    :class:`HSPConfig`, a mapping of settings, a YAML path or None (defaults);
    ``obs_mode`` overrides the config's. With ``resume`` an existing checkpoint
    in ``out_dir`` is continued (it must come from the same task, settings and
    dataset); without, ``out_dir``'s previous run is removed first.
    ``term_negatives`` adds a file of termination negatives
    made from ``dataset`` (``reinforcegen demos term-negatives``).
    """
    import torch
    from tqdm import tqdm

    from reinforcegen_ros.policies.hsp import HybridSkillPolicy, limit_threads
    from reinforcegen_ros.training.hsp_dataset import prepare_data, split_episodes
    from reinforcegen_ros.training.imitation import make_jobs, sample_counts, set_statistics, train_epoch, validate

    cfg = resolve_config(config, task, obs_mode=obs_mode)
    limit_threads(cfg.num_threads)
    out = Path(out_dir)
    data, spec, stage_names, fingerprint = prepare_data(task, dataset, cfg, term_negatives)
    train_eps, val_eps = split_episodes(data.num_episodes, cfg.val_fraction, cfg.seed)
    if len(val_eps) == 0:
        warnings.warn(f"{data.num_episodes} episode(s) and val_fraction {cfg.val_fraction}: no validation episodes")
    jobs = make_jobs(data, cfg, train_eps, val_eps)
    torch.manual_seed(cfg.seed)
    policy = HybridSkillPolicy(task, cfg.obs_mode, stage_names, spec, cfg)
    set_statistics(policy, data, jobs, train_eps, cfg.std_floor)
    for job in jobs:
        params = policy.component(job.stage, job.component).parameters()
        # the fused kernel: one pass over all parameters (benchmarks/training_step.py: 1.03-1.3x per CPU step)
        job.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

    out.mkdir(parents=True, exist_ok=True)
    refuse_foreign_files(out)
    checkpoint = Checkpoint(out, CHECKPOINT_FORMAT, "hybrid skill policy")
    if resume and checkpoint.exists():
        state = restore(checkpoint, policy, jobs, fingerprint)
    else:
        clear_run(out)
        state = TrainState()

    def count_step(job: Job) -> None:
        state.step += 1
        state.component_steps[job.key] = state.component_steps.get(job.key, 0) + 1

    writer = tb_writer(out / TB_DIR, purge_step=state.epoch + 1 if state.epoch else None)
    try:
        if not state.history:  # the untrained networks' validation losses as the baseline
            state.history.append({"epoch": 0, "val": labelled(validate(policy, jobs, data, cfg))})
            log_epoch(writer, state.history[0], jobs, stage_names, state.step)
        while budget := remaining_batches(jobs, cfg, state):
            epoch = state.epoch
            active = [job for job in jobs if job.key in budget]
            train_losses = train_epoch(policy, active, data, cfg, epoch, progress, on_step=count_step, max_batches=budget)
            entry = {"epoch": epoch + 1, "step": state.step, "train": labelled(train_losses), "val": labelled(validate(policy, jobs, data, cfg))}
            state.epoch = epoch + 1
            state.history.append(entry)
            track_best(policy, jobs, entry, state)
            log_epoch(writer, entry, jobs, stage_names, state.step)
            save(checkpoint, policy, jobs, state, fingerprint)
            if progress:
                tqdm.write(format_entry(entry, [job.key for job in jobs], stage_names))
    finally:
        if writer is not None:
            writer.close()
    chosen = select_weights(policy, jobs, state, cfg.weights)
    policy.info = {
        "epochs": state.epoch,
        "optimizer_steps": state.step,
        "component_steps": labelled(state.component_steps),
        "dataset": fingerprint,
        "train_episodes": train_eps.tolist(),
        "val_episodes": val_eps.tolist(),
        "samples": {job.label: sample_counts(job, data) for job in jobs},
        "val": state.history[-1]["val"],
        "weights": cfg.weights,
        "weights_epochs": {key_label(key): epoch for key, epoch in chosen.items()},
        "best_val": {key_label(key): best for key, best in state.best.items()},
    }
    policy.save(out)
    return {"out": str(out), "epochs": state.epoch, "step": state.step, "history": state.history, "policy": policy,
            "keys": [job.key for job in jobs]}


def remaining_batches(jobs: list[Job], cfg: HSPConfig, state: TrainState) -> dict[Key, int]:
    """Batches each unfinished job may still take: what is left of its step budget, or a whole pass.

    A component with a step budget (``policy_steps`` ...) trains until it has
    taken that many steps, however many epochs that needs; one without trains
    for ``epochs`` passes. Empty when every job is done.
    """
    from reinforcegen_ros.training.imitation import num_batches

    out = {}
    for job in jobs:
        budget = cfg.step_budget(job.component)
        if budget is None:
            if state.epoch < cfg.epochs:
                out[job.key] = num_batches(job, cfg)
        elif state.component_steps.get(job.key, 0) < budget:
            out[job.key] = budget - state.component_steps.get(job.key, 0)
    return out


def labelled(per_key: dict[Key, object]) -> dict[str, object]:
    """Per-key results as reported in the history, ``config.json`` and logs (``"stage0.pose"``)."""
    return {key_label(key): value for key, value in per_key.items()}


# ---------------------------------------------------------------------- best weights
def track_best(policy: HybridSkillPolicy, jobs: list[Job], entry: dict, state: TrainState) -> None:
    """Remember each component's weights when its validation loss is the lowest so far."""
    for job in jobs:
        val = entry["val"].get(job.label)
        if val is None or not np.isfinite(val["loss"]):
            continue
        if job.key not in state.best or val["loss"] < state.best[job.key]["loss"]:
            state.best[job.key] = {"epoch": entry["epoch"], "loss": float(val["loss"])}
            module = policy.component(job.stage, job.component)
            state.best_weights[job.key] = {k: v.detach().clone() for k, v in module.state_dict().items()}


def select_weights(policy: HybridSkillPolicy, jobs: list[Job], state: TrainState, choice: str) -> dict[Key, int]:
    """Load the chosen epoch's weights into every component; return key -> epoch used."""
    chosen = {}
    for job in jobs:
        if choice == "best_val" and job.key in state.best_weights:
            policy.component(job.stage, job.component).load_state_dict(state.best_weights[job.key])
            chosen[job.key] = state.best[job.key]["epoch"]
        else:
            chosen[job.key] = state.epoch
    return chosen


# ---------------------------------------------------------------------- checkpoints
def save(checkpoint: Checkpoint, policy: HybridSkillPolicy, jobs: list[Job], state: TrainState, fingerprint: dict) -> None:
    """The run's checkpoint after an epoch: weights, optimizers and best weights; counters and settings."""
    meta = {
        **{k: v for k, v in policy.metadata().items() if k not in ("format", "info")},
        "dataset": fingerprint,
        "epoch": state.epoch,
        "step": state.step,
        "component_steps": keyed_to_json(state.component_steps),
        "history": state.history,
        "best": keyed_to_json(state.best),
    }
    checkpoint.save(state.epoch, policy.tensors(), {job.key: job.optimizer for job in jobs}, meta, {"best": state.best_weights})


def restore(checkpoint: Checkpoint, policy: HybridSkillPolicy, jobs: list[Job], fingerprint: dict) -> TrainState:
    """Load weights, optimizer state and counters; refuse a checkpoint of another run."""
    out = checkpoint.dir
    hint = "use another --out, or --restart to train from scratch"
    snapshot = checkpoint.load(hint)
    meta = snapshot.meta
    for key, ours in (("task", policy.task), ("obs_mode", policy.obs_mode), ("stages", policy.stage_names)):
        if meta.get(key) != ours:
            raise ValueError(f"checkpoint in '{out}' was made for {key} {meta.get(key)!r}, not {ours!r}; {hint}")
    differences = policy.config.mismatches(HSPConfig.from_dict(meta["config"]))
    if differences:
        raise ValueError(f"checkpoint in '{out}' was made with other settings ({'; '.join(differences[:3])}); {hint}")
    if meta.get("dataset") != fingerprint:
        raise ValueError(f"checkpoint in '{out}' was trained on another dataset ({meta.get('dataset')} vs {fingerprint}); {hint}")
    policy.load_tensors(snapshot.model, str(out / meta["weights_file"]))
    snapshot.restore_optimizers({job.key: job.optimizer for job in jobs})
    best = keyed_from_json(meta["best"])
    return TrainState(meta["epoch"], meta["step"], keyed_from_json(meta["component_steps"]), meta["history"], best,
                      snapshot.groups.get("best", {}))


def clear_run(out: Path) -> None:
    """Remove a previous run's checkpoint, agent files and TensorBoard events from ``out``.

    Only files this module writes are removed: ``config.json``/``model.safetensors``
    when ``config.json`` is a hybrid skill policy's, ``checkpoint.json`` when it
    is a checkpoint of ours.
    """
    from reinforcegen_ros.policies.hsp import CONFIG_FILE, FORMAT, WEIGHTS_FILE

    Checkpoint(out, CHECKPOINT_FORMAT).clear()
    if json_format(out / CONFIG_FILE) == FORMAT:
        (out / CONFIG_FILE).unlink()
        (out / WEIGHTS_FILE).unlink(missing_ok=True)
    for path in (out / TB_DIR).glob("events.out.tfevents.*"):
        path.unlink()


def refuse_foreign_files(out: Path) -> None:
    """Refuse an output directory whose ``config.json``/``checkpoint.json`` were not written by us."""
    from reinforcegen_ros.policies.hsp import CONFIG_FILE, FORMAT

    for name, fmt in ((CONFIG_FILE, FORMAT), (CHECKPOINT_JSON, CHECKPOINT_FORMAT)):
        if (out / name).exists() and json_format(out / name) != fmt:
            raise ValueError(f"'{out / name}' was not written by 'reinforcegen train'; choose another --out")


# ---------------------------------------------------------------------- logs
def tb_writer(path: Path, purge_step: int | None):
    """A TensorBoard writer, or None (with a warning) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; training runs without TensorBoard logs (pip install tensorboard)")
        return None
    return SummaryWriter(str(path), purge_step=purge_step)


def log_epoch(writer, entry: dict, jobs: list[Job], stage_names: list[str], step: int) -> None:
    """TensorBoard scalars of one epoch (x axis: epoch): ``<split>/<stage name>/<component>_<metric>``."""
    if writer is None:
        return
    epoch = entry["epoch"]
    for split in ("train", "val"):
        values = entry.get(split) or {}
        for job in jobs:
            value = values.get(job.label)
            if value is None:
                continue
            tag = f"{split}/{stage_names[job.stage]}/{job.component}"
            if isinstance(value, dict):
                for name, v in value.items():
                    writer.add_scalar(f"{tag}_{name}", v, epoch)
            else:
                writer.add_scalar(f"{tag}_loss", value, epoch)
    writer.add_scalar("progress/optimizer_steps", step, epoch)
    writer.flush()


def format_entry(entry: dict, keys: list[Key], stage_names: list[str]) -> str:
    """One line per epoch: validation loss of every component ("-" without validation episodes)."""
    val = entry.get("val") or {}
    parts = []
    for stage, component in keys:
        metrics = val.get(key_label((stage, component)))
        parts.append(f"{stage_names[stage]}/{component} " + (f"{metrics['loss']:.4f}" if metrics else "-"))
    return f"epoch {entry['epoch']} val: " + ", ".join(parts)


# ---------------------------------------------------------------------- CLI
def cmd_train(args: argparse.Namespace) -> None:
    """``reinforcegen train``."""
    config = resolve_config(
        args.config, args.task, obs_mode=args.obs, epochs=args.epochs, batch_size=args.batch_size,
        policy_head=args.policy_head, recurrent=args.recurrent, seed=args.seed, weights=args.weights,
        pose_steps=args.pose_steps, policy_steps=args.policy_steps, term_steps=args.term_steps,
        pose_modes=args.pose_modes, pose_proprio=args.pose_proprio,
    )
    result = train_hsp(args.task, args.dataset, args.out, config=config, resume=not args.restart, term_negatives=args.term_negatives)
    print("final " + format_entry(result["history"][-1], result["keys"], result["policy"].stage_names))
    print(f"trained {result['epochs']} epochs ({result['step']} optimizer steps); agent in {result['out']}")
    info = result["policy"].info
    if info["weights"] == "best_val":
        print("weights from epochs: " + ", ".join(f"{k} {e}" for k, e in info["weights_epochs"].items()))


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the ``reinforcegen`` parser's subparsers."""
    p = subparsers.add_parser("train", help="imitation-train a hybrid skill policy (pose predictor, skill policy, termination per stage)")
    p.add_argument("--task", required=True)
    p.add_argument("--dataset", required=True, help="generated dataset (HDF5; with images for --obs rgb)")
    p.add_argument("--obs", choices=OBS_MODES, default="privileged")
    p.add_argument("--term-negatives", default=None,
                   help="negatives for the termination classifiers, made from --dataset ('reinforcegen demos term-negatives')")
    p.add_argument("--out", required=True, help="run directory: checkpoints, tb/ logs and the final agent")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's")
    for comp, what in (("pose", "initiation pose predictor"), ("policy", "skill policy"), ("term", "termination classifier")):
        p.add_argument(f"--{comp}-steps", type=int, default=None,
                       help=f"gradient steps of each stage's {what}, however many epochs they take (default: --epochs passes)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--config", default=None, help="HSP settings YAML (default config/hsp.yaml)")
    p.add_argument("--policy-head", choices=POLICY_HEADS, default=None)
    p.add_argument("--recurrent", action="store_true", default=None, help="GRU skill policy (BC-RNN)")
    p.add_argument("--pose-modes", type=int, default=None, help="initiation pose hypotheses per stage (for symmetric objects)")
    p.add_argument("--no-pose-proprio", dest="pose_proprio", action="store_false", default=None,
                   help="initiation pose predictors read the object poses (privileged) or cameras (rgb) only, not proprioception")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default=None,
                   help="agent weights per component: the last epoch's or the lowest validation loss's (rerun a finished run to switch)")
    p.add_argument("--restart", action="store_true", help="discard an existing checkpoint in --out and train from scratch")
    p.set_defaults(func=cmd_train)
    return p


__all__ = ["train_hsp", "register_cli", "cmd_train", "TrainState"]
