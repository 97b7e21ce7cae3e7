"""Videos of demos and rollouts with the stage and phase written on each frame.

Frames are rendered from saved simulator states, so any dataset (scripted,
imported, generated) can be looked at without re-running it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from reinforcegen_ros.io import atomic_path
from reinforcegen_ros.demos.dataset import DatasetError, dataset_meta, demo_names, open_dataset, read_episode

PHASE_NAMES = {-1: "?", 0: "connect", 1: "skill"}


def overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Write text lines in the frame's top-left corner (white on a dark band)."""
    out = frame.copy()
    scale = max(0.35, frame.shape[0] / 640)
    height = int(18 * scale * 1.6)
    cv2.rectangle(out, (0, 0), (frame.shape[1], height * len(lines) + 4), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (4, height * (i + 1) - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 20) -> Path:
    """Write RGB frames as an mp4 (temporary name, then rename)."""
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:  # imageio reads the format from the suffix
        with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=8) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path


def render_demo(dataset: str | Path, demo: int, out: str | Path, camera: str = "agentview", size: int = 256) -> Path:
    """Render ``data/demo_<demo>`` of a dataset to ``out`` with stage and phase overlaid."""
    from reinforcegen_ros.tasks.environment import TaskEnv

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output '{out}' already exists; choose another path or remove it")
    with open_dataset(dataset) as f:
        meta = dataset_meta(f)
        names = demo_names(f["data"])
        if f"demo_{demo}" not in names:
            raise DatasetError(f"'{dataset}' has no demo_{demo} (it has {len(names)} demos)")
        ep = read_episode(f["data"][f"demo_{demo}"], obs_keys=[])
    task = meta.get("task")
    if task is None:
        raise DatasetError(f"'{dataset}' does not name its task; import it with 'reinforcegen demos import' first")
    env = TaskEnv(task, render=True)
    stage_names = [s.name for s in env.stages]
    frames = []
    for t, state in enumerate(ep.states):
        env.reset_to(state)
        k = int(ep.stage[t])
        lines = [f"{task} demo_{demo}  t={t}", f"stage {k} {stage_names[k]}", f"phase {PHASE_NAMES.get(int(ep.phase[t]), '?')}"]
        frames.append(overlay(env.render(camera, size), lines))
    env.close()
    return write_video(frames, out)
