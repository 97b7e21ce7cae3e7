"""Data generation on the stock and the lean step path, compared seed by seed from the datasets two runs wrote.

Usage: python benchmarks/generation_paths.py [--dir runs/step_path_gen] [--tasks all]

Reads ``DIR/<task>_stock.hdf5`` and ``DIR/<task>_lean.hdf5``, each written by

    reinforcegen generate --task TASK --source data/TASK_source.hdf5 --num 1000 --max-attempts 200 --keep-partial \\
        --seed 500000 --workers 1 --step-path PATH --out DIR/TASK_PATH.hdf5

(the same scene seeds on both paths). Printed per task and path: successes of the
attempts with a Wilson 95% interval, the median demo length, the wall and CPU seconds
per attempt of the workers (as ``reinforcegen demos stats``; CPU time is recorded by
runs of this version on, "-" for older datasets), successful demos per CPU core-hour
and per worker-hour of wall time, and the seeds that succeeded on that path only.
Wall time depends on the load: compare CPU time where the two runs shared the machine differently.
Tasks whose two files are not both there are skipped (named on stderr).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from reinforcegen_ros.demos.dataset import demo_names, open_dataset
from reinforcegen_ros.evaluation.harness import wilson_interval
from reinforcegen_ros.tasks import TASKS


def read_run(path: Path) -> tuple[dict, dict[int, int]]:
    """(generation statistics, {scene seed: demo length}) of a generated dataset."""
    with open_dataset(path) as f:
        raw = f["data"].attrs.get("generation")
        if raw is None:
            raise ValueError(f"'{path}' has no generation statistics (it was not made by 'reinforcegen generate')")
        demos = {int(f["data"][n].attrs["seed"]): int(f["data"][n].attrs["num_samples"]) for n in demo_names(f["data"])}
    return json.loads(raw), demos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/step_path_gen")
    parser.add_argument("--tasks", default="all")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    print("| task | path | successes | rate (Wilson 95%) | median length | wall s / attempt | CPU s / attempt | demos / core-hour (CPU) "
          "| demos / worker-hour (wall) | succeeded on this path only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in tasks:
        files = {p: Path(args.dir) / f"{task}_{p}.hdf5" for p in ("stock", "lean")}
        if not all(f.exists() for f in files.values()):
            print(f"{task}: skipped, {' and '.join(str(f) for f in files.values() if not f.exists())} missing", file=sys.stderr)
            continue
        runs = {p: read_run(f) for p, f in files.items()}
        seeds = {p: set(demos) for p, (_, demos) in runs.items()}
        for path, (gen, demos) in runs.items():
            n, k = gen["attempts"], gen["successes"]
            low, high = wilson_interval(k, n)
            cpu = gen.get("worker_cpu_seconds") or 0.0
            cpu_cells = f"{cpu / max(n, 1):.2f} | {3600 * k / cpu:.0f}" if cpu else "- | -"
            only = sorted(seeds[path] - seeds["stock" if path == "lean" else "lean"])
            print(f"| {task} | {path} | {k}/{n} | {k / max(n, 1):.1%} ({low:.1%}-{high:.1%}) | {statistics.median(demos.values()):.0f} | "
                  f"{gen['worker_seconds'] / max(n, 1):.2f} | {cpu_cells} | {3600 * k / max(gen['worker_seconds'], 1e-9):.0f} | "
                  f"{len(only)}{': ' + ', '.join(map(str, only)) if only else ''} |")


if __name__ == "__main__":
    main()
