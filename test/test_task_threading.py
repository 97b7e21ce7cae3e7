"""Threading task: model, seeded placement, ground-truth conditions and the scripted demonstrator."""

from __future__ import annotations

import numpy as np
import pytest

from reinforcegen_ros.tasks import load_object, task_config, task_info
from reinforcegen_ros.tasks.environment import TaskEnv
from reinforcegen_ros.tasks.threading import HANDLE_HALF, RING_INNER_RADIUS, TIP_X, Threading

TASK = "threading"


@pytest.fixture(scope="module")
def env():
    task_env = TaskEnv(TASK)
    yield task_env
    task_env.close()


def _poses(env) -> dict[str, np.ndarray]:
    return {name: pose.copy() for name, pose in env.object_poses().items()}


def _place_needle(env, tip_along_axis: float, radial_offset: float = 0.0, height: float = 0.0) -> None:
    """Teleport the needle (no physics step) so that it lies along the ring axis.

    ``tip_along_axis`` is the tip's signed distance past the ring plane;
    ``radial_offset`` shifts the needle sideways in the ring plane.
    """
    sim_env = env.env
    ring = sim_env.object_pose("tripod")
    axis, side = ring[:3, 0], ring[:3, 1]
    tip = ring[:3, 3] + axis * tip_along_axis + side * radial_offset + np.array([0.0, 0.0, height])
    yaw = float(np.arctan2(axis[1], axis[0]))
    sim_env.set_free_pose("needle", tip - axis * TIP_X, sim_env.yaw_quat_wxyz(yaw))
    sim_env.sim.forward()


def test_build_and_declarations(env):
    cfg = task_config(TASK)
    assert [s.name for s in Threading.STAGES] == ["grasp_needle", "thread_needle"]
    assert [s.reference_object for s in Threading.STAGES] == ["needle", "tripod"]
    assert cfg["cameras"] == ["agentview", "robot0_eye_in_hand", "sideview"]
    for cam in cfg["cameras"]:
        env.env.sim.model.camera_name2id(cam)  # raises if the camera is missing
    obs = env.reset(seed=0)
    assert obs["object"].shape == (14,)
    # the tripod's frame is the ring: its origin sits on the ring's axis, above the table
    ring = env.object_poses()["tripod"]
    assert ring[2, 3] > env.env.table_offset[2] + 0.05


def test_seeded_reset_is_deterministic_and_varies(env):
    env.reset(seed=3)
    first = _poses(env)
    env.reset(seed=7)
    other = _poses(env)
    env.reset(seed=3)
    again = _poses(env)
    for name in first:
        np.testing.assert_allclose(first[name], again[name], atol=1e-9)
        assert not np.allclose(first[name][:3, 3], other[name][:3, 3], atol=1e-3)


def test_placement_stays_in_configured_ranges(env):
    placement = task_config(TASK)["env_kwargs"]["placement"]
    for seed in range(5):
        env.reset(seed=seed)
        poses = env.object_poses()
        for name in ("needle", "tripod"):
            x, y = poses[name][:2, 3]
            yaw = np.arctan2(poses[name][1, 0], poses[name][0, 0])
            assert placement[f"{name}_x"][0] - 1e-6 <= x <= placement[f"{name}_x"][1] + 1e-6
            assert placement[f"{name}_y"][0] - 1e-6 <= y <= placement[f"{name}_y"][1] + 1e-6
            low, high = placement[f"{name}_yaw"]
            assert low - 1e-6 <= yaw <= high + 1e-6 or high - low >= 2 * np.pi - 1e-3


def test_no_stage_done_at_reset(env):
    for seed in range(5):
        env.reset(seed=seed)
        assert not any(env.stage_done(k) for k in range(len(env.stages)))
        assert not env.success()


def test_state_restore_reproduces_object_poses(env):
    env.reset(seed=11)
    state, poses = env.get_state(), _poses(env)
    env.reset(seed=12)
    env.reset_to(state)
    for name, pose in env.object_poses().items():
        np.testing.assert_allclose(pose, poses[name], atol=1e-9)


def test_threaded_condition(env):
    env.reset(seed=0)
    # lying on the table, far from the ring: not threaded
    assert not env.env.needle_threaded()
    # tip well past the ring plane along the axis: threaded
    _place_needle(env, tip_along_axis=0.03)
    assert env.env.needle_threaded() and env.success()
    # tip short of the ring plane: not threaded
    _place_needle(env, tip_along_axis=-0.01)
    assert not env.env.needle_threaded()
    # passing beside the ring (outside its radius): not threaded
    _place_needle(env, tip_along_axis=0.03, radial_offset=RING_INNER_RADIUS + 0.02)
    assert not env.env.needle_threaded()
    # whole needle past the ring (handle on the far side too): not threaded
    _place_needle(env, tip_along_axis=TIP_X + 0.05)
    assert not env.env.needle_threaded()


def test_lifted_needle_without_grasp_is_not_stage_0(env):
    env.reset(seed=0)
    sim_env = env.env
    needle = sim_env.object_pose("needle")
    sim_env.set_free_pose("needle", needle[:3, 3] + np.array([0.0, 0.0, 0.1]), [1.0, 0.0, 0.0, 0.0])
    sim_env.sim.forward()
    assert sim_env.needle_lifted() and not sim_env.needle_grasped()
    assert not env.stage_done(0)


def test_scripted_episode_succeeds(env):
    cfg = task_config(TASK)
    demo = load_object(task_info(TASK).demonstrator)(cfg.get("demonstrator", {}))
    episode = demo.run(env, seed=0)
    assert episode.success and env.success()
    assert np.all(np.diff(episode.stage) >= 0)
    assert set(episode.stage.tolist()) == {0, 1}
    assert episode.term_signals["grasp_needle"].any()
    assert episode.term_signals["thread_needle"][-1] == 1
    # the needle went through physically: it is held above the table, not lying on it
    assert env.object_poses()["needle"][2, 3] > env.env.needle_resting_z() + 0.05
    assert len(episode) <= cfg["horizon"]


def test_geometry_constants_consistent():
    # the shaft must fit through the ring with clearance, and the handle must fit between open fingers
    from reinforcegen_ros.tasks.threading import SHAFT_HALF_WIDTH

    assert SHAFT_HALF_WIDTH * np.sqrt(2) < RING_INNER_RADIUS / 2
    assert 2 * HANDLE_HALF[1] < 0.06
