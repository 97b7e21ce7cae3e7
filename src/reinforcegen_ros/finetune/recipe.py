"""A task's fine-tuning recipe run end to end (paper Table VI): ``reinforcegen finetune run``.

The recipe is configuration (``skill_stages``, ``term_stages``, ``term_first`` in the
task YAML's ``finetune:``): residual RL of each skill stage in order, each one
starting from the agent the step before wrote (so stage k's reset bank is
collected with stages < k already fine-tuned, paper Sec. IV-B), and termination
fine-tuning of ``term_stages`` before the skills (``term_first``: Three Piece
Assembly, whose skills are then fine-tuned against the new termination) or after
them. Step runs live in ``<out>/term`` and ``<out>/stage<k>``; the last step's
agent is copied to ``<out>/agent``; ``<out>/recipe.json`` records the run's
identity, every step's input and output agents and results. A rerun skips the
finished steps (recorded done, same input agent, output agent unchanged) and
resumes the unfinished one (the sub-runs resume themselves); a rerun with another
recipe, agent or settings is refused.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reinforcegen_ros.finetune.config import RESUMABLE_CHANGES, FinetuneConfig
from reinforcegen_ros.io import atomic_write_json, file_sha256

RECIPE_FILE = "recipe.json"
FORMAT = "reinforcegen_recipe"


@dataclass(frozen=True)
class Step:
    """One step of a recipe: termination fine-tuning of ``stages``, or residual RL of one stage's skill."""

    kind: str  # "term" or "skill"
    stages: tuple[int, ...]

    @property
    def name(self) -> str:
        """The step's run directory under ``<out>``."""
        return "term" if self.kind == "term" else f"stage{self.stages[0]}"


def recipe_steps(config: FinetuneConfig) -> list[Step]:
    """The steps in order: skills of ``skill_stages``, termination of ``term_stages`` before them (``term_first``) or after."""
    skills = [Step("skill", (k,)) for k in config.skill_stages]
    term = [Step("term", tuple(config.term_stages))] if config.term_stages else []
    return term + skills if config.term_first else skills + term


def agent_digest(agent_dir: str | Path) -> str:
    """SHA-256 over an agent directory's file names and contents (temporary files left out)."""
    root, h = Path(agent_dir), hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.name):
        h.update(f"{path.relative_to(root)}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def run_recipe(task: str, agent_dir: str | Path, out: str | Path, config: FinetuneConfig, steps: int | None = None,
               term_episodes: int | None = None, pose: str = "learned", teacher_source: str | None = None,
               teacher: str = "generation", workers: int = 1, pool: str = "local", address: str | None = None,
               progress: bool = True, on_step: Callable[[dict], None] | None = None, demos: str | Path | None = None) -> dict:
    """Run ``task``'s recipe from the agent in ``agent_dir`` into ``out`` (resumable); the ``recipe.json`` record.

    ``steps``: env steps per fine-tuned skill stage (default ``recipe_steps``); ``term_episodes``: rollouts of
    termination fine-tuning (default ``recipe_term_episodes``); ``demos``: the generated dataset whose skill
    segments fill ``demo_fraction`` of each critic batch in every skill step (as ``finetune skill --demos``).
    ``on_step`` is called with each step's record as it finishes (or is found finished).
    """
    from reinforcegen_ros.finetune.residual_rl import file_id

    if demos is not None and not Path(demos).is_file():
        raise ValueError(f"--demos '{demos}' is not a file (a generated dataset, HDF5)")

    agent_dir, out = Path(agent_dir), Path(out)
    plan = recipe_steps(config)
    _check_plan(task, agent_dir, plan, pose, teacher_source, teacher)
    budget = {"steps": int(config.recipe_steps if steps is None else steps),
              "term_episodes": int(config.recipe_term_episodes if term_episodes is None else term_episodes)}
    if min(budget.values()) < 1:
        raise ValueError(f"--steps and --term-episodes must be at least 1, got {budget['steps']}, {budget['term_episodes']}")
    identity = {"format": FORMAT, "task": task, "agent": agent_digest(agent_dir), "recipe": [s.name for s in plan], **budget,
                "pose": pose, "teacher": teacher if pose == "teacher" else None,
                "teacher_source": None if teacher_source is None else str(Path(teacher_source).resolve()),
                **({"demos": file_id(demos)} if demos is not None else {}),  # absent without demos, as in records before --demos
                "config": {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}}
    record = open_record(out, identity, plan, agent_dir)
    options = dict(pose=pose, teacher_source=teacher_source, teacher=teacher, workers=workers, pool=pool, address=address,
                   progress=progress)
    current = agent_dir
    for step, row in zip(plan, record["steps"]):
        row["skipped"] = finished(row, current)
        if not row["skipped"]:
            row.update(done=False, input=agent_digest(current), output=None)
            _save(out, record)
            row.update(run_step(step, task, current, out, config, budget, options, demos))
            row.update(output=agent_digest(out / step.name / "agent"), done=True)
            _save(out, record)
        if on_step is not None:
            on_step(row)
        current = out / step.name / "agent"
    record["agent"] = str(copy_agent(current, out / "agent"))
    rows = record["steps"]
    record.update(done=True, env_steps=sum(r["result"].get("env_steps", 0) for r in rows), wall_s=round(sum(r["wall_s"] for r in rows), 1))
    _save(out, record)
    return record


def _check_plan(task: str, agent_dir: Path, plan: list[Step], pose: str, teacher_source: str | None, teacher: str) -> None:
    """ValueError (one line) for an empty recipe, an agent of another task or without a stage, or a bad pose source."""
    from reinforcegen_ros.finetune.termination_ft import rollout_settings
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    if not plan:
        raise ValueError(f"task '{task}' has no fine-tuning recipe: set skill_stages or term_stages in its task YAML's finetune:")
    agent = HybridSkillPolicy.load(agent_dir, task=task)
    for step in plan:
        for k in step.stages:
            agent._check_stage(k)
    rollout_settings(task, agent_dir, pose, teacher_source, teacher)  # checks the pose source before anything is written


def open_record(out: Path, identity: dict, plan: list[Step], agent_dir: Path) -> dict:
    """``<out>/recipe.json``: this run's record, new or resumed; ValueError if ``out`` holds another run or other files."""
    from reinforcegen_ros.policies.hsp import read_json

    path = out / RECIPE_FILE
    if path.exists():
        record = read_json(path, "fine-tuning recipe record")
        differ = _differences(record.get("identity") or {}, identity)
        if differ:
            raise ValueError(f"'{out}' holds a recipe run with another {', '.join(differ[:4])}; use another --out")
        return record
    ours = {RECIPE_FILE, "agent", "agent.tmp", "agent.old", *(s.name for s in plan)}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if foreign or (out.is_dir() and any(out.iterdir())):
        raise ValueError(f"--out '{out}' holds other files ({', '.join(foreign[:3]) or 'runs without a recipe.json'}); "
                         "choose a new or empty directory")
    record = {"identity": identity, "agent_dir": str(agent_dir), "done": False, "agent": None,
              "steps": [{"step": s.kind, "stages": list(s.stages), "dir": str(out / s.name), "done": False, "input": None,
                         "output": None, "result": {}, "wall_s": 0.0} for s in plan]}
    out.mkdir(parents=True, exist_ok=True)
    _save(out, record)
    return record


def _differences(saved: dict, ours: dict) -> list[str]:
    """Names of the identity entries (``config.<key>`` for settings) that differ."""
    differ = [k for k in sorted(set(saved) | set(ours)) if k != "config" and saved.get(k) != ours.get(k)]
    config, theirs = ours.get("config", {}), saved.get("config", {})
    return differ + [f"config.{k}" for k in sorted(set(config) | set(theirs)) if config.get(k) != theirs.get(k)]


def finished(row: dict, current: Path) -> bool:
    """Whether a step is done from this input agent and its output agent is still the one it wrote."""
    agent = Path(row["dir"]) / "agent"
    return bool(row["done"]) and agent.is_dir() and row["input"] == agent_digest(current) and row["output"] == agent_digest(agent)


def run_step(step: Step, task: str, agent_dir: Path, out: Path, config: FinetuneConfig, budget: dict, options: dict,
             demos: str | Path | None = None) -> dict:
    """Run (or resume) one step into ``<out>/<step.name>``; its result and wall time."""
    start = time.perf_counter()
    if step.kind == "term":
        result = _term_step(step, task, agent_dir, out / step.name, config, budget["term_episodes"], options)
    else:
        result = _skill_step(step, task, agent_dir, out / step.name, config, budget["steps"], {**options, "demos": demos})
    return {"result": result, "wall_s": round(time.perf_counter() - start, 1)}


def _skill_step(step: Step, task: str, agent_dir: Path, run_dir: Path, config: FinetuneConfig, steps: int, options: dict) -> dict:
    from reinforcegen_ros.finetune.residual_rl import finetune_skill

    s = finetune_skill(task, step.stages[0], agent_dir, steps, run_dir, None, config, **options)
    keep = ("success", "steps", "episodes")
    return {"env_steps": s["env_steps"], "episodes": s["episodes"], "train_seconds": round(s["seconds"], 1),
            "before": {k: s["before"].get(k) for k in keep}, "after": {k: s["after"].get(k) for k in keep}}


def _term_step(step: Step, task: str, agent_dir: Path, run_dir: Path, config: FinetuneConfig, episodes: int, options: dict) -> dict:
    from reinforcegen_ros.finetune.termination_ft import finetune_termination

    s = finetune_termination(task, agent_dir, episodes, run_dir, config, stages=list(step.stages), **options)
    stages = {k: {"samples": r["samples"], "positives": r["positives"], "rejected": r.get("rejected"), "skipped": r.get("skipped")}
              for k, r in s["stages"].items()}
    return {"episodes": s["episodes"], "successes": s["successes"], "task_success": s["successes"] / max(s["episodes"], 1),
            "fine_tuned_stages": s["fine_tuned_stages"], "stages": stages}


def copy_agent(source: Path, target: Path) -> Path:
    """Copy agent directory ``source`` to ``target`` as a whole: into ``<target>.tmp``, then renamed into place."""
    from reinforcegen_ros.io import replace_dir

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("*.tmp*"))
    return replace_dir(tmp, target)


def step_line(row: dict) -> str:
    """One line on a finished step, for the command line."""
    res, again = row["result"], " (finished before)" if row.get("skipped") else ""
    where = f"{row['dir']}/agent{again}"
    if row["step"] == "term":
        return (f"termination of stages {row['stages']}: {res['successes']}/{res['episodes']} rollouts successful; predictors for "
                f"stages {res['fine_tuned_stages']} ({row['wall_s']:.0f} s) -> {where}")
    before, after = res["before"], res["after"]
    return (f"skill of stage {row['stages'][0]}: success {before['success']:.2f} -> {after['success']:.2f} on {after['episodes']} bank "
            f"states after {res['env_steps']} env steps ({row['wall_s']:.0f} s) -> {where}")


def _save(out: Path, record: dict) -> None:
    atomic_write_json(out / RECIPE_FILE, record)


__all__ = ["Step", "recipe_steps", "run_recipe", "agent_digest", "finished", "copy_agent", "step_line", "RECIPE_FILE"]
