"""Trained agents in ``models/<task>/``: the agent's files and a model card.

``reinforcegen ship`` copies a trained hybrid skill policy (``config.json`` +
``model.safetensors``, and a fine-tuned agent's ``residual.json`` +
``residual.safetensors`` and ``termination_ft.json`` + ``termination_ft.safetensors``;
no optimizer state) into ``models/<task>/`` and writes
its model card, ``README.md``: what the agent observes, the data and budget it
was trained with, and every measured evaluation given, each with the
termination it used, its episodes, seeds, Wilson interval and the command that
measured it. Everything is written under temporary names and renamed, and an
existing ``models/<task>`` is replaced only when the new one is complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from reinforcegen_ros.io import atomic_write_text, replace_dir

AGENT_FILES = ("config.json", "model.safetensors")
CARD = "README.md"


def evaluation_rows(eval_dirs: list[str | Path], weights_sha256: str | None = None) -> list[dict]:
    """Table rows of the agent's evaluations; ValueError for one that played other weights.

    With ``weights_sha256`` each evaluation's agent directory must still hold
    exactly those weights, so a card never quotes another agent's figures.
    """
    from reinforcegen_ros.evaluation.tables import load_run, table_row, termination_name, variant_name

    rows = []
    for d in eval_dirs:
        run = load_run(d)
        if weights_sha256 is not None:
            played = Path(run["settings"]["agent"]) / "config.json"
            theirs = json.loads(played.read_text()).get("weights_sha256") if played.is_file() else None
            if theirs != weights_sha256:
                raise ValueError(f"evaluation '{d}' played '{run['settings']['agent']}', whose weights are not the shipped agent's")
        row = table_row(run)
        results = Path(d) / "results.json"
        row["command"] = json.loads(results.read_text()).get("command", "") if results.is_file() else ""
        row["variant"], row["termination_name"] = variant_name(row), termination_name(row)
        rows.append(row)
    return rows


def model_card(task: str, meta: dict, rows: list[dict], train_command: str, notes: str = "") -> str:
    """The model card (markdown) of an agent from its ``config.json`` and its evaluation rows."""
    from reinforcegen_ros.policies.configuration_hsp import COMPONENTS

    info, cfg = meta.get("info", {}), meta.get("config", {})
    steps = info.get("component_steps", {})
    stages = meta.get("stages", [])
    budget = ", ".join(f"{comp} {cfg.get(f'{comp}_steps') or str(cfg.get('epochs')) + ' epochs'}" for comp in COMPONENTS)
    dataset = info.get("dataset", {})
    lines = [
        f"# {task}: privileged hybrid skill policy" if meta.get("obs_mode") == "privileged" else f"# {task}: hybrid skill policy ({meta.get('obs_mode')})",
        "",
        f"A ReinforceGen hybrid skill policy for the robosuite task `{task}` ({len(stages)} stages: {', '.join(stages)}),",
        "trained by imitation on demos generated object-centrically from 10 scripted source demos.",
        "Per stage: an initiation pose predictor, a skill policy and a termination classifier; motion planning",
        "connects the stages. Load it with `HybridSkillPolicy.load('models/" + task + "')`, or play it with",
        f"`reinforcegen eval --task {task} --agent models/{task}` and through ROS 2 with",
        f"`ros2 launch reinforcegen_ros hybrid.launch.py task:={task} agent:=models/{task}`.",
        "",
        "## Observations and networks",
        "",
        f"- observations: `{meta.get('obs_mode')}` (proprioception {', '.join(cfg.get('proprio_keys', []))}"
        + (", object poses and object positions relative to the gripper)" if meta.get("obs_mode") == "privileged" else ", cameras)"),
        f"- skill policy head: {cfg.get('policy_head')} ({cfg.get('gmm_modes')} modes, action mode `{cfg.get('gmm_action')}`),"
        f" {'GRU' if cfg.get('recurrent') else 'feed-forward'}; hidden {cfg.get('hidden_dim')},"
        f" encoder {cfg.get('encoder_layers')} + head {cfg.get('head_layers')} layers",
        "",
        "## Training",
        "",
        f"- dataset: `{dataset.get('name')}`, {dataset.get('episodes')} generated demos, {dataset.get('steps')} steps"
        f" ({len(info.get('train_episodes', []))} for training, {len(info.get('val_episodes', []))} held out)",
        f"- budget per stage: {budget}; batch {cfg.get('batch_size')}, AdamW lr {cfg.get('lr')}, {info.get('epochs')} epochs,"
        f" {info.get('optimizer_steps')} gradient steps in all",
        "- gradient steps per component: " + ", ".join(f"{k} {v}" for k, v in steps.items()),
        f"- weights: `{info.get('weights')}`",
        f"- command: `{train_command}`",
        "",
        "## Measured success",
        "",
        "Scenes are seeded; `termination` says whether the stages ended on the task's ground truth (the paper's",
        "Table I protocol) or on the agent's learned classifiers (Table III). HSP-Priv takes its initiation poses",
        "from the privileged teacher (a source skill chosen and adapted to the scene as data generation does;",
        "\"transform-only teacher\": the source initiation pose transformed, nothing more), HSP and HSP + Replan from",
        "the agent's own pose predictor, without and with re-planning.",
        "",
        "| variant | termination | episodes | seeds | successes | success rate | 95% CI (Wilson) | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["wilson95"]
        seeds = f"{r['seeds'][0]}..{r['seeds'][1]}" if r["seeds"] else "-"
        lines.append(f"| {r['variant']} | {r['termination_name']} | {r['episodes']}{'' if r['complete'] else ' (partial)'} | {seeds} | "
                     f"{r['successes']} | {100 * r['success_rate']:.1f}% | {100 * lo:.1f}–{100 * hi:.1f}% | `{r['command']}` |")
    if not rows:
        lines.append("| - | - | - | - | - | not measured | - | - |")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"


def ship(task: str, agent: str | Path, out: str | Path, eval_dirs: list[str | Path], train_command: str, notes: str = "") -> Path:
    """Copy ``agent`` to ``out`` (``models/<task>``) with its model card; return ``out``."""
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.policies.fine_tuned_termination import TERM_CONFIG, TERM_WEIGHTS
    from reinforcegen_ros.policies.residual import RESIDUAL_CONFIG, RESIDUAL_WEIGHTS

    agent, out = Path(agent), Path(out)
    HybridSkillPolicy.load(agent, task=task)  # refuses a broken agent or one of another task, before anything is written
    meta = json.loads((agent / "config.json").read_text())
    card = model_card(task, meta, evaluation_rows(eval_dirs, meta.get("weights_sha256")), train_command, notes)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fine_tuned = [pair for pair in ((RESIDUAL_CONFIG, RESIDUAL_WEIGHTS), (TERM_CONFIG, TERM_WEIGHTS)) if (agent / pair[0]).is_file()]
    for name in AGENT_FILES + tuple(name for pair in fine_tuned for name in pair):
        shutil.copy2(agent / name, tmp / name)
    atomic_write_text(tmp / CARD, card)
    return replace_dir(tmp, out)


def cmd_ship(args: argparse.Namespace) -> None:
    """``reinforcegen ship``."""
    notes = Path(args.notes).read_text() if args.notes else ""
    out = ship(args.task, args.agent, args.out or Path("models") / args.task, args.eval, args.train_command, notes)
    print(f"shipped {args.agent} to {out} with its model card {out / CARD}")


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``reinforcegen ship`` to the command's subparsers."""
    p = subparsers.add_parser("ship", help="copy a trained agent into models/<task>/ with its model card")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="trained agent directory (config.json + model.safetensors)")
    p.add_argument("--eval", nargs="*", default=[], help="finished evaluation directories of this agent (their rows go in the card)")
    p.add_argument("--train-command", required=True, help="the command that trained the agent (quoted in the card)")
    p.add_argument("--notes", default=None, help="a markdown file appended to the card")
    p.add_argument("--out", default=None, help="default: models/<task>")
    p.set_defaults(func=cmd_ship)
    return p


__all__ = ["ship", "model_card", "evaluation_rows", "register_cli"]
