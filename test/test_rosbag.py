"""Episodes <-> rosbag2 through rosbags: round trips, real-robot style bags and errors."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from scipy.spatial.transform import Rotation

from reinforcegen_ros import messages as M
from reinforcegen_ros.demos import rosbag as RB
from reinforcegen_ros.demos.episode import CONNECT, SKILL, Episode, initiation_poses_from_phases
from reinforcegen_ros.geometry import mat_to_quat, rotvec

STAGES = ["grasp_mug", "place_mug"]
DT = 50_000_000


def random_poses(rng, n: int) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.random(n, random_state=int(rng.integers(1 << 30))).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(n, 3))
    return poses


def make_episode(seed: int, n: int, images: bool = True, initiation: bool = True) -> Episode:
    """A synthetic episode whose observations are consistent with its poses (as TaskEnv.observe)."""
    rng = np.random.default_rng(seed)
    eef = random_poses(rng, n)
    objects = {"mug": random_poses(rng, n), "table": random_poses(rng, n)}
    obs = {
        "robot0_eef_pos": eef[:, :3, 3].copy(),
        "robot0_eef_quat": np.stack([mat_to_quat(p[:3, :3]) for p in eef]),
        "robot0_eef_axis_angle": np.stack([rotvec(p[:3, :3]) for p in eef]),
        "robot0_gripper_qpos": np.c_[rng.uniform(0, 0.04, n), -rng.uniform(0, 0.04, n)],
        "robot0_joint_pos": rng.normal(size=(n, 7)),
        "object": np.concatenate([np.c_[p[:, :3, 3], [mat_to_quat(r[:3, :3]) for r in p]] for p in objects.values()], axis=1),
    }
    if images:
        obs["agentview_image"] = rng.integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
        obs["robot0_eye_in_hand_image"] = rng.integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
    half = n // 2
    stage = np.repeat([0, 1], [half, n - half]).astype(np.int64)
    phase = np.where(np.arange(n) % half < 2, CONNECT, SKILL).astype(np.int64)
    term = {STAGES[0]: (np.arange(n) >= half - 1).astype(np.int64), STAGES[1]: (np.arange(n) == n - 1).astype(np.int64)}
    return Episode(
        actions=rng.uniform(-1, 1, (n, 7)),
        states=rng.normal(size=(n, 23)),
        obs=obs,
        stage=stage,
        phase=phase,
        eef_pose=eef,
        object_poses=objects,
        term_signals=term,
        rewards=(np.arange(n) == n - 1).astype(np.float64),
        success=seed % 2 == 0,
        attrs={"seed": np.int64(seed), "source": "scripted", "ranges": np.array([0.1, 0.2])},
        initiation_pose=random_poses(rng, n) if initiation else None,
    )


@pytest.fixture(scope="module")
def episodes():
    return [make_episode(0, 12), make_episode(1, 9, initiation=False), make_episode(2, 5, images=False)]


def assert_same_episode(a: Episode, b: Episode, exact_obs: bool = True) -> None:
    np.testing.assert_array_equal(b.actions, a.actions)
    assert b.actions.dtype == np.float64
    np.testing.assert_array_equal(b.states, a.states)
    np.testing.assert_array_equal(b.stage, a.stage)
    np.testing.assert_array_equal(b.phase, a.phase)
    assert b.stage.dtype == np.int64 and b.phase.dtype == np.int64
    np.testing.assert_allclose(b.eef_pose, a.eef_pose, rtol=0, atol=1e-12)
    assert list(b.object_poses) == list(a.object_poses)
    for k in a.object_poses:
        np.testing.assert_allclose(b.object_poses[k], a.object_poses[k], rtol=0, atol=1e-12)
    assert set(b.obs) == set(a.obs)
    for k in a.obs:
        assert b.obs[k].dtype == a.obs[k].dtype, k
        if exact_obs:
            np.testing.assert_array_equal(b.obs[k], a.obs[k], err_msg=k)
        else:
            np.testing.assert_allclose(b.obs[k], a.obs[k], rtol=0, atol=1e-12, err_msg=k)
    assert list(b.term_signals) == list(a.term_signals)
    for k in a.term_signals:
        np.testing.assert_array_equal(b.term_signals[k], a.term_signals[k])
        assert b.term_signals[k].dtype == np.int64
    np.testing.assert_array_equal(b.rewards, a.rewards)
    assert b.success == a.success
    expected_init = a.initiation_pose if a.initiation_pose is not None else initiation_poses_from_phases(a.stage, a.phase, a.eef_pose)
    np.testing.assert_allclose(b.initiation_pose, expected_init, rtol=0, atol=1e-12)


@pytest.mark.parametrize("storage", RB.STORAGES)
def test_round_trip_is_lossless(tmp_path, episodes, storage):
    out = RB.episodes_to_bag(episodes, tmp_path / "demos", "mug_task", STAGES, storage=storage, start_ns=10**18)
    assert out == tmp_path / "demos" and (out / "metadata.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["demos"]  # no temporary left behind
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert any(p.suffix == suffix for p in out.iterdir())
    back = RB.bag_to_episodes(out, STAGES, task="mug_task")
    assert len(back) == len(episodes)
    for a, b in zip(episodes, back):
        assert_same_episode(a, b)
        assert b.attrs == {"seed": int(a.attrs["seed"]), "source": "scripted", "ranges": [0.1, 0.2]}


def test_bag_layout(tmp_path, episodes):
    out = RB.episodes_to_bag(episodes, tmp_path / "demos", "mug_task", STAGES, start_ns=0)
    info = RB.bag_info(out)
    assert info["task"] == "mug_task" and info["stage_names"] == STAGES
    assert info["episodes"] == 3 and info["successes"] == 2
    n_steps = sum(len(e) for e in episodes)
    topics = info["topics"]
    assert topics["/eef_command"] == (M.T_EEF_COMMAND, n_steps)
    assert topics["/sim_state"] == (M.T_DEMO_STEP, n_steps)
    assert topics["/joint_states"] == (M.T_JOINT_STATE, n_steps)
    assert topics["/eef_pose"] == (M.T_POSE_STAMPED, n_steps)
    assert topics["/object_poses"] == (M.T_OBJECT_POSES, n_steps)
    assert topics["/stage_status"] == (M.T_STAGE_STATUS, n_steps)
    assert topics["/episode"] == (M.T_EPISODE_MARKER, 6)
    assert topics["/camera/agentview/image_raw"] == (M.T_IMAGE, 12 + 9)
    assert topics["/camera/robot0_eye_in_hand/image_raw"] == (M.T_IMAGE, 12 + 9)

    store = RB.typestore()
    with Reader(out) as reader:
        stamps, status = {}, []
        for conn, t, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            assert M.stamp_from_msg(msg.header.stamp) == t  # header clock == bag clock
            stamps.setdefault(conn.topic, []).append(t)
            if conn.topic == "/stage_status":
                status.append(msg)
    cmd = np.array(stamps["/eef_command"])
    # 20 Hz within an episode, a gap between episodes
    np.testing.assert_array_equal(np.diff(cmd[:12]), DT)
    assert cmd[12] - cmd[11] == (1 + RB.EPISODE_GAP_STEPS) * DT
    first = episodes[0]
    assert [s.stage_name for s in status[:12]] == [STAGES[k] for k in first.stage]
    assert [s.phase for s in status[:12]] == ["connect" if p == CONNECT else "skill" for p in first.phase]
    assert [s.termination_probability for s in status[:12]] == [float(first.term_signals[STAGES[k]][t]) for t, k in enumerate(first.stage)]


def test_images_can_be_left_out(tmp_path, episodes):
    out = RB.episodes_to_bag(episodes[:1], tmp_path / "b", "mug_task", STAGES, images=False, start_ns=0)
    assert not any(t.startswith("/camera") for t in RB.bag_info(out)["topics"])
    back = RB.bag_to_episodes(out)[0]
    assert "agentview_image" not in back.obs and "robot0_joint_pos" in back.obs


def test_existing_output_is_an_error(tmp_path, episodes):
    target = tmp_path / "demos"
    target.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        RB.episodes_to_bag(episodes, target, "mug_task", STAGES)
    assert list(target.iterdir()) == []


def test_invalid_episode_leaves_nothing_behind(tmp_path):
    bad = make_episode(3, 6)
    bad.actions[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RB.episodes_to_bag([make_episode(4, 5), bad], tmp_path / "demos", "mug_task", STAGES, start_ns=0)
    assert list(tmp_path.iterdir()) == []
    wrong_stages = make_episode(5, 4)
    with pytest.raises(ValueError, match="do not match the stage names"):
        RB.episodes_to_bag([wrong_stages], tmp_path / "demos", "mug_task", ["a", "b"])
    with pytest.raises(ValueError, match="unknown bag storage"):
        RB.episodes_to_bag([wrong_stages], tmp_path / "demos", "mug_task", STAGES, storage="rosbag1")
    assert list(tmp_path.iterdir()) == []


def test_stage_and_task_mismatch_are_errors(tmp_path, episodes):
    out = RB.episodes_to_bag(episodes[:1], tmp_path / "b", "mug_task", STAGES, start_ns=0)
    with pytest.raises(ValueError, match="expected \\['a'\\]"):
        RB.bag_to_episodes(out, ["a"])
    with pytest.raises(ValueError, match="not 'coffee'"):
        RB.bag_to_episodes(out, task="coffee")


def copy_without(src, dst, drop: set[str]):
    """Copy a bag, leaving out the topics in ``drop``."""
    with Reader(src) as reader, _writer(dst) as writer:
        conns = {}
        for c in reader.connections:
            if c.topic not in drop:
                conns[c.id] = writer.add_connection(c.topic, c.msgtype, typestore=RB.typestore())
        for c, t, raw in reader.messages():
            if c.id in conns:
                writer.write(conns[c.id], t, raw)


class _writer:
    def __init__(self, path):
        self.w = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)

    def __enter__(self):
        self.w.open()
        return self.w

    def __exit__(self, *exc):
        self.w.close()


def test_bag_without_sim_state_is_rebuilt_from_standard_topics(tmp_path, episodes):
    full = RB.episodes_to_bag(episodes, tmp_path / "full", "mug_task", STAGES, start_ns=0)
    copy_without(full, tmp_path / "robot", {"/sim_state"})
    back = RB.bag_to_episodes(tmp_path / "robot", STAGES)
    assert len(back) == 3
    for a, b in zip(episodes, back):
        np.testing.assert_array_equal(b.actions, a.actions)
        np.testing.assert_array_equal(b.stage, a.stage)
        np.testing.assert_array_equal(b.phase, a.phase)
        for k in a.obs:  # rebuilt observations match the simulator's
            np.testing.assert_allclose(b.obs[k], a.obs[k], rtol=0, atol=1e-12, err_msg=k)
        assert b.states.shape == (len(a), 0) and b.term_signals == {}
        expected_init = a.initiation_pose if a.initiation_pose is not None else initiation_poses_from_phases(a.stage, a.phase, a.eef_pose)
        np.testing.assert_allclose(b.initiation_pose, expected_init, rtol=0, atol=1e-12)  # from StageStatus.target_pose
        assert b.success == a.success and b.attrs["bag_missing"] == ["/sim_state"]


def test_teleop_bag_at_other_rates(tmp_path):
    """No markers, no /sim_state: commands at 10 Hz define steps; poses (30 Hz) are sampled and held."""
    store = RB.typestore()
    m = M.MsgClasses.from_typestore(store)
    t0 = 5 * 10**9
    poses = random_poses(np.random.default_rng(0), 31)
    with _writer(tmp_path / "teleop") as w:
        c_pose = w.add_connection("/eef_pose", M.T_POSE_STAMPED, typestore=store)
        c_cmd = w.add_connection("/eef_command", M.T_EEF_COMMAND, typestore=store)
        c_status = w.add_connection("/stage_status", M.T_STAGE_STATUS, typestore=store)
        for i in range(31):  # 30 Hz from t0
            t = t0 + i * 33_333_333
            w.write(c_pose, t + 1000, store.serialize_cdr(M.pose_stamped_to_msg(poses[i], t, m), M.T_POSE_STAMPED))
        for i in range(10):  # 10 Hz commands, starting 10 ms in
            t = t0 + 10_000_000 + i * 100_000_000
            w.write(c_cmd, t, store.serialize_cdr(M.action_to_msg(np.full(7, i / 10), t, m), M.T_EEF_COMMAND))
        for i, (phase, stage) in enumerate([("predict", 0), ("skill", 0), ("plan", 1), ("done", 1)]):
            t = t0 + 250_000_000 * (i + 1)
            w.write(c_status, t, store.serialize_cdr(M.stage_status_to_msg(t, stage, "s", phase, m), M.T_STAGE_STATUS))
    (ep,) = RB.bag_to_episodes(tmp_path / "teleop")
    assert len(ep) == 10
    np.testing.assert_array_equal(ep.actions[:, 0], np.arange(10) / 10)
    cmd_t = 10_000_000 + np.arange(10) * 100_000_000
    expect = poses[cmd_t // 33_333_333]  # latest pose at or before each command
    np.testing.assert_allclose(ep.eef_pose, expect, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ep.stage, [-1, -1, -1, 0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ep.phase, [-1, -1, -1, CONNECT, CONNECT, SKILL, SKILL, SKILL, CONNECT, CONNECT])
    assert ep.success  # last status says done
    assert ep.object_poses == {} and "robot0_joint_pos" not in ep.obs
    assert ep.attrs["bag_missing"] == ["/sim_state", "/object_poses", "/joint_states"]


def test_bag_missing_required_topics(tmp_path, episodes):
    full = RB.episodes_to_bag(episodes[:1], tmp_path / "full", "mug_task", STAGES, start_ns=0)
    copy_without(full, tmp_path / "no_cmd", {"/eef_command"})
    with pytest.raises(ValueError, match="no /eef_command .*needs the actions"):
        RB.bag_to_episodes(tmp_path / "no_cmd")
    copy_without(full, tmp_path / "no_pose", {"/eef_pose"})
    with pytest.raises(ValueError, match="no /eef_pose .*needs the end-effector poses"):
        RB.bag_to_episodes(tmp_path / "no_pose")


def test_wrong_type_on_a_known_topic(tmp_path):
    store = RB.typestore()
    m = M.MsgClasses.from_typestore(store)
    with _writer(tmp_path / "bag") as w:
        c = w.add_connection("/eef_command", M.T_POSE_STAMPED, typestore=store)
        w.write(c, 1, store.serialize_cdr(M.pose_stamped_to_msg(np.eye(4), 1, m), M.T_POSE_STAMPED))
    with pytest.raises(ValueError, match="/eef_command has type geometry_msgs/msg/PoseStamped"):
        RB.bag_to_episodes(tmp_path / "bag")
