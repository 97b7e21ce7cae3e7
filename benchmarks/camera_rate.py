"""Cost of an 84x84 camera frame and of a two-camera tick, robosuite's sim.render against TaskEnv.render, in one run.

Usage: MUJOCO_GL=egl python benchmarks/camera_rate.py [--frames 100] [--tasks coffee] [--size 84]

Two environments of each task render the same states: one with robosuite's own
``sim.render`` on its 640x480 offscreen buffer (what ``TaskEnv.render`` did
before issue 17; ``config/rendering.yaml`` applied), one with ``TaskEnv.render``
(``tasks/rendering.py``: frustum culling, a buffer of the frame's size). Each
state is rendered by both, alternating, after a few random control steps; the
table gives the median and 99th percentile of one frame per camera and of a
tick that renders every camera of the task once, and how many frames of the
two methods were identical. ``MUJOCO_GL`` picks the backend (osmesa unless set).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from reinforcegen_ros.tasks.environment import TaskEnv
from reinforcegen_ros.tasks.rendering import CameraRenderer, robosuite_frame


def timed(render, cameras) -> tuple[dict[str, float], list[np.ndarray]]:
    """Seconds per camera frame and the frames, rendering every camera once."""
    seconds, frames = {}, []
    for cam in cameras:
        start = time.perf_counter()
        frames.append(render(cam))
        seconds[cam] = time.perf_counter() - start
    return seconds, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="states rendered per task")
    parser.add_argument("--tasks", default="coffee")
    parser.add_argument("--size", type=int, default=84)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'osmesa')}, {args.size}x{args.size}, {args.frames} states per task; ms\n")
    print(f"{'task':<22} {'frame':<22} {'before median':>13} {'p99':>7} {'after median':>12} {'p99':>7} {'speed-up':>8} {'identical':>10}")
    for task in args.tasks.split(","):
        before_env = TaskEnv(task, render=True, image_size=args.size, step_path="lean")
        after_env = TaskEnv(task, render=True, image_size=args.size, step_path="lean")
        CameraRenderer(before_env.env.sim, before_env.render_config, size=None)  # rendering.yaml, robosuite's buffer
        cameras = after_env.cameras
        times = {"before": {c: [] for c in (*cameras, "tick")}, "after": {c: [] for c in (*cameras, "tick")}}
        same = 0
        for i in range(args.frames + 1):
            if i % 25 == 0:
                after_env.reset(seed=i)
                before_env.reset(seed=i)  # robosuite hides its site markers at reset
            for _ in range(3):
                after_env.step(np.append(rng.uniform(-0.5, 0.5, 6), rng.choice([-1.0, 1.0])))
            before_env.set_state(after_env.get_state())
            runs = [("before", lambda c: robosuite_frame(before_env.env.sim, c, args.size, args.size)), ("after", after_env.render)]
            frames = {}
            for name, render in runs if i % 2 else runs[::-1]:
                seconds, frames[name] = timed(render, cameras)
                if i:  # the first round warms the contexts up
                    for cam, s in seconds.items():
                        times[name][cam].append(s)
                    times[name]["tick"].append(sum(seconds.values()))
            same += i > 0 and all(np.array_equal(a, b) for a, b in zip(frames["before"], frames["after"]))
        for key in (*cameras, "tick"):
            b, a = (np.array(times[n][key]) * 1e3 for n in ("before", "after"))
            label = f"{len(cameras)}-camera tick" if key == "tick" else key
            print(f"{task:<22} {label:<22} {np.median(b):>13.2f} {np.percentile(b, 99):>7.2f} {np.median(a):>12.2f} "
                  f"{np.percentile(a, 99):>7.2f} {np.median(b) / np.median(a):>7.2f}x {f'{same}/{args.frames}' if key == 'tick' else '':>10}")
        before_env.close()
        after_env.close()


if __name__ == "__main__":
    main()
