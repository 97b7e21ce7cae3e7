"""Connect-segment planning latency: OMPL (collision-aware) against the straight-line planner.

Usage: python benchmarks/planner_latency.py [--tasks coffee,coffee_preparation] [--queries 200]
       [--queries-per-scene 10] [--seed 0] [--json out.json]

For each task, ``--queries`` targets are drawn in seeded scenes (``env.reset(k)``
for k = 0, 1, ...; ``--queries-per-scene`` each). A target is a pointing-down
grip pose near one of the task's privileged objects, with equal odds *above*
it (+-5 cm in x/y, 6-20 cm above the object's frame) or *around* it (8-15 cm
away horizontally, 3-12 cm above its frame), yaw +-90 deg about the home
orientation. Queries chain as in a long-horizon rollout: the first of a scene
starts at the robot's home configuration, each next one at the goal joints of
the previous successful OMPL plan.

Per query and planner: plan latency (``plan`` wall time), re-plan latency (plan
again from the joints part-way, 25-75 %, along the first trajectory to the
target moved by up to 3 cm per axis and 0.1 rad of yaw, as the hybrid executor
does when the predicted pose moves), success. Straight-line paths are checked
for collision by solving IK for each waypoint (seeded by the previous one) and
running the same collision checks as OMPL's validity (``collision.py``).
Latencies are in milliseconds; p99 is the 99th percentile. Tasks that cannot
be built are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

from reinforcegen_ros.geometry import make_pose, rot_z
from reinforcegen_ros.planning.base import PlanningFailed
from reinforcegen_ros.planning.ompl_planner import OMPLPlanner
from reinforcegen_ros.planning.straight_line import StraightLinePlanner

XY_OFFSET = 0.05  # m, "above" targets: offset range around the object in x and y
Z_OFFSET = (0.06, 0.20)  # m, "above" targets: height above the object's frame
RING_RADIUS = (0.08, 0.15)  # m, "around" targets: horizontal distance from the object
RING_Z = (0.03, 0.12)  # m, "around" targets: height above the object's frame
YAW_RANGE = np.pi / 2  # rad, target yaw range about the home grip orientation
REPLAN_SHIFT = 0.03  # m per axis, target perturbation for re-planning
REPLAN_YAW = 0.1  # rad


def failure_kind(exc: Exception) -> str:
    """Short category of a planning failure."""
    text = str(exc)
    for key in ("unreachable", "target in collision", "start configuration", "no collision-free path", "between collision checks"):
        if key in text:
            return key
    return "other"


def sample_target(rng, env, home: np.ndarray) -> tuple[str, str, np.ndarray]:
    """A pointing-down pose above or around a random privileged object: (object, kind, pose)."""
    poses = env.object_poses()
    name = list(poses)[rng.integers(len(poses))]
    if rng.uniform() < 0.5:
        kind, offset = "above", [rng.uniform(-XY_OFFSET, XY_OFFSET), rng.uniform(-XY_OFFSET, XY_OFFSET), rng.uniform(*Z_OFFSET)]
    else:
        radius, angle = rng.uniform(*RING_RADIUS), rng.uniform(-np.pi, np.pi)
        kind, offset = "around", [radius * np.cos(angle), radius * np.sin(angle), rng.uniform(*RING_Z)]
    pos = poses[name][:3, 3] + offset
    return name, kind, make_pose(pos, rot_z(rng.uniform(-YAW_RANGE, YAW_RANGE)) @ home[:3, :3])


def perturb(rng, target: np.ndarray) -> np.ndarray:
    """The target moved by a few centimetres and turned slightly about z."""
    pos = target[:3, 3] + rng.uniform(-REPLAN_SHIFT, REPLAN_SHIFT, 3)
    return make_pose(pos, rot_z(rng.uniform(-REPLAN_YAW, REPLAN_YAW)) @ target[:3, :3])


def straight_line_outcome(planner: OMPLPlanner, start: np.ndarray, target: np.ndarray, poses: np.ndarray) -> tuple[str, list]:
    """'free', 'collision' or 'ik_fail' for a task-space path, plus its joint waypoints."""
    valid = planner.validity(start, target)
    q, joints = start, []
    for pose in poses:
        q = planner.kin.inverse(pose, q, iters=100, tol=1e-3)
        if q is None:
            return "ik_fail", joints
        joints.append(q)
        if not valid(q):
            return "collision", joints
    return "free", joints


def timed(fn):
    """(result or exception, milliseconds)."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except PlanningFailed as exc:
        out = exc
    return out, 1000.0 * (time.perf_counter() - t0)


def run_task(task: str, queries: int, per_scene: int, seed: int, config: dict) -> dict:
    """All queries of one task; raw per-query records."""
    from reinforcegen_ros.tasks.environment import TaskEnv

    env = TaskEnv(task)
    planner = OMPLPlanner(env, config)
    straight = StraightLinePlanner(planner.kin.forward, planner.config["max_step"], planner.config["max_rot_step"])
    rng = np.random.default_rng(seed)
    records = []
    scene = 0
    while len(records) < queries:
        env.reset(seed + scene)
        home = env.eef_pose()
        start = planner.kin.current_joints()
        for _ in range(min(per_scene, queries - len(records))):
            name, kind, target = sample_target(rng, env, home)
            rec = {"scene": seed + scene, "object": name, "kind": kind}
            traj, rec["ompl_ms"] = timed(lambda: planner.plan(start, target))
            rec["ompl_ok"] = not isinstance(traj, Exception)
            rec["ompl_method"] = planner.last_info["method"] if rec["ompl_ok"] else failure_kind(traj)
            if rec["ompl_ok"]:
                valid = planner.validity(start, target)
                rec["ompl_collides"] = not all(valid(q) for q in traj.joints)
            sl, rec["straight_ms"] = timed(lambda: straight.plan(start, target))
            rec["straight_ok"] = not isinstance(sl, Exception)
            joints = []
            if rec["straight_ok"]:
                rec["straight_outcome"], joints = straight_line_outcome(planner, start, target, sl.poses)
            if rec["ompl_ok"]:
                mid = traj.joints[int(rng.uniform(0.25, 0.75) * (len(traj.joints) - 1))]
                moved = perturb(rng, target)
                re, rec["ompl_replan_ms"] = timed(lambda: planner.plan(mid, moved))
                rec["ompl_replan_ok"] = not isinstance(re, Exception)
                rec["ompl_replan_method"] = planner.last_info["method"] if rec["ompl_replan_ok"] else failure_kind(re)
                if joints:
                    mid_sl = joints[int(rng.uniform(0.25, 0.75) * (len(joints) - 1))]
                    re_sl, rec["straight_replan_ms"] = timed(lambda: straight.plan(mid_sl, moved))
                    rec["straight_replan_ok"] = not isinstance(re_sl, Exception)
                start = traj.joints[-1]
            records.append(rec)
        scene += 1
    env.close()
    return {"records": records, "scenes": scene}


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p99": None, "n": 0}
    return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)), "n": len(values)}


def summarise(records: list[dict]) -> dict:
    """Latency percentiles, success rates and straight-line collision fractions."""
    n = len(records)
    feasible = [r for r in records if r["ompl_ok"]]
    sl_done = [r for r in records if r.get("straight_outcome")]
    sl_feasible = [r for r in feasible if r.get("straight_outcome")]
    outcome = Counter(r["straight_outcome"] for r in sl_done)
    outcome_feasible = Counter(r["straight_outcome"] for r in sl_feasible)
    return {
        "queries": n,
        "ompl": {
            "plan_ms": percentiles([r["ompl_ms"] for r in records]),
            "plan_ms_success": percentiles([r["ompl_ms"] for r in feasible]),
            "replan_ms": percentiles([r["ompl_replan_ms"] for r in feasible]),
            "success_rate": len(feasible) / n,
            "replan_success_rate": float(np.mean([r["ompl_replan_ok"] for r in feasible])) if feasible else None,
            "outcomes": dict(Counter(r["ompl_method"] for r in records)),
            "replan_outcomes": dict(Counter(r["ompl_replan_method"] for r in feasible)),
            "success_rate_by_kind": {
                kind: float(np.mean([r["ompl_ok"] for r in records if r["kind"] == kind])) for kind in sorted({r["kind"] for r in records})
            },
            "collision_fraction": float(np.mean([r["ompl_collides"] for r in feasible])) if feasible else None,
        },
        "straight_line": {
            "plan_ms": percentiles([r["straight_ms"] for r in records]),
            "replan_ms": percentiles([r["straight_replan_ms"] for r in records if "straight_replan_ms" in r]),
            "success_rate": float(np.mean([r["straight_ok"] for r in records])),
            "collision_free_rate": outcome["free"] / n,
            "collision_fraction": outcome["collision"] / max(1, len(sl_done)),
            "ik_fail_fraction": outcome["ik_fail"] / max(1, len(sl_done)),
            "collision_fraction_on_ompl_solved": outcome_feasible["collision"] / max(1, len(sl_feasible)),
            "ik_fail_fraction_on_ompl_solved": outcome_feasible["ik_fail"] / max(1, len(sl_feasible)),
        },
    }


def fmt(stats: dict) -> str:
    if stats["median"] is None:
        return "-"
    return f"{stats['median']:8.1f} / {stats['p99']:8.1f}"


def print_table(task: str, s: dict) -> None:
    o, sl = s["ompl"], s["straight_line"]
    print(f"\n== {task}: {s['queries']} queries ==")
    print(f"{'planner':<14}{'plan ms med / p99':>22}{'replan ms med / p99':>24}{'success':>9}{'replan ok':>11}{'in collision':>14}")
    print(
        f"{'OMPL':<14}{fmt(o['plan_ms']):>22}{fmt(o['replan_ms']):>24}{o['success_rate']:>9.1%}"
        f"{o['replan_success_rate'] or 0:>11.1%}{o['collision_fraction'] or 0:>14.1%}"
    )
    print(
        f"{'straight line':<14}{fmt(sl['plan_ms']):>22}{fmt(sl['replan_ms']):>24}{sl['success_rate']:>9.1%}{'-':>11}"
        f"{sl['collision_fraction']:>14.1%}"
    )
    print(f"OMPL outcomes: {o['outcomes']}; re-plans: {o['replan_outcomes']}")
    print(f"OMPL success by target kind: {o['success_rate_by_kind']}; latency on successes only: {fmt(o['plan_ms_success'])} ms")
    print(
        f"straight line: collision-free and IK-feasible {sl['collision_free_rate']:.1%} of all queries; "
        f"on OMPL-solved queries {sl['collision_fraction_on_ompl_solved']:.1%} collide and "
        f"{sl['ik_fail_fraction_on_ompl_solved']:.1%} leave the IK-reachable set (all queries: {sl['ik_fail_fraction']:.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="coffee,coffee_preparation")
    parser.add_argument("--queries", type=int, default=200, help="queries per task")
    parser.add_argument("--queries-per-scene", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="first scene seed and target sampler seed")
    parser.add_argument("--time-limit", type=float, default=None, help="override OMPL's sampling time limit (s)")
    parser.add_argument("--json", default=None, help="write summaries and raw records here")
    args = parser.parse_args()

    config = {} if args.time_limit is None else {"time_limit": args.time_limit}
    report = {"args": vars(args), "tasks": {}, "skipped": {}}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        try:
            t0 = time.perf_counter()
            result = run_task(task, args.queries, args.queries_per_scene, args.seed, config)
        except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
            print(f"skipping {task}: {type(exc).__name__}: {exc}")
            report["skipped"][task] = f"{type(exc).__name__}: {exc}"
            continue
        summary = summarise(result["records"])
        summary["scenes"], summary["wall_s"] = result["scenes"], time.perf_counter() - t0
        report["tasks"][task] = {"summary": summary, "records": result["records"]}
        print_table(task, summary)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
