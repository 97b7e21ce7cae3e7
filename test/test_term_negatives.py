"""Termination negatives: closed-gripper demo states whose stage goal does not hold."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from reinforcegen_ros.demos.term_negatives import candidate_steps, make_term_negatives, read_negatives

TASK = "coffee"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from reinforcegen_ros.demos.collect import collect

    out = tmp_path_factory.mktemp("neg") / "source.hdf5"
    collect(TASK, 1, out, seed=0, progress=False)
    return out


def test_negatives_close_the_gripper_where_the_stage_goal_does_not_hold(source, tmp_path):
    from reinforcegen_ros.demos.dataset import iter_episodes
    from reinforcegen_ros.tasks.environment import TaskEnv

    out = tmp_path / "neg.hdf5"
    summary = make_term_negatives(source, out, per_stage=5, progress=False)
    # closed: the grasp approach, and the lid push after the pod is released (fingers open again);
    # left behind: only the grasp, whose reference object (the pod) is free; the machine is a fixture
    assert summary["per_stage"] == [10, 5] and summary["per_kind"] == {"closed": 10, "left_behind": 5}
    assert summary["cameras"] == []
    header, neg = read_negatives(out, ["robot0_gripper_qpos", "object"])
    assert header["source"]["episodes"] == 1 and header["stages"] == ["grasp_pod", "insert_pod_close_lid"]
    closed = neg["kind"] == 0
    assert np.all(np.abs(neg["obs"]["robot0_gripper_qpos"][closed]) < 1e-9)
    ep = next(iter_episodes(source))
    with h5py.File(out) as f:
        steps, states = f["negatives/step"][()], f["negatives/states"][()]
    env = TaskEnv(TASK)
    left = ~closed
    assert np.all(neg["stage"][left] == 0) and np.all(ep.term_signals["grasp_pod"][steps[left]] == 1)
    start = ep.obs["object"][np.flatnonzero(ep.stage == 0)[0], :3]  # the pod's position when the stage began
    assert np.allclose(neg["obs"]["object"][left, :3], start, atol=1e-6)
    assert np.allclose(neg["obs"]["robot0_gripper_qpos"][left], ep.obs["robot0_gripper_qpos"][steps[left]])  # fingers as held
    assert np.all(neg["term"][left, 0] == 0)
    for step, state in zip(steps[left], states[left]):
        env.reset_to(state)
        assert not env.stage_done(0)
    for k, name in enumerate(header["stages"]):
        mine = (neg["stage"] == k) & closed
        assert list(steps[mine]) == list(candidate_steps(ep, k, name, 5, 0.75))
        assert np.all(neg["term"][mine, k] == 0)
        assert np.all(ep.stage[steps[mine]] == k) and np.all(ep.phase[steps[mine]] == 1) and np.all(ep.term_signals[name][steps[mine]] == 0)
        assert np.all(ep.obs["robot0_gripper_qpos"][steps[mine], 0] > 0.029)  # recorded open (0.04 = fully)
        for step, state in zip(steps[mine], states[mine]):
            assert not np.allclose(state, ep.states[step])  # the fingers moved
            obs = env.reset_to(state)
            assert not env.stage_done(k) and np.allclose(obs["robot0_gripper_qpos"], 0.0)
    env.close()
    with pytest.raises(FileExistsError):
        make_term_negatives(source, out, progress=False)


def test_rgb_negatives_render_the_closed_fingers(source, tmp_path):
    from reinforcegen_ros.demos.collect import add_images
    from reinforcegen_ros.demos.dataset import iter_episodes

    rgb = tmp_path / "rgb.hdf5"
    add_images(source, rgb, cameras=("robot0_eye_in_hand",), progress=False)
    summary = make_term_negatives(rgb, tmp_path / "neg.hdf5", per_stage=2, progress=False)
    assert summary["cameras"] == ["robot0_eye_in_hand"] and summary["per_kind"]["closed"] == 4
    header, neg = read_negatives(tmp_path / "neg.hdf5", ["robot0_eye_in_hand_image"])
    with h5py.File(tmp_path / "neg.hdf5") as f:
        steps = f["negatives/step"][()]
    ep = next(iter_episodes(rgb))
    images = neg["obs"]["robot0_eye_in_hand_image"]
    assert images.shape == (6, 84, 84, 3) and images.dtype == np.uint8
    images, steps = images[neg["kind"] == 0], steps[neg["kind"] == 0]
    for image, step in zip(images, steps):  # the wrist camera sees the fingers closed, not the recorded open ones
        assert np.abs(image.astype(int) - ep.obs["robot0_eye_in_hand_image"][step]).max(-1).astype(bool).sum() > 50


def test_reading_refuses_other_files(source, tmp_path):
    with pytest.raises(ValueError, match="not a termination negatives file"):
        read_negatives(source, [])
    with pytest.raises(ValueError, match="do not exist"):
        read_negatives(tmp_path / "missing.hdf5", [])
