"""Coffee Preparation's fixture footprints: the vectorised gap equals the point-by-point one to the last bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reinforcegen_ros.tasks import coffee_preparation
from reinforcegen_ros.tasks.coffee_preparation import Footprint, cabinet_footprints, footprint_gap, machine_footprints


def outline_one_by_one(fp: Footprint, step: float = 0.01) -> np.ndarray:
    """World outline points of ``fp``, built one point at a time (the code before vectorising)."""
    (x0, x1), (y0, y1) = fp.x_range, fp.y_range
    points = []
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        n = max(int(np.hypot(b[0] - a[0], b[1] - a[1]) / step), 1)
        points += [[a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])] for t in np.linspace(0.0, 1.0, n, endpoint=False)]
    c, s, pts = np.cos(fp.yaw), np.sin(fp.yaw), np.array(points)
    return np.stack([fp.x + c * pts[:, 0] - s * pts[:, 1], fp.y + s * pts[:, 0] + c * pts[:, 1]], axis=1)


def distance_one_point(fp: Footprint, xy) -> float:
    """Distance of one world point to ``fp`` (the code before vectorising)."""
    c, s = np.cos(fp.yaw), np.sin(fp.yaw)
    d = np.asarray(xy, dtype=float) - np.array([fp.x, fp.y])
    lx, ly = c * d[0] + s * d[1], -s * d[0] + c * d[1]
    dx = max(fp.x_range[0] - lx, 0.0, lx - fp.x_range[1])
    dy = max(fp.y_range[0] - ly, 0.0, ly - fp.y_range[1])
    return float(np.hypot(dx, dy))


def gap_one_by_one(a: Footprint, b: Footprint) -> float:
    return min(min(distance_one_point(b, p) for p in outline_one_by_one(a)), min(distance_one_point(a, p) for p in outline_one_by_one(b)))


def random_pairs(n: int, seed: int = 0) -> list[tuple[Footprint, Footprint]]:
    """Machine and cabinet footprints as placement draws them: apart, touching and overlapping."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        machine = machine_footprints(*rng.uniform(-0.25, 0.25, 2), rng.uniform(-math.pi, math.pi), rng.uniform(0.0, 0.1))
        cabinet = cabinet_footprints(*rng.uniform(-0.25, 0.25, 2), rng.uniform(-math.pi, math.pi), rng.uniform(0.1, 0.3))
        pairs += [(a, b) for a in machine for b in cabinet]
    return pairs


def test_gap_outline_and_distance_equal_the_point_by_point_code():
    pairs = random_pairs(60)
    gaps = [footprint_gap(a, b) for a, b in pairs]
    assert gaps == [gap_one_by_one(a, b) for a, b in pairs]  # exactly: placement draws the same scenes
    assert 0.0 in gaps and max(gaps) > 0.05
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(50, 2))
    for a, b in pairs[:40]:
        assert np.array_equal(a.perimeter(), outline_one_by_one(a))
        assert [a.distance(p) for p in points] == [distance_one_point(a, p) for p in points]


@pytest.mark.parametrize("seed", [0, 7])
def test_scenes_are_the_ones_the_point_by_point_gap_places(seed, monkeypatch):
    from reinforcegen_ros.tasks.environment import TaskEnv

    env = TaskEnv("coffee_preparation")
    env.reset(seed=seed)
    now = env.get_state()
    monkeypatch.setattr(coffee_preparation, "footprint_gap", gap_one_by_one)
    env.reset(seed=seed)
    assert np.array_equal(env.get_state(), now)
    env.close()
