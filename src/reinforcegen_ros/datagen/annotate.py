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
from pathlib import Path

from reinforcegen_ros.datagen.segmentation import SegmentationError, annotate_phases, check_annotations
from reinforcegen_ros.demos.dataset import (
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


def check_dataset(path: str | Path, task: str) -> dict[str, str]:
    """Demo name -> problem, for every demo whose annotations are missing or invalid."""
    n_stages = len(task_stages(task))
    problems = {}
    with open_dataset(path) as f:
        for name in demo_names(f["data"]):
            demo = f["data"][name]
            if not has_annotations(demo):
                problems[name] = "no datagen_info annotations (run 'reinforcegen demos import')"
                continue
            try:
                check_annotations(read_episode(demo, obs_keys=[]), n_stages)
            except SegmentationError as exc:
                problems[name] = str(exc)
    return problems


def annotate_dataset(path: str | Path, task: str, out: str | Path | None, skill_radius: list[float] | None = None, overwrite: bool = False) -> int:
    """Write a copy of ``path`` with phases labelled where missing (all phases with ``overwrite``)."""
    if out is None:
        raise ValueError("annotate needs --out (the input is never modified in place)")
    stages = task_stages(task)
    radius = skill_radius or task_config(task).get("datagen", {}).get("skill_radius", [0.1] * len(stages))
    if len(radius) != len(stages):
        raise ValueError(f"--skill-radius needs {len(stages)} values (one per stage), got {len(radius)}")
    with open_dataset(path) as f:
        meta, args = dataset_meta(f), env_args(f)
        episodes = [read_episode(f["data"][n]) for n in demo_names(f["data"])]
    for ep in episodes:
        if overwrite or (ep.phase < 0).any():
            annotate_phases(ep, [s.reference_object for s in stages], radius)
        check_annotations(ep, len(stages))
    attrs = {"env_args": json.dumps(args), "reinforcegen": json.dumps({**meta, "task": task})}
    write_dataset(out, episodes, attrs)
    return len(episodes)
