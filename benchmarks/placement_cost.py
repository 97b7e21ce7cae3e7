"""Coffee Preparation's scene placement (reset) with the fixture gap point by point against the vectorised gap.

Usage: python benchmarks/placement_cost.py [--seeds 10] [--repeats 3]

``_place_objects`` redraws machine, cabinet and mug until the fixtures are
``fixture_gap`` apart, asking ``footprint_gap`` for every draw (up to a hundred
draws on some seeds). Each seed's reset is timed with the point-by-point gap
(the code before, kept in ``test/test_footprints.py``, which holds both equal to
the last bit) and with the current one, interleaved. Printed: median reset in
milliseconds and the ratio of total reset time (the machine may be loaded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from test_footprints import gap_one_by_one  # noqa: E402

from reinforcegen_ros.tasks import coffee_preparation  # noqa: E402
from reinforcegen_ros.tasks.environment import TaskEnv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env, vectorised = TaskEnv("coffee_preparation"), coffee_preparation.footprint_gap
    variants = {"point by point": gap_one_by_one, "vectorised": vectorised}
    times: dict[str, list[float]] = {label: [] for label in variants}
    try:
        for _ in range(args.repeats):
            for seed in range(args.seeds):
                for label, gap in variants.items():
                    coffee_preparation.footprint_gap = gap
                    start = time.perf_counter()
                    env.reset(seed=seed)
                    times[label].append(time.perf_counter() - start)
    finally:
        coffee_preparation.footprint_gap = vectorised
    for label, seconds in times.items():
        print(f"{label:>15}: median reset {1e3 * statistics.median(seconds):.1f} ms, {sum(seconds):.2f} s over {len(seconds)} resets")
    print(f"ratio of total reset time: {sum(times['point by point']) / sum(times['vectorised']):.2f}x")
    env.close()


if __name__ == "__main__":
    main()
