"""Hybrid skill policy: components, imitation training, checkpoints and the agent interface.

Everything runs on tiny synthetic episodes (no simulator) with a learnable
mapping: the initiation pose is a fixed offset from the stage's reference
object, skill actions point from the gripper to the object, and the
termination signals follow the gripper closing (stage 0) and opening again at
the end of stage 1.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from reinforcegen_ros.demos.dataset import dataset_attrs, write_dataset
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.policies.configuration_hsp import HSPConfig
from reinforcegen_ros.policies.encoders import ObservationSpec, RandomShift, matrix_to_rot6d, quat_to_matrix, rotvec_to_matrix
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.policies.pose_predictor import geodesic_angle, rot6d_to_matrix
from reinforcegen_ros.tasks.base import Stage
from reinforcegen_ros.training.loop import register_cli, train_hsp
from reinforcegen_ros.training.hsp_dataset import component_indices, load_steps, sequence_windows, split_episodes

STAGES = ("grasp_pod", "insert_pod_close_lid")
OBJECTS = ("pod", "coffee_machine")
R_DOWN = np.diag([1.0, -1.0, -1.0])  # gripper pointing down
CONNECT, SKILL, CLOSE = 6, 8, 3  # steps per phase; the gripper closes in the last CLOSE skill steps
TINY = {
    "hidden_dim": 48,
    "encoder_layers": 2,
    "head_layers": 1,
    "cnn_channels": [8, 8, 8, 8],
    "image_feature_dim": 16,
    "proprio_feature_dim": 16,
    "rnn_hidden": 32,
    "rnn_seq_len": 4,
    "batch_size": 32,
    "lr": 3e-3,
    "val_fraction": 0.25,
    "epochs": 1,
    "num_threads": 1,
    "policy_head": "mlp",  # regression losses fall towards 0; the GMM head is tested on its own below
}


def pose(pos, rot) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, pos
    return out


def rot_z(a: float) -> np.ndarray:
    return Rotation.from_euler("z", a).as_matrix()


def draw_square(img: np.ndarray, xy: np.ndarray, color) -> None:
    """A 10-pixel square whose place encodes a table position in [-0.3, 0.3]^2."""
    r, c = (np.clip((xy + 0.3) / 0.6, 0, 1) * 70).astype(int)
    img[r : r + 10, c : c + 10] = color


def synthetic_hsp_episode(seed: int, images: bool = False) -> Episode:
    """Two stages (connect + skill each) with learnable labels; optional 84x84 images of the objects."""
    rng = np.random.default_rng(seed)
    obj_pos = np.column_stack([rng.uniform(-0.25, 0.25, (2, 2)), np.full(2, 0.85)])
    yaws = rng.uniform(-np.pi, np.pi, 2)
    obj_poses = [pose(p, rot_z(y)) for p, y in zip(obj_pos, yaws)]
    init = [pose(p + [0, 0, 0.1], rot_z(y) @ R_DOWN) for p, y in zip(obj_pos, yaws)]
    eef, stage, phase, inits, actions, closed = [], [], [], [], [], []
    here = np.array([0.0, 0.0, 1.1])
    for k in range(2):
        target = init[k][:3, 3]
        for i in range(CONNECT):
            here = here + (target - here) * (i + 1) / CONNECT
            eef.append(pose(here, rot_z(yaws[k] * i / CONNECT) @ R_DOWN))
            stage.append(k), phase.append(0), inits.append(init[k])
            actions.append(np.r_[np.clip((target - here) / 0.05, -1, 1), 0, 0, 0, -1 if k == 0 else 1])
            closed.append(k == 1)
        for i in range(SKILL):
            here = target + (obj_pos[k] + [0, 0, 0.02] - target) * (i + 1) / SKILL
            eef.append(pose(here, init[k][:3, :3]))
            stage.append(k), phase.append(1), inits.append(init[k])
            done = i >= SKILL - CLOSE  # stage 0 closes the gripper, stage 1 opens it to release
            grip = 1.0 if done == (k == 0) else -1.0
            actions.append(np.r_[np.clip((obj_pos[k] - here) / 0.05, -1, 1), 0.3 * np.sin(yaws[k]), 0, 0, grip])
            closed.append(grip > 0)
    n = len(eef)
    eef, closed = np.array(eef), np.array(closed)
    stage, phase = np.array(stage), np.array(phase)
    quats = [Rotation.from_matrix(p[:3, :3]).as_quat() for p in obj_poses]
    obs = {
        "robot0_eef_pos": eef[:, :3, 3],
        "robot0_eef_axis_angle": Rotation.from_matrix(eef[:, :3, :3]).as_rotvec(),
        "robot0_gripper_qpos": np.where(closed[:, None], [0.0, 0.0], [0.04, -0.04]) + rng.normal(0, 1e-3, (n, 2)),
        "robot0_joint_pos": np.linspace(-1, 1, 7) + rng.normal(0, 1e-3, (n, 7)),
        "object": np.tile(np.concatenate([np.r_[p, q] for p, q in zip(obj_pos, quats)]), (n, 1)),
    }
    if images:
        for cam, color in (("agentview", (255, 0, 0)), ("robot0_eye_in_hand", (0, 255, 0))):
            img = np.zeros((n, 84, 84, 3), np.uint8)
            for t in range(n):
                draw_square(img[t], obj_pos[stage[t], :2] if cam == "agentview" else eef[t, :2, 3], color)
            obs[f"{cam}_image"] = img
    return Episode(
        actions=np.array(actions),
        states=np.zeros((n, 3)),
        obs=obs,
        stage=stage,
        phase=phase,
        eef_pose=eef,
        object_poses={name: np.repeat(p[None], n, 0) for name, p in zip(OBJECTS, obj_poses)},
        term_signals={STAGES[0]: ((stage == 1) | closed).astype(np.int64), STAGES[1]: ((stage == 1) & (phase == 1) & ~closed).astype(np.int64)},
        rewards=np.zeros(n),
        success=True,
        initiation_pose=np.array(inits),
    )


@pytest.fixture(scope="module")
def episodes():
    return [synthetic_hsp_episode(s) for s in range(24)]


@pytest.fixture(scope="module")
def rgb_episodes():
    return [synthetic_hsp_episode(s, images=True) for s in range(4)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, episodes):
    """A privileged MLP agent trained for a few epochs (shared by several tests)."""
    out = tmp_path_factory.mktemp("hsp") / "priv"
    result = train_hsp("coffee", episodes, out, "privileged", {**TINY, "epochs": 15, "batch_size": 16}, progress=False)
    return out, result


def obs_at(ep: Episode, t: int) -> dict:
    return {k: v[t] for k, v in ep.obs.items()}


def write_h5(path, episodes, task="coffee"):
    stages = [Stage(STAGES[0], OBJECTS[0], ""), Stage(STAGES[1], OBJECTS[1], "")]
    return write_dataset(path, episodes, dataset_attrs({"env_name": "Coffee", "type": 1, "env_kwargs": {}}, task, stages))


# ---------------------------------------------------------------------- rotations
def test_rotation_features_match_scipy_and_6d_round_trips():
    rng = np.random.default_rng(0)
    rots = Rotation.random(50, random_state=1)
    assert np.allclose(quat_to_matrix(rots.as_quat()), rots.as_matrix(), atol=1e-9)
    vecs = rots.as_rotvec()
    vecs[0] = [np.pi, 0, 0]  # gripper pointing down: where axis-angle flips sign
    assert np.allclose(rotvec_to_matrix(vecs), Rotation.from_rotvec(vecs).as_matrix(), atol=1e-9)
    # axis-angle's sign flip at pi gives the same 6D features (continuous input)
    assert np.allclose(matrix_to_rot6d(rotvec_to_matrix(np.array([np.pi - 1e-6, 0, 0]))), matrix_to_rot6d(rotvec_to_matrix(np.array([-np.pi + 1e-6, 0, 0]))), atol=1e-5)
    mats = torch.from_numpy(rots.as_matrix())
    back = rot6d_to_matrix(torch.cat([mats[..., :, 0], mats[..., :, 1]], -1) * 3.0)  # scale-invariant
    assert torch.allclose(back, mats, atol=1e-9)
    noisy = rot6d_to_matrix(torch.from_numpy(rng.normal(size=(20, 6))))
    assert torch.allclose(noisy.transpose(-1, -2) @ noisy, torch.eye(3, dtype=noisy.dtype).expand(20, 3, 3), atol=1e-9)
    assert torch.allclose(torch.linalg.det(noisy), torch.ones(20, dtype=noisy.dtype))
    quarter = torch.from_numpy(rot_z(np.pi / 2))[None]
    assert geodesic_angle(quarter, torch.eye(3, dtype=quarter.dtype)[None]).item() == pytest.approx(np.pi / 2, abs=1e-6)
    assert geodesic_angle(quarter, quarter).item() < 2e-3


def test_relative_object_features_are_object_minus_gripper_position():
    spec = ObservationSpec.for_mode("privileged", 14, HSPConfig(relative_objects=True))
    plain = ObservationSpec.for_mode("privileged", 14, HSPConfig(relative_objects=False))
    assert spec.feature_dim == plain.feature_dim + 6
    obs = {"robot0_eef_pos": np.array([0.1, 0.2, 1.0]), "robot0_eef_axis_angle": np.array([np.pi, 0, 0]),
           "robot0_gripper_qpos": np.zeros(2), "robot0_joint_pos": np.zeros(7),
           "object": np.array([0.3, 0.2, 0.9, 0, 0, 0, 1, -0.1, 0.0, 1.2, 0, 0, 1, 0])}
    feats = spec.lowdim(obs)[0]
    np.testing.assert_allclose(feats[: plain.feature_dim], plain.lowdim(obs)[0])
    np.testing.assert_allclose(feats[plain.feature_dim :], [0.2, 0.0, -0.1, -0.2, -0.2, 0.2], atol=1e-6)
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    np.testing.assert_allclose(spec.lowdim(batch, batched=True), np.stack([feats, feats]))
    assert not ObservationSpec.from_dict({k: v for k, v in plain.to_dict().items() if k != "relative_objects"}).relative_objects


# ---------------------------------------------------------------------- samples
def test_samples_per_component_and_episode_split(episodes):
    cfg = HSPConfig(**{**TINY, "term_next_stage_steps": 4})
    spec = ObservationSpec.for_mode("privileged", 14, cfg)
    data = load_steps(episodes[:12], spec, list(STAGES))
    assert len(data) == sum(len(ep) for ep in episodes[:12]) and data.num_episodes == 12
    train, val = split_episodes(12, 0.25, seed=0)
    assert len(val) == 3 and not set(train) & set(val) and len(train) + len(val) == 12
    pose = component_indices(data, 0, "pose", train)
    policy = component_indices(data, 0, "policy", train)
    term = component_indices(data, 0, "term", train, next_stage_steps=4)
    assert (data.phase[pose] == 0).all() and (data.phase[policy] == 1).all() and (data.stage[pose] == 0).all()
    assert len(pose) == 9 * CONNECT and len(policy) == 9 * SKILL
    assert len(term) == 9 * (SKILL + 4) and (data.term[term, 0][data.stage[term] == 1] == 1).all()  # next stage's first steps: positives
    assert not set(data.episode[component_indices(data, 1, "policy", val)]) & set(train)
    windows, mask = sequence_windows(data, policy, 4)
    assert windows.shape == (len(policy), 4)
    for w, m in zip(windows, mask):  # consecutive steps of one episode's skill segment; padding masked
        assert (np.diff(w[m]) == 1).all() and len(set(data.episode[w])) == 1 and m[0]
    assert mask.sum() == 9 * sum(min(4, SKILL - i) for i in range(SKILL))


# ---------------------------------------------------------------------- training
def test_training_reduces_validation_loss_on_learnable_mapping(trained):
    out, result = trained
    first, last = result["history"][0]["val"], result["history"][-1]["val"]
    assert result["history"][0]["epoch"] == 0 and result["epochs"] == 15
    for key in first:
        assert last[key]["loss"] < 0.5 * first[key]["loss"], (key, first[key], last[key])
    for k in (0, 1):  # 18 training episodes = 18 distinct initiation poses: the position generalises only roughly
        assert last[f"stage{k}.pose"]["pos_err_m"] < 0.75 * first[f"stage{k}.pose"]["pos_err_m"]
        assert last[f"stage{k}.pose"]["rot_err_deg"] < 0.5 * first[f"stage{k}.pose"]["rot_err_deg"]
        assert last[f"stage{k}.term"]["accuracy"] > 0.9
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    for stage in STAGES:
        for comp in ("pose", "policy", "term"):
            assert f"train/{stage}/{comp}_loss" in tags and f"val/{stage}/{comp}_loss" in tags
    assert [e.step for e in events.Scalars(f"val/{STAGES[0]}/pose_loss")] == list(range(16))  # epoch 0 = untrained


@pytest.mark.parametrize(
    "extra,mse_ratio",
    [({"recurrent": True, "policy_head": "mlp"}, 0.5), ({"policy_head": "gmm"}, 0.8), ({"policy_head": "gmm", "recurrent": True}, None)],
)
def test_gmm_and_recurrent_skill_policies_learn(tmp_path, episodes, extra, mse_ratio):
    """NLL (GMM) or MSE falls; the GMM's mode mean improves more slowly than the regression head
    (GMM + GRU: in 12 epochs on this tiny set only the likelihood is checked)."""
    result = train_hsp("coffee", episodes[:12], tmp_path / "p", "privileged", {**TINY, **extra, "epochs": 12, "batch_size": 16}, progress=False)
    first, last = result["history"][0]["val"], result["history"][-1]["val"]
    for k in (0, 1):
        assert last[f"stage{k}.policy"]["loss"] < first[f"stage{k}.policy"]["loss"] - (2.0 if extra.get("policy_head") == "gmm" else 0.0)
        if mse_ratio is not None:
            assert last[f"stage{k}.policy"]["mse"] < mse_ratio * first[f"stage{k}.policy"]["mse"]


def test_agent_predictions_on_held_out_episode(trained):
    out, result = trained
    torch.set_num_threads(2)
    agent = HybridSkillPolicy.load(out, task="coffee", obs_mode="privileged")
    assert agent.num_stages == 2 and agent.task == "coffee" and agent.obs_mode == "privileged"
    assert torch.get_num_threads() == 1  # inference_threads
    held_out = [synthetic_hsp_episode(1000 + i) for i in range(6)]  # never seen
    t = 2  # connect step of stage 0
    errors, baseline = [], []
    for ep in held_out:
        predicted = agent.predict_pose(obs_at(ep, t), 0)
        assert predicted.shape == (4, 4) and np.allclose(predicted[:3, :3].T @ predicted[:3, :3], np.eye(3), atol=1e-5)
        errors.append(np.linalg.norm(predicted[:3, 3] - ep.initiation_pose[t][:3, 3]))
        baseline.append(np.linalg.norm(ep.initiation_pose[t][:3, 3] - agent.component(0, "pose").pos_mean.numpy()))
    assert np.mean(errors) < np.mean(baseline)  # better than predicting the training mean
    ep = held_out[0]
    action = agent.act(obs_at(ep, CONNECT + 1), 0)
    assert action.shape == (7,) and np.all(np.abs(action) <= 1)
    assert 0.0 <= agent.termination_prob(obs_at(ep, CONNECT), 0) < 0.5 < agent.termination_prob(obs_at(ep, CONNECT + SKILL - 1), 0)


@pytest.mark.parametrize(
    "mode,extra",
    [("privileged", {}), ("privileged", {"policy_head": "gmm", "recurrent": True, "pose_modes": 3}), ("rgb", {"recurrent": True})],
)
def test_save_load_round_trip_is_exact(tmp_path, episodes, rgb_episodes, mode, extra):
    data = rgb_episodes if mode == "rgb" else episodes[:4]
    result = train_hsp("coffee", data, tmp_path / "run", mode, {**TINY, **extra, "epochs": 2}, progress=False)
    trained_agent = result["policy"]
    loaded = HybridSkillPolicy.load(tmp_path / "run", task="coffee", obs_mode=mode)
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_file()) == [
        "checkpoint-e0002.safetensors", "checkpoint.json", "config.json", "model.safetensors"
    ]
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["task"] == "coffee" and meta["obs_mode"] == mode and meta["stages"] == list(STAGES)
    for a, b in zip(trained_agent.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    ep = data[0]
    trained_agent.reset(), loaded.reset()
    for t in (0, CONNECT, CONNECT + 1, CONNECT + 2):
        for stage in (0, 1):
            o = obs_at(ep, t)
            assert np.array_equal(trained_agent.predict_pose(o, stage), loaded.predict_pose(o, stage))
            assert np.array_equal(trained_agent.act(o, stage), loaded.act(o, stage))
            assert trained_agent.termination_prob(o, stage) == loaded.termination_prob(o, stage)


def test_gmm_action_draws_modes_by_weight_or_takes_the_most_probable():
    from reinforcegen_ros.policies.encoders import LowDimEncoder
    from reinforcegen_ros.policies.skill_policy import SkillPolicy

    policy = SkillPolicy(LowDimEncoder(3, 8, 0), hidden=8, layers=0, head="gmm", modes=2, action_dim=1)
    with torch.no_grad():  # weights 0.25 / 0.75; means -1 / +1
        policy.head[0].weight.zero_()
        policy.head[0].bias.copy_(torch.tensor([0.0, float(np.log(3.0)), -1.0, 1.0, 0.0, 0.0]))
    x = torch.zeros(1, 3)
    assert {policy.action(x)[0].item() for _ in range(20)} == {1.0}
    draws = [policy.action(x, sample=True, generator=torch.Generator().manual_seed(s))[0].item() for s in range(400)]
    assert set(draws) == {-1.0, 1.0} and 0.18 < draws.count(-1.0) / 400 < 0.32
    again = [policy.action(x, sample=True, generator=torch.Generator().manual_seed(s))[0].item() for s in range(400)]
    assert again == draws


def test_agent_gmm_draws_restart_with_the_episode_seed(tmp_path, episodes):
    agent = train_hsp("coffee", episodes[:3], tmp_path / "g", "privileged", {**TINY, "policy_head": "gmm", "epochs": 1}, progress=False)["policy"]
    assert agent.config.gmm_action == "sample"
    o = obs_at(episodes[0], CONNECT + 1)

    def play(seed):
        agent.set_episode_seed(seed)
        return np.stack([agent.act(o, 0) for _ in range(30)])

    first = play(7)
    assert np.array_equal(play(7), first) and not np.array_equal(play(8), first)
    assert len({a.tobytes() for a in first}) > 1  # untrained: several modes carry weight
    agent.set_gmm_action("mode")
    assert len({a.tobytes() for a in play(7)}) == 1
    with pytest.raises(ValueError, match="gmm_action"):
        agent.set_gmm_action("mean")


def test_recurrent_policy_keeps_hidden_state_and_reset_clears_it(tmp_path, episodes):
    cfg = {**TINY, "recurrent": True, "epochs": 1}
    agent = train_hsp("coffee", episodes[:3], tmp_path / "gru", "privileged", cfg, progress=False)["policy"]
    o = obs_at(episodes[0], CONNECT + 1)
    first, second = agent.act(o, 0), agent.act(o, 0)
    assert not np.array_equal(first, second)  # the hidden state carried over
    agent.reset()
    assert np.array_equal(agent.act(o, 0), first)
    other = agent.act(o, 1)  # each stage keeps its own state
    assert np.array_equal(agent.act(o, 0), second) and other.shape == (7,)


def test_resume_continues_the_step_counter_and_matches_an_uninterrupted_run(tmp_path, episodes):
    data = episodes[:6]
    straight = train_hsp("coffee", data, tmp_path / "a", "privileged", {**TINY, "epochs": 3}, progress=False)
    first = train_hsp("coffee", data, tmp_path / "b", "privileged", {**TINY, "epochs": 1}, progress=False)
    steps_per_epoch = first["step"]
    assert steps_per_epoch > 0 and json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == steps_per_epoch
    resumed = train_hsp("coffee", data, tmp_path / "b", "privileged", {**TINY, "epochs": 3}, progress=False)
    assert resumed["step"] == straight["step"] == 3 * steps_per_epoch
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3]
    assert resumed["history"][1] == first["history"][1]
    for a, b in zip(straight["policy"].state_dict().values(), resumed["policy"].state_dict().values()):
        assert torch.equal(a, b)
    again = train_hsp("coffee", data, tmp_path / "b", "privileged", {**TINY, "epochs": 3}, progress=False)
    assert again["step"] == resumed["step"]  # finished: nothing more to do
    assert len(list((tmp_path / "b").glob("checkpoint-e*.safetensors"))) == 1


def test_resume_refuses_other_settings_or_data_and_restart_starts_over(tmp_path, episodes, rgb_episodes):
    train_hsp("coffee", episodes[:3], tmp_path / "r", "privileged", TINY, progress=False)
    with pytest.raises(ValueError, match="other settings.*hidden_dim") as err:
        train_hsp("coffee", episodes[:3], tmp_path / "r", "privileged", {**TINY, "hidden_dim": 16}, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="another dataset"):
        train_hsp("coffee", episodes[:4], tmp_path / "r", "privileged", TINY, progress=False)
    train_hsp("coffee", rgb_episodes, tmp_path / "rgb", "rgb", TINY, progress=False)
    with pytest.raises(ValueError, match="obs_mode 'rgb', not 'privileged'"):
        train_hsp("coffee", rgb_episodes, tmp_path / "rgb", "privileged", TINY, progress=False)
    fresh = train_hsp("coffee", episodes[:3], tmp_path / "r", "privileged", {**TINY, "hidden_dim": 16}, resume=False, progress=False)
    assert fresh["history"][-1]["epoch"] == 1 and fresh["policy"].config.hidden_dim == 16


def test_output_directory_with_foreign_files_is_refused(tmp_path, episodes):
    out = tmp_path / "o"
    out.mkdir()
    (out / "config.json").write_text('{"unrelated": true}')
    with pytest.raises(ValueError, match="not written by 'reinforcegen train'"):
        train_hsp("coffee", episodes[:3], out, "privileged", TINY, resume=False, progress=False)
    assert (out / "config.json").read_text() == '{"unrelated": true}'


# ---------------------------------------------------------------------- errors
def test_load_refuses_other_task_obs_mode_and_broken_directories(trained, tmp_path):
    out, _ = trained
    for kwargs, pattern in (({"task": "threading"}, "task 'coffee', not 'threading'"), ({"obs_mode": "rgb"}, "mode 'privileged', not 'rgb'")):
        with pytest.raises(ValueError, match=pattern) as err:
            HybridSkillPolicy.load(out, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="does not exist"):
        HybridSkillPolicy.load(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        HybridSkillPolicy.load(broken)
    (broken / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(ValueError, match="lacks model.safetensors"):
        HybridSkillPolicy.load(broken)
    (broken / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="does not match"):
        HybridSkillPolicy.load(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        HybridSkillPolicy.load(broken)


def test_invalid_observations_raise(trained, rgb_episodes, tmp_path):
    agent = HybridSkillPolicy.load(trained[0])
    o = obs_at(synthetic_hsp_episode(5), 0)
    bad = {**o, "robot0_eef_pos": np.array([np.nan, 0.0, 1.0])}
    for call in (agent.predict_pose, agent.act, agent.termination_prob):
        with pytest.raises(ValueError, match="robot0_eef_pos.*NaN"):
            call(bad, 0)
    with pytest.raises(ValueError, match="lacks 'object'"):
        agent.act({k: v for k, v in o.items() if k != "object"}, 0)
    with pytest.raises(ValueError, match="out of range"):
        agent.act(o, 2)
    frozen = {k: v.copy() for k, v in o.items()}
    for v in frozen.values():
        v.flags.writeable = False  # e.g. buffers from a ROS message
    assert np.array_equal(agent.act(frozen, 0), agent.act(o, 0))
    rgb = train_hsp("coffee", rgb_episodes, tmp_path / "rgb", "rgb", TINY, progress=False)["policy"]
    o = obs_at(rgb_episodes[0], 0)
    with pytest.raises(ValueError, match="lacks 'agentview_image'"):
        rgb.act({k: v for k, v in o.items() if k != "agentview_image"}, 0)
    frozen = {k: v.copy() for k, v in o.items()}
    frozen["agentview_image"].flags.writeable = False
    assert np.array_equal(rgb.predict_pose(frozen, 1), rgb.predict_pose(o, 1))
    with pytest.raises(ValueError, match="agentview_image.*NaN"):
        rgb.act({**o, "agentview_image": np.full((84, 84, 3), np.nan)}, 0)
    with pytest.raises(ValueError, match="robot0_joint_pos.*NaN"):
        rgb.termination_prob({**o, "robot0_joint_pos": np.full(7, np.nan)}, 0)


def strip(ep: Episode, **changes) -> Episode:
    fields = dict(ep.__dict__)
    fields.update(changes)
    return Episode(**fields)


@pytest.mark.parametrize(
    "change,mode,pattern",
    [
        ({"initiation_pose": None}, "privileged", "lacks initiation_pose"),
        ({"term_signals": {STAGES[0]: np.zeros(28)}}, "privileged", f"lacks term_signals\\['{STAGES[1]}'\\]"),
        ({"phase": np.full(28, -1)}, "privileged", "no CONNECT-phase steps of stage 'grasp_pod'"),
        ({}, "rgb", "lacks obs/agentview_image; render them"),
    ],
)
def test_missing_labels_are_one_line_errors(tmp_path, episodes, change, mode, pattern):
    data = [strip(ep, **change) for ep in episodes[:3]]
    with pytest.raises(ValueError, match=pattern) as err:
        train_hsp("coffee", data, tmp_path / "x", mode, TINY, progress=False)
    assert "\n" not in str(err.value)


def test_hdf5_dataset_label_and_task_checks(tmp_path, episodes):
    import h5py

    path = write_h5(tmp_path / "d.hdf5", episodes[:3])
    with h5py.File(path, "a") as f:
        del f["data/demo_1/datagen_info/initiation_pose"]
    with pytest.raises(ValueError, match="demo_1.*lacks datagen_info/initiation_pose"):
        train_hsp("coffee", path, tmp_path / "x", "privileged", TINY, progress=False)
    with pytest.raises(ValueError, match="lacks obs/agentview_image"):
        train_hsp("coffee", write_h5(tmp_path / "e.hdf5", episodes[:3]), tmp_path / "x", "rgb", TINY, progress=False)
    with pytest.raises(ValueError, match="task 'threading', not 'coffee'"):
        train_hsp("coffee", write_h5(tmp_path / "t.hdf5", episodes[:3], task="threading"), tmp_path / "x", "privileged", TINY, progress=False)


# ---------------------------------------------------------------------- augmentation, CLI
def test_random_shift_augments_in_training_only():
    shift = RandomShift(4)
    x = torch.rand(8, 3, 84, 84)
    shift.eval()
    assert torch.equal(shift(x), x)
    shift.train()
    torch.manual_seed(0)
    y = shift(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    padded = torch.nn.functional.pad(x, (4,) * 4, mode="replicate")
    for i in range(8):  # every output is an integer translation of its own image
        assert any(torch.equal(y[i], padded[i, :, r : r + 84, c : c + 84]) for r in range(9) for c in range(9))


def test_train_command(tmp_path, episodes, capsys):
    path = write_h5(tmp_path / "gen.hdf5", episodes[:4])
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    config = tmp_path / "hsp.yaml"
    config.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in TINY.items()))
    argv = ["train", "--task", "coffee", "--dataset", str(path), "--obs", "privileged", "--out", str(tmp_path / "run"), "--config", str(config)]
    args = parser.parse_args([*argv, "--epochs", "2"])
    args.func(args)
    assert "trained 2 epochs" in capsys.readouterr().out
    agent = HybridSkillPolicy.load(tmp_path / "run", task="coffee", obs_mode="privileged")
    assert agent.info["epochs"] == 2 and agent.config.hidden_dim == TINY["hidden_dim"]
    args = parser.parse_args([*argv, "--epochs", "3"])  # the same command with more epochs resumes
    args.func(args)
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 3
    with pytest.raises(ValueError, match="unknown HSP setting"):
        config.write_text("hiden_dim: 3\n")
        parser.parse_args(argv).func(parser.parse_args(argv))


def test_registering_the_train_command_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, argparse; from reinforcegen_ros.training.loop import register_cli; register_cli(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_best_val_weights_come_from_each_components_lowest_validation_epoch(tmp_path, episodes):
    data = episodes[:6]
    cfg = {**TINY, "epochs": 4, "lr": 0.05, "weights": "best_val"}  # a large step size makes validation losses jump
    best = train_hsp("coffee", data, tmp_path / "best", "privileged", cfg, progress=False)
    history, chosen = best["history"], best["policy"].info["weights_epochs"]
    for key, epoch in chosen.items():
        losses = [h["val"][key]["loss"] for h in history[1:]]
        assert epoch == 1 + int(np.argmin(losses))
    assert any(epoch < 4 for epoch in chosen.values())  # otherwise this test shows nothing
    # each component holds exactly the weights of a run stopped at its chosen epoch
    for epoch in sorted(set(chosen.values())):
        short = train_hsp("coffee", data, tmp_path / f"e{epoch}", "privileged", {**cfg, "epochs": epoch, "weights": "last"}, progress=False)
        for key, e in chosen.items():
            if e == epoch:
                stage, comp = int(key.split(".")[0][5:]), key.split(".")[1]
                mine, theirs = best["policy"].component(stage, comp).state_dict(), short["policy"].component(stage, comp).state_dict()
                assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # the best weights survive a resume, and a finished run switches to the last epoch's weights when rerun
    train_hsp("coffee", data, tmp_path / "resumed", "privileged", {**cfg, "epochs": 2}, progress=False)
    resumed = train_hsp("coffee", data, tmp_path / "resumed", "privileged", cfg, progress=False)
    assert resumed["policy"].info["weights_epochs"] == chosen
    assert all(torch.equal(a, b) for a, b in zip(best["policy"].state_dict().values(), resumed["policy"].state_dict().values()))
    last = train_hsp("coffee", data, tmp_path / "resumed", "privileged", {**cfg, "weights": "last"}, progress=False)
    assert set(last["policy"].info["weights_epochs"].values()) == {4}
    loaded = HybridSkillPolicy.load(tmp_path / "resumed")
    assert loaded.info["weights"] == "last" and loaded.info["best_val"] == resumed["policy"].info["best_val"]


def bimodal_pose_batch(n: int, rng: np.random.Generator):
    """Inputs x in [-1, 1]^2 and poses whose yaw is 2x[0], turned by 180 degrees in a random half (two grasps)."""
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    yaw = 2 * x[:, 0] + np.pi * rng.integers(0, 2, n)
    target = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    target[:, :3, :3] = Rotation.from_euler("z", yaw[:, None]).as_matrix() @ R_DOWN
    target[:, :3, 3] = np.c_[x, np.zeros(n)]
    return torch.from_numpy(x), torch.from_numpy(target)


@pytest.mark.parametrize("modes", [1, 2])
def test_pose_hypotheses_recover_both_modes_that_one_regressed_pose_averages(modes):
    from reinforcegen_ros.policies.encoders import LowDimEncoder
    from reinforcegen_ros.policies.pose_predictor import InitiationPosePredictor

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = InitiationPosePredictor(LowDimEncoder(2, 64, 2), 64, 1, modes=modes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(600):
        x, target = bimodal_pose_batch(128, rng)
        loss, _ = net.loss(x, None, target)
        opt.zero_grad(), loss.backward(), opt.step()
    x, target = bimodal_pose_batch(500, rng)
    with torch.no_grad():
        _, metrics = net.loss(x, None, target)
        poses, scores = net.hypotheses(x)
    assert poses.shape == (500, modes, 4, 4) and scores.shape == (500, modes)
    if modes == 1:
        assert metrics["rot_err_deg"] > 60  # the average of two grasps 180 degrees apart fits neither
    else:
        # every label is near one hypothesis, and the two hypotheses are the two grasps
        assert metrics["best_rot_err_deg"] < 10
        between = geodesic_angle(poses[:, 0, :3, :3], poses[:, 1, :3, :3])
        assert torch.rad2deg(between).median() > 150
        assert torch.equal(net.predict(x, mode=1), poses[:, 1]) and torch.equal(net.predict(x), poses[torch.arange(500), scores.argmax(-1)])


def test_agent_keeps_the_pose_hypothesis_of_the_stages_first_prediction(tmp_path, episodes):
    agent = train_hsp("coffee", episodes[:4], tmp_path / "m", "privileged", {**TINY, "pose_modes": 2}, progress=False)["policy"]
    predictor, o = agent.component(0, "pose"), obs_at(episodes[0], 1)
    lowdim, images = agent._inputs(o)
    first = int(predictor.hypotheses(lowdim, images)[1][0].argmax())
    assert np.array_equal(agent.predict_pose(o, 0), predictor.predict(lowdim, images, mode=first)[0].double().numpy())
    with torch.no_grad():
        predictor.head[-1].bias[18 + (1 - first)] += 1e3  # the scores now prefer the other hypothesis
    other = predictor.predict(lowdim, images)[0].double().numpy()
    assert np.array_equal(other, predictor.predict(lowdim, images, mode=1 - first)[0].double().numpy())
    kept = agent.predict_pose(o, 0)  # re-planning refines the hypothesis chosen first
    assert np.array_equal(kept, predictor.predict(lowdim, images, mode=first)[0].double().numpy()) and not np.array_equal(kept, other)
    agent.reset()  # a new episode chooses again
    assert np.array_equal(agent.predict_pose(o, 0), other)


@pytest.mark.parametrize("mode", ["privileged", "rgb"])
def test_pose_predictor_without_proprio_ignores_the_gripper(tmp_path, episodes, rgb_episodes, mode):
    """pose_proprio false: the pose depends on objects (or images) only; the other components still read proprio."""
    data = rgb_episodes if mode == "rgb" else episodes
    settings = {**TINY, "pose_proprio": False, "epochs": 2 if mode == "rgb" else 15, "batch_size": 16}
    agent = train_hsp("coffee", data, tmp_path / "np", mode, settings, progress=False)["policy"]
    loaded = HybridSkillPolicy.load(tmp_path / "np", task="coffee", obs_mode=mode)
    assert loaded.config.pose_proprio is False
    o = obs_at(data[0], 2)
    moved = {**o, "robot0_eef_pos": o["robot0_eef_pos"] + 0.2, "robot0_joint_pos": o["robot0_joint_pos"] + 0.5,
             "robot0_gripper_qpos": o["robot0_gripper_qpos"][::-1].copy()}
    for policy in (agent, loaded):
        assert np.array_equal(policy.predict_pose(o, 0), policy.predict_pose(moved, 0))
        assert not np.array_equal(policy.act(o, 0), policy.act(moved, 0))
    assert np.array_equal(agent.predict_pose(o, 1), loaded.predict_pose(o, 1))
    if mode == "privileged":  # object poses alone determine the label here, so it is learnt
        held_out = [synthetic_hsp_episode(2000 + i) for i in range(6)]
        err = [np.linalg.norm(agent.predict_pose(obs_at(ep, 2), 0)[:3, 3] - ep.initiation_pose[2][:3, 3]) for ep in held_out]
        base = [np.linalg.norm(ep.initiation_pose[2][:3, 3] - agent.component(0, "pose").pos_mean.numpy()) for ep in held_out]
        assert np.mean(err) < 0.6 * np.mean(base)  # well below predicting the training mean (0.37 here)


# ---------------------------------------------------------------------- pose error along the connect phase
def test_pose_errors_bins_and_known_offsets():
    from reinforcegen_ros.training.diagnostics.pose_errors import connect_progress, pose_errors, summarise_bins

    target = np.stack([pose([0.1 * i, 0, 0.9], R_DOWN) for i in range(5)])
    predicted = np.stack([pose(t[:3, 3] + [0, 0.02, 0], rot_z(np.radians(30)) @ t[:3, :3]) for t in target])
    pos, rot = pose_errors(predicted, target)
    assert np.allclose(pos, 0.02) and np.allclose(rot, 30.0)
    progress = connect_progress(np.array([3, 3, 3, 3, 7, 7]))
    assert np.allclose(progress, [0, 1 / 3, 2 / 3, 1, 0, 1])
    rows = summarise_bins(np.arange(6.0) / 100, np.arange(6.0), progress)
    assert [r["samples"] for r in rows] == [2, 1, 1, 2]
    assert rows[0]["pos_cm"] == pytest.approx(2.0) and rows[3]["rot_deg"] == pytest.approx(4.0)  # medians of (0, 4) and (3, 5)


def test_pose_error_profile_matches_the_agents_per_tick_predictions(trained, episodes, tmp_path, capsys):
    from reinforcegen_ros.cli import build_parser
    from reinforcegen_ros.training.diagnostics.pose_errors import error_profile, pose_errors

    out, result = trained
    profile = error_profile("coffee", out, episodes)
    agent = HybridSkillPolicy.load(out)
    val = result["policy"].info["val_episodes"]
    assert profile["episodes"] == "held-out" and len(val) == 6
    for k, stage in enumerate(profile["stages"]):
        assert stage["episodes"] == len(val) and sum(b["samples"] for b in stage["bins"]) == len(val) * CONNECT
        first = np.stack([agent.predict_pose(obs_at(episodes[e], k * (CONNECT + SKILL)), k) for e in val])
        truth = np.stack([episodes[e].initiation_pose[k * (CONNECT + SKILL)] for e in val])
        pos, rot = pose_errors(first, truth)
        assert stage["bins"][0]["pos_cm"] == pytest.approx(np.median(pos) * 100, abs=1e-3)
        assert stage["bins"][0]["rot_deg"] == pytest.approx(np.median(rot), abs=0.05)
    path = write_h5(tmp_path / "other.hdf5", episodes[:4])
    parser = build_parser()
    argv = ["pose-errors", "--task", "coffee", "--agent", str(out), "--dataset", str(path)]
    with pytest.raises(ValueError, match="not the dataset the agent was trained on"):
        args = parser.parse_args(argv)
        args.func(args)
    args = parser.parse_args([*argv, "--episodes", "all", "--json", str(tmp_path / "p.json")])
    args.func(args)
    table = capsys.readouterr().out
    assert table.count("| coffee |") == 2 and "first query" in table
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["episodes"] == "all" and sum(b["samples"] for b in saved["stages"][0]["bins"]) == 4 * CONNECT


# ---------------------------------------------------------------------- termination negatives
def closed_fingers(obs: dict) -> dict:
    return {**obs, "robot0_gripper_qpos": np.zeros(2)}


def approach_steps(ep: Episode) -> np.ndarray:
    """Stage-0 skill steps before the fingers close (label 0)."""
    return np.flatnonzero((ep.stage == 0) & (ep.phase == 1))[: SKILL - CLOSE]


def test_term_negatives_join_only_the_termination_samples_and_teach_closed_empty(tmp_path, episodes):
    from reinforcegen_ros.demos.term_negatives import FORMAT, write_negatives
    from reinforcegen_ros.training.hsp_dataset import dataset_info

    data = episodes[:12]
    path = write_h5(tmp_path / "gen.hdf5", data)
    rows = [{"demo": i, "stage": 0, "step": int(t), "kind": 0, "term": [0, 0], "state": np.zeros(3), "obs": closed_fingers(obs_at(ep, t))}
            for i, ep in enumerate(data) for t in approach_steps(ep)]
    source = {"name": path.name, "episodes": len(data), "steps": dataset_info(path)["steps"]}
    header = {"format": FORMAT, "format_version": 1, "task": "coffee", "stages": list(STAGES), "source": source}
    write_negatives(tmp_path / "neg.hdf5", rows, header, list(rows[0]["obs"]))
    cfg = {**TINY, "epochs": 15, "batch_size": 16}
    plain = train_hsp("coffee", path, tmp_path / "plain", "privileged", cfg, progress=False)["policy"]
    taught = train_hsp("coffee", path, tmp_path / "neg", "privileged", cfg, progress=False, term_negatives=tmp_path / "neg.hdf5")["policy"]
    # the negatives join stage 0's termination samples, split by their demo; nothing else changes
    n_val = sum(r["demo"] in set(taught.info["val_episodes"]) for r in rows)
    before, after = plain.info["samples"], taught.info["samples"]
    assert after["stage0.term"]["val"] == before["stage0.term"]["val"] + n_val > before["stage0.term"]["val"]
    assert after["stage0.term"]["train"] == before["stage0.term"]["train"] + len(rows) - n_val
    assert after["stage0.term"]["train_positives"] == before["stage0.term"]["train_positives"]
    assert all(after[k] == before[k] for k in before if k != "stage0.term")
    assert taught.info["dataset"]["term_negatives"] == {"name": "neg.hdf5", "samples": len(rows)}
    # unseen episodes, fingers closed during the approach: the plain classifier calls the grasp done more often
    held_out = [synthetic_hsp_episode(2000 + i) for i in range(6)]
    probs = {name: np.mean([agent.termination_prob(closed_fingers(obs_at(ep, t)), 0) for ep in held_out for t in approach_steps(ep)])
             for name, agent in (("plain", plain), ("taught", taught))}
    assert probs["taught"] < 0.5 and probs["taught"] < probs["plain"] - 0.2, probs
    # term-check reports the same on the held-out demos' negatives, for either agent
    from reinforcegen_ros.training.diagnostics.termination_check import format_report, termination_report

    reports = {name: termination_report("coffee", tmp_path / name, path, tmp_path / "neg.hdf5") for name in ("plain", "neg")}
    for report in reports.values():
        grasp = report["stages"][0]
        assert grasp["negatives_closed"]["samples"] == n_val and report["stages"][1]["negatives_closed"]["samples"] == 0
        assert grasp["negatives_left_behind"]["samples"] == 0
        assert grasp["goal_held"]["samples"] == after["stage0.term"]["val_positives"]
        assert grasp["goal_held"]["fires"] > 0.75
    fired = {name: r["stages"][0]["negatives_closed"]["fires"] for name, r in reports.items()}
    assert fired["neg"] <= fired["plain"] - 0.2, fired
    assert "fingers closed on nothing" in format_report(reports["neg"])
    # a run resumes only with the same negatives, and negatives of another dataset are refused
    with pytest.raises(ValueError, match="another dataset"):
        train_hsp("coffee", path, tmp_path / "plain", "privileged", cfg, progress=False, term_negatives=tmp_path / "neg.hdf5")
    other = write_h5(tmp_path / "other.hdf5", data[:6])
    with pytest.raises(ValueError, match="were made from"):
        train_hsp("coffee", other, tmp_path / "x", "privileged", cfg, progress=False, term_negatives=tmp_path / "neg.hdf5")


def test_step_budgets_train_each_component_for_its_steps_and_extend_on_resume(tmp_path, episodes):
    data = episodes[:6]
    budget = {**TINY, "epochs": 1, "policy_steps": 7, "term_steps": 2}
    first = train_hsp("coffee", data, tmp_path / "s", "privileged", budget, progress=False)
    steps = first["policy"].info["component_steps"]
    assert all(steps[f"stage{k}.policy"] == 7 and steps[f"stage{k}.term"] == 2 for k in range(2))
    one_pass = train_hsp("coffee", data, tmp_path / "p", "privileged", {**TINY, "epochs": 1}, progress=False)
    passes = one_pass["policy"].info["component_steps"]
    assert passes["stage0.policy"] < 7  # the budget needs more than one epoch: the run went on for it
    assert all(steps[f"stage{k}.pose"] == passes[f"stage{k}.pose"] for k in range(2))  # no budget: `epochs` passes
    assert first["epochs"] > 1 and sum(steps.values()) == first["step"]
    more = train_hsp("coffee", data, tmp_path / "s", "privileged", {**budget, "policy_steps": 12}, progress=False)
    steps = more["policy"].info["component_steps"]
    assert steps["stage0.policy"] == steps["stage1.policy"] == 12 and steps["stage0.term"] == 2
    assert more["step"] == first["step"] + 10
    with pytest.raises(ValueError, match="policy_steps"):
        HSPConfig(policy_steps=0)
