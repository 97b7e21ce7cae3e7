"""One generation attempt with the stage conditions and placement as before against as now.

Usage: python benchmarks/attempt_cost.py [--task coffee_preparation] [--source data/<task>_source.hdf5] [--seeds 100000,100001,100002]

Each seed's attempt (``datagen.runner.run_attempt``, the task YAML's settings)
runs twice, interleaved: with robosuite's grasp test, by-name geom ids in the
withdrawal test and the point-by-point fixture gap (the code before, from
``benchmarks/stage_conditions.py`` and ``test/test_footprints.py``), and with
the current code. Both must end the same way. Printed per seed: seconds of each
and their ratio (a successful attempt must give the same actions), then the ratio of the totals (the machine may be loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "test")]

from stage_conditions import robosuite_tests  # noqa: E402
from test_footprints import gap_one_by_one  # noqa: E402

from reinforcegen_ros.datagen import runner  # noqa: E402
from reinforcegen_ros.tasks import coffee_preparation, task_config  # noqa: E402


@contextlib.contextmanager
def code_before(env):
    """robosuite's contact tests and the point-by-point fixture gap, for the duration."""
    vectorised = coffee_preparation.footprint_gap
    coffee_preparation.footprint_gap = gap_one_by_one
    try:
        with robosuite_tests(env):
            yield
    finally:
        coffee_preparation.footprint_gap = vectorised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="coffee_preparation")
    parser.add_argument("--source", default=None, help="default: data/<task>_source.hdf5")
    parser.add_argument("--seeds", default="100000,100001,100002")
    args = parser.parse_args()
    source = args.source or str(ROOT / "data" / f"{args.task}_source.hdf5")
    runner.init_worker(args.task, source, task_config(args.task))
    env = runner._WORKER["generator"].env
    seeds = [int(s) for s in args.seeds.split(",")]
    runner.run_attempt(-1, seeds[0])  # warm-up (first-call compilation and caches), not timed
    totals = {"before": 0.0, "now": 0.0}
    for attempt, seed in enumerate(seeds):
        with code_before(env):
            start = time.perf_counter()
            before = runner.run_attempt(attempt, seed)
            totals["before"] += (seconds_before := time.perf_counter() - start)
        start = time.perf_counter()
        now = runner.run_attempt(attempt, seed)
        totals["now"] += (seconds_now := time.perf_counter() - start)
        outcome = "success" if now.episode is not None else f"failed at stage {now.stage}: {now.reason}"
        same_actions = before.episode is None or np.array_equal(before.episode.actions, now.episode.actions)
        if (before.episode is None, before.stage, before.reason) != (now.episode is None, now.stage, now.reason) or not same_actions:
            raise SystemExit(f"seed {seed}: the attempt ended otherwise with the code before ({before.reason or 'success'})")
        print(f"seed {seed}: before {seconds_before:.2f} s, now {seconds_now:.2f} s, {seconds_before / seconds_now:.2f}x ({outcome})", flush=True)
    print(f"total: before {totals['before']:.2f} s, now {totals['now']:.2f} s, {totals['before'] / totals['now']:.2f}x")


if __name__ == "__main__":
    main()
