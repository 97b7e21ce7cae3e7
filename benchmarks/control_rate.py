"""Control steps per second of each task beside stock robosuite NutAssembly, in one run.

Usage: python benchmarks/control_rate.py [--steps 400] [--repeats 5] [--tasks all]

Each environment runs ``--repeats`` blocks of ``--steps`` control steps (20 Hz,
OSC_POSE, small random delta-pose actions, no rendering); the figure is the
median over blocks of steps per second. The stock environment is robosuite's
own ``NutAssembly`` with its default controller and observables, stepped the
same way. Ratios are against the stock environment measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from reinforcegen_ros.tasks import TASKS
from reinforcegen_ros.tasks.environment import TaskEnv


def steps_per_second(step, reset, steps: int, repeats: int, seed: int = 0) -> float:
    """Median steps/s over ``repeats`` blocks of ``steps`` steps."""
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(repeats):
        reset()
        actions = np.concatenate([rng.uniform(-0.3, 0.3, size=(steps, 6)), -np.ones((steps, 1))], axis=1)
        start = time.perf_counter()
        for a in actions:
            step(a)
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def stock_nut_assembly():
    """robosuite's own NutAssembly with its default configuration."""
    import robosuite as suite
    from robosuite.controllers import load_composite_controller_config

    return suite.make(
        "NutAssembly",
        robots="Panda",
        controller_configs=load_composite_controller_config(controller="BASIC", robot="Panda"),
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        control_freq=20,
        ignore_done=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", default="all")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")

    stock = stock_nut_assembly()
    base = steps_per_second(stock.step, stock.reset, args.steps, args.repeats)
    rows = [("robosuite NutAssembly (stock)", base)]
    for task in tasks:
        env = TaskEnv(task)
        rows.append((task, steps_per_second(env.step, env.reset, args.steps, args.repeats)))
        env.close()
    print(f"{'environment':<32} {'steps/s':>9} {'ms/step':>8} {'vs stock':>9}")
    for name, rate in rows:
        print(f"{name:<32} {rate:>9.1f} {1000 / rate:>8.2f} {rate / base:>8.2f}x")


if __name__ == "__main__":
    main()
