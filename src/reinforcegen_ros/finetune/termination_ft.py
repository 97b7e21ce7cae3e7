"""Termination fine-tuning (paper Sec. IV-C): reject ground-truth terminations after which the task tends to fail.

The hand-made stage conditions T_i^r (``env.stage_done``) are biased: some states
pass them although the rest of the task cannot succeed from there (Three Piece
Assembly: a piece left on the edge of the base). From rollouts of an agent with
ground-truth termination, every stage's *accepted* terminations are recorded as
the privileged state s at that tick (:func:`termination_state`) and labelled with
whether the episode solved the task (``term_all_ticks``: also every skill tick on which the ground truth held
while the stage went on, so that a gate trained on them keeps rejecting a grasp as the arm lifts it). A small MLP per stage fits
p_i(s) ~ P(task success | stage i terminated at s) with binary cross-entropy, and
the fine-tuned termination is T_i(s) = T_i^r(s) * [p_i(s) > threshold] (0.4 by
default, ``term_reject_threshold``).

The predictors, their files in the agent directory and the gate that replaces the
ground truth live with the agent (:mod:`reinforcegen_ros.policies.fine_tuned_termination`);
this module collects the rollouts and fits them.

:func:`finetune_termination` (``reinforcegen finetune term``) plays the rollouts
(resumable: ``<out>/episodes.jsonl``, one line per finished episode), trains the
predictors, and writes ``<out>/agent`` (the agent with its predictors) and
``<out>/summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from reinforcegen_ros.io import atomic_path, atomic_write_json, atomic_write_text, file_sha256, replace_dir

from reinforcegen_ros.policies.fine_tuned_termination import (
    task_state_layout, termination_state, PredictorConfig, SuccessPredictor, TerminationPredictors, FineTunedTermination, states_from_arrays, TERM_WEIGHTS,
)

if TYPE_CHECKING:
    from reinforcegen_ros.finetune.config import FinetuneConfig

ROLLOUT_LOG = "episodes.jsonl"  # the name the command line knows as resumable progress (as evaluation's log)
SUMMARY = "summary.json"


# ---------------------------------------------------------------------- rollouts
def play_episode(env, executor, index: int, seed: int, horizon: int) -> dict:
    """One episode; its outcome and, per accepted stage termination, the stage, tick and privileged state.

    ``ticks`` also holds every skill tick on which the stage's ground truth held but the executor stayed (confirmation
    ticks, and under a fine-tuned termination the ticks it rejected): what ``term_all_ticks`` trains on.
    """
    from reinforcegen_ros.hybrid import Phase
    from reinforcegen_ros.rollout import run_episode

    records: list[dict] = []
    ticks: list[dict] = []
    left = [0]  # stages the executor has left so far

    def hook(env_, executor_, step: int) -> None:
        after = executor_.stage + (1 if executor_.phase == Phase.DONE else 0)
        if after > left[0]:
            state = termination_state(env_).tolist()
            records.extend({"stage": k, "step": int(step), "state": state} for k in range(left[0], after))
            left[0] = after
        elif executor_.phase == Phase.SKILL and env_.stage_done(executor_.stage):
            ticks.append({"stage": int(executor_.stage), "step": int(step), "state": termination_state(env_).tolist()})

    gate = executor.oracle if isinstance(executor.oracle, FineTunedTermination) else None
    if gate is not None:
        gate.reset_counts()
    result = run_episode(env, executor, seed, horizon, index=index, on_frame=hook)
    return {"index": int(index), "seed": int(seed), "success": bool(result.success), "stage_success": list(result.stage_success),
            "failure_stage": result.failure_stage, "failure_kind": result.failure_kind, "steps": int(result.steps),
            "seconds": round(result.seconds, 3), "fine_tuned_termination": gate is not None,
            "rejections": list(gate.rejections) if gate is not None else None, "terminations": records, "ticks": ticks}


def _setup(settings: dict):
    """(environment, executor with the agent's ground-truth or fine-tuned termination, horizon), as reset banks build them."""
    from reinforcegen_ros.finetune.reset_bank import oracle_executor

    return oracle_executor(settings)


_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    try:
        env, executor, horizon = _setup(settings)
        _WORKER.update(env=env, executor=executor, horizon=horizon, error=None)
    except Exception as exc:  # reported by the first job: a failing pool initializer would respawn forever
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _job(job: tuple[int, int]) -> dict:
    if _WORKER.get("error"):
        raise RuntimeError(f"termination fine-tuning worker setup failed: {_WORKER['error']}")
    index, seed = job
    return play_episode(_WORKER["env"], _WORKER["executor"], index, seed, _WORKER["horizon"])


def _close_worker() -> None:
    if _WORKER.get("env") is not None:
        _WORKER.pop("env").close()
        _WORKER.pop("executor", None)


class RolloutLog:
    """``<out>/episodes.jsonl``: a settings header, then one finished episode per line (a killed run resumes from it)."""

    def __init__(self, path: Path, identity: dict):
        self.path, self.identity = path, json.loads(json.dumps(identity))
        self.done: dict[int, dict] = {}
        if path.exists():
            self._read()
        atomic_write_text(path, "\n".join(json.dumps(r) for r in [{"settings": self.identity}, *self.records()]) + "\n")

    def _read(self) -> None:
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0])["settings"] if lines else None
        except (ValueError, KeyError, TypeError):
            header = None
        if header != self.identity:
            differ = sorted(k for k in set(header or {}) | set(self.identity) if (header or {}).get(k) != self.identity.get(k))
            raise ValueError(f"'{self.path}' was collected with other settings ({', '.join(differ) or 'no header'}); use another --out")
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                self.done[int(row["index"])] = row
            except (ValueError, KeyError, TypeError):
                if number != len(lines):  # only the last line may be cut by a kill (that episode is played again)
                    raise ValueError(f"'{self.path}' line {number} is not an episode record; the log is damaged") from None

    def records(self) -> list[dict]:
        return [self.done[i] for i in sorted(self.done)]

    def append(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[int(record["index"])] = record


def collect_rollouts(log: RolloutLog, settings: dict, episodes: int, seed: int, workers: int = 1, pool: str = "local",
                     address: str | None = None, progress: bool = False) -> list[dict]:
    """Episodes ``0..episodes-1`` (scene ``seed + i``) not yet in ``log``, played on a job pool; all records by index."""
    from tqdm import tqdm

    from reinforcegen_ros.jobs import make_pool

    jobs = [(i, seed + i) for i in range(episodes) if i not in log.done]
    bar = tqdm(total=episodes, initial=episodes - len(jobs), desc=f"termination rollouts {settings['task']}", unit="ep", disable=not progress)
    if jobs:
        job_pool = make_pool(pool, workers, _init_worker, (settings,), _job, address, finalizer=_close_worker)
        try:
            for record in job_pool.map(jobs):
                log.append(record)
                bar.update(1)
        finally:
            job_pool.close()
    bar.close()
    return [r for r in log.records() if r["index"] < episodes]


# ---------------------------------------------------------------------- training
def stage_samples(records: Iterable[dict], stage: int, all_ticks: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(states (N, D), task success (N,), episode index (N,)) of ``stage``'s recorded terminations; with ``all_ticks``
    also of the skill ticks where its ground truth held without the executor leaving (episodes recorded before those
    were kept contribute their terminations)."""
    rows = [(t["state"], float(r["success"]), int(r["index"])) for r in records
            for t in r["terminations"] + (r.get("ticks", []) if all_ticks else []) if t["stage"] == stage]
    if not rows:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.asarray([s for s, _, _ in rows], np.float32), np.asarray([y for _, y, _ in rows], np.float32),
            np.asarray([e for _, _, e in rows], np.int64))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when one class is absent."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict | None:
    """Samples, positives, accuracy at 0.5, AUC and mean BCE of predictions ``probs``; None without samples."""
    if not len(labels):
        return None
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    bce = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return {"samples": int(len(labels)), "positives": int(labels.sum()), "accuracy": float(np.mean((probs > 0.5) == (labels > 0.5))),
            "auc": roc_auc(probs, labels), "bce": float(bce)}


def split_indices(n: int, holdout: float, rng: np.random.Generator, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: a ``holdout`` share held out, at least one sample kept for training; with ``groups``
    (an episode per sample) a share of the groups, so that no episode lends ticks to both sides."""
    if groups is not None:
        names = np.unique(groups)
        order = rng.permutation(len(names))
        held_names = names[order[: min(int(round(holdout * len(names))), len(names) - 1)]]
        held = np.isin(groups, held_names)
        return np.flatnonzero(~held), np.flatnonzero(held)
    order = rng.permutation(n)
    held = min(int(round(holdout * n)), n - 1)
    return np.sort(order[held:]), np.sort(order[:held])


def fit_predictor(states: np.ndarray, labels: np.ndarray, config: "FinetuneConfig", seed: int = 0,
                  groups: np.ndarray | None = None) -> tuple[SuccessPredictor, dict]:
    """A success predictor fitted with BCE on a training split (normalisation from it); its train and held-out metrics.

    ``groups``: the episode of each sample, held out whole (several ticks of one episode are nearly one sample).
    """
    rng = np.random.default_rng(seed)
    train, held = split_indices(len(labels), config.term_holdout, rng, groups)
    x, y = torch.as_tensor(states, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SuccessPredictor(states.shape[1], PredictorConfig(config.term_hidden_dim, config.term_layers, config.term_inputs))
    inputs = net.inputs(x[train]).numpy()
    std = inputs.std(0)
    net.set_stats(inputs.mean(0), np.where(std > 1e-6, std, 1.0))
    opt = torch.optim.AdamW(net.parameters(), lr=config.term_lr, weight_decay=config.term_weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(config.term_train_steps):
        batch = train[rng.integers(len(train), size=min(config.term_batch_size, len(train)))]
        loss = loss_fn(net(x[batch]), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    metrics = {"train": binary_metrics(net.probs(states[train]), labels[train]), "held_out": binary_metrics(net.probs(states[held]), labels[held])}
    return net, metrics


def train_predictors(records: list[dict], task: str, stage_names: Sequence[str], stages: Sequence[int], config: "FinetuneConfig",
                     base: TerminationPredictors | None = None) -> tuple[TerminationPredictors, dict]:
    """Predictors of ``stages`` from the rollouts' recorded terminations (those of ``base``'s other stages kept); a report per stage.

    A stage with fewer than ``term_min_class_samples`` successes or failures, or whose predictor's held-out AUC
    is below ``term_min_auc``, gets no new predictor (its report says why; an earlier one is kept).
    """
    layout = task_state_layout(task)
    cfg = PredictorConfig(config.term_hidden_dim, config.term_layers, config.term_inputs)
    predictors = TerminationPredictors(task, stage_names, layout, config.term_reject_threshold, cfg)
    if base is not None and base.config == cfg:  # earlier predictors stay unless replaced below (with the new threshold)
        for k in base.stages:
            predictors.add_stage(k).load_state_dict(base.nets[str(k)].state_dict())
            predictors.info[str(k)] = base.info.get(str(k), {})
    report = {}
    for k in stages:
        states, labels, episodes = stage_samples(records, k, config.term_all_ticks)
        if len(labels) and states.shape[1] != layout["dim"]:
            raise ValueError(f"recorded states of stage {k} have {states.shape[1]} values, the state layout {layout['dim']}")
        net, report[str(k)] = train_stage(states, labels, k, config, episodes if config.term_all_ticks else None)
        report[str(k)]["stage"] = stage_names[k]
        if net is None:
            report[str(k)]["skipped"] += " (its earlier predictor kept)" if str(k) in predictors.nets else ""
            continue
        predictors.nets[str(k)] = net
        predictors.info[str(k)] = {**{key: report[str(k)][key] for key in ("samples", "positives", "held_out", "rejected")},
                                   "episodes": len(records), "train_steps": config.term_train_steps}
    return predictors, report


def train_stage(states: np.ndarray, labels: np.ndarray, stage: int, config: "FinetuneConfig",
                groups: np.ndarray | None = None) -> tuple[SuccessPredictor | None, dict]:
    """One stage's predictor (None when the data cannot support one) and its report row (``groups``: as fit_predictor)."""
    row = {"samples": int(len(labels)), "positives": int(labels.sum()), "skipped": None}
    fewest = min(row["positives"], row["samples"] - row["positives"])
    if fewest < config.term_min_class_samples:
        row["skipped"] = (f"{fewest} {'successes' if row['positives'] == fewest else 'failures'} after its terminations "
                          f"(needs {config.term_min_class_samples} of each)")
        return None, row
    net, metrics = fit_predictor(states, labels, config, seed=config.seed + stage, groups=groups)
    rejected = net.probs(states) <= config.term_reject_threshold
    row.update(metrics, rejected=int(rejected.sum()), rejected_successes=int((rejected & (labels > 0.5)).sum()),
               rejected_failures=int((rejected & (labels <= 0.5)).sum()))
    auc = (metrics["held_out"] or {}).get("auc")
    if config.term_min_auc > 0 and (auc is None or auc < config.term_min_auc):
        row["skipped"] = (f"held-out AUC {'undefined' if auc is None else f'{auc:.2f}'} below term_min_auc {config.term_min_auc}: "
                          "the predictor does not generalise (record more rollouts)")
        return None, row
    return net, row


# ---------------------------------------------------------------------- relabelling the termination classifier's targets
def relabel_dataset(source: str | Path, target: str | Path, predictors: TerminationPredictors) -> dict:
    """A copy of dataset ``source`` whose termination labels are the fine-tuned termination; per stage, the labels turned off.

    ``subtask_term_signals/<stage>`` of every fine-tuned stage becomes T^r(s) * [p(s) > threshold],
    with s read from the recorded grip-site and object poses and finger joints, so that
    ``reinforcegen train`` on the copy fits the observation-only termination classifiers to it
    (paper Sec. IV-C: the deployed classifier learns the fine-tuned termination). The copy is
    written under a temporary name and renamed when complete; ``source`` is only read.
    """
    import h5py

    from reinforcegen_ros.demos.dataset import dataset_info

    info = dataset_info(source)
    if info["task"] != predictors.task or info["stages"] != predictors.stage_names:
        raise ValueError(f"dataset '{source}' holds task '{info['task']}' with stages {info['stages']}; the predictors are for "
                         f"'{predictors.task}' with {predictors.stage_names}")
    report = {predictors.stage_names[k]: {"positives": 0, "turned_off": 0} for k in predictors.stages}
    with atomic_path(Path(target), keep_suffix=True) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            for name in info["demos"]:
                _relabel_demo(f["data"][name], predictors, report)
            f["data"].attrs["termination_ft"] = json.dumps({"source": str(source), "threshold": predictors.threshold,
                                                            "stages": predictors.stages, "labels": report})
    return report


def _relabel_demo(demo, predictors: TerminationPredictors, report: dict) -> None:
    info = demo["datagen_info"]
    objects = predictors.layout["objects"]
    eef = info["eef_pose"][()]
    poses = {name: info["object_poses"][name][()] for name in objects}
    states = states_from_arrays(eef, poses, demo["obs"]["robot0_gripper_qpos"][()], objects)
    for k in predictors.stages:
        name = predictors.stage_names[k]
        signal = info["subtask_term_signals"][name]
        values = np.asarray(signal[()])
        held = values > 0
        if not held.any():
            continue
        keep = predictors.nets[str(k)].probs(states[held]) > predictors.threshold
        new = values.copy()
        new[np.flatnonzero(held)[~keep]] = 0
        signal[...] = new
        report[name]["positives"] += int(held.sum())
        report[name]["turned_off"] += int((~keep).sum())


# ---------------------------------------------------------------------- the command
def rollout_settings(task: str, agent_dir: str | Path, pose: str, teacher_source: str | None, teacher: str) -> dict:
    """What the workers need to build the agent and its executor (ground-truth termination, evaluation's horizon)."""
    from dataclasses import asdict as as_dict

    from reinforcegen_ros.hybrid import HybridConfig
    from reinforcegen_ros.tasks import task_config

    if pose not in ("learned", "teacher"):
        raise ValueError(f"unknown pose source '{pose}'; choose learned or teacher")
    if pose == "teacher" and (teacher_source is None or not Path(teacher_source).is_file()):
        raise ValueError(f"the teacher pose needs the source demos: --teacher-source '{teacher_source}' is not a file")
    cfg = task_config(task)
    hybrid = HybridConfig.load(cfg, termination="oracle")
    teacher_source = None if teacher_source is None else str(teacher_source)
    settings = {"task": task, "agent": str(agent_dir), "pose": pose, "teacher_source": teacher_source, "gmm_action": None,
                "hybrid": as_dict(hybrid), "horizon": int(hybrid.episode_horizon or cfg.get("horizon", 1000))}
    if pose == "teacher":
        settings["teacher"] = teacher
    return settings


def agent_identity(agent_dir: Path) -> dict:
    """Checksums of what decides an agent's rollouts: base weights, residual, termination predictors."""
    ids = {}
    for name in ("model.safetensors", "residual.safetensors", TERM_WEIGHTS):
        path = agent_dir / name
        ids[name] = file_sha256(path) if path.is_file() else None
    return ids


def _check_out(out: Path) -> None:
    ours = (ROLLOUT_LOG, SUMMARY, "agent", "agent.tmp", "agent.old")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith("relabelled_") and ".tmp" not in p.name) \
        if out.is_dir() else []
    if foreign:
        raise ValueError(f"--out '{out}' holds other files ({', '.join(foreign[:3])}); choose a new or empty directory")


def write_agent(agent, out: Path) -> Path:
    """``<out>/agent``, replaced as a whole: written to ``agent.tmp``, then renamed into place."""
    tmp = out / "agent.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    agent.save(tmp)
    return replace_dir(tmp, out / "agent")


def finetune_termination(task: str, agent_dir: str | Path, episodes: int, out: str | Path, config: "FinetuneConfig | None" = None,
                         stages: Sequence[int] | None = None, pose: str = "learned", teacher_source: str | None = None,
                         teacher: str = "generation", workers: int = 1, pool: str = "local", address: str | None = None,
                         seed: int | None = None, progress: bool = True, relabel: str | Path | None = None) -> dict:
    """Rollouts of the agent in ``agent_dir`` (resumed from ``<out>/episodes.jsonl``), predictors of ``stages``
    (default: the config's ``term_stages``), ``<out>/agent`` and ``<out>/summary.json``; the summary.

    ``relabel`` (a dataset): also ``<out>/relabelled_<name>``, its copy with the fine-tuned termination as labels.
    """
    from reinforcegen_ros.finetune.config import FinetuneConfig
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy, limit_threads

    config = config or FinetuneConfig()
    agent_dir, out = Path(agent_dir), Path(out)
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    agent = HybridSkillPolicy.load(agent_dir, task=task)
    limit_threads(config.num_threads)  # (after loading, which sets the agent's inference threads)
    stages = _stages(agent, config.term_stages if stages is None else stages)
    _check_out(out)
    if relabel is not None and not Path(relabel).is_file():
        raise FileNotFoundError(f"dataset to relabel '{relabel}' does not exist")
    seed = config.term_seed if seed is None else int(seed)
    settings = rollout_settings(task, agent_dir, pose, teacher_source, teacher)
    identity = {"task": task, "agent": agent_identity(agent_dir), "pose": pose, "teacher": settings.get("teacher"),
                "teacher_source": settings["teacher_source"], "seed": seed, "hybrid": settings["hybrid"], "horizon": settings["horizon"],
                "layout": task_state_layout(task)}
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = collect_rollouts(RolloutLog(out / ROLLOUT_LOG, identity), settings, episodes, seed, workers, pool, address, progress)
    predictors, report = train_predictors(records, task, agent.stage_names, stages, config, agent.termination_ft)
    agent.attach_termination_ft(predictors if predictors.stages else None)
    summary = {"task": task, "agent": str(agent_dir), "out_agent": str(write_agent(agent, out)), "episodes": len(records),
               "successes": int(sum(r["success"] for r in records)), "seeds": [seed, seed + episodes - 1], "pose": pose,
               "threshold": config.term_reject_threshold, "fine_tuned_stages": predictors.stages, "stages": report,
               "rollouts_with_fine_tuned_termination": int(sum(bool(r.get("fine_tuned_termination")) for r in records)),
               "relabelled": None}
    if relabel is not None and predictors.stages:
        relabelled = out / f"relabelled_{Path(relabel).name}"
        summary["relabelled"] = {"dataset": str(relabel), "out": str(relabelled), "labels": relabel_dataset(relabel, relabelled, predictors)}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out / SUMMARY, summary)
    return summary


def _stages(agent, stages: Iterable[int]) -> list[int]:
    """The stages to fine-tune, checked against the agent; ValueError when there are none."""
    stages = sorted(set(int(k) for k in stages))
    if not stages:
        raise ValueError(f"no stages to fine-tune the termination of: task '{agent.task}' lists none (finetune: term_stages in its "
                         "task YAML); pass --stages")
    for k in stages:
        agent._check_stage(k)
    return stages


__all__ = ["play_episode", "collect_rollouts", "RolloutLog", "stage_samples", "roc_auc", "binary_metrics",
           "fit_predictor", "train_predictors", "train_stage", "relabel_dataset", "finetune_termination"]
