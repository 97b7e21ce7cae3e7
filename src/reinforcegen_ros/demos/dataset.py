"""robomimic-compatible HDF5 datasets with the per-step labels data generation needs.

Layout (robomimic's, plus MimicGen-style ``datagen_info``)::

    data/                              attrs: env_args (JSON), total, reinforcegen (JSON)
      demo_N/                          attrs: num_samples, seed, success
        actions (T, 7)  states (T, S)  rewards (T,)  dones (T,)
        obs/<key> (T, ...)
        datagen_info/eef_pose (T, 4, 4)
        datagen_info/object_poses/<object> (T, 4, 4)
        datagen_info/subtask_term_signals/<stage name> (T,)   ground-truth termination labels
        datagen_info/stage (T,)        stage index
        datagen_info/phase (T,)        0 = connect segment, 1 = skill segment, -1 = not annotated
        datagen_info/gripper_action (T, 1)
        datagen_info/initiation_pose (T, 4, 4)  the current stage's skill initiation pose (pose-predictor label)

Files are written under a temporary name and renamed when complete, so a
visible dataset is always whole.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from reinforcegen_ros.demos.episode import OBJECT_KEY, Episode, initiation_poses_from_phases
from reinforcegen_ros.io import atomic_path

FORMAT_VERSION = 1
REQUIRED_DEMO_KEYS = ("actions", "states", "obs")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or does not follow the schema."""


def demo_names(data: h5py.Group) -> list[str]:
    """Demo group names sorted by their index (demo_0, demo_1, ..., demo_10)."""
    names = [k for k in data.keys() if k.startswith("demo_")]
    return sorted(names, key=lambda k: int(k.split("_")[1]) if k.split("_")[1].isdigit() else 1 << 30)


# ---------------------------------------------------------------------- writing
def write_episode(data: h5py.Group, name: str, ep: Episode, compress_images: bool = True) -> None:
    """Write one episode as ``data/<name>``."""
    grp = data.create_group(name)
    grp.attrs["num_samples"] = len(ep)
    grp.attrs["success"] = bool(ep.success)
    for key, value in ep.attrs.items():
        grp.attrs[key] = value if not isinstance(value, (dict, list)) else json.dumps(value)
    grp.create_dataset("actions", data=ep.actions)
    grp.create_dataset("states", data=ep.states)
    grp.create_dataset("rewards", data=ep.rewards)
    dones = np.zeros(len(ep), dtype=np.int64)
    dones[-1] = 1
    grp.create_dataset("dones", data=dones)
    obs = grp.create_group("obs")
    for key, value in ep.obs.items():
        is_image = value.dtype == np.uint8 and value.ndim == 4
        obs.create_dataset(key, data=value, compression="gzip" if (is_image and compress_images) else None)
    info = grp.create_group("datagen_info")
    info.create_dataset("eef_pose", data=ep.eef_pose)
    info.create_dataset("stage", data=ep.stage)
    info.create_dataset("phase", data=ep.phase)
    info.create_dataset("gripper_action", data=ep.actions[:, 6:7])
    init = ep.initiation_pose if ep.initiation_pose is not None else initiation_poses_from_phases(ep.stage, ep.phase, ep.eef_pose)
    info.create_dataset("initiation_pose", data=init)
    objs = info.create_group("object_poses")
    for key, value in ep.object_poses.items():
        objs.create_dataset(key, data=value)
    terms = info.create_group("subtask_term_signals")
    for key, value in ep.term_signals.items():
        terms.create_dataset(key, data=value)


def dataset_attrs(env_args: dict, task: str, stages, obs_mode: str = "privileged", **extra) -> dict:
    """The ``data`` group's attributes for a task."""
    meta = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "obs_mode": obs_mode,
        "stages": [{"name": s.name, "reference_object": s.reference_object} for s in stages],
        **extra,
    }
    return {"env_args": json.dumps(env_args), "reinforcegen": json.dumps(meta)}


def write_dataset(path: str | Path, episodes: list[Episode], attrs: dict, overwrite: bool = False) -> Path:
    """Write a whole dataset atomically (temporary file, then rename); a failed write leaves nothing behind."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"output '{path}' already exists; choose another path or remove it")
    with hdf5_writer(path) as f:
        data = f.create_group("data")
        for key, value in attrs.items():
            data.attrs[key] = value
        for i, ep in enumerate(episodes):
            write_episode(data, f"demo_{i}", ep)
        data.attrs["total"] = int(sum(len(ep) for ep in episodes))
    return path


@contextmanager
def hdf5_writer(path: str | Path) -> Iterator[h5py.File]:
    """A new HDF5 file written as ``<path>.tmp`` and renamed to ``path`` once complete and synced.

    HDF5 writes through a Python file object, so a full disk (or file-size limit) raises
    ``OSError`` here instead of crashing the HDF5 library when it closes the file; on any
    failure the temporary file is removed and ``path`` is left as it was. What h5py prints
    about the failed writes of objects it releases is dropped: the ``OSError`` says it once.
    """
    hook, stderr, noise = sys.unraisablehook, sys.stderr, io.StringIO()
    released: list[BaseException] = []
    with atomic_path(path) as tmp, open(tmp, "wb+") as fh:
        sys.unraisablehook = lambda unraisable: released.append(unraisable.exc_value)
        sys.stderr = noise
        try:
            with h5py.File(fh, "w") as f:
                yield f
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            sys.unraisablehook, sys.stderr = hook, stderr
        if released:
            first = released[0]
            raise first if isinstance(first, OSError) else OSError(f"writing '{tmp}' failed: {first}")
    if noise.getvalue():
        stderr.write(noise.getvalue())


# ---------------------------------------------------------------------- reading
def open_dataset(path: str | Path) -> h5py.File:
    """Open a dataset read-only after checking the schema; raises :class:`DatasetError`."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset '{path}' does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"'{path}' is not a readable HDF5 file ({exc.__class__.__name__})") from None
    try:
        check_schema(f, path)
    except DatasetError:
        f.close()
        raise
    return f


def check_schema(f: h5py.File, path: str | Path = "") -> None:
    """Raise :class:`DatasetError` unless ``f`` follows the robomimic layout."""
    if "data" not in f:
        raise DatasetError(f"'{path}' has no 'data' group: not a robomimic-format dataset")
    data = f["data"]
    if "env_args" not in data.attrs:
        raise DatasetError(f"'{path}' has no data.attrs['env_args']: not a robomimic-format dataset")
    try:
        json.loads(data.attrs["env_args"])
    except (TypeError, ValueError):
        raise DatasetError(f"'{path}': data.attrs['env_args'] is not valid JSON") from None
    names = demo_names(data)
    if not names:
        raise DatasetError(f"'{path}' contains no demo_N groups")
    for name in names:
        demo = data[name]
        missing = [k for k in REQUIRED_DEMO_KEYS if k not in demo]
        if missing:
            raise DatasetError(f"'{path}': {name} lacks {', '.join(missing)}")
        n = demo["actions"].shape[0]
        if demo["actions"].ndim != 2 or demo["states"].shape[0] != n:
            raise DatasetError(f"'{path}': {name} has actions {demo['actions'].shape} and states {demo['states'].shape}")


def dataset_meta(f: h5py.File) -> dict:
    """Our ``reinforcegen`` metadata (empty for plain robomimic files)."""
    raw = f["data"].attrs.get("reinforcegen")
    return json.loads(raw) if raw is not None else {}


def env_args(f: h5py.File) -> dict:
    """robomimic ``env_args`` of a dataset."""
    return json.loads(f["data"].attrs["env_args"])


def dataset_info(path: str | Path) -> dict:
    """Task, stage names, obs keys, demo count and total steps of an HDF5 dataset (without reading arrays).

    ``name``, ``len(demos)`` and ``steps`` are the fingerprint that training records and
    termination negatives name their source by.
    """
    with open_dataset(path) as f:
        meta = dataset_meta(f)
        data = f["data"]
        names = demo_names(data)
        first = data[names[0]]
        return {
            "task": meta.get("task"),
            "stages": [s["name"] for s in meta.get("stages", [])],
            "demos": names,
            "steps": int(sum(data[n]["actions"].shape[0] for n in names)),
            "obs_keys": list(first["obs"].keys()),
            "object_dim": int(first["obs"][OBJECT_KEY].shape[1]) if OBJECT_KEY in first["obs"] else None,
        }


def has_annotations(demo: h5py.Group) -> bool:
    """Whether a demo carries the stage/phase/pose labels data generation needs."""
    needed = ("eef_pose", "stage", "phase", "object_poses", "subtask_term_signals")
    return "datagen_info" in demo and all(k in demo["datagen_info"] for k in needed)


def read_episode(demo: h5py.Group, obs_keys: list[str] | None = None) -> Episode:
    """Load one annotated demo group as an :class:`Episode`."""
    if not has_annotations(demo):
        raise DatasetError(f"{demo.name} has no datagen_info annotations (run 'reinforcegen demos import' first)")
    check_labels(demo)
    info = demo["datagen_info"]
    keys = obs_keys if obs_keys is not None else list(demo["obs"].keys())
    attrs = {k: v for k, v in demo.attrs.items() if k not in ("num_samples", "success")}
    return Episode(
        actions=demo["actions"][()],
        states=demo["states"][()],
        obs={k: demo["obs"][k][()] for k in keys},
        stage=info["stage"][()],
        phase=info["phase"][()],
        eef_pose=info["eef_pose"][()],
        object_poses={k: v[()] for k, v in info["object_poses"].items()},
        term_signals={k: v[()] for k, v in info["subtask_term_signals"].items()},
        rewards=demo["rewards"][()] if "rewards" in demo else np.zeros(demo["actions"].shape[0]),
        success=bool(demo.attrs.get("success", True)),
        attrs=attrs,
        initiation_pose=info["initiation_pose"][()] if "initiation_pose" in info else None,
    )


#: Per-step shapes (after the step axis) of the ``datagen_info`` labels; ``object_poses`` and
#: ``subtask_term_signals`` are groups whose members have the shape given here.
LABEL_SHAPES = {
    "eef_pose": (4, 4), "stage": (), "phase": (), "initiation_pose": (4, 4), "gripper_action": (1,),
    "object_poses": (4, 4), "subtask_term_signals": (),
}


def check_labels(demo: h5py.Group) -> None:
    """Raise :class:`DatasetError` naming the file, demo and label whose shape does not fit ``(T, ...)``."""
    n = demo["actions"].shape[0]
    info = demo["datagen_info"]
    where = f"'{demo.file.filename}': {demo.name.lstrip('/')}"
    for key, shape in LABEL_SHAPES.items():
        if key not in info:
            continue
        items = info[key].items() if isinstance(info[key], h5py.Group) else [(None, info[key])]
        for name, item in items:
            label = f"datagen_info/{key}" + (f"/{name}" if name else "")
            if not isinstance(item, h5py.Dataset):
                raise DatasetError(f"{where} {label} is not an array")
            if item.shape != (n, *shape):
                expected = "(T, " + ", ".join(map(str, shape)) + ")" if shape else "(T,)"
                raise DatasetError(f"{where} {label} has shape {item.shape}, expected {expected} with T = {n} steps")
    for key, item in demo["obs"].items():
        if not isinstance(item, h5py.Dataset) or item.ndim < 1 or item.shape[0] != n:
            raise DatasetError(f"{where} obs/{key} has shape {getattr(item, 'shape', None)}, expected {n} steps")


def iter_episodes(path: str | Path, obs_keys: list[str] | None = None) -> Iterator[Episode]:
    """Iterate over the annotated episodes of a dataset."""
    with open_dataset(path) as f:
        for name in demo_names(f["data"]):
            yield read_episode(f["data"][name], obs_keys)


# ---------------------------------------------------------------------- comparison
def compare_datasets(path_a: str | Path, path_b: str | Path) -> dict[str, dict]:
    """Field-by-field comparison of two datasets' demos (same demo names), e.g. before and after a bag round trip.

    Returns ``{field: {"demos": n, "exact": n_exact, "max_abs_diff": d, "problems": [...]}}``
    for every array under ``data/demo_*`` of ``path_a`` (``field`` relative to the demo).
    """
    rows: dict[str, dict] = {}

    def row(field: str) -> dict:
        return rows.setdefault(field, {"demos": 0, "exact": 0, "max_abs_diff": 0.0, "problems": []})

    def walk(ga: h5py.Group, gb: h5py.Group | None, prefix: str, demo: str) -> None:
        for key, item in ga.items():
            field = prefix + key
            other = gb.get(key) if gb is not None else None
            if isinstance(item, h5py.Group):
                walk(item, other if isinstance(other, h5py.Group) else None, field + "/", demo)
                continue
            r = row(field)
            r["demos"] += 1
            if other is None or isinstance(other, h5py.Group):
                r["problems"].append(f"{demo}: missing")
                continue
            x, y = item[()], other[()]
            floats = x.dtype.kind in "fc" and y.dtype.kind in "fc"
            if x.shape != y.shape:
                r["problems"].append(f"{demo}: shape {x.shape} vs {y.shape}")
            elif np.array_equal(x, y, equal_nan=floats):
                r["exact"] += 1
            elif floats and not np.array_equal(np.isfinite(x), np.isfinite(y)):
                r["problems"].append(f"{demo}: NaN or infinite values in one file where the other has numbers")
            elif floats:
                finite = np.isfinite(x)
                diff = np.abs(x[finite].astype(float) - y[finite].astype(float))
                r["max_abs_diff"] = max(r["max_abs_diff"], float(diff.max()) if diff.size else 0.0)
                if not np.array_equal(x[~finite], y[~finite]):
                    r["problems"].append(f"{demo}: infinite values of other signs")
            else:
                r["problems"].append(f"{demo}: values differ")

    with open_dataset(path_a) as fa, open_dataset(path_b) as fb:
        names_a, names_b = demo_names(fa["data"]), demo_names(fb["data"])
        if names_a != names_b:
            raise ValueError(f"the datasets hold different demos ({len(names_a)} vs {len(names_b)})")
        for name in names_a:
            walk(fa["data"][name], fb["data"][name], "", name)
    return rows
