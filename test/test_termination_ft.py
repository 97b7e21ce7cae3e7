"""Termination fine-tuning (paper Sec. IV-C) on small budgets.

The success predictor learns a separable labelling; the fine-tuned termination
T(s) = T^r(s) * [p(s) > threshold] rejects ground-truth terminations where p is
low and keeps them where it is high; the predictors ride in the agent directory
and are refused for another task, stage list or state layout; the executor's
oracle and residual RL's reward both use them; rollouts record the accepted
terminations labelled with task success; and ``reinforcegen finetune term`` runs
end to end (resumable) with the source-replay agent's skills on Coffee.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reinforcegen_ros.finetune import termination_ft as tft
from reinforcegen_ros.finetune.config import FinetuneConfig
from reinforcegen_ros.policies import fine_tuned_termination as ftt
from reinforcegen_ros.hybrid import HybridConfig

TASK = "coffee"
FAST = dict(term_hidden_dim=32, term_layers=2, term_train_steps=400, term_batch_size=128, term_lr=3e-3, term_holdout=0.25)
POD_X = 11  # index of the pod's x position in the coffee state layout (eef 3 + rot6d 6 + gripper 2)


@pytest.fixture(scope="module")
def env():
    from reinforcegen_ros.tasks.environment import TaskEnv

    e = TaskEnv(TASK)
    yield e
    e.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from reinforcegen_ros.demos.collect import collect

    out = tmp_path_factory.mktemp("tft") / "source.hdf5"
    collect(TASK, 2, out, seed=0, progress=False)
    return out


def threshold_predictors(stage_names, stage: int, index: int, cut: float, above: bool = True) -> ftt.TerminationPredictors:
    """Predictors whose stage ``stage`` says p ~ 1 where state[index] > cut (``above``) and p ~ 0 on the other side."""
    preds = ftt.TerminationPredictors(TASK, stage_names, ftt.task_state_layout(TASK), 0.4, ftt.PredictorConfig(8, 0), [stage])
    linear = preds.nets[str(stage)].net[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, index] = 200.0 if above else -200.0
        linear.bias.fill_(-200.0 * cut if above else 200.0 * cut)
    return preds


@pytest.fixture
def one_thread():
    """Training on one torch thread (the command's num_threads): several threads only contend on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- the predictor
def test_predictor_learns_a_separable_labelling_and_not_noise(one_thread):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(600, 35)).astype(np.float32) * rng.uniform(0.01, 3.0, 35).astype(np.float32)  # unnormalised scales
    labels = ((states[:, 3] / states[:, 3].std() + 0.7 * states[:, 20] / states[:, 20].std()) > 0.3).astype(np.float32)
    cfg = FinetuneConfig(**FAST)
    net, row = tft.train_stage(states, labels, 0, cfg)
    held = row["held_out"]
    assert net is not None and row["skipped"] is None and held["samples"] == 150 and row["train"]["samples"] == 450
    assert held["accuracy"] >= 0.9 and held["auc"] >= 0.97, held
    assert row["rejected"] == int((net.probs(states) <= 0.4).sum()) and row["rejected_failures"] > 10 * row["rejected_successes"]
    assert np.allclose(net.mean.numpy(), states[np.sort(np.random.default_rng(0).permutation(600)[150:])].mean(0), atol=1e-5)
    noise = rng.permutation(labels)  # the same states with shuffled labels: nothing to learn that generalises
    net, row = tft.train_stage(states, noise, 0, cfg)
    assert net is None and row["held_out"]["auc"] < 0.6 and "held-out AUC" in row["skipped"], row["held_out"]
    few = np.r_[np.ones(4), np.zeros(596)].astype(np.float32)  # too few successes to learn from: no training at all
    assert tft.train_stage(states, few, 0, cfg) == (None, {"samples": 600, "positives": 4, "skipped": "4 successes after its "
                                                           "terminations (needs 5 of each)"})


def grip_states(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """States of a gripper at random yaw holding a pod up to 2.5 cm off-centre along its pads (the grip frame's y), and
    whether the pod sits within 1 cm of the centre."""
    yaw = rng.uniform(-np.pi, np.pi, n)
    eef = np.tile(np.eye(4), (n, 1, 1))
    eef[:, 0, 0], eef[:, 0, 1], eef[:, 1, 0], eef[:, 1, 1] = np.cos(yaw), -np.sin(yaw), np.sin(yaw), np.cos(yaw)
    eef[:, :3, 3] = rng.uniform(-0.2, 0.2, (n, 3)) + [0.0, 0.0, 1.0]
    along = rng.uniform(-0.025, 0.025, n)
    pod = eef.copy()
    pod[:, :3, 3] += np.einsum("nij,nj->ni", eef[:, :3, :3], np.stack([np.zeros(n), along, np.zeros(n)], 1))
    machine = np.tile(np.eye(4), (n, 1, 1))
    states = ftt.states_from_arrays(eef, {"pod": pod, "machine": machine}, np.full((n, 2), 0.02), ["pod", "machine"])
    return states, (np.abs(along) < 0.01).astype(np.float32)


def test_grip_frame_inputs_see_where_along_the_pads_an_object_is_held(one_thread):
    """Offsets in the grip site's frame, from the state alone: a gripper yawed 90 degrees holding the pod 2 cm along world y
    holds it 2 cm along its own x; and a predictor on them (inputs 'grip') learns 'fails beyond 1 cm off-centre along the
    pads' at any yaw from 400 grasps."""
    eef = np.eye(4)[None].copy()
    eef[0, :3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    eef[0, :3, 3] = [0.1, 0.2, 0.9]
    pod = np.eye(4)[None].copy()
    pod[0, :3, 3] = [0.1, 0.22, 0.9]
    state = ftt.states_from_arrays(eef, {"pod": pod, "machine": np.eye(4)[None]}, np.zeros((1, 2)), ["pod", "machine"])
    offsets = ftt.grip_frame_offsets(torch.as_tensor(state))[0].numpy()
    assert np.allclose(offsets[:3], [0.02, 0.0, 0.0], atol=1e-6) and np.allclose(offsets[3:], [-0.2, 0.1, -0.9], atol=1e-6)
    states, labels = grip_states(500, np.random.default_rng(0))
    net, row = tft.train_stage(states, labels, 0, FinetuneConfig(**FAST, term_inputs="grip"))
    assert net is not None and net.kind == "grip" and net.mean.shape == (2 + 6,)
    assert row["held_out"]["auc"] >= 0.95, row["held_out"]
    assert ftt.PredictorConfig.from_dict({"hidden_dim": 8, "layers": 1}).inputs == "state"  # saved before the setting
    with pytest.raises(ValueError, match="unknown term_inputs 'pads'"):
        FinetuneConfig(term_inputs="pads")


def test_a_logistic_fit_on_absolute_grip_offsets_stays_graded_and_symmetric(one_thread):
    """inputs 'grip_abs' with no hidden layer: a logistic regression on how far off-centre the pod is held, whose p
    falls steadily with the offset, the same on either side of the pads (what `success_reward: predicted` pays)."""
    states, labels = grip_states(600, np.random.default_rng(1))
    net, row = tft.train_stage(states, labels, 0, FinetuneConfig(**{**FAST, "term_layers": 0}, term_inputs="grip_abs"))
    assert net is not None and net.kind == "grip_abs" and net.mean.shape == (6,)
    assert [type(m).__name__ for m in net.net] == ["Linear"]
    assert row["held_out"]["auc"] >= 0.95, row["held_out"]
    probe, _ = grip_states(1, np.random.default_rng(2))
    c0, c1 = probe[0, 3:6], probe[0, 6:9]
    y_axis = np.stack([c0, c1, np.cross(c0, c1)], axis=1)[:, 1]  # the grip frame's y in the world frame
    rows = []
    for offset in (0.0, 0.008, -0.008, 0.016, 0.024):
        row_state = probe[0].copy()
        row_state[11 + 9:11 + 12] = offset * y_axis  # pod - eef in the world frame
        rows.append(row_state)
    p = net.probs(np.stack(rows))
    assert p[0] > p[1] > p[3] > p[4] and p[1] == pytest.approx(p[2], abs=1e-6), p
    assert 0.05 < p[3] < 0.95, p  # graded where the hard label flips, not a step
    with pytest.raises(ValueError, match="term_layers"):
        FinetuneConfig(term_layers=-1)


def test_all_ticks_hold_out_whole_episodes():
    """With an episode per sample the held-out split takes whole episodes (ticks of one grasp are nearly one sample)."""
    groups = np.repeat(np.arange(40), 5)
    train, held = tft.split_indices(len(groups), 0.25, np.random.default_rng(0), groups)
    assert len(held) == 50 and not set(groups[train]) & set(groups[held]) and len(train) + len(held) == 200
    with pytest.raises(ValueError, match="term_all_ticks"):
        FinetuneConfig(term_all_ticks="yes")


def test_auc_and_metrics_on_known_values():
    assert tft.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1.0])) == pytest.approx(0.75)
    assert tft.roc_auc(np.array([0.2, 0.2]), np.array([0, 1.0])) == pytest.approx(0.5)
    assert tft.roc_auc(np.array([0.2, 0.3]), np.array([1, 1.0])) is None
    m = tft.binary_metrics(np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0.0]))
    assert m["accuracy"] == pytest.approx(2 / 3) and m["positives"] == 1 and m["auc"] == 1.0
    assert tft.binary_metrics(np.zeros(0), np.zeros(0)) is None


# ---------------------------------------------------------------------- the fine-tuned termination
def test_gate_rejects_where_p_is_low_and_accepts_where_high(env, monkeypatch):
    names = [s.name for s in env.stages]
    xs = {}
    for seed in range(6):
        env.reset(seed=seed)
        xs[seed] = float(ftt.termination_state(env)[POD_X])
        assert xs[seed] == pytest.approx(env.object_poses()["pod"][0, 3])
    low, high = min(xs, key=xs.get), max(xs, key=xs.get)
    cut = 0.5 * (xs[low] + xs[high])
    gate = ftt.FineTunedTermination(env, threshold_predictors(names, 1, POD_X, cut))
    held = {"now": True}
    monkeypatch.setattr(env, "stage_done", lambda k: held["now"])  # the ground truth says "done" (or not) everywhere
    env.reset(seed=high)
    assert gate.predictors.prob(1, ftt.termination_state(env)) > 0.99 and gate(1) and gate(0)  # stage 0 has no predictor
    env.reset(seed=low)
    assert gate.predictors.prob(1, ftt.termination_state(env)) < 0.01
    assert not gate(1) and gate(0) and gate.rejections == [0, 1]
    held["now"] = False
    env.reset(seed=high)
    assert not gate(1) and not gate(0) and gate.rejections == [0, 1]  # no ground truth, nothing to accept or reject
    # the threshold is the predictors': p just above it accepts, just below rejects
    held["now"] = True
    env.reset(seed=low)
    p = gate.predictors.prob(1, ftt.termination_state(env))
    gate.predictors.threshold = p - 1e-9
    assert gate(1)
    gate.predictors.threshold = p + 1e-9
    assert not gate(1)


def test_executor_oracle_and_rl_reward_use_the_fine_tuned_termination(env, monkeypatch):
    from reinforcegen_ros.finetune.residual_rl import StageEnv
    from reinforcegen_ros.rollout import make_executor

    from test_residual import tiny_agent

    agent = tiny_agent()
    agent.stage_names = [s.name for s in env.stages]
    oracle = HybridConfig(planner="straight_line", termination="oracle")
    assert ftt.fine_tuned_oracle(env, agent) == env.stage_done and make_executor(env, agent, oracle).oracle == env.stage_done
    agent.attach_termination_ft(threshold_predictors(agent.stage_names, 0, POD_X, 10.0))  # p ~ 0 everywhere: stage 0 never ends
    assert isinstance(make_executor(env, agent, oracle).oracle, ftt.FineTunedTermination)
    assert make_executor(env, agent, HybridConfig(planner="straight_line")).oracle == env.stage_done  # learned termination
    monkeypatch.setattr(env, "stage_done", lambda k: True)
    senv = StageEnv(env, agent, 0, None, alpha=5.0, time_limit=3)
    senv.agent.reset()
    senv._observe(env.reset(seed=1))
    out = senv.step(np.zeros(7))
    assert not out.terminal and out.reward == 0.0  # the ground truth holds, the fine-tuned termination rejects it
    assert StageEnv(env, agent, 1, None, 5.0, 3).terminated(1)  # stage 1 has no predictor: the ground truth
    # predictors reading another scene's state are refused where they meet the environment
    foreign = threshold_predictors(agent.stage_names, 0, 0, 0.0)
    foreign.layout = ftt.state_layout(["pod"])
    with pytest.raises(ValueError, match="another state layout"):
        ftt.FineTunedTermination(env, foreign)


def test_predicted_success_reward_pays_the_predictors_p_where_the_termination_is_accepted(env, monkeypatch):
    from reinforcegen_ros.finetune.residual_rl import StageEnv

    from test_residual import tiny_agent

    agent = tiny_agent()
    agent.stage_names = [s.name for s in env.stages]
    preds = threshold_predictors(agent.stage_names, 0, POD_X, 0.0)
    with torch.no_grad():
        preds.nets["0"].net[0].weight.zero_()
        preds.nets["0"].net[0].bias.fill_(float(np.log(0.7 / 0.3)))  # p = 0.7 everywhere: accepted (threshold 0.4)
    agent.attach_termination_ft(preds)
    done = {"now": False}
    monkeypatch.setattr(env, "stage_done", lambda k: done["now"])
    senv = StageEnv(env, agent, 0, None, alpha=5.0, time_limit=3, success_reward="predicted")
    senv.agent.reset()
    senv._observe(env.reset(seed=1))
    out = senv.step(np.full(7, 0.1))
    assert not out.terminal and out.reward == pytest.approx(-5.0 * 7 * 0.01)  # no termination: the penalty alone
    done["now"] = True
    out = senv.step(np.zeros(7))
    assert out.terminal and out.reward == pytest.approx(0.7, abs=1e-6)
    assert StageEnv(env, agent, 0, None, 5.0, 3).step(np.zeros(7)).reward == 1.0  # the paper's reward: 1
    with pytest.raises(ValueError, match="termination predictor of stage 1"):
        StageEnv(env, agent, 1, None, 5.0, 3, success_reward="predicted")
    with pytest.raises(ValueError, match="unknown success_reward"):
        FinetuneConfig(success_reward="p")


# ---------------------------------------------------------------------- the agent directory
def test_predictors_ride_with_the_agent_and_foreign_ones_are_refused(tmp_path):
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.policies.residual import ResidualConfig, SkillResidual

    from test_residual import randomise, tiny_agent

    agent = tiny_agent()
    preds = ftt.TerminationPredictors(TASK, agent.stage_names, ftt.task_state_layout(TASK), 0.4, ftt.PredictorConfig(16, 2), [1])
    torch.manual_seed(3)
    for p in preds.parameters():
        p.data.normal_()
    preds.info["1"] = {"samples": 7}
    agent.attach_termination_ft(preds)
    residual = SkillResidual.for_agent(agent, ResidualConfig(16, 2, 0.1, False), [0])
    randomise(residual)
    agent.attach_residual(residual)
    agent.save(tmp_path / "a")
    assert (tmp_path / "a" / ftt.TERM_WEIGHTS).is_file() and (tmp_path / "a" / "residual.json").is_file()
    loaded = HybridSkillPolicy.load(tmp_path / "a", task=TASK)
    states = np.random.default_rng(0).normal(size=(5, 35)).astype(np.float32)
    assert loaded.termination_ft.stages == [1] and loaded.termination_ft.threshold == 0.4 and loaded.termination_ft.info["1"]["samples"] == 7
    assert np.allclose(loaded.termination_ft.nets["1"].probs(states), preds.nets["1"].probs(states))
    assert loaded.residual.stages == [0]
    loaded.save(tmp_path / "b")  # saving a loaded agent keeps them; one without predictors drops stale files
    assert HybridSkillPolicy.load(tmp_path / "b").termination_ft.stages == [1]
    loaded.attach_termination_ft(None)
    loaded.save(tmp_path / "b")
    assert not (tmp_path / "b" / ftt.TERM_CONFIG).exists() and HybridSkillPolicy.load(tmp_path / "b").termination_ft is None
    assert ftt.termination_ft_id(tmp_path / "a")["stages"] == [1] and ftt.termination_ft_id(tmp_path / "b") is None

    meta = json.loads((tmp_path / "a" / ftt.TERM_CONFIG).read_text())
    for change, message in [({"task": "threading"}, "trained for task 'threading', not 'coffee'"),
                            ({"stage_names": ["a", "b"]}, "trained for stages"),
                            ({"layout": {**meta["layout"], "objects": ["pod"], "dim": 23}}, "another state layout"),
                            ({"format_version": 99}, "not of format")]:
        (tmp_path / "a" / ftt.TERM_CONFIG).write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=message):
            HybridSkillPolicy.load(tmp_path / "a", task=TASK)
    (tmp_path / "a" / ftt.TERM_CONFIG).write_text(json.dumps(meta))
    (tmp_path / "a" / ftt.TERM_WEIGHTS).write_bytes(b"junk")
    with pytest.raises(ValueError, match="does not match"):
        HybridSkillPolicy.load(tmp_path / "a", task=TASK)
    other = tiny_agent(task="threading")
    with pytest.raises(ValueError, match="trained for task 'coffee', not 'threading'"):
        other.attach_termination_ft(preds)


# ---------------------------------------------------------------------- relabelling the classifier's targets
def test_dataset_states_match_the_environment_and_relabelling_turns_off_low_p_labels(env, source, tmp_path):
    import h5py

    from reinforcegen_ros.demos.dataset import iter_episodes

    episodes = list(iter_episodes(source))
    ep = episodes[0]
    states = ftt.states_from_arrays(ep.eef_pose, ep.object_poses, ep.obs["robot0_gripper_qpos"], env.objects)
    env.reset(seed=int(ep.attrs["seed"]))
    for t in (0, len(ep.actions) // 2, len(ep.actions) - 1):  # the recorded arrays give the state the simulator gives
        env.set_state(ep.states[t])
        assert np.allclose(ftt.termination_state(env), states[t], atol=1e-5), t
    # stage 0's predictor accepts where the grip site is above a height that splits its ground-truth positives
    z = np.concatenate([e.eef_pose[e.term_signals["grasp_pod"] > 0, 2, 3] for e in episodes])
    ordered = np.sort(z)
    i = int(np.argmax(np.diff(ordered[len(z) // 4 : 3 * len(z) // 4]))) + len(z) // 4  # the widest gap in the middle half
    cut = 0.5 * (ordered[i] + ordered[i + 1])
    names = [s.name for s in env.stages]
    preds = threshold_predictors(names, 0, 2, cut)
    preds.nets["0"].net[0].weight.data *= 1e4
    preds.nets["0"].net[0].bias.data *= 1e4
    before = source.read_bytes()
    report = tft.relabel_dataset(source, tmp_path / "relabelled.hdf5", preds)
    assert report == {"grasp_pod": {"positives": len(z), "turned_off": int((z < cut).sum())}} and 0 < (z < cut).sum() < len(z)
    assert source.read_bytes() == before
    relabelled = list(iter_episodes(tmp_path / "relabelled.hdf5"))
    for old, new in zip(episodes, relabelled):
        expect = (old.term_signals["grasp_pod"] > 0) & (old.eef_pose[:, 2, 3] > cut)
        assert np.array_equal(new.term_signals["grasp_pod"] > 0, expect)
        assert np.array_equal(new.term_signals["insert_pod_close_lid"], old.term_signals["insert_pod_close_lid"])
        assert np.array_equal(new.actions, old.actions)
    with h5py.File(tmp_path / "relabelled.hdf5", "r") as f:
        assert json.loads(f["data"].attrs["termination_ft"])["stages"] == [0]
    preds.task = "threading"
    with pytest.raises(ValueError, match="predictors are for 'threading'"):
        tft.relabel_dataset(source, tmp_path / "other.hdf5", preds)
    assert not (tmp_path / "other.hdf5").exists()


# ---------------------------------------------------------------------- rollouts and the command
class ReplaySkills:
    """The source-replay teacher's skills in place of a tiny agent's untrained ones; odd seeds drop the pod in stage 1."""

    def __init__(self, agent):
        self.agent = agent  # a TeacherPoseAgent (HSP + replay teacher)
        self.task, self.obs_mode, self.num_stages = agent.task, agent.obs_mode, agent.num_stages
        self.seed = 0

    def __getattr__(self, name):
        if name.startswith("__") or name == "agent":
            raise AttributeError(name)
        return getattr(self.agent, name)

    def set_episode_seed(self, seed):
        self.seed = seed
        self.agent.set_episode_seed(seed)

    def act(self, obs, stage):
        action = self.agent.teacher.act(obs, stage)
        return np.r_[action[:6], -1.0] if stage == 1 and self.seed % 2 else action


def test_rollouts_record_accepted_terminations_labelled_with_success(env, source):
    from reinforcegen_ros.policies.replay import SourceReplayAgent
    from reinforcegen_ros.rollout import make_executor

    replay = SourceReplayAgent.from_dataset(source, env)
    executor = make_executor(env, replay, HybridConfig(planner="straight_line", termination="oracle"))
    rec = tft.play_episode(env, executor, 0, 200_000, 600)
    assert rec["success"] and [t["stage"] for t in rec["terminations"]] == [0, 1] and not rec["fine_tuned_termination"]
    first, second = rec["terminations"]
    assert 0 < first["step"] < second["step"] <= rec["steps"] and len(first["state"]) == 35
    assert first["state"][9] != second["state"][9] or first["state"][11] != second["state"][11]  # gripper or pod moved
    states, labels, episodes = tft.stage_samples([rec, {**rec, "success": False, "index": 1}], 0)
    assert states.shape == (2, 35) and labels.tolist() == [1.0, 0.0] and episodes.tolist() == [0, 1]
    # the ticks where stage 0's ground truth held while the executor confirmed it (3 ticks to leave: 2 before)
    held = [t for t in rec["ticks"] if t["stage"] == 0]
    assert [t["step"] for t in held] == [first["step"] - 2, first["step"] - 1] and all(len(t["state"]) == 35 for t in held)
    states, labels, episodes = tft.stage_samples([rec, {**rec, "success": False, "index": 1}], 0, all_ticks=True)
    assert states.shape == (6, 35) and labels.tolist() == [1.0] * 3 + [0.0] * 3 and episodes.tolist() == [0, 0, 0, 1, 1, 1]

    class Gated:  # the replay agent carrying predictors that reject every stage-0 termination
        def __init__(self, agent, preds):
            self.agent, self.termination_ft = agent, preds

        def __getattr__(self, name):
            if name.startswith("__") or name == "agent":
                raise AttributeError(name)
            return getattr(self.agent, name)

    preds = threshold_predictors([s.name for s in env.stages], 0, POD_X, 10.0)
    executor = make_executor(env, Gated(replay, preds), HybridConfig(planner="straight_line", termination="oracle", skill_max_steps=120))
    rec = tft.play_episode(env, executor, 0, 200_000, 600)
    assert not rec["success"] and rec["fine_tuned_termination"] and rec["terminations"] == [] and rec["rejections"][0] > 0
    kept = len([t for t in rec["ticks"] if t["stage"] == 0])  # the rejected ticks, for term_all_ticks ...
    assert kept == rec["rejections"][0] - 1  # ... but the one on which the skill timed out (the executor had failed)
    assert rec["failure_kind"] == "skill_timeout" and rec["failure_stage"] == 0


def test_finetune_term_command_end_to_end_and_resumes(env, source, tmp_path, monkeypatch, capsys):
    import yaml

    from reinforcegen_ros.cli import main
    from reinforcegen_ros.evaluation import harness
    from reinforcegen_ros.finetune.config import DEFAULT_CONFIG
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    from test_finetune import tiny_agent_dir

    real = harness.build_agent
    monkeypatch.setattr(harness, "build_agent", lambda settings, factory: (lambda e, a: (e, ReplaySkills(a)))(*real(settings, factory)))
    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    config = tmp_path / "tiny.yaml"
    tiny = {**FAST, "term_train_steps": 50, "term_min_class_samples": 1, "term_min_auc": 0.0}  # (1 held-out sample: no AUC)
    config.write_text(yaml.safe_dump({**yaml.safe_load(DEFAULT_CONFIG.read_text()), **tiny}))
    out = tmp_path / "run"
    args = ["finetune", "term", "--task", TASK, "--agent", str(agent_dir), "--episodes", "4", "--out", str(out), "--stages", "0", "1",
            "--pose", "teacher", "--teacher-source", str(source), "--config", str(config), "--relabel", str(source), "--seed", "200000"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["successes"] == 2 and summary["threshold"] == 0.4, summary
    s0, s1 = summary["stages"]["0"], summary["stages"]["1"]
    assert s0["samples"] == 4 and s0["positives"] == 2 and s0["skipped"] is None and s0["held_out"]["samples"] == 1
    assert 0 <= s0["rejected"] == s0["rejected_failures"] + s0["rejected_successes"] <= 4
    assert s1["samples"] == 2 and s1["positives"] == 2 and "0 failures" in s1["skipped"]  # dropped pods never end stage 1
    assert summary["fine_tuned_stages"] == [0] and "stage 1 insert_pod_close_lid" in printed
    labels = summary["relabelled"]["labels"]
    assert list(labels) == ["grasp_pod"] and labels["grasp_pod"]["positives"] > 0 and (out / "relabelled_source.hdf5").is_file()
    agent = HybridSkillPolicy.load(out / "agent", task=TASK)
    assert agent.termination_ft.stages == [0] and agent.termination_ft.info["0"]["samples"] == 4
    assert (out / "agent" / "model.safetensors").read_bytes() == (agent_dir / "model.safetensors").read_bytes()
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["settings"]["seed"] == 200000
    # evaluating the written agent with ground-truth termination says that the fine-tuned one was used
    result = harness.evaluate(TASK, str(out / "agent"), episodes=1, termination="oracle", pose="teacher", teacher_source=source,
                              out_dir=tmp_path / "eval", progress=False)
    header = json.loads((tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()[0])["settings"]
    assert header["termination_ft"]["stages"] == [0] and result["settings"]["termination_ft"] == header["termination_ft"]
    # a larger budget resumes: only the new episode is played; other settings are refused and leave the log alone
    played = []
    monkeypatch.setattr(tft, "play_episode", lambda *a, real=tft.play_episode: played.append(a[2]) or real(*a))
    assert main(args[:7] + ["5"] + args[8:]) == 0 and played == [4]
    assert json.loads((out / "summary.json").read_text())["episodes"] == 5
    before = (out / "episodes.jsonl").read_text()
    assert main(args[:-1] + ["200001"]) == 2 and "other settings (seed)" in capsys.readouterr().err
    assert (out / "episodes.jsonl").read_text() == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert main(args[:9] + [str(tmp_path / "busy")] + args[10:]) == 2 and "holds other files" in capsys.readouterr().err
    assert main(args[:12] + ["7"] + args[13:]) == 2 and "stage 7 out of range" in capsys.readouterr().err
