"""Termination classifier on held-out demos: does it fire where the stage goal does not hold?

Per stage, on the agent's held-out episodes: how often the classifier says
"done" (p > 0.5) on steps whose goal holds (recall), on demo steps whose goal
does not hold, and on each kind of termination negative (``reinforcegen demos
term-negatives``: fingers closed on nothing, object left behind), the states
a missed or slipped grasp leads to and successful demos never show.

``reinforcegen term-check --task nut_assembly --agent runs/nut_assembly/hsp_rgb
--dataset data/nut_assembly_gen200_rgb.hdf5 --negatives data/nut_assembly_gen200_rgb_neg.hdf5``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def rate(fires: np.ndarray) -> dict:
    """Sample count and the share of them where the classifier fired."""
    return {"samples": int(len(fires)), "fires": float(fires.mean()) if len(fires) else None}


def termination_report(task: str, agent: str | Path, dataset, negatives: str | Path, episodes: str = "val", batch: int = 256) -> dict:
    """Per stage: firing rates on goal-held steps, goal-not-held demo steps and each kind of negative."""
    from reinforcegen_ros.demos.term_negatives import KINDS, read_negatives
    from reinforcegen_ros.training.diagnostics.held_out import load_held_out, run_batched
    from reinforcegen_ros.training.hsp_dataset import NEGATIVE, component_indices

    run = load_held_out(task, agent, dataset, episodes, negatives)
    policy, data = run["policy"], run["data"]
    kind = np.full(len(data), -1)
    kind[data.phase == NEGATIVE] = read_negatives(negatives, [])[1]["kind"]  # appended in file order
    stages = []
    for k, name in enumerate(run["stage_names"]):
        idx = component_indices(data, k, "term", run["ids"], policy.config.term_next_stage_steps)
        probs = run_batched(policy, data, idx, policy.component(k, "term").prob, batch)
        fires = np.concatenate(probs) > 0.5 if probs else np.zeros(0, bool)
        label, negative = data.term[idx, k] > 0.5, data.phase[idx] == NEGATIVE
        stages.append({
            "stage": name,
            "goal_held": rate(fires[label & ~negative]),
            "goal_not_held": rate(fires[~label & ~negative]),
            **{f"negatives_{kind_name}": rate(fires[negative & (kind[idx] == i)]) for i, kind_name in enumerate(KINDS)},
        })
    return {"task": task, "agent": str(agent), "obs_mode": policy.obs_mode, "episodes": "held-out" if run["held_out"] else "all",
            "negatives": run["fingerprint"].get("term_negatives"), "stages": stages}


def format_report(report: dict) -> str:
    """Markdown: per stage, the share of samples where the classifier fires (p > 0.5), with counts."""
    def cell(r: dict) -> str:
        return f"{100 * r['fires']:.0f}% of {r['samples']}" if r["samples"] else "–"

    lines = ["| task | agent | obs | stage | fires when goal held | fires on demo steps, goal not held | "
             "fires on negatives: fingers closed on nothing | fires on negatives: object left behind |",
             "|---|---|---|---|---|---|---|---|"]
    for st in report["stages"]:
        lines.append(f"| {report['task']} | `{report['agent']}` | {report['obs_mode']} | {st['stage']} | {cell(st['goal_held'])} | "
                     f"{cell(st['goal_not_held'])} | {cell(st['negatives_closed'])} | {cell(st['negatives_left_behind'])} |")
    return "\n".join(lines)


def cmd_term_check(args: argparse.Namespace) -> None:
    report = termination_report(args.task, args.agent, args.dataset, args.negatives, args.episodes)
    print(format_report(report))
    if args.json:
        from reinforcegen_ros.io import atomic_write_json

        atomic_write_json(Path(args.json), report)


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``reinforcegen term-check`` to the command's subparsers."""
    p = subparsers.add_parser("term-check", help="termination classifier firing rates on held-out demos and termination negatives")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="trained policy directory")
    p.add_argument("--dataset", required=True, help="the agent's training dataset (HDF5)")
    p.add_argument("--negatives", required=True, help="termination negatives made from --dataset")
    p.add_argument("--episodes", choices=("val", "all"), default="val", help="val: the agent's held-out episodes; all: every episode")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.set_defaults(func=cmd_term_check)
    return p


__all__ = ["termination_report", "format_report", "register_cli"]
