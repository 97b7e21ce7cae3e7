"""Control steps per second of each task, stock and lean step path, beside stock robosuite NutAssembly, in one run.

Usage: python benchmarks/control_rate.py [--steps 400] [--repeats 5] [--tasks all] [--baseline OTHER_SRC]

Every environment runs ``--repeats`` blocks of ``--steps`` control steps (20 Hz,
OSC_POSE, small random delta-pose actions with the gripper closed, no
rendering), round-robin over the environments so that a busy machine slows
them alike; the figures are medians over blocks. The stock environment is
robosuite's own ``NutAssembly`` with its default controller and observables.
Each task runs as ``TaskEnv`` on its stock step path (robosuite's ``env.step``)
and on its lean step path (``tasks/lean_control.py``), and as bare physics: the
same 25 ``mj_step1``/``mj_step2`` substeps with no controller ("physics only",
the arm sags) and with the lean path's own recorded ``ctrl`` of every substep
("physics, lean's ctrl": the same trajectory, so the ceiling of any step path
that computes these dynamics). The physics rows compute MuJoCo's sensors as the lean path does (in the
last substep of a step only, ``lean_control.SENSORS_LAST_SUBSTEP_ONLY``). Besides wall-clock rates, rates over the process's CPU time are
printed, which other processes on a shared machine disturb less.

``--baseline OTHER_SRC`` adds a "lean (baseline)" row per task for a same-run
before/after comparison: ``tasks/environment.py`` and ``tasks/lean_control.py``
of another source tree (e.g. ``git archive HEAD src | tar -x -C /tmp/base``,
then ``--baseline /tmp/base/src``) step the same task; the task classes
(object poses, stage conditions) are this tree's.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import mujoco
import numpy as np

from reinforcegen_ros.tasks import TASKS, lean_control
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


def bare_substeps(model, data, ctrls) -> None:
    """One control step of bare physics, ``ctrls[k]`` applied in substep k; sensors are computed as the lean
    path computes them (``lean_control.SENSORS_LAST_SUBSTEP_ONLY``)."""
    flags = model.opt.disableflags
    if lean_control.SENSORS_LAST_SUBSTEP_ONLY and model.nsensor:
        model.opt.disableflags = flags | mujoco.mjtDisableBit.mjDSBL_SENSOR
    for k, ctrl in enumerate(ctrls):
        mujoco.mj_step1(model, data)
        data.ctrl[:] = ctrl
        if k == len(ctrls) - 1:
            model.opt.disableflags = flags
        mujoco.mj_step2(model, data)
    model.opt.disableflags = flags


def physics_only(env: TaskEnv):
    """A step function that runs a control step's substeps with no controller (the arm's ctrl stays zero)."""
    sim = env.env.sim
    model, data = sim.model._model, sim.data._data
    substeps = int(env.env.control_timestep / env.env.model_timestep)
    zeros = [np.zeros(model.nu)] * substeps

    def step(_action):
        bare_substeps(model, data, zeros)

    return step


class _CtrlRecorder:
    """Stands in for the ``mujoco`` module inside ``tasks/lean_control.py``: records the ``ctrl`` every
    ``mj_step2`` receives (``mjcb_control`` would not do: MuJoCo calls it in ``mj_step1``, before the lean
    step writes the substep's torques)."""

    def __init__(self):
        self.ctrls: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(mujoco, name)

    def mj_step2(self, model, data):
        self.ctrls.append(data.ctrl.copy())
        mujoco.mj_step2(model, data)


def physics_replay(task: str):
    """(step, reset) of bare physics along the lean path's own trajectory: ``reset(actions)`` runs the lean
    step over ``actions`` once, untimed, recording the ``ctrl`` of every substep, and resets; each step then
    replays a control step's recorded substeps. What MuJoCo's physics alone costs on the trajectory the
    lean path takes (the zero-ctrl row lets the arm sag instead)."""
    env = TaskEnv(task, step_path="lean")
    model, data = env.env.sim.model._model, env.env.sim.data._data
    substeps = int(env.env.control_timestep / env.env.model_timestep)
    recorder, cursor = _CtrlRecorder(), [0]

    def reset(actions):
        recorder.ctrls.clear()
        env.reset(seed=0)
        lean_control.mujoco = recorder
        try:
            for a in actions:
                env.step(a)
        finally:
            lean_control.mujoco = mujoco
        env.reset(seed=0)
        cursor[0] = 0

    def step(_action):
        bare_substeps(model, data, recorder.ctrls[cursor[0]: cursor[0] + substeps])
        cursor[0] += substeps

    return step, reset


def baseline_env(src: str, task: str):
    """A lean-path TaskEnv whose step, observations and lean step come from the source tree ``src``."""
    modules = []
    for name in ("lean_control", "environment"):
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", f"{src}/reinforcegen_ros/tasks/{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    lean, environment = modules
    env = environment.TaskEnv(task, step_path="lean")
    env._lean_step = lean.LeanStep(env.env)
    return env


def block(step, reset, actions: np.ndarray) -> tuple[float, float]:
    """(wall-clock, CPU-time) steps per second of one block (``reset(actions)`` is not timed)."""
    reset(actions)
    wall, cpu = time.perf_counter(), time.process_time()
    for a in actions:
        step(a)
    return len(actions) / (time.perf_counter() - wall), len(actions) / max(time.process_time() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--baseline", default=None, metavar="OTHER_SRC",
                        help="another source tree's src/ directory: add its lean step path as a 'lean (baseline)' row")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")

    stock = stock_nut_assembly()
    rows = [("robosuite NutAssembly", "stock", stock.step, lambda _actions: stock.reset())]
    for task in tasks:
        for path in ("stock", "lean"):
            env = TaskEnv(task, step_path=path)
            rows.append((task, path, env.step, lambda _actions, env=env: env.reset(seed=0)))
        if args.baseline:
            base = baseline_env(args.baseline, task)
            rows.append((task, "lean (baseline)", base.step, lambda _actions, base=base: base.reset(seed=0)))
        rows.append((task, "physics only", physics_only(env), lambda _actions, env=env: env.reset(seed=0)))
        rows.append((task, "physics, lean's ctrl", *physics_replay(task)))

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
    print(f"{'environment':<24} {'path':<20} {'steps/s':>8} {'ms/step':>8} {'vs stock NA':>11} {'lean/stock':>10} {'CPU steps/s':>12} {'vs stock NA':>11}")
    stock_rate = {}
    for i, (name, path, _, _) in enumerate(rows):
        if path == "stock":
            stock_rate[name] = (wall[i], cpu[i])
        gain = f"{wall[i] / stock_rate[name][0]:.2f}x" if path.startswith("lean") else ""
        print(f"{name:<24} {path:<20} {wall[i]:>8.1f} {1000 / wall[i]:>8.2f} {wall[i] / wall[0]:>10.2f}x {gain:>10} "
              f"{cpu[i]:>12.1f} {cpu[i] / cpu[0]:>10.2f}x")
    if args.baseline:
        lean = {name: i for i, (name, path, _, _) in enumerate(rows) if path == "lean"}
        for i, (name, path, _, _) in enumerate(rows):
            if path == "lean (baseline)":
                print(f"{name}: lean / lean (baseline) {wall[lean[name]] / wall[i]:.3f}x wall-clock, {cpu[lean[name]] / cpu[i]:.3f}x CPU")


if __name__ == "__main__":
    main()
