"""Control steps per second of each task, stock and lean step path, beside stock robosuite NutAssembly, in one run.

Usage: python benchmarks/control_rate.py [--steps 400] [--repeats 5] [--tasks all]

Every environment runs ``--repeats`` blocks of ``--steps`` control steps (20 Hz,
OSC_POSE, small random delta-pose actions with the gripper closed, no
rendering), round-robin over the environments so that a busy machine slows
them alike; the figures are medians over blocks. The stock environment is
robosuite's own ``NutAssembly`` with its default controller and observables.
Each task runs as ``TaskEnv`` on its stock step path (robosuite's ``env.step``)
and on its lean step path (``tasks/lean_control.py``), and as bare physics: the
same 25 ``mj_step1``/``mj_step2`` substeps with no controller, the ceiling of
any step path. Besides wall-clock rates, rates over the process's CPU time are
printed, which other processes on a shared machine disturb less.
"""

from __future__ import annotations

import argparse
import statistics
import time

import mujoco
import numpy as np

from reinforcegen_ros.tasks import TASKS
from reinforcegen_ros.tasks.environment import TaskEnv


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


def physics_only(env: TaskEnv):
    """A step function that runs a control step's substeps with no controller (the arm's ctrl stays zero)."""
    sim = env.env.sim
    model, data = sim.model._model, sim.data._data
    substeps = int(env.env.control_timestep / env.env.model_timestep)

    def step(_action):
        data.ctrl[:] = 0.0
        for _ in range(substeps):
            mujoco.mj_step1(model, data)
            mujoco.mj_step2(model, data)

    return step


def block(step, reset, actions: np.ndarray) -> tuple[float, float]:
    """(wall-clock, CPU-time) steps per second of one block."""
    reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for a in actions:
        step(a)
    return len(actions) / (time.perf_counter() - wall), len(actions) / max(time.process_time() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", default="all")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")

    stock = stock_nut_assembly()
    rows = [("robosuite NutAssembly", "stock", stock.step, stock.reset)]
    for task in tasks:
        for path in ("stock", "lean"):
            env = TaskEnv(task, step_path=path)
            rows.append((task, path, env.step, lambda env=env: env.reset(seed=0)))
        rows.append((task, "physics only", physics_only(env), lambda env=env: env.reset(seed=0)))

    rng = np.random.default_rng(0)
    rates: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(rows))}
    for repeat in range(args.repeats + 1):  # the first round warms up (numba's cache, first-reset work)
        actions = np.concatenate([rng.uniform(-0.3, 0.3, size=(args.steps, 6)), np.ones((args.steps, 1))], axis=1)
        for i, (_, _, step, reset) in enumerate(rows):
            result = block(step, reset, actions[: 20 if repeat == 0 else None])
            if repeat:
                rates[i].append(result)
    wall = {i: statistics.median(r[0] for r in rates[i]) for i in rates}
    cpu = {i: statistics.median(r[1] for r in rates[i]) for i in rates}

    print(f"{args.repeats} blocks of {args.steps} steps, medians; ratios against robosuite NutAssembly (stock) of this run\n")
    print(f"{'environment':<24} {'path':<13} {'steps/s':>8} {'ms/step':>8} {'vs stock NA':>11} {'lean/stock':>10} {'CPU steps/s':>12} {'vs stock NA':>11}")
    stock_rate = {}
    for i, (name, path, _, _) in enumerate(rows):
        if path == "stock":
            stock_rate[name] = (wall[i], cpu[i])
        gain = f"{wall[i] / stock_rate[name][0]:.2f}x" if path == "lean" else ""
        print(f"{name:<24} {path:<13} {wall[i]:>8.1f} {1000 / wall[i]:>8.2f} {wall[i] / wall[0]:>10.2f}x {gain:>10} "
              f"{cpu[i]:>12.1f} {cpu[i] / cpu[0]:>10.2f}x")


if __name__ == "__main__":
    main()
