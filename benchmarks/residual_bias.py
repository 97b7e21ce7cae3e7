"""Stage success of an agent's skill with a constant residual added on one action dimension, from a reset bank.

Usage: python benchmarks/residual_bias.py --task coffee --agent runs/coffee/hsp_priv_p50000 --stage 0 \\
           --bank runs/coffee/rl/bank_stage0.hdf5 [--states 50] [--dims 0,2,3] [--biases 0,0.005,0.01,0.02] [--time-limit 400]

How sensitive a skill is to a small, state-independent residual (in normalised action units: 1 is
OSC_POSE's 5 cm or 0.5 rad per step): each (dimension, bias) runs the stage from the first ``--states``
bank states, as residual RL's evaluations do (``finetune.residual_rl.StageEnv``, ground-truth termination,
the same episode seeds), and prints successes and mean steps per success.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reinforcegen_ros.finetune.reset_bank import load_bank
from reinforcegen_ros.finetune.residual_rl import EVAL_SEED, StageEnv, evaluate_stage
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.tasks.environment import TaskEnv


class ConstantResidual:
    """A "learner" for ``evaluate_stage`` whose residual is the same ``residual`` in every state."""

    def __init__(self, residual: np.ndarray):
        self.residual = residual

    def act(self, _obs, _base, _rng=None) -> np.ndarray:
        return self.residual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--bank", required=True)
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--dims", default="0,2,3", help="action dimensions (0-2 position, 3-5 rotation)")
    parser.add_argument("--biases", default="0,0.005,0.01,0.02")
    parser.add_argument("--time-limit", type=int, default=400, help="control steps of a stage episode (the executor's skill limit)")
    args = parser.parse_args()
    agent = HybridSkillPolicy.load(args.agent, task=args.task)
    env = TaskEnv(args.task)
    bank = load_bank(Path(args.bank), args.task, args.stage, env)
    senv = StageEnv(env, agent, args.stage, bank, alpha=0.0, time_limit=args.time_limit)
    states = min(args.states, len(bank))
    print("| stage | dimension | bias | successes | mean steps per success |\n|---|---|---|---|---|")
    for dim in (int(d) for d in args.dims.split(",")):
        for bias in (float(b) for b in args.biases.split(",")):
            residual = np.zeros(7)
            residual[dim] = bias
            result = evaluate_stage(senv, ConstantResidual(residual), list(range(states)), EVAL_SEED)
            steps = result["steps"] if result["steps"] is not None else float("nan")
            print(f"| {args.stage} | {dim} | {bias:+.3f} | {states - len(result['failed'])}/{states} | {steps:.1f} |", flush=True)
    env.close()


if __name__ == "__main__":
    main()
