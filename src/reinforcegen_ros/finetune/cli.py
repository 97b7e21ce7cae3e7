"""``reinforcegen finetune run`` (a task's whole recipe), ``finetune skill`` (residual RL of one stage), ``finetune bank`` (its reset
states), ``finetune evaluate`` (one stage's success from them) and ``finetune term`` (termination fine-tuning)."""

from __future__ import annotations

import argparse

POSE_CHOICES = ("learned", "teacher")


def cmd_skill(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.config import load_config
    from reinforcegen_ros.finetune.residual_rl import finetune_skill

    overrides = {"seed_steps": args.seed_steps, "batch_size": args.batch_size, "eval_every": args.eval_every,
                 "eval_episodes": args.eval_episodes, "checkpoint_every": args.checkpoint_every, "alpha": args.alpha,
                 "bank_states": args.bank_states, "seed": args.seed, "encoder": args.encoder, "device": args.device,
                 "agent_weights": args.agent_weights}
    config = load_config(args.config, args.task, **overrides)
    summary = finetune_skill(args.task, args.stage, args.agent, args.steps, args.out, args.bank, config, restart=args.restart,
                             pose=args.pose, teacher_source=args.teacher_source, demos=args.demos, workers=args.workers, pool=args.pool,
                             address=args.address, teacher=args.teacher)
    before, after = summary["before"], summary["after"]
    print(f"stage {args.stage} of {args.task}: success {before['success']:.2f} -> {after['success']:.2f} on {after['episodes']} bank states "
          f"after {summary['env_steps']} env steps ({summary['seconds']:.0f} s); agent: {summary['agent']}, curve: {args.out}/curve.png")


def cmd_bank(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.reset_bank import build_bank, build_skill_bank

    if args.from_bank:
        bank = build_skill_bank(args.bank, args.task, args.stage, args.agent, args.from_bank, args.skill_steps, args.seed)
        n = len(bank.attempts) // len(args.skill_steps)
        kept = [sum(a["reached"] for a in bank.attempts[g * n:(g + 1) * n]) for g in range(len(args.skill_steps))]
        print(f"{len(bank)} states along stage {args.stage}'s skill from the {n} states of {args.from_bank} "
              f"({', '.join(f'{k} after {t} steps' for k, t in zip(kept, args.skill_steps))}) -> {args.bank}")
        return
    bank = build_bank(args.bank, args.task, args.stage, args.agent, args.states, args.seed, args.pose, args.teacher_source,
                      args.max_attempts, workers=args.workers, pool=args.pool, address=args.address, teacher=args.teacher)
    print(f"{len(bank)} reset states of stage {args.stage} in {len(bank.attempts)} attempts -> {args.bank}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from reinforcegen_ros.evaluation.harness import wilson_interval
    from reinforcegen_ros.finetune.stage_eval import evaluate_on_bank
    from reinforcegen_ros.io import atomic_write_json

    result = evaluate_on_bank(args.task, args.stage, args.agent, args.bank, args.states, args.first, args.seed, args.time_limit)
    n, k = result["episodes"], result["successes"]
    low, high = wilson_interval(k, n)
    steps = "-" if result["steps"] is None else f"{result['steps']:.1f}"
    if args.out:
        atomic_write_json(args.out, result)
    print(f"stage {args.stage} of {args.task}: {k}/{n} ({100 * k / n:.1f}%, Wilson {100 * low:.1f}-{100 * high:.1f}%) from bank states "
          f"{result['first']}..{result['first'] + n - 1}, {steps} steps per success (limit {result['time_limit']}); "
          f"failed: {result['failed'] or 'none'}")


def cmd_term(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.config import load_config
    from reinforcegen_ros.finetune.termination_ft import finetune_termination

    config = load_config(args.config, args.task, term_reject_threshold=args.threshold)
    summary = finetune_termination(args.task, args.agent, args.episodes, args.out, config, stages=args.stages, pose=args.pose,
                                   teacher_source=args.teacher_source, teacher=args.teacher, workers=args.workers, pool=args.pool,
                                   address=args.address, seed=args.seed, relabel=args.relabel)
    print(f"{args.task}: {summary['successes']}/{summary['episodes']} rollouts successful; threshold {summary['threshold']}")
    for k, row in summary["stages"].items():
        if row.get("skipped"):
            print(f"  stage {k} {row['stage']}: {row['samples']} terminations, {row['positives']} before a success; no predictor: {row['skipped']}")
            continue
        held = row["held_out"] or {}
        acc = "-" if not held else f"{held['accuracy']:.2f}"
        auc = "-" if held.get("auc") is None else f"{held['auc']:.2f}"
        print(f"  stage {k} {row['stage']}: {row['samples']} terminations, {row['positives']} before a success; held-out accuracy {acc}, "
              f"AUC {auc}; {row['rejected']} would be rejected ({row['rejected_failures']} before a failure)")
    print(f"agent with termination predictors of stages {summary['fine_tuned_stages']}: {summary['out_agent']}; summary: {args.out}/summary.json")
    if summary["relabelled"]:
        turned = ", ".join(f"{name} {row['turned_off']}/{row['positives']}" for name, row in summary["relabelled"]["labels"].items())
        print(f"termination labels turned off (of the ground-truth ones): {turned}; dataset: {summary['relabelled']['out']}")


def cmd_run(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.config import load_config
    from reinforcegen_ros.finetune.recipe import recipe_steps, run_recipe, step_line

    config = load_config(args.config, args.task)
    print(f"{args.task} recipe: {' -> '.join(s.name for s in recipe_steps(config)) or 'none'}")
    record = run_recipe(args.task, args.agent, args.out, config, steps=args.steps, term_episodes=args.term_episodes, pose=args.pose,
                        teacher_source=args.teacher_source, teacher=args.teacher, workers=args.workers, pool=args.pool,
                        address=args.address, on_step=lambda row: print(step_line(row), flush=True), demos=args.demos)
    print(f"fine-tuned agent: {record['agent']} ({record['env_steps']} env steps of residual RL, {record['wall_s']:.0f} s); "
          f"record: {args.out}/recipe.json")


def _agent_options(p: argparse.ArgumentParser) -> None:
    from reinforcegen_ros.evaluation.harness import TEACHERS

    p.add_argument("--task", required=True)
    p.add_argument("--stage", type=int, required=True, help="stage index (0-based)")
    p.add_argument("--agent", required=True, help="agent directory (base, and any residual of other stages)")
    p.add_argument("--pose", choices=POSE_CHOICES, default="learned",
                   help="initiation poses reaching the reset states: the agent's, or the privileged teacher's (HSP-Priv)")
    p.add_argument("--teacher-source", default=None, help="source demos of the teacher (with --pose teacher)")
    p.add_argument("--teacher", choices=TEACHERS, default="generation",
                   help="with --pose teacher: re-enact data generation, or only transform the source initiation pose (as eval --teacher)")
    p.add_argument("--workers", type=int, default=1, help="processes (or Ray actors) collecting reset states")
    p.add_argument("--pool", choices=("local", "ray"), default="local", help="job pool of the reset-state attempts")
    p.add_argument("--address", default=None, help="Ray cluster address (with --pool ray)")


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``finetune run``, ``finetune skill``, ``finetune bank``, ``finetune evaluate`` and ``finetune term`` to the ``reinforcegen`` parser."""
    top = subparsers.add_parser("finetune", help="ReinforceGen fine-tuning: a task's whole recipe (finetune run), residual RL of a "
                                "stage's skill, its reset states, termination",
                                description="The whole per-task recipe is the 'run' sub-command: reinforcegen finetune run --task T "
                                "--agent DIR --out DIR (a sub-command, since finetune also has skill, bank, evaluate and term).")
    sub = top.add_subparsers(dest="finetune_command", required=True)
    _run_parser(sub)
    p = sub.add_parser("skill", help="residual RL of one stage's skill policy (resumable); writes <out>/agent")
    _agent_options(p)
    p.add_argument("--steps", type=int, required=True, help="environment steps of the run (a larger budget resumes a finished run)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, tb/ curves, summary.json, agent/")
    p.add_argument("--bank", default=None, help="reset bank (HDF5) of this stage; default: collected into <out>/bank_stage<k>.hdf5")
    p.add_argument("--demos", default=None, help="generated demos (HDF5): demo_fraction of each critic batch from their skill segments")
    p.add_argument("--config", default=None, help="settings YAML (default config/finetune.yaml)")
    p.add_argument("--seed-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--bank-states", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None, help="residual penalty coefficient (paper: 5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--encoder", choices=("lowdim", "image"), default=None,
                   help="what the residual learner reads: the agent's low-dimensional features, or DrQ-v2's encoder of its camera frames")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="where networks and batches live (default: config, cpu)")
    p.add_argument("--agent-weights", choices=("best", "last"), default=None,
                   help="residual written into <out>/agent: the best-evaluated or the last (default: config, best); "
                        "a finished run rewrites its agent with it")
    p.add_argument("--restart", action="store_true", help="discard the checkpoint in --out and start over")
    p.set_defaults(func=cmd_skill)
    p = sub.add_parser("bank", help="collect (or extend) the reset states of one stage")
    _agent_options(p)
    p.add_argument("--bank", required=True, help="bank file (HDF5) to write or extend")
    p.add_argument("--states", type=int, default=100)
    p.add_argument("--seed", type=int, default=300_000, help="scene seed of the first attempt")
    p.add_argument("--max-attempts", type=int, default=None, help="default: 20 x --states")
    p.add_argument("--from-bank", default=None, help="instead: the states the agent's skill visits from this bank's states "
                   "(after each of --skill-steps; --seed is the episode seed of the first state's rollout)")
    p.add_argument("--skill-steps", type=int, nargs="+", default=[0], help="with --from-bank: control steps into the skill (0: the state itself)")
    p.set_defaults(func=cmd_bank)
    _evaluate_parser(sub)
    _term_parser(sub)
    return top


def _run_parser(sub) -> None:
    from reinforcegen_ros.evaluation.harness import TEACHERS

    p = sub.add_parser("run", aliases=["recipe"], help="the task's whole recipe (paper Table VI: skill_stages, term_stages, term_first "
                       "in its task YAML) end to end, resumable; writes <out>/agent and <out>/recipe.json")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="agent directory to fine-tune (the imitation agent)")
    p.add_argument("--out", required=True, help="run directory: term/, stage<k>/ (one per step), agent/, recipe.json")
    p.add_argument("--steps", type=int, default=None, help="env steps of residual RL per fine-tuned stage (default: recipe_steps)")
    p.add_argument("--term-episodes", type=int, default=None, help="rollouts of termination fine-tuning (default: recipe_term_episodes)")
    p.add_argument("--demos", default=None, help="generated demos (HDF5) whose skill segments fill demo_fraction of each critic batch "
                   "in every skill step (as finetune skill --demos)")
    p.add_argument("--pose", choices=POSE_CHOICES, default="learned",
                   help="initiation poses of reset banks and rollouts: the agent's, or the privileged teacher's (HSP-Priv)")
    p.add_argument("--teacher-source", default=None, help="source demos of the teacher (with --pose teacher)")
    p.add_argument("--teacher", choices=TEACHERS, default="generation", help="with --pose teacher: as eval --teacher")
    p.add_argument("--config", default=None, help="settings YAML (default config/finetune.yaml; the task YAML's finetune: on top)")
    p.add_argument("--workers", type=int, default=1, help="processes (or Ray actors) collecting reset states and rollouts")
    p.add_argument("--pool", choices=("local", "ray"), default="local", help="job pool of reset-state attempts and rollouts")
    p.add_argument("--address", default=None, help="Ray cluster address (with --pool ray)")
    p.set_defaults(func=cmd_run)


def _evaluate_parser(sub) -> None:
    from reinforcegen_ros.finetune.residual_rl import EVAL_SEED

    p = sub.add_parser("evaluate", help="one stage's success (base + the agent's residual) from a reset bank's states")
    p.add_argument("--task", required=True)
    p.add_argument("--stage", type=int, required=True, help="stage index (0-based)")
    p.add_argument("--agent", required=True, help="agent directory (base, and any residual)")
    p.add_argument("--bank", required=True, help="reset bank (HDF5) of this stage")
    p.add_argument("--states", type=int, default=None, help="bank states to play (default: all from --first)")
    p.add_argument("--first", type=int, default=0, help="index of the first bank state")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="episode seed of the first state (default: residual RL's evaluations')")
    p.add_argument("--time-limit", type=int, default=None, help="control steps per episode (default: config/hybrid.yaml skill_max_steps)")
    p.add_argument("--out", default=None, help="also write the result (each state's outcome) to this JSON file")
    p.set_defaults(func=cmd_evaluate)


def _term_parser(sub) -> None:
    from reinforcegen_ros.evaluation.harness import TEACHERS

    p = sub.add_parser("term", help="termination fine-tuning: success predictors that reject ground-truth terminations (resumable)")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="agent directory whose rollouts are recorded (ground-truth termination)")
    p.add_argument("--episodes", type=int, required=True, help="rollouts to record (a larger number resumes a finished run)")
    p.add_argument("--out", required=True, help="run directory: episodes.jsonl (the rollouts), summary.json, agent/")
    p.add_argument("--stages", type=int, nargs="+", default=None, help="stages (0-based) to fine-tune; default: the task's term_stages")
    p.add_argument("--threshold", type=float, default=None, help="reject terminations with predicted success at most this (paper: 0.4)")
    p.add_argument("--pose", choices=POSE_CHOICES, default="learned", help="initiation poses: the agent's, or the privileged teacher's")
    p.add_argument("--teacher-source", default=None, help="source demos of the teacher (with --pose teacher)")
    p.add_argument("--teacher", choices=TEACHERS, default="generation", help="with --pose teacher: as eval --teacher")
    p.add_argument("--seed", type=int, default=None, help="scene seed of rollout 0 (default: term_seed)")
    p.add_argument("--config", default=None, help="settings YAML (default config/finetune.yaml)")
    p.add_argument("--relabel", default=None, metavar="DATASET",
                   help="also write <out>/relabelled_<name>: DATASET with the fine-tuned termination as the termination labels "
                        "(train the deployed termination classifiers on it)")
    p.add_argument("--workers", type=int, default=1, help="processes (or Ray actors) playing the rollouts")
    p.add_argument("--pool", choices=("local", "ray"), default="local", help="job pool of the rollouts")
    p.add_argument("--address", default=None, help="Ray cluster address (with --pool ray)")
    p.set_defaults(func=cmd_term)


__all__ = ["register_cli"]
