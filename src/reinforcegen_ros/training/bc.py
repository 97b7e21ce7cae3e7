"""Imitation training of the hybrid skill policy: every component of every stage.

``train_hsp`` reads the dataset into memory once, splits it by episode into
training and validation sets, and trains each stage's pose predictor, skill
policy and termination classifier with AdamW, one epoch at a time. After every
epoch it logs training and held-out validation losses (TensorBoard under
``<out>/tb``, plus tqdm progress bars) and writes a checkpoint:
``checkpoint-eNNNN.safetensors`` (weights and optimizer state) and
``checkpoint.json`` (epoch and step counters, history, settings), each written
to a temporary name and renamed, the JSON last, so a killed run resumes from
the last complete epoch when the same command is run again. When training ends
``<out>`` also holds the agent: ``model.safetensors`` + ``config.json``, read by
``HybridSkillPolicy.load(<out>)``. The checkpoint also keeps, per component,
the weights of the epoch with the lowest validation loss; the agent gets the
last epoch's weights (``weights: last``) or those (``weights: best_val``), and
``config.json`` ``info`` records the validation losses and the epochs chosen.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reinforcegen_ros.policies.configuration_hsp import COMPONENTS, OBJECT_KEY, OBS_MODES, POLICY_HEADS, WEIGHT_CHOICES, HSPConfig, resolve_config

# torch and the networks are imported inside the functions that use them, so that
# registering the ``train`` subcommand does not slow every CLI command down by the
# torch import (about 2.5 s).
if TYPE_CHECKING:
    import torch

    from reinforcegen_ros.demos.episode import Episode
    from reinforcegen_ros.policies.encoders import ObservationSpec
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.training.hsp_dataset import StepData

CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = "reinforcegen_hsp_checkpoint"
TB_DIR = "tb"


# ---------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One component of one stage: its samples and its optimizer."""

    stage: int
    component: str
    train: np.ndarray  # step indices, or (M, L) windows for the recurrent policy
    val: np.ndarray
    train_mask: np.ndarray | None = None
    val_mask: np.ndarray | None = None
    pos_weight: float = 1.0
    optimizer: torch.optim.Optimizer | None = None

    @property
    def key(self) -> str:
        return f"stage{self.stage}.{self.component}"


@dataclass
class TrainState:
    """Counters and history saved in ``checkpoint.json``."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps over all components
    component_steps: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)  # job key -> {"epoch", "loss"} of its lowest validation loss
    best_weights: dict = field(default_factory=dict)  # job key -> that epoch's component state dict


def track_best(policy: HybridSkillPolicy, jobs: list[Job], entry: dict, state: TrainState) -> None:
    """Remember each component's weights when its validation loss is the lowest so far."""
    for job in jobs:
        val = entry["val"].get(job.key)
        if val is None or not np.isfinite(val["loss"]):
            continue
        if job.key not in state.best or val["loss"] < state.best[job.key]["loss"]:
            state.best[job.key] = {"epoch": entry["epoch"], "loss": float(val["loss"])}
            module = policy.component(job.stage, job.component)
            state.best_weights[job.key] = {k: v.detach().clone() for k, v in module.state_dict().items()}


def select_weights(policy: HybridSkillPolicy, jobs: list[Job], state: TrainState, choice: str) -> dict:
    """Load the chosen epoch's weights into every component; return job key -> epoch used."""
    chosen = {}
    for job in jobs:
        if choice == "best_val" and job.key in state.best_weights:
            policy.component(job.stage, job.component).load_state_dict(state.best_weights[job.key])
            chosen[job.key] = state.best[job.key]["epoch"]
        else:
            chosen[job.key] = state.epoch
    return chosen


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
                labels = data.term[train, k]
                n_pos = float(labels.sum())
                if cfg.term_pos_weight is not None:
                    job.pos_weight = float(cfg.term_pos_weight)
                elif n_pos > 0:
                    job.pos_weight = (len(labels) - n_pos) / n_pos
                else:
                    warnings.warn(f"stage '{data.stage_names[k]}': no positive termination labels in the training episodes")
            jobs.append(job)
    return jobs


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


# ---------------------------------------------------------------------- losses
def batch_inputs(policy: HybridSkillPolicy, data: StepData, idx: np.ndarray):
    """Normalised low-dim tensor and image tensors for step indices of any shape."""
    import torch

    lowdim = policy.normalise(torch.from_numpy(data.lowdim[idx]))
    images = {cam: torch.from_numpy(arr[idx]) for cam, arr in data.images.items()} or None
    return lowdim, images


def job_loss(policy: HybridSkillPolicy, job: Job, data: StepData, idx: np.ndarray, mask: np.ndarray | None, cfg: HSPConfig):
    """(loss tensor, metrics) of one batch."""
    import torch

    comp = policy.component(job.stage, job.component)
    lowdim, images = batch_inputs(policy, data, idx)
    if job.component == "pose":
        return comp.loss(lowdim, images, torch.from_numpy(data.init_pose[idx]), cfg.rot_loss_weight)
    if job.component == "policy":
        m = torch.from_numpy(mask) if mask is not None else None
        return comp.loss(lowdim, images, torch.from_numpy(data.actions[idx]), m)
    return comp.loss(lowdim, images, torch.from_numpy(data.term[idx, job.stage]), job.pos_weight)


def batch_size(job: Job, cfg: HSPConfig) -> int:
    """Samples per batch; sequences count as ``rnn_seq_len`` steps."""
    return max(1, cfg.batch_size // cfg.rnn_seq_len) if job.train_mask is not None else cfg.batch_size


def num_batches(job: Job, cfg: HSPConfig) -> int:
    return -(-len(job.train) // batch_size(job, cfg))


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
            loss, metrics = job_loss(policy, job, data, idx, mask, cfg)
        w = float(mask.sum()) if mask is not None else float(len(idx))
        for name, value in {"loss": loss.item(), **metrics}.items():
            totals[name] = totals.get(name, 0.0) + w * value
        weight += w
    return {name: value / weight for name, value in totals.items()}


def train_epoch(policy, jobs: list[Job], data: StepData, cfg: HSPConfig, state: TrainState, epoch: int, progress: bool) -> dict:
    """One pass over every job's training samples; mean training loss per job."""
    import torch
    from tqdm import tqdm

    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)
    policy.train()
    out = {}
    total = sum(num_batches(job, cfg) for job in jobs)
    with tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress, leave=False) as bar:
        for job in jobs:
            params = [p for group in job.optimizer.param_groups for p in group["params"]]
            order = rng.permutation(len(job.train))
            size = batch_size(job, cfg)
            losses = []
            for start in range(0, len(order), size):
                sel = order[start : start + size]
                idx = job.train[sel]
                mask = job.train_mask[sel] if job.train_mask is not None else None
                loss, _ = job_loss(policy, job, data, idx, mask, cfg)
                job.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                job.optimizer.step()
                state.step += 1
                state.component_steps[job.key] = state.component_steps.get(job.key, 0) + 1
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix_str(f"{job.key} {losses[-1]:.4f}")
            out[job.key] = float(np.mean(losses))
    policy.eval()
    return out


def validate(policy, jobs: list[Job], data: StepData, cfg: HSPConfig) -> dict:
    policy.eval()
    return {job.key: evaluate(policy, job, data, cfg) for job in jobs}


# ---------------------------------------------------------------------- checkpoints
def checkpoint_file(epoch: int) -> str:
    return f"checkpoint-e{epoch:04d}.safetensors"


def save_checkpoint(out: Path, policy: HybridSkillPolicy, jobs: list[Job], state: TrainState, fingerprint: dict) -> None:
    """Weights + optimizer tensors (safetensors), then counters and settings (JSON); both atomically."""
    import torch
    from safetensors.torch import save_file

    from reinforcegen_ros.policies.hsp import file_sha256, write_json

    tensors = {f"model.{k}": v for k, v in policy.tensors().items()}
    groups = {}
    for job in jobs:
        sd = job.optimizer.state_dict()
        for pid, entries in sd["state"].items():
            for name, value in entries.items():
                tensors[f"optim.{job.key}.{pid}.{name}"] = torch.as_tensor(value).contiguous()
        groups[job.key] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    for key, weights in state.best_weights.items():
        tensors.update({f"best.{key}.{name}": value.contiguous() for name, value in weights.items()})
    name = checkpoint_file(state.epoch)
    tmp = out / (name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    tmp.replace(out / name)
    meta = {
        "format": CHECKPOINT_FORMAT,
        **{k: v for k, v in policy.metadata().items() if k not in ("format", "info")},
        "dataset": fingerprint,
        "epoch": state.epoch,
        "step": state.step,
        "component_steps": state.component_steps,
        "history": state.history,
        "best": state.best,
        "weights_file": name,
        "weights_sha256": file_sha256(out / name),
        "optimizer_groups": groups,
    }
    write_json(out / CHECKPOINT_JSON, meta)
    for old in out.glob("checkpoint-e*.safetensors"):
        if old.name != name:
            old.unlink()


def restore_checkpoint(out: Path, policy: HybridSkillPolicy, jobs: list[Job], fingerprint: dict) -> TrainState:
    """Load weights, optimizer state and counters; refuse a checkpoint of another run."""
    from reinforcegen_ros.policies.hsp import file_sha256, read_json, read_tensors

    meta = read_json(out / CHECKPOINT_JSON, "training run")
    hint = "use another --out, or --restart to train from scratch"
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"'{out / CHECKPOINT_JSON}' is not a hybrid skill policy checkpoint")
    for key, ours in (("task", policy.task), ("obs_mode", policy.obs_mode), ("stages", policy.stage_names)):
        if meta.get(key) != ours:
            raise ValueError(f"checkpoint in '{out}' was made for {key} {meta.get(key)!r}, not {ours!r}; {hint}")
    differences = policy.config.mismatches(HSPConfig.from_dict(meta["config"]))
    if differences:
        raise ValueError(f"checkpoint in '{out}' was made with other settings ({'; '.join(differences[:3])}); {hint}")
    if meta.get("dataset") != fingerprint:
        raise ValueError(f"checkpoint in '{out}' was trained on another dataset ({meta.get('dataset')} vs {fingerprint}); {hint}")
    weights = out / meta["weights_file"]
    if not weights.is_file() or file_sha256(weights) != meta.get("weights_sha256"):
        raise ValueError(f"checkpoint weights '{weights}' are missing or do not match '{CHECKPOINT_JSON}'; {hint}")
    tensors = read_tensors(weights)
    policy.load_tensors({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, str(weights))
    for job in jobs:
        prefix = f"optim.{job.key}."
        entries: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith(prefix):
                pid, key = name[len(prefix) :].split(".", 1)
                entries.setdefault(int(pid), {})[key] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["optimizer_groups"][job.key]]
        job.optimizer.load_state_dict({"state": entries, "param_groups": groups})
    best = meta.get("best", {})  # absent in checkpoints written before the best weights were kept
    best_weights = {}
    for key in best:
        prefix = f"best.{key}."
        best_weights[key] = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
    return TrainState(meta["epoch"], meta["step"], meta["component_steps"], meta["history"], best, best_weights)


def clear_run(out: Path) -> None:
    """Remove a previous run's checkpoint, agent files and TensorBoard events from ``out``.

    Only files this module writes are removed: ``config.json``/``model.safetensors``
    when ``config.json`` is a hybrid skill policy's, ``checkpoint.json`` when it
    is a checkpoint of ours.
    """
    from reinforcegen_ros.policies.hsp import CONFIG_FILE, FORMAT, WEIGHTS_FILE

    if _json_format(out / CHECKPOINT_JSON) == CHECKPOINT_FORMAT:
        (out / CHECKPOINT_JSON).unlink()
    for path in out.glob("checkpoint-e*.safetensors*"):
        path.unlink()
    if _json_format(out / CONFIG_FILE) == FORMAT:
        (out / CONFIG_FILE).unlink()
        (out / WEIGHTS_FILE).unlink(missing_ok=True)
    for path in (out / TB_DIR).glob("events.out.tfevents.*"):
        path.unlink()


def refuse_foreign_files(out: Path) -> None:
    """Refuse an output directory whose ``config.json``/``checkpoint.json`` were not written by us."""
    from reinforcegen_ros.policies.hsp import CONFIG_FILE, FORMAT

    for name, fmt in ((CONFIG_FILE, FORMAT), (CHECKPOINT_JSON, CHECKPOINT_FORMAT)):
        if (out / name).exists() and _json_format(out / name) != fmt:
            raise ValueError(f"'{out / name}' was not written by 'reinforcegen train'; choose another --out")


def _json_format(path: Path) -> str | None:
    """The ``format`` field of a JSON file, or None."""
    try:
        return json.loads(path.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def tb_writer(path: Path, purge_step: int | None):
    """A TensorBoard writer, or None (with a warning) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; training runs without TensorBoard logs (pip install tensorboard)")
        return None
    return SummaryWriter(str(path), purge_step=purge_step)


def log_epoch(writer, policy: HybridSkillPolicy, entry: dict, state: TrainState) -> None:
    """TensorBoard scalars of one epoch (x axis: epoch)."""
    if writer is None:
        return
    epoch = entry["epoch"]
    for split in ("train", "val"):
        for key, value in (entry.get(split) or {}).items():
            if value is None:
                continue
            stage, comp = key.split(".")
            tag = f"{split}/{policy.stage_names[int(stage[5:])]}/{comp}"
            if isinstance(value, dict):
                for name, v in value.items():
                    writer.add_scalar(f"{tag}_{name}", v, epoch)
            else:
                writer.add_scalar(f"{tag}_loss", value, epoch)
    writer.add_scalar("progress/optimizer_steps", state.step, epoch)
    writer.flush()


# ---------------------------------------------------------------------- entry point
def prepare_data(task: str, dataset, cfg: HSPConfig, term_negatives: str | Path | None = None) -> tuple[StepData, ObservationSpec, list[str], dict]:
    """Read the dataset (and its termination negatives): (steps, observation spec, stage names, fingerprint)."""
    from reinforcegen_ros.policies.encoders import ObservationSpec
    from reinforcegen_ros.tasks import stages, task_config, task_info
    from reinforcegen_ros.training.hsp_dataset import dataset_info, load_steps

    task_info(task)
    cameras = list(cfg.cameras or task_config(task).get("cameras") or []) if cfg.obs_mode == "rgb" else None
    if isinstance(dataset, (str, Path)):
        info = dataset_info(dataset)
        if info["task"] not in (None, task):
            raise ValueError(f"dataset '{dataset}' holds demos of task '{info['task']}', not '{task}'")
        stage_names = info["stages"] or [s.name for s in stages(task)]
        object_dim = info["object_dim"]
        fingerprint = {"name": Path(dataset).name, "episodes": len(info["demos"]), "steps": info["steps"]}
    else:
        dataset = list(dataset)
        if not dataset:
            raise ValueError("no episodes to train on")
        stage_names = [s.name for s in stages(task)]
        object_dim = dataset[0].obs[OBJECT_KEY].shape[1] if OBJECT_KEY in dataset[0].obs else None
        fingerprint = {"name": "episodes", "episodes": len(dataset), "steps": int(sum(len(ep) for ep in dataset))}
    if cfg.obs_mode == "privileged" and object_dim is None:
        name = f"dataset '{dataset}'" if isinstance(dataset, (str, Path)) else "the episodes"
        raise ValueError(f"{name} lacks obs/{OBJECT_KEY} (privileged object poses)")
    spec = ObservationSpec.for_mode(cfg.obs_mode, object_dim or 0, cfg, cameras)
    data = load_steps(dataset, spec, stage_names)
    if term_negatives is not None:
        from reinforcegen_ros.training.hsp_dataset import append_term_negatives

        data, fingerprint["term_negatives"] = append_term_negatives(data, term_negatives, spec, dict(fingerprint))
    return data, spec, stage_names, fingerprint


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
    from reinforcegen_ros.training.hsp_dataset import split_episodes

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
        job.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    out.mkdir(parents=True, exist_ok=True)
    refuse_foreign_files(out)
    if resume and (out / CHECKPOINT_JSON).exists():
        state = restore_checkpoint(out, policy, jobs, fingerprint)
    else:
        clear_run(out)
        state = TrainState()
    writer = tb_writer(out / TB_DIR, purge_step=state.epoch + 1 if state.epoch else None)
    try:
        if not state.history:  # the untrained networks' validation losses as the baseline
            state.history.append({"epoch": 0, "val": validate(policy, jobs, data, cfg)})
            log_epoch(writer, policy, state.history[0], state)
        for epoch in range(state.epoch, cfg.epochs):
            train_losses = train_epoch(policy, jobs, data, cfg, state, epoch, progress)
            entry = {"epoch": epoch + 1, "step": state.step, "train": train_losses, "val": validate(policy, jobs, data, cfg)}
            state.epoch = epoch + 1
            state.history.append(entry)
            track_best(policy, jobs, entry, state)
            log_epoch(writer, policy, entry, state)
            save_checkpoint(out, policy, jobs, state, fingerprint)
            if progress:
                tqdm.write(format_entry(entry, stage_names))
    finally:
        if writer is not None:
            writer.close()
    chosen = select_weights(policy, jobs, state, cfg.weights)
    policy.info = {
        "epochs": state.epoch,
        "optimizer_steps": state.step,
        "dataset": fingerprint,
        "train_episodes": train_eps.tolist(),
        "val_episodes": val_eps.tolist(),
        "samples": {job.key: sample_counts(job, data) for job in jobs},
        "val": state.history[-1]["val"],
        "weights": cfg.weights,
        "weights_epochs": chosen,
        "best_val": state.best,
    }
    policy.save(out)
    return {"out": str(out), "epochs": state.epoch, "step": state.step, "history": state.history, "policy": policy}


def sample_counts(job: Job, data: StepData) -> dict:
    """Training/validation sample counts of a job (and positives for the termination classifier)."""
    counts = {"train": len(job.train), "val": len(job.val)}
    if job.component == "term":
        counts["train_positives"] = int(data.term[job.train, job.stage].sum())
        counts["val_positives"] = int(data.term[job.val, job.stage].sum())
    return counts


def format_entry(entry: dict, stage_names: list[str]) -> str:
    """One line per epoch: validation loss of every component ("-" without validation episodes)."""
    parts = []
    for key, val in (entry.get("val") or {}).items():
        stage, comp = key.split(".")
        parts.append(f"{stage_names[int(stage[5:])]}/{comp} " + (f"{val['loss']:.4f}" if val else "-"))
    return f"epoch {entry['epoch']} val: " + ", ".join(parts)


# ---------------------------------------------------------------------- CLI
def cmd_train(args: argparse.Namespace) -> None:
    """``reinforcegen train``."""
    config = resolve_config(
        args.config, args.task, obs_mode=args.obs, epochs=args.epochs, batch_size=args.batch_size,
        policy_head=args.policy_head, recurrent=args.recurrent, seed=args.seed, weights=args.weights,
        pose_modes=args.pose_modes, pose_proprio=args.pose_proprio,
    )
    result = train_hsp(args.task, args.dataset, args.out, config=config, resume=not args.restart, term_negatives=args.term_negatives)
    print("final " + format_entry(result["history"][-1], result["policy"].stage_names))
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
