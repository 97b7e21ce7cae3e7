"""Termination negatives: demo states edited so that the stage goal does not hold.

Generated demos are successful, so a grasp stage's termination classifier only
ever sees the fingers close around the object. With camera observations it
learns "fingers closed, stage done": the rgb Nut Assembly agent says "done"
on 98% of the held-out negatives made here (``reinforcegen term-check``,
docs/RESULTS.md). In a rollout, a grasp that misses then ends the stage anyway.

This module edits saved MuJoCo states of the demos into two kinds of negative,
and keeps those whose ground-truth stage condition is false, with their
observation (camera images rendered when the dataset has them) and the
ground-truth signal of every stage:

* ``closed``: an approach step of the stage (skill phase, goal not held,
  gripper open) with the fingers closed in place;
* ``left_behind``: a step where the goal holds (the object held and lifted)
  with the stage's reference object put back where it was when the stage
  began, the fingers still at the holding width: a grasp that slipped, the
  state traced Coffee rollouts ended their grasp stage in.

The result is a separate HDF5 file that ``reinforcegen train
--term-negatives`` adds to the termination classifiers' samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

FORMAT = "reinforcegen_term_negatives"
FORMAT_VERSION = 1
GROUP = "negatives"
KINDS = ("closed", "left_behind")


def open_gripper_steps(gripper_qpos: np.ndarray, open_fraction: float) -> np.ndarray:
    """Steps whose finger opening is at least ``open_fraction`` of the widest opening in the demo."""
    width = np.abs(gripper_qpos[:, 0] - gripper_qpos[:, 1])
    return width >= open_fraction * width.max()


def evenly_spaced(steps: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` of ``steps``, evenly spaced, first and last included."""
    if len(steps) <= count:
        return steps
    return steps[np.unique(np.linspace(0, len(steps) - 1, count).round().astype(int))]


def candidate_steps(ep, stage: int, stage_name: str, per_stage: int, open_fraction: float) -> np.ndarray:
    """Up to ``per_stage`` evenly spaced approach steps of ``stage``: skill phase, goal not held, gripper open."""
    from reinforcegen_ros.demos.episode import SKILL

    ok = (ep.stage == stage) & (ep.phase == SKILL) & (np.asarray(ep.term_signals[stage_name]) == 0)
    ok &= open_gripper_steps(np.asarray(ep.obs["robot0_gripper_qpos"]), open_fraction)
    return evenly_spaced(np.flatnonzero(ok), per_stage)


def held_steps(ep, stage: int, stage_name: str, per_stage: int) -> np.ndarray:
    """Up to ``per_stage`` evenly spaced steps of ``stage`` (or the next) where its goal holds."""
    ok = ((ep.stage == stage) | (ep.stage == stage + 1)) & (np.asarray(ep.term_signals[stage_name]) == 1)
    return evenly_spaced(np.flatnonzero(ok), per_stage)


def negatives_of_episode(env, ep, demo: int, stage_names: list[str], per_stage: int, open_fraction: float) -> list[dict]:
    """The negatives of one demo: edited states whose stage goal does not hold."""
    out = []

    def keep(k: int, t: int, kind: str) -> None:
        term = [env.stage_done(j) for j in range(len(stage_names))]
        if not term[k]:  # e.g. closed fingers that do hold the object are not a negative
            out.append({"demo": demo, "stage": k, "step": int(t), "kind": KINDS.index(kind), "term": term,
                        "state": env.get_state(), "obs": env.observe()})

    for k, name in enumerate(stage_names):
        for t in candidate_steps(ep, k, name, per_stage, open_fraction):
            env.set_state(ep.states[t])
            env.close_gripper_in_place()
            keep(k, t, "closed")
        joint = env.free_joint(env.stages[k].reference_object)
        if joint is None:
            continue
        env.set_state(ep.states[np.flatnonzero(ep.stage == k)[0]])
        rest = env.object_qpos(joint)  # where the object was when the stage began
        for t in held_steps(ep, k, name, per_stage):
            env.set_state(ep.states[t])
            env.place_object(joint, rest)
            keep(k, t, "left_behind")
    return out


def make_term_negatives(
    src: str | Path,
    out: str | Path,
    per_stage: int = 8,
    open_fraction: float = 0.75,
    max_demos: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the termination negatives of dataset ``src`` to ``out``; return a summary per stage."""
    from reinforcegen_ros.demos.dataset import DatasetError, dataset_info, dataset_meta, demo_names, open_dataset, read_episode
    from reinforcegen_ros.tasks.environment import TaskEnv

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output '{out}' already exists; choose another path or remove it")
    if per_stage < 1:
        raise ValueError(f"per_stage must be at least 1, got {per_stage}")
    info = dataset_info(src)  # the fingerprint training checks: name, demos, steps
    with open_dataset(src) as f:
        meta = dataset_meta(f)
        if "task" not in meta:
            raise DatasetError(f"'{src}' does not name its task; import it with 'reinforcegen demos import' first")
        names = demo_names(f["data"])[:max_demos]
        stage_names = [s["name"] for s in meta["stages"]]
        obs_keys = info["obs_keys"]
        cameras = [k[: -len("_image")] for k in obs_keys if k.endswith("_image")]
        image_size = int(f["data"][names[0]]["obs"][f"{cameras[0]}_image"].shape[1]) if cameras else 84
        env = TaskEnv(meta["task"], obs_mode="rgb" if cameras else "privileged", cameras=tuple(cameras) or None,
                      image_size=image_size, render=bool(cameras))
        rows: list[dict] = []
        for i, name in enumerate(tqdm(names, desc="negatives", unit="demo", disable=not progress)):
            ep = read_episode(f["data"][name], obs_keys=["robot0_gripper_qpos"])  # states and labels; images are re-rendered
            rows += negatives_of_episode(env, ep, i, stage_names, per_stage, open_fraction)
    env.close()
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "task": meta["task"], "stages": stage_names,
        "source": {"name": Path(src).name, "episodes": len(info["demos"]), "steps": info["steps"]}, "demos_used": len(names),
        "cameras": cameras, "image_size": image_size, "per_stage": per_stage, "open_fraction": open_fraction,
    }
    write_negatives(out, rows, header, [k for k in obs_keys if rows and k in rows[0]["obs"]])
    return {"samples": len(rows), "per_stage": [sum(r["stage"] == k for r in rows) for k in range(len(stage_names))],
            "per_kind": {kind: sum(r["kind"] == i for r in rows) for i, kind in enumerate(KINDS)},
            "stages": stage_names, "cameras": cameras}


def write_negatives(out: Path, rows: list[dict], header: dict, obs_keys: list[str]) -> None:
    """One HDF5 file, written to a temporary name and renamed."""
    from reinforcegen_ros.demos.dataset import hdf5_writer

    with hdf5_writer(out) as f:
        g = f.create_group(GROUP)
        g.attrs["reinforcegen"] = json.dumps(header)
        n_stages = len(header["stages"])
        g["demo"] = np.array([r["demo"] for r in rows], np.int64)
        g["stage"] = np.array([r["stage"] for r in rows], np.int64)
        g["step"] = np.array([r["step"] for r in rows], np.int64)
        g["kind"] = np.array([r["kind"] for r in rows], np.int64)
        g["term"] = np.array([r["term"] for r in rows], np.int8).reshape(len(rows), n_stages)
        g["states"] = np.array([r["state"] for r in rows]) if rows else np.zeros((0, 0))
        for key in obs_keys:
            values = np.array([np.asarray(r["obs"][key]) for r in rows])
            g.create_dataset(f"obs/{key}", data=values, compression="gzip" if key.endswith("_image") else None)


def read_negatives(path: str | Path, obs_keys: list[str]) -> tuple[dict, dict]:
    """(header, arrays: demo, stage, term, obs) of a negatives file; ValueError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"termination negatives '{path}' do not exist (make them with 'reinforcegen demos term-negatives')")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ValueError(f"'{path}' is not a readable HDF5 file") from None
    with f:
        if GROUP not in f or "reinforcegen" not in f[GROUP].attrs:
            raise ValueError(f"'{path}' is not a termination negatives file (no '{GROUP}' group)")
        g = f[GROUP]
        header = json.loads(g.attrs["reinforcegen"])
        if header.get("format") != FORMAT:
            raise ValueError(f"'{path}' is not a termination negatives file (format {header.get('format')!r})")
        missing = [k for k in obs_keys if f"obs/{k}" not in g]
        if missing:
            raise ValueError(f"termination negatives '{path}' lack observation '{missing[0]}'")
        arrays = {k: g[k][()] for k in ("demo", "stage", "term")}
        arrays["kind"] = g["kind"][()] if "kind" in g else np.zeros(len(arrays["demo"]), np.int64)  # first files: closed only
        arrays["obs"] = {k: g[f"obs/{k}"][()] for k in obs_keys}
    return header, arrays


__all__ = ["make_term_negatives", "read_negatives", "candidate_steps", "held_steps", "open_gripper_steps", "FORMAT", "KINDS"]
