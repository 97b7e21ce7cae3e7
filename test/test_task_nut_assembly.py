"""Nut Assembly task: placement, stage conditions, state restore and one scripted demonstration."""

from __future__ import annotations

import numpy as np
import pytest

from reinforcegen_ros.geometry import mat_to_quat
from reinforcegen_ros.tasks import load_object, task_config, task_info
from reinforcegen_ros.tasks.environment import TaskEnv

TASK = "nut_assembly"
NUTS = ("square_nut", "round_nut")


@pytest.fixture(scope="module")
def cfg() -> dict:
    return task_config(TASK)


@pytest.fixture(scope="module")
def env(cfg) -> TaskEnv:
    task_env = TaskEnv(TASK, config=cfg)
    yield task_env
    task_env.close()


def _nut_poses(env: TaskEnv) -> np.ndarray:
    poses = env.object_poses()
    return np.stack([poses[name] for name in NUTS])


def test_env_is_registered_robosuite_nut_assembly(env):
    from robosuite.environments.base import REGISTERED_ENVS
    from robosuite.environments.manipulation.nut_assembly import NutAssembly

    assert type(env.env).__name__ == "NutAssemblyStaged"
    assert REGISTERED_ENVS["NutAssemblyStaged"] is type(env.env)
    assert REGISTERED_ENVS["NutAssembly"] is NutAssembly  # the stock env is not shadowed
    assert isinstance(env.env, NutAssembly)
    assert [s.name for s in env.stages] == ["grasp_square_nut", "insert_square_nut", "grasp_round_nut", "insert_round_nut"]
    assert [s.reference_object for s in env.stages] == ["square_nut", "square_peg", "round_nut", "round_peg"]
    assert env.objects == ("square_nut", "round_nut", "square_peg", "round_peg")


def test_peg_poses_come_from_robosuite_peg_bodies(env):
    env.reset(seed=0)
    sim = env.env.sim
    poses = env.object_poses()
    for name, body in (("square_peg", "peg1"), ("round_peg", "peg2")):
        np.testing.assert_allclose(poses[name][:3, 3], sim.data.body_xpos[sim.model.body_name2id(body)])
    sampler_pegs = env.env.placement_initializer.pegs_xy
    np.testing.assert_allclose(sampler_pegs, [poses["square_peg"][:2, 3], poses["round_peg"][:2, 3]])
    obs = env.observe()
    assert obs["object"].shape == (7 * len(env.objects),)


def test_seeded_reset_is_deterministic(env):
    first = _nut_poses_after_reset(env, 3)
    again = _nut_poses_after_reset(env, 3)
    other = _nut_poses_after_reset(env, 4)
    np.testing.assert_allclose(first, again)
    assert np.linalg.norm(first[:, :3, 3] - other[:, :3, 3]) > 1e-3


def _nut_poses_after_reset(env: TaskEnv, seed: int) -> np.ndarray:
    env.reset(seed=seed)
    return _nut_poses(env)


def test_d2_placement_ranges(env, cfg):
    placement = cfg["env_kwargs"]["placement"]
    assert tuple(placement["nut_x"]) == (-0.15, 0.15)
    pegs = {name: pose[:2, 3] for name, pose in env.object_poses().items() if name.endswith("peg")}
    task = env.env
    sampler = task.placement_initializer
    xs, yaws = [], []
    for seed in range(12):
        env.reset(seed=seed)
        poses = env.object_poses()
        for nut in NUTS:
            x, y = poses[nut][:2, 3]
            low, high = placement[f"{nut}_y"]
            assert -0.15 <= x <= 0.15 and low <= y <= high
            assert min(np.linalg.norm(p - (x, y)) for p in pegs.values()) >= placement["peg_clearance"]
            assert poses[nut][2, 2] > 0.999  # lying flat
            quat_wxyz = np.roll(mat_to_quat(poses[nut][:3, :3]), 1)
            assert sampler.clear_of_pegs(poses[nut][:3, 3], quat_wxyz, task.mujoco_objects[nut])
            xs.append(x)
            yaws.append(np.arctan2(poses[nut][1, 0], poses[nut][0, 0]))
        assert np.linalg.norm(poses["square_nut"][:2, 3] - poses["round_nut"][:2, 3]) > 0.2
    assert np.ptp(xs) > 0.15 and np.ptp(yaws) > np.pi  # the ranges are really used


def test_placement_rejects_handles_a_hand_cannot_reach_past_a_peg(env):
    sampler, nut = env.env.placement_initializer, env.env.mujoco_objects["square_nut"]
    yaw_quat = env.env.yaw_quat_wxyz
    # nut body clear of the square peg but its handle points at it: a hand on the handle would hit the peg
    assert not sampler.clear_of_pegs([0.113, 0.064, 0.83], yaw_quat(np.radians(51.0)), nut)
    # the same spot with the handle turned away is fine, and so is a nut far from the pegs
    assert sampler.clear_of_pegs([0.113, 0.064, 0.83], yaw_quat(np.radians(231.0)), nut)
    assert all(sampler.clear_of_pegs([-0.1, 0.2, 0.83], yaw_quat(a), nut) for a in np.linspace(0, 2 * np.pi, 12))
    assert not sampler.clear_of_pegs([0.2, 0.1, 0.83], yaw_quat(0.0), nut)  # on the peg


def test_no_stage_done_at_reset(env):
    for seed in range(5):
        env.reset(seed=seed)
        for _ in range(5):  # let the nuts settle on the table
            env.step(np.zeros(7))
        assert not any(env.stage_done(k) for k in range(len(env.stages)))
        assert not env.success()


def test_stage_conditions_on_simulator_state(env):
    """Nuts set around their pegs (test-only teleport) satisfy the insert conditions; swapped pegs do not."""
    env.reset(seed=1)
    task = env.env
    quat = task.yaw_quat_wxyz(0.0)
    square_peg, round_peg = (env.object_poses()[k][:3, 3] for k in ("square_peg", "round_peg"))
    table_z = task.table_offset[2] + 0.011
    task.set_free_pose("square_nut", [square_peg[0], square_peg[1], table_z], quat)
    task.sim.forward()
    assert env.stage_done(1) and not env.stage_done(3) and not env.success()
    task.set_free_pose("round_nut", [round_peg[0], round_peg[1], table_z], quat)
    task.sim.forward()
    assert env.stage_done(1) and env.stage_done(3) and env.success()
    assert not env.stage_done(0) and not env.stage_done(2)  # on the peg is not "held and lifted"
    task.set_free_pose("square_nut", [square_peg[0], square_peg[1], table_z + 0.1], quat)  # above the peg
    task.sim.forward()
    assert not env.stage_done(1) and not env.success()


def test_state_restore_reproduces_object_poses(env):
    env.reset(seed=5)
    for _ in range(10):
        env.step(np.array([0.3, -0.2, -0.1, 0.0, 0.0, 0.1, -1.0]))
    state = env.get_state()
    poses, eef = _nut_poses(env), env.eef_pose()
    env.reset(seed=6)
    env.reset_to(state)
    np.testing.assert_allclose(_nut_poses(env), poses, atol=1e-9)
    np.testing.assert_allclose(env.eef_pose(), eef, atol=1e-9)


def test_scripted_episode_succeeds(env, cfg):
    demo = load_object(task_info(TASK).demonstrator)(cfg["demonstrator"])
    episode = demo.run(env, seed=0)
    assert episode.success and env.success()
    assert np.all(np.diff(episode.stage) >= 0)
    assert set(episode.stage.tolist()) == {0, 1, 2, 3}
    names = [s.name for s in env.stages]
    for k, name in enumerate(names):
        term = episode.term_signals[name]
        # each stage's condition is reached by the end of its own segment
        assert term[episode.stage > k].size == 0 or term[np.argmax(episode.stage > k)] == 1
    assert episode.term_signals["insert_round_nut"][-1] == 1
    assert episode.term_signals["insert_square_nut"][-1] == 1
    # the nuts really sit on the table around their pegs, released
    for nut, peg in (("square_nut", "square_peg"), ("round_nut", "round_peg")):
        nut_pos, peg_pos = env.object_poses()[nut][:3, 3], env.object_poses()[peg][:3, 3]
        assert np.linalg.norm(nut_pos[:2] - peg_pos[:2]) < 0.01
        assert env.env.nut_height(nut) < 0.005
        assert not env.env.nut_grasped(nut)
