"""Shared fixtures: synthetic episodes that need no simulator."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from reinforcegen_ros.demos.episode import Episode  # noqa: E402


def synthetic_episode(length: int = 12, n_state: int = 20, seed: int = 0, images: bool = False) -> Episode:
    """A small, fully populated episode with random contents."""
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (length, 1, 1))
    poses[:, :3, 3] = rng.normal(size=(length, 3))
    obs = {
        "robot0_eef_pos": rng.normal(size=(length, 3)),
        "robot0_eef_axis_angle": rng.normal(size=(length, 3)),
        "robot0_gripper_qpos": rng.normal(size=(length, 2)),
        "robot0_joint_pos": rng.normal(size=(length, 7)),
        "object": rng.normal(size=(length, 14)),
    }
    if images:
        obs["agentview_image"] = rng.integers(0, 255, size=(length, 84, 84, 3), dtype=np.uint8)
    stage = np.repeat([0, 1], [length // 2, length - length // 2])
    return Episode(
        actions=rng.uniform(-1, 1, size=(length, 7)),
        states=rng.normal(size=(length, n_state)),
        obs=obs,
        stage=stage,
        phase=np.tile([0, 1], length // 2 + 1)[:length],
        eef_pose=poses,
        object_poses={"pod": poses.copy(), "coffee_machine": poses.copy()},
        term_signals={"grasp_pod": (np.arange(length) >= length // 2 - 1).astype(np.int64), "insert_pod_close_lid": np.zeros(length, dtype=np.int64)},
        rewards=np.zeros(length),
        success=True,
        attrs={"seed": seed},
    )


@pytest.fixture
def make_episode():
    return synthetic_episode
