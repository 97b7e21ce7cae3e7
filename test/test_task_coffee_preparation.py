"""Coffee Preparation task: scene construction, seeded resets, stage conditions and a scripted episode."""

from __future__ import annotations

import numpy as np
import pytest

from reinforcegen_ros.tasks import load_object, task_config, task_info
from reinforcegen_ros.tasks.coffee_preparation import Footprint, footprint_gap
from reinforcegen_ros.tasks.environment import TaskEnv

TASK = "coffee_preparation"
STAGES = ["grasp_mug", "place_mug", "open_drawer", "grasp_pod", "insert_pod_close_lid"]


@pytest.fixture(scope="module")
def env():
    env = TaskEnv(TASK, config=task_config(TASK))
    yield env
    env.close()


def poses_at(env, seed: int) -> dict[str, np.ndarray]:
    env.reset(seed=seed)
    return env.object_poses()


def test_build(env):
    assert [s.name for s in env.stages] == STAGES
    assert [s.reference_object for s in env.stages] == ["mug", "coffee_machine", "drawer", "pod", "coffee_machine"]
    assert set(env.object_poses()) == {"mug", "coffee_machine", "drawer", "pod"}


def test_seeded_reset_is_deterministic(env):
    a, b, c = poses_at(env, 3), poses_at(env, 3), poses_at(env, 4)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-9)
    assert any(np.linalg.norm(a[n][:3, 3] - c[n][:3, 3]) > 1e-3 for n in a)


def test_initial_scene(env):
    for seed in range(5):
        poses = poses_at(env, seed)
        assert not any(env.stage_done(k) for k in range(len(env.stages)))
        assert not env.success()
        assert env.env.lid_angle() > 1.5 and env.env.drawer_opening() < 1e-3
        # the pod starts inside the closed drawer: within the cabinet's outline, above the drawer floor
        drawer, pod = poses["drawer"], poses["pod"]
        local = drawer[:3, :3].T @ (pod[:3, 3] - drawer[:3, 3])
        assert -0.075 < local[0] < 0.068 and abs(local[1]) < 0.1 and 0.0 < local[2] < 0.06


def test_footprint_gap():
    a = Footprint(0.0, 0.0, 0.0, (-0.1, 0.1), (-0.1, 0.1))
    assert footprint_gap(a, Footprint(0.3, 0.0, 0.0, (-0.1, 0.1), (-0.1, 0.1))) == pytest.approx(0.1, abs=0.011)
    assert footprint_gap(a, Footprint(0.05, 0.0, 0.7, (-0.1, 0.1), (-0.1, 0.1))) == 0.0


def test_scripted_episode(env):
    demo = load_object(task_info(TASK).demonstrator)(task_config(TASK).get("demonstrator", {}))
    ep = demo.run(env, seed=0)
    assert ep.success and env.success()
    assert np.all(np.diff(ep.stage) >= 0) and set(ep.stage.tolist()) == set(range(len(STAGES)))
    assert ep.term_signals["insert_pod_close_lid"][-1] == 1
    for name in STAGES[:-1]:
        assert ep.term_signals[name].any(), name
    assert env.env.mug_on_tray() and env.env.pod_inserted() and env.env.lid_angle() < 0.1


def test_state_restore_reproduces_poses(env):
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step(np.append(rng.uniform(-0.5, 0.5, 6), -1.0))
    state, poses = env.get_state(), env.object_poses()
    lid, drawer = env.env.lid_angle(), env.env.drawer_opening()
    env.reset(seed=7)
    env.reset_to(state)
    for name, pose in env.object_poses().items():
        np.testing.assert_allclose(pose, poses[name], atol=1e-6)
    assert env.env.lid_angle() == pytest.approx(lid, abs=1e-9)
    assert env.env.drawer_opening() == pytest.approx(drawer, abs=1e-9)
