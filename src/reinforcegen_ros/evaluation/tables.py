"""Comparison tables across evaluation runs (the paper's Tables I and III).

Each evaluation directory holds ``episodes.jsonl`` (a settings header, then one
finished episode per line) and, once the run completed, ``results.json``. A
row is built from the episodes themselves, so a run that was stopped part way
still appears, marked as partial, with the episode count it really has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reinforcegen_ros.evaluation.harness import read_episode_log, summarize


def load_run(run_dir: str | Path, episodes: int | None = None) -> dict:
    """Settings, episodes and completeness of one evaluation directory; ValueError if it is not one.

    With ``episodes`` only the first that many episodes (by index, so the same seeds in every run) count,
    and a run that has them all is complete.
    """
    run_dir = Path(run_dir)
    log = run_dir / "episodes.jsonl"
    if not log.is_file():
        raise ValueError(f"'{run_dir}' is not an evaluation directory (no episodes.jsonl)")
    settings, played = read_episode_log(log)
    if settings is None:
        raise ValueError(f"'{log}' has no settings header")
    missing = [key for key in ("task", "agent", "pose", "hybrid") if key not in settings]
    if missing or not isinstance(settings["hybrid"], dict) or not {"replan", "termination"} <= set(settings["hybrid"]):
        raise ValueError(f"'{log}' has an incomplete settings header (lacks {', '.join(missing) or 'hybrid replan/termination'})")
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"a comparison over the first N episodes needs N >= 1, got N = {episodes} (use at least 1)")
        played = [r for r in played if r.index < episodes]
        complete = len(played) == episodes
    else:
        complete = (run_dir / "results.json").is_file() and _reported_episodes(run_dir / "results.json") == len(played)
    return {"dir": str(run_dir), "settings": settings, "episodes": played, "complete": complete}


def _reported_episodes(path: Path) -> int | None:
    """The episode count of a ``results.json``; ValueError naming the file when it is damaged."""
    try:
        return int(json.loads(path.read_bytes().decode("utf-8"))["episodes"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"'{path}' is not an evaluation report (damaged results.json)") from None


def table_row(run: dict) -> dict:
    """One row: task, agent variant, episodes, seeds, success with its Wilson interval, re-plans."""
    from reinforcegen_ros.tasks import stages

    s = run["settings"]
    summary = summarize(run["episodes"], [st.name for st in stages(s["task"])])
    seeds = [r.seed for r in run["episodes"]]
    hybrid = s["hybrid"]
    agent = agent_summary(s["agent"])
    legacy_action = "mode" if agent["policy_head"] == "gmm" else None  # logs from before gmm_action existed
    return {
        "dir": run["dir"], "task": s["task"], "agent": s["agent"], "obs_mode": agent["obs_mode"], "pose": s["pose"],
        "gmm_action": s.get("gmm_action", legacy_action),
        "replan": hybrid["replan"], "termination": hybrid["termination"],
        "keep_plan": bool(hybrid.get("keep_plan_on_replan_failure", False)),
        "episodes": summary["episodes"], "seeds": [min(seeds), max(seeds)] if seeds else None,
        "successes": summary["successes"], "success_rate": summary["success_rate"], "wilson95": summary["wilson95"],
        "mean_replans": summary["mean_replans"], "complete": run["complete"],
        "stage_success": [row["successes"] for row in summary["stages"]],
    }


def agent_summary(agent_spec: str) -> dict:
    """What an evaluated agent observes and its skill-policy head, from its ``config.json`` ("unknown" when gone)."""
    from reinforcegen_ros.evaluation.harness import REPLAY_PREFIX
    from reinforcegen_ros.policies.hsp import read_agent_config

    if agent_spec.startswith(REPLAY_PREFIX):
        return {"obs_mode": "privileged", "policy_head": "replay"}
    try:
        meta = read_agent_config(Path(agent_spec))
        return {"obs_mode": str(meta["obs_mode"]), "policy_head": str(meta["config"].get("policy_head", "mlp"))}
    except (ValueError, KeyError, AttributeError):
        return {"obs_mode": "unknown", "policy_head": "unknown"}


def variant_name(row: dict) -> str:
    """The paper's name of a row's agent variant."""
    name = "HSP-Priv" if row["pose"] == "teacher" else ("HSP + Replan" if row["replan"] else "HSP")
    if row["replan"] and row.get("keep_plan"):
        name += " (keeps its plan when a re-plan fails)"
    return name + (" (oracle termination)" if row["termination"] == "oracle" else "")


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table; partial runs are marked."""
    out = ["| task | variant | observations | GMM action | episodes | seeds | successes | success rate | 95% CI (Wilson) | per-stage successes | re-plans / episode | run |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["wilson95"]
        seeds = f"{r['seeds'][0]}..{r['seeds'][1]}" if r["seeds"] else "-"
        episodes = f"{r['episodes']}" + ("" if r["complete"] else " (partial)")
        stages = " / ".join(str(n) for n in r["stage_success"])
        out.append(f"| {r['task']} | {variant_name(r)} | {r['obs_mode']} | {r['gmm_action'] or '-'} | {episodes} | {seeds} | {r['successes']} | {100 * r['success_rate']:.1f}% | "
                   f"{100 * lo:.1f}–{100 * hi:.1f}% | {stages} | {r['mean_replans']:.2f} | `{r['dir']}` |")
    return "\n".join(out) + "\n"


def pivot_table(rows: list[dict]) -> str:
    """The paper's layout: one line per task, one column per variant and observation mode, and their mean.

    A cell reads "rate (successes/episodes)", with "partial" for a stopped run. The last line is the
    unweighted mean over tasks, as the paper's "overall"; it names how many tasks a column has.
    """
    cells: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["task"], f"{variant_name(r)} [{r['obs_mode']}]")
        if key in cells:
            raise ValueError(f"two runs for {key[0]} / {key[1]}: {cells[key]['dir']} and {r['dir']}")
        cells[key] = r
    tasks = list(dict.fromkeys(task for task, _ in cells))  # in the order the runs were given
    columns = list(dict.fromkeys(column for _, column in cells))

    def cell(r: dict | None) -> str:
        return "-" if r is None else f"{100 * r['success_rate']:.1f}% ({r['successes']}/{r['episodes']}{'' if r['complete'] else ', partial'})"

    def mean(column: str) -> str:
        rates = [cells[(t, column)]["success_rate"] for t in tasks if (t, column) in cells]
        return f"{100 * sum(rates) / len(rates):.2f}% ({len(rates)} of {len(tasks)} tasks)"

    out = ["| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    out += [f"| {t} | " + " | ".join(cell(cells.get((t, c))) for c in columns) + " |" for t in tasks]
    out.append("| mean over tasks | " + " | ".join(mean(c) for c in columns) + " |")
    return "\n".join(out) + "\n"


def cmd_eval_table(args: argparse.Namespace) -> None:
    """Print (and optionally write) the comparison table of evaluation directories."""
    from reinforcegen_ros.io import atomic_write_text

    rows = [table_row(load_run(d, args.episodes)) for d in args.runs]
    text = pivot_table(rows) if args.pivot else markdown_table(rows)
    print(text, end="")
    if args.markdown:
        atomic_write_text(Path(args.markdown), text)


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``reinforcegen eval-table`` to the command's subparsers."""
    p = subparsers.add_parser("eval-table", help="compare evaluation runs in one table (paper Tables I and III)")
    p.add_argument("runs", nargs="+", help="evaluation directories (with episodes.jsonl)")
    p.add_argument("--episodes", type=int, default=None,
                   help="count only each run's first N episodes, so that runs of different lengths compare on the same seeds")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--pivot", action="store_true", help="one line per task, one column per variant (the paper's layout), with the mean over tasks")
    p.set_defaults(func=cmd_eval_table)
    return p
