"""``reinforcegen finetune skill`` (residual RL of one stage) and ``reinforcegen finetune bank`` (its reset states)."""

from __future__ import annotations

import argparse

POSE_CHOICES = ("learned", "teacher")


def cmd_skill(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.config import load_config
    from reinforcegen_ros.finetune.residual_rl import finetune_skill

    overrides = {"seed_steps": args.seed_steps, "batch_size": args.batch_size, "eval_every": args.eval_every,
                 "eval_episodes": args.eval_episodes, "checkpoint_every": args.checkpoint_every, "alpha": args.alpha,
                 "bank_states": args.bank_states, "seed": args.seed}
    config = load_config(args.config, args.task, **overrides)
    summary = finetune_skill(args.task, args.stage, args.agent, args.steps, args.out, args.bank, config, restart=args.restart,
                             pose=args.pose, teacher_source=args.teacher_source, demos=args.demos, workers=args.workers, pool=args.pool,
                             address=args.address, teacher=args.teacher)
    before, after = summary["before"], summary["after"]
    print(f"stage {args.stage} of {args.task}: success {before['success']:.2f} -> {after['success']:.2f} on {after['episodes']} bank states "
          f"after {summary['env_steps']} env steps ({summary['seconds']:.0f} s); agent: {summary['agent']}, curve: {args.out}/curve.png")


def cmd_bank(args: argparse.Namespace) -> None:
    from reinforcegen_ros.finetune.reset_bank import build_bank

    bank = build_bank(args.bank, args.task, args.stage, args.agent, args.states, args.seed, args.pose, args.teacher_source,
                      args.max_attempts, workers=args.workers, pool=args.pool, address=args.address, teacher=args.teacher)
    print(f"{len(bank)} reset states of stage {args.stage} in {len(bank.attempts)} attempts -> {args.bank}")


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
    """Add ``finetune skill`` and ``finetune bank`` to the ``reinforcegen`` parser."""
    top = subparsers.add_parser("finetune", help="ReinforceGen fine-tuning: residual RL of a stage's skill and its reset states")
    sub = top.add_subparsers(dest="finetune_command", required=True)
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
    p.add_argument("--restart", action="store_true", help="discard the checkpoint in --out and start over")
    p.set_defaults(func=cmd_skill)
    p = sub.add_parser("bank", help="collect (or extend) the reset states of one stage")
    _agent_options(p)
    p.add_argument("--bank", required=True, help="bank file (HDF5) to write or extend")
    p.add_argument("--states", type=int, default=100)
    p.add_argument("--seed", type=int, default=300_000, help="scene seed of the first attempt")
    p.add_argument("--max-attempts", type=int, default=None, help="default: 20 x --states")
    p.set_defaults(func=cmd_bank)
    return top


__all__ = ["register_cli"]
