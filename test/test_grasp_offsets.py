"""benchmarks/grasp_offsets.py: the object's position in the grip site's frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "grasp_offsets.py"
    spec = importlib.util.spec_from_file_location("grasp_offsets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grip_offset_is_the_objects_position_in_the_grip_sites_frame():
    from reinforcegen_ros.tasks.environment import TaskEnv

    bench = load_benchmark()
    env = TaskEnv("coffee")
    try:
        env.reset(seed=3)
        eef = env.eef_pose()
        want = np.array([0.004, -0.017, 0.009])  # m, in the grip site's frame
        pos = eef[:3, :3] @ want + eef[:3, 3]
        env.env.set_free_pose("pod", pos, [1.0, 0.0, 0.0, 0.0])
        env.env.sim.forward()
        assert bench.grip_offset_mm(env, "pod") == pytest.approx(1000.0 * want, abs=1e-6)
        # the grip site turned: the same world position reads differently in its frame
        assert not np.allclose(eef[:3, :3], np.eye(3))
        assert not np.allclose(bench.grip_offset_mm(env, "pod"), 1000.0 * (pos - eef[:3, 3]), atol=0.5)
    finally:
        env.close()
