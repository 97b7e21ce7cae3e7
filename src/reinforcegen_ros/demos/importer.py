"""Import robomimic/MimicGen-format source demonstrations (e.g. human teleoperation).

Each demo's simulator states are replayed in the task's scene to recompute the
labels data generation needs (eef pose, object poses, termination signals,
stage index). Stage and phase annotations already in the file are kept
(``datagen_info/stage``, ``datagen_info/phase``); missing phases are marked -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from reinforcegen_ros.demos.dataset import DatasetError, dataset_attrs, demo_names, open_dataset, write_dataset
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.tasks.environment import TaskEnv


@dataclass
class ImportReport:
    """Which demos were imported and why others were skipped."""

    imported: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def stages_from_signals(signals: np.ndarray) -> np.ndarray:
    """Stage index per step from (T, K) termination signals, completing stages in order."""
    n_steps, n_stages = signals.shape
    stage = np.zeros(n_steps, dtype=np.int64)
    current = 0
    for t in range(n_steps):
        while current < n_stages - 1 and signals[t, current]:
            current += 1
        stage[t] = current
    return stage


def check_finite(demo: h5py.Group, path: str | Path) -> None:
    """Raise :class:`DatasetError` naming the file, demo, array and first step if states or actions are not finite numbers."""
    for key in ("states", "actions"):
        values = demo[key][()]
        if values.dtype.kind not in "fiu" or values.ndim != 2:
            raise DatasetError(f"'{path}': {demo.name.lstrip('/')} {key} must be a (T, N) array of numbers, got {values.dtype} {values.shape}")
        bad = ~np.isfinite(values.astype(np.float64))
        if bad.any():
            step = int(np.argwhere(bad)[0][0])
            raise DatasetError(f"'{path}': {demo.name.lstrip('/')} {key} hold NaN or infinite values (first at step {step})")


def replay_demo(env: TaskEnv, demo: h5py.Group) -> Episode:
    """Recompute an episode's observations and labels from its saved states."""
    states = demo["states"][()]
    expected = env.get_state().size
    if states.shape[1] != expected:
        raise DatasetError(
            f"{demo.name}: states have size {states.shape[1]} but task '{env.task}' expects {expected} "
            "(recorded in a different scene model)"
        )
    rows = [_replay_step(env, s) for s in states]
    signals = np.array([r[3] for r in rows], dtype=np.int64)
    info = demo.get("datagen_info", {})
    stage = info["stage"][()] if "stage" in info else stages_from_signals(signals)
    phase = info["phase"][()] if "phase" in info else -np.ones(len(states), dtype=np.int64)
    obs = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
    for key in demo["obs"]:
        obs.setdefault(key, demo["obs"][key][()])
    # rewards[t] is the success after actions[t]: the next state's success; the last one is as recorded
    recorded = demo["rewards"][()] if "rewards" in demo else np.zeros(len(states))
    rewards = np.append([r[4] for r in rows[1:]], recorded[-1])
    return Episode(
        actions=demo["actions"][()].astype(np.float64),
        states=states,
        obs=obs,
        stage=np.asarray(stage, dtype=np.int64),
        phase=np.asarray(phase, dtype=np.int64),
        eef_pose=np.stack([r[1] for r in rows]),
        object_poses={k: np.stack([r[2][k] for r in rows]) for k in rows[0][2]},
        term_signals={s.name: signals[:, i] for i, s in enumerate(env.stages)},
        rewards=rewards,
        success=bool(np.any(rewards > 0)),
        attrs={"source_demo": demo.name.split("/")[-1]},
    )


def _replay_step(env: TaskEnv, state: np.ndarray):
    obs = env.reset_to(state)
    signals = [env.stage_done(k) for k in range(len(env.stages))]
    return obs, env.eef_pose(), env.object_poses(), signals, float(env.success())


def import_dataset(task: str, src: str | Path, out: str | Path, keep_failed: bool = False, progress: bool = True) -> ImportReport:
    """Import ``src`` into ``out`` for ``task``; unsuccessful demos are skipped unless ``keep_failed``."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output '{out}' already exists; choose another path or remove it")
    report, episodes = ImportReport(), []
    with open_dataset(src) as f:
        for name in demo_names(f["data"]):
            check_finite(f["data"][name], src)
        env = TaskEnv(task)
        for name in tqdm(demo_names(f["data"]), desc=f"import {task}", unit="demo", disable=not progress):
            ep = replay_demo(env, f["data"][name])
            if not ep.success and not keep_failed:
                report.skipped[name] = "task not successful in its recorded states"
                continue
            episodes.append(ep)
    if not episodes:
        raise DatasetError(f"no successful demos in '{src}'; nothing was written")
    report.imported = len(episodes)
    write_dataset(out, episodes, dataset_attrs(env.env_args(), task, env.stages, source=f"import:{Path(src).name}"))
    env.close()
    return report
