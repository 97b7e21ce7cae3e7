"""Initiation-pose error along the connect phase: why re-planning helps.

Every CONNECT-phase step of a demo is a query of stage k's pose predictor
from where the arm was at that step. HSP without re-planning keeps the first
query's answer (made where the previous stage ended); HSP + Replan keeps
asking as the arm moves and ends on the last ones. This module measures, on
an agent's held-out episodes, the predicted pose's position and rotation
error against the generated initiation pose, binned by progress through the
stage's connect segment (0 = its first step, 1 = arrival).

``reinforcegen pose-errors --task coffee --agent runs/coffee/hsp --dataset data/coffee_gen.hdf5``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# progress bins after the first query: (low, high] as fractions of the connect segment
PROGRESS_BINS = ((0.0, 1 / 3, "first third"), (1 / 3, 2 / 3, "second third"), (2 / 3, 1.0, "last third"))


def connect_progress(episode: np.ndarray) -> np.ndarray:
    """Progress in [0, 1] of each sample through its episode's segment (samples in time order per episode)."""
    progress = np.zeros(len(episode))
    for e in np.unique(episode):
        sel = np.flatnonzero(episode == e)
        progress[sel] = np.arange(len(sel)) / max(len(sel) - 1, 1)
    return progress


def pose_errors(predicted: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position error (m) and rotation error (degrees) between pose arrays (N, 4, 4)."""
    pos = np.linalg.norm(predicted[:, :3, 3] - target[:, :3, 3], axis=-1)
    rel = np.einsum("nji,njk->nik", predicted[:, :3, :3], target[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return pos, np.degrees(np.arccos(cos))


def summarise_bins(pos: np.ndarray, rot: np.ndarray, progress: np.ndarray) -> list[dict]:
    """Median errors of the first query and of each progress bin after it."""
    bins = [("first query", progress == 0)]
    bins += [(name, (progress > low) & (progress <= high)) for low, high, name in PROGRESS_BINS]
    rows = []
    for name, mask in bins:
        n = int(mask.sum())
        rows.append({
            "bin": name, "samples": n,
            "pos_cm": float(np.median(pos[mask]) * 100) if n else None,
            "rot_deg": float(np.median(rot[mask])) if n else None,
        })
    return rows


def error_profile(task: str, agent: str | Path, dataset, episodes: str = "val", batch: int = 256) -> dict:
    """Per stage: pose errors of the first query and of each progress bin of the connect segment.

    ``dataset`` is an HDF5 path or a list of episodes; ``episodes`` is "val" (the agent's held-out
    episodes, which needs the dataset it was trained on) or "all".
    """
    from reinforcegen_ros.training.diagnostics.held_out import load_held_out, run_batched
    from reinforcegen_ros.training.hsp_dataset import component_indices

    run = load_held_out(task, agent, dataset, episodes)
    policy, data = run["policy"], run["data"]
    stages = []
    for k, name in enumerate(run["stage_names"]):
        idx = component_indices(data, k, "pose", run["ids"])
        predicted = run_batched(policy, data, idx, policy.component(k, "pose").predict, batch)
        predicted = np.concatenate(predicted) if predicted else np.zeros((0, 4, 4))
        pos, rot = pose_errors(predicted, data.init_pose[idx].astype(np.float64))
        stages.append({"stage": name, "episodes": int(len(np.unique(data.episode[idx]))),
                       "bins": summarise_bins(pos, rot, connect_progress(data.episode[idx]))})
    return {"task": task, "agent": str(agent), "obs_mode": policy.obs_mode, "dataset": run["fingerprint"],
            "episodes": "held-out" if run["held_out"] else "all", "stages": stages}


def format_profile(profile: dict) -> str:
    """Markdown table: one row per stage, median position / rotation error per bin."""
    names = [b["bin"] for b in profile["stages"][0]["bins"]] if profile["stages"] else []
    lines = [f"| task | agent | obs | stage | episodes | {' | '.join(names)} |", "|---" * (5 + len(names)) + "|"]
    for st in profile["stages"]:
        cells = [f"{b['pos_cm']:.1f} cm / {b['rot_deg']:.0f}°" if b["samples"] else "–" for b in st["bins"]]
        lines.append(f"| {profile['task']} | `{profile['agent']}` | {profile['obs_mode']} | {st['stage']} | {st['episodes']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def cmd_pose_errors(args: argparse.Namespace) -> None:
    profile = error_profile(args.task, args.agent, args.dataset, args.episodes)
    print(format_profile(profile))
    if args.json:
        from reinforcegen_ros.io import atomic_write_json

        atomic_write_json(Path(args.json), profile)


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``reinforcegen pose-errors`` to the command's subparsers."""
    p = subparsers.add_parser("pose-errors", help="initiation-pose error of an agent along the connect phase (held-out demos)")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="trained policy directory")
    p.add_argument("--dataset", required=True, help="generated dataset (HDF5), by default the agent's training dataset")
    p.add_argument("--episodes", choices=("val", "all"), default="val",
                   help="val: the agent's held-out episodes of its training dataset; all: every episode (another dataset)")
    p.add_argument("--json", default=None, help="also write the profile to this JSON file")
    p.set_defaults(func=cmd_pose_errors)
    return p


__all__ = ["connect_progress", "pose_errors", "summarise_bins", "error_profile", "format_profile", "register_cli"]
