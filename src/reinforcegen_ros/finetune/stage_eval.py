"""Stage success of an agent from a reset bank's states: one skill alone, as residual RL's evaluations measure it.

:func:`evaluate_agent_stage` plays stage k's skill policy (base + the agent's residual where it has one) from bank
states until the stage's termination holds or a time limit passes. With the same states, episode seeds and limit it
gives the outcomes of a run's own evaluations; on a bank the run never trained on (another ``--seed`` when collecting
it) it chooses between residuals without the optimism of keeping the best of a run's evaluations.
``reinforcegen finetune evaluate`` is its command line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reinforcegen_ros.finetune.residual_rl import EVAL_SEED


def evaluate_agent_stage(env, agent, stage: int, bank, indices: list[int], seed: int = EVAL_SEED, time_limit: int = 400) -> dict:
    """Success, mean steps per success (None without one), the failed bank states and each state's outcome.

    Episode ``i`` starts from bank state ``indices[i]`` with episode seed ``seed + i`` (the base policy's GMM draws),
    as :func:`~reinforcegen_ros.finetune.residual_rl.evaluate_stage` seeds its episodes.
    """
    from reinforcegen_ros.finetune.reset_bank import play_skill
    from reinforcegen_ros.policies.fine_tuned_termination import fine_tuned_oracle

    if bank.stage != stage:
        raise ValueError(f"the reset bank holds states of stage {bank.stage}, not {stage}")
    terminated = fine_tuned_oracle(env, agent)
    outcomes = []
    for i, index in enumerate(indices):
        for steps, _obs, done in play_skill(env, agent, bank, index, seed + i, terminated):
            if done or steps >= time_limit:
                break
        outcomes.append({"state": int(index), "success": done, "steps": steps})
    wins = [o["steps"] for o in outcomes if o["success"]]
    return {"episodes": len(outcomes), "successes": len(wins), "success": len(wins) / max(len(outcomes), 1),
            "steps": float(np.mean(wins)) if wins else None, "failed": [o["state"] for o in outcomes if not o["success"]],
            "outcomes": outcomes}


def evaluate_on_bank(task: str, stage: int, agent_dir: str | Path, bank: str | Path, states: int | None = None, first: int = 0,
                     seed: int = EVAL_SEED, time_limit: int | None = None) -> dict:
    """:func:`evaluate_agent_stage` of the agent in ``agent_dir`` on ``states`` bank states from index ``first`` (default: all
    the rest); ``time_limit`` defaults to the executor's ``skill_max_steps`` (``config/hybrid.yaml``, the task's own if it sets one), what deployment allows."""
    from reinforcegen_ros.finetune.reset_bank import load_bank
    from reinforcegen_ros.hybrid import HybridConfig
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    agent = HybridSkillPolicy.load(agent_dir, task=task)
    agent._check_stage(stage)
    if agent.spec.cameras:
        raise ValueError(f"'{agent_dir}' is a camera agent; finetune evaluate plays privileged agents only")
    limit = int(time_limit if time_limit is not None else HybridConfig.load(task_config(task)).skill_max_steps)
    if limit < 1:
        raise ValueError(f"--time-limit must be at least 1, got {limit}")
    env = TaskEnv(task)
    try:
        reset_bank = load_bank(bank, task, stage, env)
        last = len(reset_bank) if states is None else first + int(states)
        if not 0 <= first < last <= len(reset_bank):
            raise ValueError(f"reset bank '{bank}' holds {len(reset_bank)} states; states {first}..{last - 1} asked for")
        result = evaluate_agent_stage(env, agent, stage, reset_bank, list(range(first, last)), seed, limit)
    finally:
        env.close()
    return {"task": task, "stage": int(stage), "agent": str(agent_dir), "bank": str(bank), "first": int(first), "seed": int(seed),
            "time_limit": limit, **result}


__all__ = ["evaluate_agent_stage", "evaluate_on_bank"]
