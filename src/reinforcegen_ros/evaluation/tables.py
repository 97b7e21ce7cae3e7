"""Comparison tables across evaluation runs (the paper's Tables I, II and III, and Fig. 8's action noise).

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
        "gmm_action": s.get("gmm_action", legacy_action), "skill_ft": agent["skill_ft"],
        "termination_ft": s.get("termination_ft") is not None, "action_noise": float(s.get("action_noise", 0.0)),
        "replan": hybrid["replan"], "termination": hybrid["termination"],
        "teacher": s.get("teacher", "transform") if s["pose"] == "teacher" else None,  # logs without it used "transform"
        "keep_plan": bool(hybrid.get("keep_plan_on_replan_failure", False)),
        "episodes": summary["episodes"], "seeds": [min(seeds), max(seeds)] if seeds else None,
        "successes": summary["successes"], "success_rate": summary["success_rate"], "wilson95": summary["wilson95"],
        "mean_replans": summary["mean_replans"], "complete": run["complete"],
        "stage_success": [row["successes"] for row in summary["stages"]],
        "skills": [{key: row[key] for key in ("name", "skill_started", "skill_success", "mean_skill_steps")} for row in summary["stages"]],
    }


def agent_summary(agent_spec: str) -> dict:
    """What an evaluated agent observes, its skill-policy head and whether its skills are fine-tuned (a residual), from its directory."""
    from reinforcegen_ros.evaluation.harness import REPLAY_PREFIX
    from reinforcegen_ros.policies.hsp import read_agent_config
    from reinforcegen_ros.policies.residual import has_residual

    if agent_spec.startswith(REPLAY_PREFIX):
        return {"obs_mode": "privileged", "policy_head": "replay", "skill_ft": False}
    try:
        meta = read_agent_config(Path(agent_spec))
        return {"obs_mode": str(meta["obs_mode"]), "policy_head": str(meta["config"].get("policy_head", "mlp")),
                "skill_ft": has_residual(agent_spec)}
    except (ValueError, KeyError, AttributeError):
        return {"obs_mode": "unknown", "policy_head": "unknown", "skill_ft": False}


# The paper's Table I (success %, 10 source demos, 500+ rollouts per cell; every hybrid row with the
# hand-crafted, i.e. ground-truth, stage terminations). Its overall is the mean over the five tasks.
PAPER_TABLE_I = {
    "HSP-Priv": {"nut_assembly": 86.20, "threading": 54.27, "three_piece_assembly": 70.77, "coffee": 88.12, "coffee_preparation": 65.60},
    "HSP-Priv + Skill-FT": {"nut_assembly": 87.20, "threading": 89.40, "three_piece_assembly": 82.24, "coffee": 97.03, "coffee_preparation": 77.80},
    "HSP": {"nut_assembly": 40.52, "threading": 50.20, "three_piece_assembly": 41.52, "coffee": 55.38, "coffee_preparation": 35.80},
    "HSP + Replan": {"nut_assembly": 78.40, "threading": 49.80, "three_piece_assembly": 65.80, "coffee": 80.20, "coffee_preparation": 60.20},
    "ReinforceGen": {"nut_assembly": 85.80, "threading": 82.20, "three_piece_assembly": 80.40, "coffee": 93.81, "coffee_preparation": 80.80},
}


def variant_name(row: dict) -> str:
    """The paper's name of a row's agent variant."""
    name = "HSP-Priv" if row["pose"] == "teacher" else ("HSP + Replan" if row["replan"] else "HSP")
    name += " + Skill-FT" * bool(row.get("skill_ft")) + " + Term-FT" * bool(row.get("termination_ft"))
    if row.get("action_noise"):
        name += f" (action noise {row['action_noise']:g})"
    if row.get("teacher") == "transform":
        name += " (transform-only teacher)"
    if row["replan"] and row.get("keep_plan"):
        name += " (keeps its plan when a re-plan fails)"
    return name


def termination_name(row: dict) -> str:
    """Which stage terminations a row used: the task's ground truth (the paper's Table I) or the learned classifiers."""
    return "ground-truth termination" if row["termination"] == "oracle" else "learned termination"


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table; partial runs are marked."""
    out = ["| task | variant | termination | observations | GMM action | episodes | seeds | successes | success rate | 95% CI (Wilson) | per-stage successes | re-plans / episode | run |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["wilson95"]
        seeds = f"{r['seeds'][0]}..{r['seeds'][1]}" if r["seeds"] else "-"
        episodes = f"{r['episodes']}" + ("" if r["complete"] else " (partial)")
        stages = " / ".join(str(n) for n in r["stage_success"])
        out.append(f"| {r['task']} | {variant_name(r)} | {termination_name(r)} | {r['obs_mode']} | {r['gmm_action'] or '-'} | {episodes} | {seeds} | {r['successes']} | {100 * r['success_rate']:.1f}% | "
                   f"{100 * lo:.1f}–{100 * hi:.1f}% | {stages} | {r['mean_replans']:.2f} | `{r['dir']}` |")
    return "\n".join(out) + "\n"


def skills_table(rows: list[dict]) -> str:
    """The paper's Table II layout: per run and stage, the skill's success among the episodes that started it and its steps."""
    out = ["| task | variant | termination | stage | skills started | skill success | mean steps per successful skill | run |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k, sk in enumerate(r["skills"]):
            if sk["skill_started"] is None:
                success = steps = started = "- (not recorded in this log)"
            else:
                started = str(sk["skill_started"])
                success = "-" if sk["skill_success"] is None else f"{100 * sk['skill_success']:.1f}%"
                steps = "-" if sk["mean_skill_steps"] is None else f"{sk['mean_skill_steps']:.1f}"
            out.append(f"| {r['task']} | {variant_name(r)} | {termination_name(r)} | {k} {sk['name']} | {started} | {success} | {steps} | `{r['dir']}` |")
    return "\n".join(out) + "\n"


def pivot_table(rows: list[dict], paper: bool = False) -> str:
    """The paper's layout: one line per task, one column per variant, observation mode and termination, and their mean.

    A cell reads "rate (successes/episodes) [Wilson 95%]", with "partial" for a stopped run. The last
    line is the unweighted mean over tasks, as the paper's "overall"; it names how many tasks a column
    has. With ``paper`` each variant the paper's Table I reports gets a column of the paper's figures.
    """
    cells: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["task"], f"{variant_name(r)} [{r['obs_mode']}, {termination_name(r)}]")
        if key in cells:
            raise ValueError(f"two runs for {key[0]} / {key[1]}: {cells[key]['dir']} and {r['dir']}")
        cells[key] = r
    tasks = list(dict.fromkeys(task for task, _ in cells))  # in the order the runs were given
    columns = list(dict.fromkeys(column for _, column in cells))

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        lo, hi = r["wilson95"]
        return (f"{100 * r['success_rate']:.1f}% ({r['successes']}/{r['episodes']}{'' if r['complete'] else ', partial'})"
                f" [{100 * lo:.1f}–{100 * hi:.1f}]")

    def mean(column: str) -> str:
        rates = [cells[(t, column)]["success_rate"] for t in tasks if (t, column) in cells]
        return f"{100 * sum(rates) / len(rates):.2f}% ({len(rates)} of {len(tasks)} tasks)"

    variants = list(dict.fromkeys(variant_name(r) for r in rows if variant_name(r) in PAPER_TABLE_I)) if paper else []
    out = ["| task | " + " | ".join([*columns, *(f"paper: {v}" for v in variants)]) + " |",
           "|---" * (len(columns) + len(variants) + 1) + "|"]
    for t in tasks:
        ours = [cell(cells.get((t, c))) for c in columns]
        theirs = [f"{PAPER_TABLE_I[v][t]:.2f}%" if t in PAPER_TABLE_I[v] else "-" for v in variants]
        out.append(f"| {t} | " + " | ".join([*ours, *theirs]) + " |")
    paper_means = [f"{sum(PAPER_TABLE_I[v].values()) / len(PAPER_TABLE_I[v]):.2f}% (5 tasks)" for v in variants]
    out.append("| mean over tasks | " + " | ".join([*(mean(c) for c in columns), *paper_means]) + " |")
    return "\n".join(out) + "\n"


def noise_groups(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Rows grouped by (task, agent variant without its noise, agent), each group sorted by action noise; ValueError if a
    group lacks its noise-free run (the reference of the relative success) or has two runs of one noise level."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], variant_name({**r, "action_noise": 0.0}), r["agent"]), []).append(r)
    for (task, variant, agent), runs in groups.items():
        levels = [r["action_noise"] for r in runs]
        if len(set(levels)) < len(levels):
            raise ValueError(f"two runs of {task} / {variant} `{agent}` at one action noise level ({', '.join(r['dir'] for r in runs)})")
        if 0.0 not in levels:
            raise ValueError(f"{task} / {variant} `{agent}` has no run without action noise, the reference of the relative success")
        runs.sort(key=lambda r: r["action_noise"])
    return groups


def relative_success(runs: list[dict]) -> list[float | None]:
    """Success of each run relative to the group's noise-free run (1 = no drop; None when the reference never succeeded)."""
    ref = runs[0]["success_rate"]
    return [r["success_rate"] / ref if ref > 0 else None for r in runs]


def noise_table(rows: list[dict]) -> str:
    """The paper's Fig. 8 as a table: per task and agent variant, success and relative success at each action noise level."""
    out = ["| task | variant | termination | action noise (std) | episodes | successes | success rate | 95% CI (Wilson) | relative to no noise | run |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for (task, variant, agent), runs in noise_groups(rows).items():
        for r, rel in zip(runs, relative_success(runs)):
            lo, hi = r["wilson95"]
            episodes = f"{r['episodes']}" + ("" if r["complete"] else " (partial)")
            out.append(f"| {task} | {variant} `{agent}` | {termination_name(r)} | {r['action_noise']:g} | {episodes} | {r['successes']} | "
                       f"{100 * r['success_rate']:.1f}% | {100 * lo:.1f}–{100 * hi:.1f}% | {'-' if rel is None else f'{100 * rel:.1f}%'} | `{r['dir']}` |")
    return "\n".join(out) + "\n"


def plot_noise(rows: list[dict], path: str | Path) -> Path:
    """Fig. 8: success relative to the noise-free run against the action noise's std, one line per task and agent variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reinforcegen_ros.io import atomic_save_figure

    fig, ax = plt.subplots(figsize=(6, 3.6))
    groups = noise_groups(rows)
    tasks = list(dict.fromkeys(task for task, _, _ in groups))
    for (task, variant, _), runs in groups.items():  # a colour per task; fine-tuned agents solid, the others dashed
        rel = relative_success(runs)
        label = f"{task}: {variant} ({runs[0]['episodes']} episodes per level)"
        style = "o-" if "Skill-FT" in variant else "s--"
        ax.plot([r["action_noise"] for r in runs], [float("nan") if v is None else 100 * v for v in rel], style,
                color=f"C{tasks.index(task)}", label=label)
    ax.set_xlabel("action noise std (normalised action units)")
    ax.set_ylabel("success relative to no noise (%)")
    ax.set_title("Robustness to Gaussian action noise (paper Fig. 8)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return atomic_save_figure(fig, Path(path))


def cmd_eval_table(args: argparse.Namespace) -> None:
    """Print (and optionally write) the comparison table of evaluation directories."""
    from reinforcegen_ros.io import atomic_write_text

    rows = [table_row(load_run(d, args.episodes)) for d in args.runs]
    if args.skills:
        text = skills_table(rows)
    elif args.noise or args.noise_plot:
        text = noise_table(rows)
        if args.noise_plot:
            plot_noise(rows, args.noise_plot)
    else:
        text = pivot_table(rows, paper=args.paper) if args.pivot or args.paper else markdown_table(rows)
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
    p.add_argument("--paper", action="store_true",
                   help="the pivot layout with the paper's Table I figure beside each variant it reports (implies --pivot)")
    p.add_argument("--skills", action="store_true",
                   help="per stage: the skill's success among episodes that started it and its steps (the paper's Table II)")
    p.add_argument("--noise", action="store_true",
                   help="per task and agent: success and success relative to its run without noise at each action noise level (the paper's Fig. 8)")
    p.add_argument("--noise-plot", default=None, metavar="PNG", help="also plot --noise's relative success against the noise level (implies --noise)")
    p.set_defaults(func=cmd_eval_table)
    return p
