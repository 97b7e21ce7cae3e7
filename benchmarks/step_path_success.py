"""Scripted-demo success and cost on the stock and the lean step path, over the same seeds.

Usage: python benchmarks/step_path_success.py [--episodes 200] [--tasks all] [--seed 0] [--paths stock,lean]

For each task and step path the scripted demonstrator runs on seeds
``seed .. seed+episodes-1`` (as ``reinforcegen demos success``). Printed per row:
successes with a Wilson 95% interval, the median episode length, CPU seconds per
attempt, successful demos per CPU core-hour, and, on the lean rows, on how many
seeds both paths had the same outcome. Contact dynamics are chaotic, so the two
paths' trajectories part after a while; what should agree is the success rate.
"""

from __future__ import annotations

import argparse
import statistics
import time

from reinforcegen_ros.demos.collect import CollectReport, make_demonstrator, scripted_attempts
from reinforcegen_ros.evaluation.harness import wilson_interval
from reinforcegen_ros.tasks import TASKS, task_config
from reinforcegen_ros.tasks.environment import TaskEnv


def run(task: str, path: str, seeds: range) -> tuple[CollectReport, float, set[int]]:
    """The collection report, CPU seconds and successful seeds of one task on one step path."""
    config = task_config(task)
    env = TaskEnv(task, config=config, step_path=path)
    report, start = CollectReport(task), time.process_time()
    for _ in scripted_attempts(env, make_demonstrator(task, config), seeds, report):
        pass
    seconds = time.process_time() - start
    env.close()
    return report, seconds, set(seeds) - set(report.failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths", default="stock,lean")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    seeds = range(args.seed, args.seed + args.episodes)

    print(f"seeds {seeds.start}..{seeds.stop - 1}\n")
    print("| task | path | successes | rate (Wilson 95%) | median steps | CPU s / attempt | demos / core-hour | same outcome |")
    print("|---|---|---|---|---|---|---|---|")
    for task in tasks:
        outcomes = {}
        for path in args.paths.split(","):
            report, seconds, successful = run(task, path, seeds)
            outcomes[path] = successful
            low, high = wilson_interval(report.successes, report.attempts)
            same = len(seeds) - len(outcomes[path] ^ outcomes["stock"]) if path != "stock" and "stock" in outcomes else ""
            median = statistics.median(report.lengths) if report.lengths else 0
            print(f"| {task} | {path} | {report.successes}/{report.attempts} | {report.success_rate:.0%} ({low:.0%}-{high:.0%}) "
                  f"| {median:.0f} | {seconds / report.attempts:.1f} | {3600 * report.successes / seconds:.0f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
