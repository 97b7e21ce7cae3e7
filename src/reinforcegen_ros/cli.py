"""The ``reinforcegen`` command line.

Every subcommand has ``--help``. Errors the user can fix (unknown task, bad
dataset or bag, a bad option value, an output that exists or cannot be written)
end in one line on stderr naming the file or option, with exit status 2; a
failed command removes the outputs it created. An unexpected exception is a bug:
one line says so, then the traceback follows. All of this happens in
:func:`main` and the parser built by :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import traceback
from pathlib import Path

from reinforcegen_ros.demos.dataset import DatasetError
from reinforcegen_ros.tasks import TASKS, UnknownTaskError


# ---------------------------------------------------------------------- tasks
def cmd_tasks(args: argparse.Namespace) -> None:
    """Print the tasks with their stages and reference objects."""
    from reinforcegen_ros.tasks import stages

    for name in TASKS:
        print(f"{name}")
        for i, stage in enumerate(stages(name)):
            print(f"  {i}  {stage.name:<24} ref: {stage.reference_object:<16} {stage.description}")


# ---------------------------------------------------------------------- demos
def cmd_demos_collect(args: argparse.Namespace) -> None:
    """Collect scripted source demonstrations."""
    from reinforcegen_ros.demos.collect import collect

    report = collect(args.task, args.num, args.out, seed=args.seed, max_attempts=args.max_attempts, obs_mode=args.obs)
    print(
        f"wrote {report.successes} demos to {args.out} "
        f"({report.successes}/{report.attempts} scripted attempts succeeded, seeds {args.seed}..{args.seed + report.attempts - 1})"
    )


def cmd_demos_import(args: argparse.Namespace) -> None:
    """Import a robomimic/MimicGen-format HDF5 dataset."""
    from reinforcegen_ros.demos.importer import import_dataset

    report = import_dataset(args.task, args.input, args.out, keep_failed=args.keep_failed)
    for name, reason in report.skipped.items():
        print(f"{name}: {reason}; skipped", file=sys.stderr)
    print(f"imported {report.imported} demos into {args.out}")


def cmd_demos_info(args: argparse.Namespace) -> None:
    """Summarise a dataset."""
    from reinforcegen_ros.demos.dataset import dataset_meta, demo_names, env_args, has_annotations, open_dataset

    with open_dataset(args.path) as f:
        data = f["data"]
        names = demo_names(data)
        lengths = [data[n]["actions"].shape[0] for n in names]
        meta = dataset_meta(f)
        first = data[names[0]]
        print(f"dataset      {args.path}")
        print(f"environment  {env_args(f).get('env_name')}  task: {meta.get('task', '?')}")
        print(f"demos        {len(names)}  steps: {sum(lengths)}  median length: {statistics.median(lengths):.0f}")
        print(f"obs keys     {', '.join(first['obs'].keys())}")
        print(f"annotated    {sum(has_annotations(data[n]) for n in names)}/{len(names)}")
        for stage in meta.get("stages", []):
            print(f"  stage {stage['name']:<24} ref: {stage['reference_object']}")


def cmd_demos_compare(args: argparse.Namespace) -> None:
    """Compare two datasets field by field; exit 1 if a field is missing or differs beyond --tol."""
    from reinforcegen_ros.demos.dataset import compare_datasets

    rows = compare_datasets(args.a, args.b)
    bad = 0
    print("| field | demos | exact | max abs difference otherwise | problems |\n|---|---|---|---|---|")
    for field, r in sorted(rows.items()):
        fails = r["problems"] or r["max_abs_diff"] > args.tol
        bad += bool(fails)
        diff = f"{r['max_abs_diff']:.3g}" if r["max_abs_diff"] > 0 else "-"
        print(f"| {field} | {r['demos']} | {r['exact']} | {diff} | {'; '.join(r['problems'][:3]) or '-'} |")
    print(f"{len(rows)} fields compared, {bad} differ beyond {args.tol:g}")
    if bad:
        raise SystemExit(1)


def cmd_demos_success(args: argparse.Namespace) -> None:
    """Measure the scripted demonstrators' success rates and print (or write) a markdown table."""
    from reinforcegen_ros.demos.collect import CollectReport, make_demonstrator, scripted_attempts
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    tasks = list(TASKS) if args.task == "all" else [args.task]
    rows = []
    for task in tasks:
        config = task_config(task)
        env = TaskEnv(task, config=config)
        report = CollectReport(task)
        for _ in scripted_attempts(env, make_demonstrator(task, config), range(args.seed, args.seed + args.episodes), report):
            pass
        env.close()
        reasons = sorted({r for r in report.failures.values()})
        median = statistics.median(report.lengths) if report.lengths else 0
        rows.append(
            f"| {task} | {report.attempts} | {args.seed}..{args.seed + args.episodes - 1} | {report.successes} "
            f"| {100 * report.success_rate:.0f}% | {median:.0f} | {'; '.join(reasons) or '-'} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        ["| task | episodes | seeds | successes | success rate | median steps | failure reasons |", "|---|---|---|---|---|---|---|", *rows]
    )
    if args.markdown:
        from reinforcegen_ros.io import atomic_write_text

        command = " ".join(["reinforcegen", *sys.argv[1:]])
        atomic_write_text(args.markdown, f"# Scripted demonstrator success\n\nMade by `{command}`.\n\n{table}\n")
        print(f"wrote {args.markdown}")


# ---------------------------------------------------------------------- generation
def cmd_generate(args: argparse.Namespace) -> None:
    """Object-centric data generation from source demos (resumes a killed run)."""
    from reinforcegen_ros.datagen.runner import generate
    from reinforcegen_ros.tasks import task_config

    config = task_config(args.task)
    datagen = config.setdefault("datagen", {})
    for key in ("planner", "source_strategy"):
        if getattr(args, key) is not None:
            datagen[key] = getattr(args, key)
    if args.step_path is not None:
        config.setdefault("simulation", {})["step_path"] = args.step_path
    report = generate(
        args.task, args.source, args.num, args.out, workers=args.workers, pool=args.pool,
        address=args.address, seed=args.seed, max_attempts=args.max_attempts, config=config, keep_partial=args.keep_partial,
    )
    print(f"wrote {min(args.num, report.successes)} demos to {args.out} ({report.successes}/{report.attempts} attempts succeeded)")


def cmd_demos_stats(args: argparse.Namespace) -> None:
    """Per-stage generation success and failure reasons of a generated dataset."""
    import json

    from reinforcegen_ros.demos.dataset import dataset_meta, open_dataset

    with open_dataset(args.path) as f:
        raw = f["data"].attrs.get("generation")
        stages_meta = dataset_meta(f).get("stages", [])
    if raw is None:
        raise ValueError(f"'{args.path}' has no generation statistics (it was not made by 'reinforcegen generate')")
    gen = json.loads(raw)
    failures = {int(k): v for k, v in gen["failures"].items()}
    print(f"attempts {gen['attempts']}  successes {gen['successes']}  success rate {gen['successes'] / max(1, gen['attempts']):.1%}")
    cpu = f"  worker CPU {gen['worker_cpu_seconds']} s" if gen.get("worker_cpu_seconds") else ""
    print(f"workers {gen.get('workers')}  pool {gen.get('executor')}  wall {gen.get('wall_seconds')} s  worker time {gen['worker_seconds']} s{cpu}"
          f"  step path {gen.get('step_path', 'lean')}")
    reached = gen["attempts"] - sum(sum(v.values()) for k, v in failures.items() if k < 0)
    print(f"{'stage':<28} {'reached':>8} {'passed':>8} {'rate':>7}  failure reasons")
    for k, stage in enumerate(stages_meta):
        failed = sum(failures.get(k, {}).values())
        reasons = "; ".join(f"{r} ({n})" for r, n in sorted(failures.get(k, {}).items(), key=lambda x: -x[1]))
        print(f"{k} {stage['name']:<26} {reached:>8} {reached - failed:>8} {(reached - failed) / max(1, reached):>7.1%}  {reasons or '-'}")
        reached -= failed
    for reason, n in failures.get(-1, {}).items():
        print(f"errors: {reason} ({n})")


def cmd_demos_video(args: argparse.Namespace) -> None:
    """Render a demo to mp4 with the stage and phase on each frame."""
    from reinforcegen_ros.evaluation.video import render_demo

    path = render_demo(args.path, args.demo, args.out, camera=args.camera, size=args.size)
    print(f"wrote {path}")


def cmd_demos_annotate(args: argparse.Namespace) -> None:
    """Add connect/skill phase annotations to a dataset, or check them."""
    from reinforcegen_ros.datagen.annotate import annotate_dataset, check_dataset

    if args.check:
        problems = check_dataset(args.path, args.task)
        for name, problem in problems.items():
            print(f"{name}: {problem}")
        print(f"{len(problems)} demos with annotation problems")
        if problems:
            raise ValueError(f"'{args.path}' has {len(problems)} demos without valid stage/phase annotations")
        return
    n = annotate_dataset(args.path, args.task, args.out, args.skill_radius, overwrite=args.overwrite)
    print(f"annotated {n} demos -> {args.out}")


def cmd_demos_add_images(args: argparse.Namespace) -> None:
    """Copy a dataset adding camera images rendered from its saved states."""
    from reinforcegen_ros.demos.collect import add_images

    n, cameras = add_images(args.path, args.out, cameras=args.cameras, size=args.size, max_demos=args.max_demos)
    print(f"wrote {n} demos with {', '.join(cameras)} images ({args.size}x{args.size}) to {args.out}")


def cmd_demos_term_negatives(args: argparse.Namespace) -> None:
    """Termination negatives (fingers closed on nothing, object left behind) from a dataset's saved states."""
    from reinforcegen_ros.demos.term_negatives import make_term_negatives

    summary = make_term_negatives(args.path, args.out, per_stage=args.per_stage, max_demos=args.max_demos)
    counts = ", ".join(f"{name} {n}" for name, n in zip(summary["stages"], summary["per_stage"]))
    kinds = ", ".join(f"{kind} {n}" for kind, n in summary["per_kind"].items())
    images = f" with {', '.join(summary['cameras'])} images" if summary["cameras"] else ""
    print(f"wrote {summary['samples']} termination negatives{images} to {args.out} (per stage: {counts}; per kind: {kinds})")


# ---------------------------------------------------------------------- rosbag2
def cmd_demos2bag(args: argparse.Namespace) -> None:
    """Write a dataset as a rosbag2 for ros2 bag play, rviz and Foxglove."""
    from reinforcegen_ros.demos.dataset import dataset_meta, iter_episodes, open_dataset
    from reinforcegen_ros.demos.rosbag import episodes_to_bag

    with open_dataset(args.dataset) as f:
        meta = dataset_meta(f)
    if "task" not in meta:
        raise ValueError(f"'{args.dataset}' does not name its task; import it with 'reinforcegen demos import' first")
    episodes = list(iter_episodes(args.dataset))
    if args.demos is not None:
        outside = [i for i in args.demos if i >= len(episodes)]
        if outside:
            raise ValueError(f"--demos {outside[0]}: '{args.dataset}' has {len(episodes)} demos (indices 0..{len(episodes) - 1})")
        episodes = [episodes[i] for i in args.demos]
    names = [s["name"] for s in meta["stages"]]
    path = episodes_to_bag(episodes, args.out, meta["task"], names, storage=args.storage, images=not args.no_images)
    print(f"wrote {len(episodes)} episodes to {path}")


def cmd_bag2demos(args: argparse.Namespace) -> None:
    """Turn a recorded rosbag2 into source demos."""
    from reinforcegen_ros.demos.dataset import dataset_attrs, write_dataset
    from reinforcegen_ros.demos.rosbag import bag_to_episodes
    from reinforcegen_ros.tasks import stages
    from reinforcegen_ros.tasks.environment import TaskEnv

    task_stages = stages(args.task)
    episodes = bag_to_episodes(args.bag, [s.name for s in task_stages], task=args.task)
    if not episodes:
        raise ValueError(f"'{args.bag}' holds no episodes")
    env = TaskEnv(args.task)
    write_dataset(args.out, episodes, dataset_attrs(env.env_args(), args.task, task_stages, source=f"bag:{Path(args.bag).name}"))
    env.close()
    print(f"wrote {len(episodes)} demos to {args.out}")


# ---------------------------------------------------------------------- demo
SHIPPED_DEMO_SEED = 300000  # scenes of the shipped agent's demo episodes (+ --seed): none of training's or Table I's
def cmd_demo(args: argparse.Namespace) -> None:
    """The main job on the embedded default: source demos -> generated data -> rosbag, no ROS."""
    import shutil

    from reinforcegen_ros.datagen.runner import generate
    from reinforcegen_ros.demos.collect import collect
    from reinforcegen_ros.demos.dataset import iter_episodes
    from reinforcegen_ros.demos.rosbag import episodes_to_bag
    from reinforcegen_ros.tasks import stages

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print("== tasks")
    cmd_tasks(args)
    print(f"\n== scripted source demos ({args.num} per task)")
    for task in TASKS if args.task == "all" else [args.task]:
        report = collect(task, args.num, out / f"{task}_source.hdf5", seed=args.seed, progress=False)
        print(f"{task}: {report.successes}/{report.attempts} scripted demos succeeded -> {out / f'{task}_source.hdf5'}")
    gen_task = "coffee" if args.task == "all" else args.task
    gen_path = out / f"{gen_task}_generated.hdf5"
    print(f"\n== object-centric generation ({args.generate} {gen_task} demos from {args.num} sources)")
    report = generate(gen_task, out / f"{gen_task}_source.hdf5", args.generate, gen_path, progress=False)
    print(f"{gen_task}: {report.successes}/{report.attempts} generation attempts succeeded -> {gen_path}")
    cmd_demos_stats(argparse.Namespace(path=gen_path))
    print(f"\n== hybrid skill policy: imitation training ({args.epochs} epochs, privileged observations)")
    from reinforcegen_ros.evaluation.harness import evaluate
    from reinforcegen_ros.training.loop import train_hsp

    summary = train_hsp(gen_task, gen_path, out / "hsp", obs_mode="privileged", config={"epochs": args.epochs}, progress=False)
    print(f"trained agent -> {summary['out']} ({summary['step']} gradient steps)")
    print(f"\n== hybrid executor: evaluation ({args.eval_episodes} seeded episodes, learned termination, re-planning on)")
    result = evaluate(gen_task, str(out / "hsp"), episodes=args.eval_episodes, out_dir=out / "eval", progress=False)
    print(f"success {result['successes']}/{result['episodes']} -> {out / 'eval' / 'results.md'}"
          " (a few demos and epochs: this shows the pipeline runs, not how well it can do)")
    print("\n== rosbag2 export (no ROS needed)")
    bag = episodes_to_bag(list(iter_episodes(gen_path)), out / f"{gen_task}_generated_bag", gen_task, [s.name for s in stages(gen_task)])
    print(f"wrote {bag} (play it with 'ros2 bag play', open it in Foxglove)")
    print("\n== ROS 2 deployment layer without ROS (the nodes' cores in one process)")
    from reinforcegen_ros.deployment.loopback import demo_report

    for line in demo_report(gen_task, f"replay:{out / f'{gen_task}_source.hdf5'}"):
        print(line)
    print(f"with ROS 2: ros2 launch reinforcegen_ros hybrid.launch.py task:={gen_task} agent:={out / 'hsp'} planner:=ompl")
    demo_shipped_agent(gen_task, Path(args.models) / gen_task, args.shipped_episodes, args.seed, out)
    demo_fine_tuning(gen_task, Path(args.models) / gen_task, args.finetune_steps, out)


def demo_shipped_agent(task: str, agent: Path, episodes: int, seed: int, out: Path) -> None:
    """The demo's last part: a trained agent from ``models/`` on a few seeded scenes, in-process (with a
    video and the report) and through the deployment graph's cores."""
    from reinforcegen_ros.deployment.loopback import demo_report
    from reinforcegen_ros.evaluation.harness import evaluate

    print(f"\n== shipped agent {agent}: {episodes} seeded episodes (its own initiation poses, re-planning and terminations)")
    if not (agent / "config.json").is_file():
        print(f"no trained agent in {agent}; see models/README.md for the agents this project ships")
        return
    result = evaluate(task, str(agent), episodes=episodes, seed=SHIPPED_DEMO_SEED + seed, video=1, out_dir=out / "shipped_eval",
                      progress=False)
    failures = "; ".join(f"{kind} ({n})" for kind, n in result["failures"].items())
    videos = [r["video"] for r in result["episodes_detail"] if r["video"]]
    print(f"success {result['successes']}/{result['episodes']} (scene seeds {SHIPPED_DEMO_SEED + seed}..{SHIPPED_DEMO_SEED + seed + episodes - 1})"
          f" -> {out / 'shipped_eval' / 'results.md'}" + (f", video {videos[0]}" if videos else "") + (f"; failures: {failures}" if failures else ""))
    print("through the deployment graph's cores (sequencer, bridge, skill policy, termination, planner in one process):")
    for line in demo_report(task, str(agent), seed=SHIPPED_DEMO_SEED + seed):
        print(line)


def demo_fine_tuning(task: str, agent: Path, steps: int, out: Path) -> None:
    """ReinforceGen's fine-tuning in brief: residual RL of the shipped agent's first fine-tuned stage (paper Table VI)
    from a 3-state reset bank, for a few hundred env steps; the agent it writes carries the residual."""
    from reinforcegen_ros.finetune.config import load_config
    from reinforcegen_ros.finetune.residual_rl import finetune_skill

    config = load_config(None, task)
    if not (agent / "config.json").is_file() or not config.skill_stages or steps < 1:
        return
    stage = config.skill_stages[0]
    small = config.replace(bank_states=3, seed_steps=min(100, steps), batch_size=64, critic_warmup=0, eval_every=steps, eval_episodes=3)
    print(f"\n== ReinforceGen fine-tuning: residual RL of stage {stage}'s skill, {steps} env steps from a 3-state reset bank")
    summary = finetune_skill(task, stage, agent, steps, out / "finetune", config=small, progress=False)
    before, after = summary["before"], summary["after"]
    print(f"stage {stage} success on the 3 bank states: {round(3 * before['success'])}/3 before, {round(3 * after['success'])}/3 after"
          f" ({summary['env_steps']} env steps, {summary['updates']} updates) -> {summary['agent']} (base + residual)")
    from reinforcegen_ros.finetune.stage_eval import evaluate_on_bank

    check = evaluate_on_bank(task, stage, summary["agent"], out / "finetune" / f"bank_stage{stage}.hdf5")
    print(f"`reinforcegen finetune evaluate` of the written agent on the same states (executor's {check['time_limit']}-step skill limit): "
          f"{check['successes']}/{check['episodes']}")
    print("(a few hundred steps show the pipeline runs; the measured runs are in docs/RESULTS.md)")


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``reinforcegen`` command."""
    parser = CommandParser(prog="reinforcegen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the tasks, their stages and reference objects")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("demo", help="run the main job on the embedded default (no ROS)")
    p.add_argument("--task", default="all", help="one task or 'all'")
    p.add_argument("--num", type=int, default=3, help="scripted source demos per task")
    p.add_argument("--generate", type=int, default=3, help="demos to generate for coffee (or --task)")
    p.add_argument("--epochs", type=int, default=2, help="imitation-training epochs of the demo agent")
    p.add_argument("--eval-episodes", type=int, default=2, help="evaluation episodes of the demo agent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--models", default="models", help="folder of the shipped agents (models/<task>/)")
    p.add_argument("--shipped-episodes", type=int, default=3, help="seeded episodes of the shipped agent")
    p.add_argument("--finetune-steps", type=int, default=300, help="env steps of the shipped agent's residual RL (0: skip)")
    p.set_defaults(func=cmd_demo)

    from reinforcegen_ros.tasks.environment import STEP_PATHS

    p = sub.add_parser("generate", help="object-centric data generation from source demos")
    p.add_argument("--task", required=True)
    p.add_argument("--source", required=True, help="annotated source dataset (HDF5)")
    p.add_argument("--num", type=int, default=1000, help="successful demos to generate")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pool", "--executor", dest="pool", choices=("local", "ray"), default="local",
                   help="job pool of the attempts: local processes or Ray actors (--executor: the old name)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --pool ray)")
    p.add_argument("--seed", type=int, default=100_000, help="scene seed of attempt 0")
    p.add_argument("--max-attempts", type=int, default=None, help="default: 20 x --num")
    p.add_argument("--planner", choices=("straight_line", "ompl"), default=None, help="default: the task YAML's")
    p.add_argument("--source-strategy", choices=("random", "nearest"), default=None)
    p.add_argument("--keep-partial", action="store_true", help="write the demos obtained when --max-attempts runs out")
    p.add_argument("--step-path", choices=STEP_PATHS, default=None,
                   help="how TaskEnv steps the simulator (default: the task's, see config/simulation.yaml)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demos2bag", help="write a dataset as a rosbag2 (MCAP by default)")
    p.add_argument("dataset")
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--demos", type=int, nargs="+", default=None, help="demo indices (default: all)")
    p.add_argument("--no-images", action="store_true")
    p.set_defaults(func=cmd_demos2bag)

    p = sub.add_parser("bag2demos", help="turn a rosbag2 recording into source demos (HDF5)")
    p.add_argument("bag")
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bag2demos)

    from reinforcegen_ros.evaluation.harness import register_cli as register_eval
    from reinforcegen_ros.training.diagnostics.pose_errors import register_cli as register_pose_errors
    from reinforcegen_ros.training.diagnostics.termination_check import register_cli as register_term_check
    from reinforcegen_ros.evaluation.tables import register_cli as register_eval_table
    from reinforcegen_ros.training.loop import register_cli as register_train
    from reinforcegen_ros.shipping import register_cli as register_ship
    from reinforcegen_ros.finetune.cli import register_cli as register_finetune

    register_train(sub)
    register_eval(sub)
    register_eval_table(sub)
    register_pose_errors(sub)
    register_term_check(sub)
    register_ship(sub)
    register_finetune(sub)

    demos = sub.add_parser("demos", help="source demonstrations").add_subparsers(dest="demos_command", required=True)
    p = demos.add_parser("collect", help="collect scripted source demonstrations")
    p.add_argument("--task", required=True)
    p.add_argument("--num", type=int, default=10)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0, help="first episode seed")
    p.add_argument("--max-attempts", type=int, default=None, help="default: 3 x --num")
    p.add_argument("--obs", choices=("privileged", "rgb"), default="privileged")
    p.set_defaults(func=cmd_demos_collect)

    p = demos.add_parser("import", help="import a robomimic/MimicGen-format HDF5 dataset")
    p.add_argument("--task", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--keep-failed", action="store_true")
    p.set_defaults(func=cmd_demos_import)

    p = demos.add_parser("compare", help="compare two datasets field by field (e.g. after demos2bag + bag2demos)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol", type=float, default=1e-9, help="largest absolute difference accepted for float fields")
    p.set_defaults(func=cmd_demos_compare)

    p = demos.add_parser("info", help="summarise a dataset")
    p.add_argument("path")
    p.set_defaults(func=cmd_demos_info)

    p = demos.add_parser("video", help="render a demo to mp4 with stage and phase overlaid")
    p.add_argument("path")
    p.add_argument("--demo", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--camera", default="agentview")
    p.add_argument("--size", type=int, default=256)
    p.set_defaults(func=cmd_demos_video)

    p = demos.add_parser("annotate", help="add connect/skill phase annotations (or --check them)")
    p.add_argument("path")
    p.add_argument("--task", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--check", action="store_true", help="only report demos whose annotations are missing or invalid")
    p.add_argument("--overwrite", action="store_true", help="replace existing phase annotations")
    p.add_argument("--skill-radius", type=float, nargs="+", default=None,
                   help="per-stage grip-site distance to the reference object where the skill starts (default: task YAML)")
    p.set_defaults(func=cmd_demos_annotate)

    p = demos.add_parser("add-images", help="render camera images from saved states into a copy of a dataset")
    p.add_argument("path")
    p.add_argument("--out", required=True)
    p.add_argument("--cameras", nargs="+", default=None, help="default: the task YAML's cameras")
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--max-demos", type=int, default=None, help="only the first N demos (rendering costs 25-55 ms a frame on CPU)")
    p.set_defaults(func=cmd_demos_add_images)

    p = demos.add_parser("term-negatives", help="edited demo states whose stage goal does not hold (termination classifier negatives)")
    p.add_argument("path", help="generated dataset (with images for rgb agents)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-stage", type=int, default=8, help="negatives of each kind per demo and stage")
    p.add_argument("--max-demos", type=int, default=None, help="only the first N demos")
    p.set_defaults(func=cmd_demos_term_negatives)

    p = demos.add_parser("stats", help="per-stage generation success and failure reasons")
    p.add_argument("path")
    p.set_defaults(func=cmd_demos_stats)

    p = demos.add_parser("success", help="scripted demonstrator success rates over seeded episodes")
    p.add_argument("--task", default="all")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.set_defaults(func=cmd_demos_success)
    check_numeric_options(parser)
    return parser


# ---------------------------------------------------------------------- option checks (at parse time)
class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``reinforcegen <command>: error: <what> (see ... --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


MAX_IMAGE_SIZE = 4096  # pixels on a side: far beyond any camera here, before an image buffer exhausts memory
MAX_SEED = 2**32 - 1  # numpy and robosuite seeds are unsigned 32-bit


def _at_least(low):
    def check(value):
        return None if value >= low else f"must be at least {low}, got {value}"

    return check


def _between(low, high):
    def check(value):
        return None if low <= value <= high else f"must be between {low} and {high}, got {value}"

    return check


def _finite(low: float, strict: bool):
    def check(value):
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if value < low or (strict and value == low):
            return f"must be {'greater than' if strict else 'at least'} {low:g}, got {value:g}"
        return None

    return check


#: Numeric options by destination name, the same rule in every command that has them.
NUMERIC_RULES = {
    # counts: 0 would do nothing, or nothing useful
    **{dest: _at_least(1) for dest in ("num", "generate", "epochs", "eval_episodes", "max_attempts", "batch_size",
                                      "pose_modes", "episodes", "max_demos", "per_stage", "workers")},
    # sizes (pixels), seeds, indices
    "size": _between(1, MAX_IMAGE_SIZE), "video_size": _between(1, MAX_IMAGE_SIZE),
    "seed": _between(0, MAX_SEED), "video": _at_least(0), "demo": _at_least(0), "demos": _at_least(0), "finetune_steps": _at_least(0),
    # tolerances and radii
    "tol": _finite(0.0, strict=False), "skill_radius": _finite(0.0, strict=True),
}


def _checked_type(convert, rule):
    """``convert`` (int or float) followed by ``rule``, as an argparse ``type`` with one-line messages."""

    def parse(text: str):
        try:
            value = convert(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if convert is int else 'a number'}, got '{text}'") from None
        problem = rule(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = convert.__name__
    return parse


def check_numeric_options(parser: argparse.ArgumentParser) -> None:
    """Give every int/float option of every subcommand its rule from :data:`NUMERIC_RULES` (checked as it is parsed)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                check_numeric_options(sub)
        elif action.type in (int, float) and action.dest in NUMERIC_RULES:
            action.type = _checked_type(action.type, NUMERIC_RULES[action.dest])


def check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need more than one option; errors go through the parser (one line, exit 2)."""
    from reinforcegen_ros.datagen.runner import check_workers

    if getattr(args, "workers", None) is not None:
        try:
            check_workers(args.workers, getattr(args, "pool", "local"))
        except ValueError as exc:
            _subparser(parser, args).error(f"argument {exc}")


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command in ``args``, for its error messages."""
    for name in ("command", "demos_command"):
        chosen = getattr(args, name, None)
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if chosen is None or not actions or chosen not in actions[0].choices:
            break
        parser = actions[0].choices[chosen]
    return parser


# ---------------------------------------------------------------------- outputs
OUTPUT_OPTIONS = {"out": "--out", "markdown": "--markdown", "json": "--json", "noise_plot": "--noise-plot"}
MIN_FREE_BYTES = 32 * 1024 * 1024  # an output needs at least this much room on its device to be started


def check_output(path: str | Path, option: str = "--out") -> None:
    """Fail early, with one line, if ``path`` cannot be written: name too long, a file in the way, read-only or full."""
    path = Path(path)
    too_long = [part for part in path.parts if len(os.fsencode(part)) > 255]
    if too_long or len(os.fsencode(str(path.absolute()))) > 4095:
        raise OutputError(f"{option} '{path}': {os.strerror(errno.ENAMETOOLONG)}")
    where = path if path.is_dir() else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise OutputError(f"{option} '{path}': '{where}' is a file, not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".reinforcegen-write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"{option} '{path}': cannot write in '{where}' ({exc.strerror or exc})") from None
    free = shutil.disk_usage(where).free
    if free < MIN_FREE_BYTES:
        raise OutputError(f"{option} '{path}': only {free / 2**20:.1f} MiB free on the device of '{where}'")


class OutputError(OSError):
    """An output path that cannot be written (found before any work started)."""


class OutputGuard:
    """Outputs a command may create, noted before it runs, so that a failed run leaves none of them behind.

    A created output is removed on failure unless it holds committed progress that the same
    command resumes from: a training checkpoint (``checkpoint.json``), evaluated episodes
    (``episodes.jsonl`` past its header) or generation attempts (``<out>.parts/attempts.jsonl``).
    Temporary siblings (``<out>.tmp``) that the run created are removed in any case.
    """

    def __init__(self, args: argparse.Namespace):
        paths = [Path(v) for dest in OUTPUT_OPTIONS if isinstance(v := getattr(args, dest, None), (str, Path))]
        paths += [p.with_name(p.name + suffix) for p in list(paths) if p.name for suffix in (".tmp", ".parts")]
        self.new = [p for p in paths if not os.path.lexists(p)]

    def remove_created(self) -> list[Path]:
        removed = []
        for path in self.new:
            if not os.path.lexists(path):
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    if _holds_progress(path):
                        continue
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue
            removed.append(path)
        return removed


def _holds_progress(directory: Path) -> bool:
    """Whether a directory holds work that rerunning the command resumes (see :class:`OutputGuard`)."""
    if (directory / "checkpoint.json").is_file():
        return True
    for log in (directory / "episodes.jsonl", directory / "attempts.jsonl"):
        try:
            with open(log, "rb") as fh:
                lines = [line for line in fh.read().splitlines() if line.strip()]
        except OSError:
            continue
        if len(lines) > (1 if log.name == "episodes.jsonl" else 0):
            return True
    return False


# ---------------------------------------------------------------------- errors
#: Exceptions that mean bad input or a refused request: one line, exit 2.
USER_ERRORS = (DatasetError, UnknownTaskError, FileExistsError, FileNotFoundError, RuntimeError, ValueError)
EXIT_USER_ERROR = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
_H5_NAME = re.compile(r"name = '([^']*)'")
_H5_REASON = re.compile(r"error message = '([^']*)'")


def os_error_message(exc: OSError, args: argparse.Namespace | None = None) -> str:
    """One line for an OS error: the file it concerns and why (e.g. ``'out.hdf5': No space left on device``)."""
    if exc.errno is None and not exc.filename:  # raised by this project with its own message
        return str(exc)
    text = str(exc)
    name = exc.filename or (m.group(1) if (m := _H5_NAME.search(text)) else None)
    reason = (m.group(1) if (m := _H5_REASON.search(text)) else None) or (os.strerror(exc.errno) if exc.errno else None)
    reason = reason or exc.strerror or text
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        reason += " (the disk or the file-size limit is full; nothing was kept)"
    if name:
        other = f" -> '{exc.filename2}'" if exc.filename2 else ""
        return f"'{name}'{other}: {reason}"
    outputs = [f"'{v}'" for dest in OUTPUT_OPTIONS if (v := getattr(args, dest, None)) is not None] if args else []
    return f"{reason} while writing {', '.join(outputs)}" if outputs else reason


def error_line(exc: BaseException, args: argparse.Namespace | None = None) -> tuple[str, bool]:
    """(the one line to print, whether the exception is a bug that also needs its traceback)."""
    if isinstance(exc, OSError):
        return os_error_message(exc, args), False
    if isinstance(exc, USER_ERRORS) or type(exc).__module__.startswith("rosbags."):
        return (str(exc) or type(exc).__name__).splitlines()[0], False
    if isinstance(exc, MemoryError):
        return "out of memory (try fewer demos, episodes or workers)", False
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return f"internal error, this is a bug ({detail}); please report it with the traceback below", True


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; every failure ends in one line on stderr (a bug adds its traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_combinations(parser, args)
    guard = OutputGuard(args)
    prog = _subparser(parser, args).prog
    stderr = sys.stderr = _LineTracker(sys.stderr)
    try:
        for dest, option in OUTPUT_OPTIONS.items():
            if getattr(args, dest, None) is not None:
                check_output(getattr(args, dest), option)
        args.func(args)
    except KeyboardInterrupt:
        guard.remove_created()
        print(f"{stderr.newline()}{prog}: interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place that turns failures into messages
        guard.remove_created()
        line, bug = error_line(exc, args)
        print(f"{stderr.newline()}{prog}: error: {line}", file=stderr)
        if bug:
            traceback.print_exception(exc, file=stderr)
            return EXIT_BUG
        return EXIT_USER_ERROR
    finally:
        sys.stderr = stderr.stream
    return 0


class _LineTracker:
    """Wraps stderr to know whether a progress bar left the cursor mid-line (then an error starts a new line)."""

    def __init__(self, stream):
        self.stream, self.mid_line = stream, False

    def write(self, text: str) -> int:
        if text:
            self.mid_line = not text.endswith("\n")
        return self.stream.write(text)

    def newline(self) -> str:
        return "\n" if self.mid_line else ""

    def __getattr__(self, name):
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.exit(main())
