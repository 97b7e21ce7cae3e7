"""Training samples of the hybrid skill policy, extracted per stage from episodes.

All steps of all episodes are read once into in-memory arrays
(:class:`StepData`); each component of each stage then trains on a subset of
step indices:

* pose predictor of stage k: CONNECT-phase steps of stage k
  (label ``datagen_info/initiation_pose``);
* skill policy of stage k: SKILL-phase steps of stage k (label ``actions``);
  the recurrent policy uses windows of consecutive skill steps;
* termination classifier of stage k: SKILL-phase steps of stage k plus the
  first ``term_next_stage_steps`` steps of stage k+1, all with their recorded
  ground-truth signal ``subtask_term_signals/<stage k>`` (a stage ends as soon
  as its goal holds, so without the next stage's first steps there are
  almost no positives); with termination negatives (``reinforcegen demos
  term-negatives``), also the stage's negatives (edited states) of the same
  episodes, appended after all demo steps with phase ``NEGATIVE``.

Episodes, not steps, are split into training and validation sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from reinforcegen_ros.demos.dataset import dataset_info
from reinforcegen_ros.demos.episode import CONNECT, SKILL, Episode
from reinforcegen_ros.policies.configuration_hsp import OBJECT_KEY, HSPConfig
from reinforcegen_ros.policies.encoders import ObservationSpec

NEGATIVE = 2  # phase code of appended termination negatives (not demo steps: no action, no pose label)
IMAGE_HINT = "render them with 'reinforcegen demos add-images'"
PHASE_HINT = "phase labels missing? run 'reinforcegen demos annotate'"


@dataclass
class StepData:
    """Per-step arrays of a whole dataset (N steps)."""

    lowdim: np.ndarray  # (N, D) float32 un-normalised low-dimensional features
    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    actions: np.ndarray  # (N, 7) float32
    init_pose: np.ndarray  # (N, 4, 4) float32 initiation pose of the step's stage
    term: np.ndarray  # (N, K) float32 ground-truth termination signal of every stage
    stage: np.ndarray  # (N,) int64
    phase: np.ndarray  # (N,) int64
    episode: np.ndarray  # (N,) int64
    stage_step: np.ndarray  # (N,) int64 index of the step within its episode's stage
    stage_names: list[str]

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        return int(self.episode.max()) + 1 if len(self) else 0


# ---------------------------------------------------------------------- reading
def check_file_labels(path: str | Path, obs_keys: list[str], stage_names: list[str]) -> None:
    """Raise a one-line ValueError naming the first label or observation the dataset lacks."""
    from reinforcegen_ros.demos.dataset import demo_names, open_dataset

    with open_dataset(path) as f:
        data = f["data"]
        for name in demo_names(data):
            demo = data[name]
            for key in obs_keys:
                if key not in demo["obs"]:
                    hint = f"; {IMAGE_HINT}" if key.endswith("_image") else ""
                    raise ValueError(f"dataset '{path}' ({name}) lacks obs/{key}{hint}")
            info = demo.get("datagen_info")
            if info is None:
                raise ValueError(f"dataset '{path}' ({name}) lacks datagen_info (stage/phase/pose labels); import it with 'reinforcegen demos import'")
            for key in ("stage", "phase"):
                if key not in info:
                    raise ValueError(f"dataset '{path}' ({name}) lacks datagen_info/{key}")
            if "initiation_pose" not in info:
                raise ValueError(f"dataset '{path}' ({name}) lacks datagen_info/initiation_pose (the pose predictor's label)")
            for stage in stage_names:
                if stage not in info.get("subtask_term_signals", {}):
                    raise ValueError(f"dataset '{path}' ({name}) lacks datagen_info/subtask_term_signals/{stage} (the termination label)")


def check_episode_labels(ep: Episode, index: int, obs_keys: list[str], stage_names: list[str]) -> None:
    """The in-memory counterpart of :func:`check_file_labels`."""
    for key in obs_keys:
        if key not in ep.obs:
            hint = f"; {IMAGE_HINT}" if key.endswith("_image") else ""
            raise ValueError(f"episode {index} lacks obs/{key}{hint}")
    if ep.initiation_pose is None:
        raise ValueError(f"episode {index} lacks initiation_pose (the pose predictor's label)")
    for stage in stage_names:
        if stage not in ep.term_signals:
            raise ValueError(f"episode {index} lacks term_signals['{stage}'] (the termination label)")


def stage_steps(stage: np.ndarray) -> np.ndarray:
    """Index of each step within its stage's run of steps in one episode."""
    out = np.zeros(len(stage), dtype=np.int64)
    for t in range(1, len(stage)):
        out[t] = out[t - 1] + 1 if stage[t] == stage[t - 1] else 0
    return out


def collect_steps(episodes: Iterable[Episode], total: int, spec: ObservationSpec, stage_names: list[str]) -> StepData:
    """Copy episodes into preallocated per-step arrays (one pass, no second copy of the images)."""
    size = spec.image_size
    data = StepData(
        lowdim=np.empty((total, spec.feature_dim), np.float32),
        images={cam: np.empty((total, size, size, 3), np.uint8) for cam in spec.cameras},
        actions=np.empty((total, 7), np.float32),
        init_pose=np.empty((total, 4, 4), np.float32),
        term=np.empty((total, len(stage_names)), np.float32),
        stage=np.empty(total, np.int64),
        phase=np.empty(total, np.int64),
        episode=np.empty(total, np.int64),
        stage_step=np.empty(total, np.int64),
        stage_names=list(stage_names),
    )
    start = 0
    for i, ep in enumerate(episodes):
        check_episode_labels(ep, i, spec.lowdim_keys + spec.image_keys, stage_names)
        sl = slice(start, start + len(ep))
        try:
            data.lowdim[sl] = spec.lowdim(ep.obs, batched=True)
            for cam, img in spec.images(ep.obs, batched=True).items():
                data.images[cam][sl] = img
        except ValueError as exc:
            raise ValueError(f"episode {i}: {exc}") from None
        if ep.actions.shape[1] != 7 or not np.all(np.isfinite(ep.actions)):
            raise ValueError(f"episode {i}: actions must be finite 7-D vectors, got shape {ep.actions.shape}")
        data.actions[sl] = ep.actions
        data.init_pose[sl] = ep.initiation_pose
        data.term[sl] = np.stack([np.asarray(ep.term_signals[s], dtype=np.float32) for s in stage_names], axis=1)
        data.stage[sl] = ep.stage
        data.phase[sl] = ep.phase
        data.episode[sl] = i
        data.stage_step[sl] = stage_steps(np.asarray(ep.stage))
        start = sl.stop
    if start != total:
        raise ValueError(f"expected {total} steps, read {start}")
    return data


def load_steps(
    dataset: str | Path | Sequence[Episode], spec: ObservationSpec, stage_names: list[str]
) -> StepData:
    """All steps of an HDF5 dataset or of a list of episodes, after checking their labels."""
    keys = spec.lowdim_keys + spec.image_keys
    if isinstance(dataset, (str, Path)):
        from reinforcegen_ros.demos.dataset import iter_episodes

        check_file_labels(dataset, keys, stage_names)
        total = dataset_info(dataset)["steps"]
        return collect_steps(iter_episodes(dataset, keys), total, spec, stage_names)
    episodes = list(dataset)
    if not episodes:
        raise ValueError("no episodes to train on")
    return collect_steps(episodes, sum(len(ep) for ep in episodes), spec, stage_names)


def prepare_data(task: str, dataset, cfg: HSPConfig, term_negatives: str | Path | None = None) -> tuple[StepData, ObservationSpec, list[str], dict]:
    """Read the dataset (and its termination negatives): (steps, observation spec, stage names, fingerprint)."""
    from reinforcegen_ros.tasks import stages, task_config, task_info

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
        data, fingerprint["term_negatives"] = append_term_negatives(data, term_negatives, spec, dict(fingerprint))
    return data, spec, stage_names, fingerprint


# ---------------------------------------------------------------------- samples
def append_term_negatives(data: StepData, path: str | Path, spec: ObservationSpec, source: dict) -> tuple[StepData, dict]:
    """``data`` with the termination negatives of ``path`` appended; also their fingerprint.

    ``source`` is the demo dataset's fingerprint; the negatives must come from
    that dataset, since they name their demos by index.
    """
    from reinforcegen_ros.demos.term_negatives import read_negatives

    header, neg = read_negatives(path, spec.lowdim_keys + spec.image_keys)
    if header["source"] != source:
        raise ValueError(f"termination negatives '{path}' were made from {header['source']}, not from the training dataset {source}")
    if header["stages"] != data.stage_names:
        raise ValueError(f"termination negatives '{path}' have stages {header['stages']}, not {data.stage_names}")
    n = len(neg["demo"])
    try:
        lowdim = spec.lowdim(neg["obs"], batched=True) if n else np.zeros((0, spec.feature_dim), np.float32)
        images = spec.images(neg["obs"], batched=True) if n else {}
    except ValueError as exc:
        raise ValueError(f"termination negatives '{path}': {exc}") from None
    merged = StepData(
        lowdim=np.concatenate([data.lowdim, lowdim]),
        images={cam: np.concatenate([arr, images[cam]]) if n else arr for cam, arr in data.images.items()},
        actions=np.concatenate([data.actions, np.zeros((n, 7), np.float32)]),
        init_pose=np.concatenate([data.init_pose, np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))]),
        term=np.concatenate([data.term, neg["term"].astype(np.float32)]),
        stage=np.concatenate([data.stage, neg["stage"]]),
        phase=np.concatenate([data.phase, np.full(n, NEGATIVE)]),
        episode=np.concatenate([data.episode, neg["demo"]]),
        stage_step=np.concatenate([data.stage_step, np.full(n, -1)]),
        stage_names=data.stage_names,
    )
    return merged, {"name": Path(path).name, "samples": n}


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation episode ids (at least one validation episode when possible)."""
    perm = np.random.default_rng(seed).permutation(num_episodes)
    n_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def component_indices(data: StepData, stage: int, component: str, episodes: np.ndarray, next_stage_steps: int = 0) -> np.ndarray:
    """Step indices of ``component``'s samples for ``stage`` in the given episodes."""
    in_eps = np.isin(data.episode, episodes)
    here = in_eps & (data.stage == stage)
    if component == "pose":
        mask = here & (data.phase == CONNECT)
    elif component == "policy":
        mask = here & (data.phase == SKILL)
    elif component == "term":
        next_steps = in_eps & (data.stage == stage + 1) & (data.phase != NEGATIVE) & (data.stage_step < next_stage_steps)
        mask = (here & ((data.phase == SKILL) | (data.phase == NEGATIVE))) | next_steps
    else:
        raise ValueError(f"unknown component '{component}'")
    return np.flatnonzero(mask)


def sequence_windows(data: StepData, indices: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows (M, length) of consecutive steps starting at every index, and their validity mask.

    Runs of consecutive indices within one episode are cut into windows that
    start at each step; windows running past a run's end repeat its last
    index and are masked there.
    """
    if len(indices) == 0:
        return np.zeros((0, length), np.int64), np.zeros((0, length), bool)
    breaks = np.flatnonzero((np.diff(indices) != 1) | (np.diff(data.episode[indices]) != 0)) + 1
    windows, masks = [], []
    offsets = np.arange(length)[None]
    for run in np.split(indices, breaks):
        pos = np.arange(len(run))[:, None] + offsets
        masks.append(pos < len(run))
        windows.append(run[np.minimum(pos, len(run) - 1)])
    return np.concatenate(windows), np.concatenate(masks)


def mean_std(values: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (at least ``floor``)."""
    if len(values) == 0:
        raise ValueError("cannot compute normalisation statistics of an empty set")
    return values.mean(0), np.maximum(values.std(0), floor)


def require_samples(data: StepData, stage: int, component: str, indices: np.ndarray) -> None:
    """One-line ValueError when a component has no training samples for a stage."""
    if len(indices):
        return
    name = data.stage_names[stage]
    what = {"pose": "CONNECT-phase", "policy": "SKILL-phase", "term": "SKILL-phase"}[component]
    raise ValueError(f"no {what} steps of stage '{name}' in the training episodes ({PHASE_HINT})")


__all__ = [
    "StepData",
    "dataset_info",
    "load_steps",
    "prepare_data",
    "collect_steps",
    "split_episodes",
    "component_indices",
    "sequence_windows",
    "mean_std",
    "append_term_negatives",
    "NEGATIVE",
    "check_file_labels",
    "check_episode_labels",
    "require_samples",
]
