"""Where along the finger pads a grasped object is held when a stage hands over, and what that costs the episode.

Usage: python benchmarks/grasp_offsets.py --task coffee --agent models/coffee --object pod --stage 0 \\
           --teacher-source data/coffee_source.hdf5 [--seed 200000] [--episodes 200] [--bins 8,12] [--trace 200069,200099]

Plays seeded episodes in-process as ``reinforcegen eval --termination oracle --teacher-pose`` does (the same
executor and episode seeds, so the same outcomes), records the object's position in the grip site's frame on the
first tick after stage ``--stage`` ends, and prints episode failures by |y| (along the pads, in mm). ``--trace``
instead prints, for the given seeds, that position, the finger joints and the commanded move every third tick of
the stage's skill: whether the pod was reached off-centre or carried off-centre while the fingers closed.
"""

from __future__ import annotations

import argparse

import numpy as np

from reinforcegen_ros.finetune.reset_bank import oracle_executor
from reinforcegen_ros.geometry import pose_inv
from reinforcegen_ros.hybrid import Phase
from reinforcegen_ros.policies import fine_tuned_termination as ftt


def grip_offset_mm(env, name: str) -> np.ndarray:
    """The object's position in the grip site's frame, in mm."""
    return 1000.0 * (pose_inv(env.eef_pose()) @ env.object_poses()[name])[:3, 3]


def play(env, executor, horizon: int, seed: int, name: str, stage: int, trace: bool = False) -> dict:
    """One episode: the object's grip-frame position when ``stage`` hands over, success, and (``trace``) skill ticks."""
    executor.agent.set_episode_seed(seed)
    obs = env.reset(seed=seed)
    executor.reset()
    offset, ticks, start = None, [], None
    for k in range(horizon):
        cmd = executor.tick(obs)
        if executor.stage > stage and offset is None:
            offset = grip_offset_mm(env, name)
        if trace and executor.stage == stage and executor.phase == Phase.SKILL:
            start = k if start is None else start
            if (k - start) % 3 == 0:
                fingers = 1000.0 * ftt.termination_state(env)[9:11]  # the finger joints
                ticks.append(f"{k - start}: pod {np.round(grip_offset_mm(env, name)).astype(int).tolist()} mm, fingers "
                             f"{np.round(fingers).astype(int).tolist()} mm, move {np.round(cmd.action[:3], 2).tolist()}, grip {cmd.action[6]:+.0f}")
        if executor.finished or (trace and offset is not None):
            break
        obs = env.step(cmd.action)
    return {"seed": seed, "offset": offset, "success": bool(env.success()), "ticks": ticks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="coffee")
    ap.add_argument("--agent", required=True)
    ap.add_argument("--object", default="pod")
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--teacher-source", required=True)
    ap.add_argument("--seed", type=int, default=200000)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--bins", default="8,12", help="|y| edges in mm")
    ap.add_argument("--trace", default="", help="comma-separated seeds to trace instead")
    args = ap.parse_args()
    settings = {"agent": args.agent, "task": args.task, "pose": "teacher", "teacher_source": args.teacher_source,
                "teacher": "generation", "gmm_action": None, "stage": args.stage + 1}
    env, executor, horizon = oracle_executor(settings)
    if args.trace:
        for seed in (int(s) for s in args.trace.split(",")):
            row = play(env, executor, horizon, seed, args.object, args.stage, trace=True)
            print(f"seed {seed}:\n  " + "\n  ".join(row["ticks"]))
        return
    rows = [play(env, executor, horizon, args.seed + i, args.object, args.stage) for i in range(args.episodes)]
    edges = [0.0] + [float(b) for b in args.bins.split(",")] + [np.inf]
    print(f"{args.task} {args.agent}: {sum(r['success'] for r in rows)}/{len(rows)} successful, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print("| |y| along the pads (mm) | episodes | failed |\n|---|---|---|")
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [r for r in rows if r["offset"] is not None and (lo < abs(r["offset"][1]) or lo == 0) and abs(r["offset"][1]) <= hi]
        print(f"| {lo:g}–{hi:g} | {len(sel)} | {sum(not r['success'] for r in sel)} |")
    lost = [r for r in rows if r["offset"] is None]
    print(f"| stage not ended | {len(lost)} | {sum(not r['success'] for r in lost)} |")
    print("failed seeds (y mm):", ", ".join(f"{r['seed']} ({'-' if r['offset'] is None else round(float(r['offset'][1]), 1)})" for r in rows if not r["success"]))


if __name__ == "__main__":
    main()
