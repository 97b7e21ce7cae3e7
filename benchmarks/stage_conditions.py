"""Cost per recorded step of the ground-truth stage conditions: robosuite's contact loops against the vectorised tests.

Usage: python benchmarks/stage_conditions.py [--tasks coffee_preparation] [--repeats 7] [--seed 0]

Every recorded step of a demo (``Episode.record``) asks ``stage_done(k)`` for
every stage and ``success()``. For each task this replays the states of the
first successful scripted demo (seeds ``seed``..) and times that question per
state, with the grasp and withdrawal tests as robosuite computes them
(``_check_grasp``, geom ids looked up by name on every call: the code before
``tasks/contacts.py``) and as they are now. Both variants must give the same
answers on every state. Printed: medians over ``repeats`` passes in
milliseconds per step, their ratio, and a lean control step for scale (the
machine may be loaded: compare the ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

from reinforcegen_ros.demos.collect import CollectReport, make_demonstrator, scripted_attempts
from reinforcegen_ros.tasks import TASKS
from reinforcegen_ros.tasks.environment import TaskEnv


def robosuite_grasped(self, name: str) -> bool:
    """The grasp test before: robosuite's ``_check_grasp``."""
    return bool(self._check_grasp(gripper=self.robots[0].gripper, object_geoms=self.mujoco_objects[name]))


def robosuite_withdrawn(self, name: str, clearance: float | None = None) -> bool:
    """The withdrawal test before: the same distances, geom ids looked up by name on every call."""
    import mujoco

    clearance = self.RELEASE_CLEARANCE if clearance is None else clearance
    model, data = self.sim.model._model, self.sim.data._data
    gripper = [self.sim.model.geom_name2id(g) for g in self.robots[0].gripper["right"].contact_geoms]
    obj = [self.sim.model.geom_name2id(g) for g in self.mujoco_objects[name].contact_geoms]
    return all(mujoco.mj_geomDistance(model, data, g, o, clearance, None) >= clearance for g in gripper for o in obj)


@contextlib.contextmanager
def robosuite_tests(env: TaskEnv):
    """Route the task's grasp and withdrawal tests through the code before, for the duration."""
    cls = type(env.env)
    saved = cls.grasped, cls.withdrawn
    cls.grasped, cls.withdrawn = robosuite_grasped, robosuite_withdrawn
    try:
        yield
    finally:
        cls.grasped, cls.withdrawn = saved


def conditions_pass(env: TaskEnv, states: np.ndarray) -> tuple[float, list[tuple[bool, ...]]]:
    """Seconds spent in the stage conditions over ``states`` (restoring each is not timed) and their answers."""
    seconds, answers = 0.0, []
    for state in states:
        env.set_state(state)
        start = time.perf_counter()
        answer = tuple(env.stage_done(k) for k in range(len(env.stages))) + (env.success(),)
        seconds += time.perf_counter() - start
        answers.append(answer)
    return seconds, answers


def step_ms(env: TaskEnv, states: np.ndarray, steps: int = 200) -> float:
    """Median milliseconds of one lean control step (zero action) from the demo's states."""
    times = []
    for state in states[:: max(1, len(states) // steps)][:steps]:
        env.set_state(state)
        start = time.perf_counter()
        env.step(np.zeros(7))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="coffee_preparation", help="comma-separated tasks, or all")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    print("| task | steps | robosuite ms/step | vectorised ms/step | ratio | lean control step ms |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        env = TaskEnv(task, step_path="lean")
        demo = make_demonstrator(task, env.config)
        episode = next(scripted_attempts(env, demo, range(args.seed, args.seed + 5), CollectReport(task)), None)
        if episode is None:
            raise SystemExit(f"no scripted {task} demo succeeded on seeds {args.seed}..{args.seed + 4}")
        before, after = [], []
        for _ in range(args.repeats):  # interleaved, so that a change in machine load meets both variants
            with robosuite_tests(env):
                seconds, old = conditions_pass(env, episode.states)
            before.append(seconds)
            seconds, new = conditions_pass(env, episode.states)
            after.append(seconds)
            if new != old:
                raise SystemExit(f"{task}: the vectorised stage conditions differ from robosuite's")
        n = len(episode.states)
        b, a = 1e3 * statistics.median(before) / n, 1e3 * statistics.median(after) / n
        print(f"| {task} | {n} | {b:.3f} | {a:.3f} | {b / a:.1f}x | {step_ms(env, episode.states):.2f} |", flush=True)
        env.close()


if __name__ == "__main__":
    main()
