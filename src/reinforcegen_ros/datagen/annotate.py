"""Add or check the stage/phase annotations that segmentation needs.

Annotation names (per demo, in ``datagen_info/``): ``stage`` (stage index per
step), ``phase`` (0 connect, 1 skill, -1 unknown) and
``subtask_term_signals/<stage name>``. Imported human demos usually carry
stages (from termination signals) but not phases; :func:`annotate_dataset`
labels phases by the grip site's distance to each stage's reference object
(``datagen.skill_radius`` in the task YAML, one value per stage).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from reinforcegen_ros.datagen.segmentation import SegmentationError, annotate_phases, check_annotations
from reinforcegen_ros.demos.dataset import (
    DatasetError,
    dataset_meta,
    demo_names,
    env_args,
    has_annotations,
    open_dataset,
    read_episode,
    write_dataset,
)
from reinforcegen_ros.tasks import stages as task_stages
from reinforcegen_ros.tasks import task_config


def check_task(f, path: str | Path, task: str) -> None:
    """Refuse a dataset recorded for another task, or with other stages, than ``task`` (DatasetError)."""
    meta = dataset_meta(f)
    if meta.get("task", task) != task:
        raise DatasetError(f"'{path}' holds task '{meta['task']}', not '{task}'")
    names = [s.name for s in task_stages(task)]
    recorded = [s.get("name") for s in meta.get("stages", [])] if isinstance(meta.get("stages"), list) else None
    if recorded is not None and recorded != names:
        raise DatasetError(f"'{path}' has stages {recorded}, but task '{task}' has {names}")


def check_radius(radius, n_stages: int) -> list[float]:
    """Per-stage skill radii: ``n_stages`` finite positive numbers (ValueError naming --skill-radius otherwise)."""
    radius = [float(r) for r in radius]
    if len(radius) != n_stages:
        raise ValueError(f"--skill-radius needs {n_stages} values (one per stage), got {len(radius)}")
    bad = [r for r in radius if not (math.isfinite(r) and r > 0)]
    if bad:
        raise ValueError(f"--skill-radius values must be finite and positive, got {bad[0]}")
    return radius


def check_dataset(path: str | Path, task: str) -> dict[str, str]:
    """Demo name -> problem, for every demo whose annotations are missing or invalid."""
    n_stages = len(task_stages(task))
    problems = {}
    with open_dataset(path) as f:
        check_task(f, path, task)
        for name in demo_names(f["data"]):
            demo = f["data"][name]
            if not has_annotations(demo):
                problems[name] = "no datagen_info annotations (run 'reinforcegen demos import')"
                continue
            try:
                check_annotations(read_episode(demo, obs_keys=[]), n_stages)
            except (SegmentationError, DatasetError) as exc:
                problems[name] = str(exc)
    return problems


def annotate_dataset(path: str | Path, task: str, out: str | Path | None, skill_radius: list[float] | None = None, overwrite: bool = False) -> int:
    """Write a copy of ``path`` with phases labelled where missing (all phases with ``overwrite``)."""
    if out is None:
        raise ValueError("annotate needs --out (the input is never modified in place)")
    stages = task_stages(task)
    radius = check_radius(skill_radius or task_config(task).get("datagen", {}).get("skill_radius", [0.1] * len(stages)), len(stages))
    with open_dataset(path) as f:
        check_task(f, path, task)
        meta, args = dataset_meta(f), env_args(f)
        names = demo_names(f["data"])
        episodes = [read_episode(f["data"][n]) for n in names]
    for name, ep in zip(names, episodes):
        missing = sorted({s.reference_object for s in stages} - set(ep.object_poses))
        if missing:
            raise DatasetError(f"'{path}': {name} has no poses of the reference object(s) {', '.join(missing)}")
        if overwrite or (ep.phase < 0).any():
            annotate_phases(ep, [s.reference_object for s in stages], radius)
        try:
            check_annotations(ep, len(stages))
        except SegmentationError as exc:
            raise SegmentationError(f"'{path}': {name}: {exc}") from None
    attrs = {"env_args": json.dumps(args), "reinforcegen": json.dumps({**meta, "task": task})}
    write_dataset(out, episodes, attrs)
    return len(episodes)
