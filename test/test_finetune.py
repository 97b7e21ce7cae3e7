"""Skill fine-tuning machinery on small budgets: reset banks, the replay buffer, the residual TD3 learner, the run.

One Coffee scene model serves the module (a test double agent drives the hybrid
executor to stage 0's skill with the straight-line planner); the learner is
shown to learn on a synthetic problem without a simulator.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from reinforcegen_ros.finetune.config import FinetuneConfig
from reinforcegen_ros.finetune.replay_buffer import ReplayBuffer
from reinforcegen_ros.finetune.reset_bank import collect_bank, gripper_command, load_bank, read_bank
from reinforcegen_ros.finetune.residual_rl import CHECKPOINT_FORMAT, ResidualTD3, finetune_skill
from reinforcegen_ros.hybrid import HybridConfig, HybridExecutor
from reinforcegen_ros.policies.residual import ResidualConfig, ResidualNet

TASK = "coffee"
TINY_RL = dict(residual_hidden_dim=16, critic_hidden_dim=16, batch_size=16, buffer_size=400, seed_steps=10, stage_time_limit=12,
               eval_every=30, eval_episodes=2, checkpoint_every=15, updates_per_step=2, agent_weights="last", critic_warmup=0)


class ApproachAgent:
    """Goes 4 cm below where the gripper starts, then holds still with the gripper open (never terminates itself)."""

    task, obs_mode, num_stages = TASK, "privileged", 2

    def reset(self):
        self.target = None

    def predict_pose(self, obs, stage):
        if self.target is None:
            from reinforcegen_ros.geometry import pose_from_pos_quat

            self.target = pose_from_pos_quat(obs["robot0_eef_pos"] + [0.0, 0.0, -0.04], obs["robot0_eef_quat"])
        return self.target

    def act(self, obs, stage):
        return np.r_[np.zeros(6), -1.0]

    def termination_prob(self, obs, stage):
        return 0.0


@pytest.fixture(scope="module")
def env():
    from reinforcegen_ros.tasks.environment import TaskEnv

    e = TaskEnv(TASK)
    yield e
    e.close()


def executor_for(env):
    from reinforcegen_ros.planning import make_planner
    from reinforcegen_ros.planning.kinematics import ArmKinematics

    cfg = HybridConfig(planner="straight_line", termination="oracle", connect_max_steps=80)
    planner = make_planner("straight_line", env, ArmKinematics(env), None)
    return HybridExecutor(ApproachAgent(), planner, cfg, [s.reference_object for s in env.stages], env.stage_done)


@pytest.fixture(scope="module")
def bank_path(env, tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank_stage0.hdf5"
    collect_bank(path, env, executor_for(env), TASK, 0, states=2, seed=300, source={"agent": "approach"}, horizon=200)
    return path


def test_bank_states_restore_the_same_scene_and_stage(env, bank_path):
    bank = load_bank(bank_path, TASK, 0, env)
    assert len(bank) == 2 and list(bank.seeds) == [300, 301] and [a["reached"] for a in bank.attempts] == [True, True]
    for i in (1, 0):
        env.reset(seed=999)  # another scene in between
        env.step(np.r_[np.ones(6) * 0.5, 1.0])
        obs = bank.restore(env, i)
        assert np.allclose(obs["object"], bank.objects[i], atol=1e-12) and np.allclose(obs["robot0_eef_pos"], bank.eef_pos[i], atol=1e-12)
        assert np.array_equal(gripper_command(env), bank.gripper[i]) and not env.stage_done(0)
    # the arm is at the initiation pose (4 cm below its start) and a restored state plays the same way every time
    assert not np.allclose(bank.objects[0], bank.objects[1])
    start = env.reset(seed=300)["robot0_eef_pos"]
    assert np.linalg.norm(bank.eef_pos[0] - (start + [0, 0, -0.04])) < 0.01
    runs = []
    for _ in range(2):
        bank.restore(env, 0)
        runs.append([env.step(np.r_[0.3, -0.2, 0.1, 0, 0, 0.1, 1.0])["robot0_eef_pos"] for _ in range(5)])
    assert np.array_equal(runs[0], runs[1])


def test_bank_resumes_and_refuses_other_task_stage_scene_or_settings(env, bank_path, tmp_path):
    path = tmp_path / "bank.hdf5"
    path.write_bytes(bank_path.read_bytes())
    bank = collect_bank(path, env, executor_for(env), TASK, 0, states=3, seed=300, source={"agent": "approach"}, horizon=200)
    assert len(bank) == 3 and [a["seed"] for a in bank.attempts] == [300, 301, 302]
    assert np.array_equal(bank.states[:2], read_bank(bank_path).states)
    with pytest.raises(ValueError, match="stage 0, not 1"):
        load_bank(path, TASK, 1, env)
    with pytest.raises(ValueError, match="task 'coffee', not 'threading'"):
        load_bank(path, "threading", 0, env)
    with pytest.raises(ValueError, match="other settings"):
        collect_bank(path, env, executor_for(env), TASK, 0, states=4, seed=300, source={"agent": "other"})
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        f.attrs["meta"] = json.dumps({**meta, "scene_model": "0" * 64})
    with pytest.raises(ValueError, match="another scene model"):
        load_bank(path, TASK, 0, env)
    with pytest.raises(ValueError, match="not a readable reset bank"):
        (tmp_path / "junk.hdf5").write_text("junk")
        load_bank(tmp_path / "junk.hdf5", TASK, 0, env)


# ---------------------------------------------------------------------- replay buffer
def test_nstep_returns_stop_at_episode_ends_and_at_the_newest_row():
    buf = ReplayBuffer(8, 1)
    rows = [(1.0, False, False), (2.0, False, False), (4.0, True, False), (8.0, False, False), (16.0, False, True), (32.0, False, False)]
    for i, (r, term, last) in enumerate(rows):
        buf.add([i], np.zeros(7), np.zeros(7), r, term, last, [i + 1], np.zeros(7))
    out = buf.sample(200, 3, 0.5, np.random.default_rng(0))
    by_start = {int(o): (ret, d, int(n)) for o, ret, d, n in zip(out["obs"][:, 0], out["ret"], out["disc"], out["next_obs"][:, 0])}
    assert by_start[0] == (1 + 0.5 * 2 + 0.25 * 4, 0.0, 3)  # ends at the terminal row: no bootstrap
    assert by_start[1] == (2 + 0.5 * 4, 0.0, 3)
    assert by_start[3] == (8 + 0.5 * 16, 0.25, 5)  # time limit: bootstrap from the next features after it
    assert by_start[5] == (32.0, 0.5, 6)  # the newest row, episode still running
    with pytest.raises(ValueError, match="'reward' contains NaN"):
        buf.add([0], np.zeros(7), np.zeros(7), float("nan"), False, False, [1], np.zeros(7))
    rows, counters = buf.state()
    rows["next_obs"][2, 0] = np.inf
    with pytest.raises(ValueError, match="'next_obs' contains NaN or inf"):
        ReplayBuffer(8, 1).load_state(rows, counters)


def contextual_bandit(offset: float = 0.0, **settings):
    """(config, actor, learner, buffer, rng) of a one-step problem whose reward peaks where the residual's first
    dimension equals 0.05 x + ``offset`` (x uniform in [-1, 1]), with 2,000 random transitions."""
    torch.manual_seed(0)
    cfg = FinetuneConfig(**{**TINY_RL, "critic_hidden_dim": 64, "batch_size": 64, "lr_actor": 1e-3, "lr_critic": 1e-3, "alpha": 5.0,
                            **settings})
    actor = ResidualNet(1, ResidualConfig(32, 2, 0.1, False))
    learner = ResidualTD3(actor, 1, cfg, torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(2000, 1)
    for _ in range(2000):
        x = rng.uniform(-1, 1, 1).astype(np.float32)
        res = np.r_[rng.uniform(-0.1, 0.1, 6), 0.0]
        reward = 1.0 - 200 * (res[0] - 0.05 * x[0] - offset) ** 2 - cfg.alpha * np.sum(res**2)
        buf.add(x, np.zeros(7), res, reward, True, True, x, np.zeros(7))
    return cfg, actor, learner, buf, rng


def test_residual_td3_learns_a_contextual_correction():
    """Reward peaks where the residual's first dimension equals 0.05 x: the actor moves there from zero."""
    cfg, actor, learner, buf, rng = contextual_bandit()
    probe = torch.linspace(-1, 1, 21)[:, None]

    def error() -> float:
        with torch.no_grad():
            return float(((actor(probe, torch.zeros(21, 7))[:, 0] - 0.05 * probe[:, 0]) ** 2).mean().sqrt())

    before = error()
    learner.config = cfg.replace(critic_warmup=50)  # the actor waits for 50 critic updates
    for _ in range(50):
        learner.update(buf.sample(64, 1, cfg.discount, rng))
    assert error() == before and learner.updates == 50
    for _ in range(600):
        metrics = learner.update(buf.sample(64, 1, cfg.discount, rng))
    assert before > 0.025 and error() < 0.4 * before, (before, error())
    assert metrics["critic_loss"] < 0.1 and np.isfinite(metrics["actor_loss"])


def test_the_bias_penalty_keeps_the_state_dependent_part_of_a_correction_and_drops_its_offset():
    """Reward peaks at residual 0.05 x + 0.05 on dimension 0: without the bias penalty the actor learns the offset too,
    with it the residual's mean over states stays near zero while its slope in x is learned as before."""

    def train(bias_penalty: float) -> tuple[float, float]:
        cfg, actor, learner, buf, rng = contextual_bandit(0.05, bias_penalty=bias_penalty)
        for _ in range(700):
            metrics = learner.update(buf.sample(64, 1, cfg.discount, rng))
        assert np.isfinite(metrics["residual_bias"])
        probe = torch.linspace(-1, 1, 21)[:, None]
        with torch.no_grad():
            out = actor(probe, torch.zeros(21, 7))[:, 0].numpy()
        return float(out.mean()), float(np.polyfit(probe[:, 0].numpy(), out, 1)[0])

    (mean_free, slope_free), (mean_pen, slope_pen) = train(0.0), train(1000.0)
    assert mean_free > 0.025, mean_free  # the offset is learned without the penalty (optimum 0.049)
    assert abs(mean_pen) < 0.35 * mean_free, (mean_pen, mean_free)
    assert slope_free > 0.02 and slope_pen > 0.02, (slope_free, slope_pen)  # the correction's slope 0.05 (x0.98 by alpha)


def test_without_penalty_in_reward_the_critic_learns_the_success_return_and_the_actor_alone_pays_the_penalty():
    """Terminal rows (no bootstrap): the critic's target is the reward plus the penalty the actor takes over by default,
    the reward alone without ``penalty_in_reward``; the stage reward's penalty coefficient is then 0."""
    for in_reward in (True, False):
        cfg, _actor, learner, buf, rng = contextual_bandit(penalty_in_reward=in_reward)
        batch = buf.sample(64, 1, cfg.discount, rng)
        assert not batch["disc"].any()
        penalty = cfg.alpha * (batch["res"].astype(np.float64) ** 2).sum(-1)
        expected = batch["ret"].mean() + (penalty.mean() if in_reward else 0.0)
        assert learner.update(batch)["target_q"] == pytest.approx(expected, abs=1e-5)
        assert cfg.reward_alpha == (cfg.alpha if in_reward else 0.0)
    with pytest.raises(ValueError, match="penalty_in_reward"):
        FinetuneConfig(penalty_in_reward=1)


def test_actor_pessimism_keeps_the_residual_where_the_critics_disagree():
    """Two critics that disagree about dimension 0 (one values it at 2 r, the other at 0): their mean pulls the residual
    up, the mean less their spread (actor_pessimism 1) does not, and a dimension they agree on grows either way."""

    class Disagreeing(torch.nn.Module):
        def forward(self, obs, base, res):
            return torch.stack([2 * res[:, 0] + res[:, 1], res[:, 1]])

    def train(pessimism: float) -> np.ndarray:
        cfg, actor, learner, buf, rng = contextual_bandit(actor_pessimism=pessimism, critic_warmup=0, actor_delay=1)
        learner.critic = Disagreeing()
        batch = {k: torch.as_tensor(v) for k, v in buf.sample(64, 1, cfg.discount, rng).items()}
        for _ in range(200):
            learner.update_actor(batch, batch["obs"])
        with torch.no_grad():
            return actor(batch["obs"], batch["base"]).mean(0).numpy()

    free, pessimistic = train(0.0), train(1.0)
    assert free[0] > 0.02 and free[1] > 0.02, free
    assert abs(pessimistic[0]) < 0.2 * free[0] and pessimistic[1] > 0.02, (pessimistic, free)
    with pytest.raises(ValueError, match="actor_pessimism"):
        FinetuneConfig(actor_pessimism=-1.0)


# ---------------------------------------------------------------------- the run
def tiny_agent_dir(env, path):
    from reinforcegen_ros.policies.configuration_hsp import HSPConfig
    from reinforcegen_ros.policies.encoders import ObservationSpec
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    from test_hsp_training import TINY

    torch.manual_seed(0)
    cfg = HSPConfig(**TINY)
    agent = HybridSkillPolicy(TASK, "privileged", [s.name for s in env.stages], ObservationSpec.for_mode("privileged", len(env.objects) * 7, cfg), cfg)
    return agent.save(path)


def test_run_checkpoints_resumes_after_a_kill_and_writes_the_agent(env, bank_path, tmp_path, monkeypatch):
    from reinforcegen_ros.finetune import residual_rl
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.training.checkpoint import Checkpoint

    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    cfg = FinetuneConfig(**TINY_RL)
    with pytest.raises(ValueError, match="holds other files .config.json"):  # e.g. the agent directory itself
        finetune_skill(TASK, 0, agent_dir, 45, agent_dir, bank_path, cfg, progress=False, env=env)
    whole = finetune_skill(TASK, 0, agent_dir, 45, tmp_path / "whole", bank_path, cfg, progress=False, env=env)
    assert whole["env_steps"] >= 45 and whole["updates"] > 0 and whole["before"]["episodes"] == 2
    # the same run killed after its first checkpoint, then resumed
    real, calls = residual_rl.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(residual_rl, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune_skill(TASK, 0, agent_dir, 45, tmp_path / "killed", bank_path, cfg, progress=False, env=env)
    monkeypatch.setattr(residual_rl, "save_checkpoint", real)
    killed_at = json.loads((tmp_path / "killed" / "checkpoint.json").read_text())["run"]["env_steps"]
    assert 15 <= killed_at < 45
    resumed = finetune_skill(TASK, 0, agent_dir, 45, tmp_path / "killed", bank_path, cfg, progress=False, env=env)
    for key in ("env_steps", "episodes", "updates"):
        assert resumed[key] == whole[key], key
    snaps = [Checkpoint(tmp_path / d, CHECKPOINT_FORMAT).load() for d in ("whole", "killed")]
    assert snaps[0].meta["run"]["env_steps"] == snaps[1].meta["run"]["env_steps"] and snaps[0].meta["numpy_rng"] == snaps[1].meta["numpy_rng"]
    for name, value in snaps[0].groups["replay"][(0, "replay")].items():
        assert torch.equal(value, snaps[1].groups["replay"][(0, "replay")][name]), name
    for name, value in snaps[0].model.items():
        assert torch.allclose(value, snaps[1].model[name], atol=1e-6), name
    # the agent directory: base + residual of stage 0, loaded as evaluation loads it; the residual has moved off zero
    agent = HybridSkillPolicy.load(tmp_path / "killed" / "agent", task=TASK)
    assert agent.residual.stages == [0] and agent.residual.info["0"]["env_steps"] == whole["env_steps"]
    obs = env.reset(seed=5)
    agent.set_episode_seed(1)
    base = agent.act(obs, 0, residual=False)
    agent.set_episode_seed(1)
    assert not np.array_equal(agent.act(obs, 0), base) and np.abs(agent.act(obs, 0) - base).max() <= 0.1 + 1e-9
    # with agent_weights 'best' (a resumable change) the agent gets the best-evaluated residual: here, never better than the base
    assert [h["success"] for h in resumed["history"]] == [0.0] * len(resumed["history"])
    best = finetune_skill(TASK, 0, agent_dir, 45, tmp_path / "killed", bank_path, cfg.replace(agent_weights="best"), progress=False, env=env)
    assert best["env_steps"] == whole["env_steps"] and best["weights_of_env_steps"] == 0
    agent = HybridSkillPolicy.load(tmp_path / "killed" / "agent", task=TASK)
    agent.set_episode_seed(1)
    assert np.array_equal(agent.act(obs, 0), base)
    # a resumed run with other settings, or for another stage, is refused and leaves the checkpoint as it was
    before = (tmp_path / "killed" / "checkpoint.json").read_text()
    with pytest.raises(ValueError, match="other settings.*alpha"):
        finetune_skill(TASK, 0, agent_dir, 60, tmp_path / "killed", bank_path, cfg.replace(alpha=1.0), progress=False, env=env)
    with pytest.raises(ValueError, match="stage 0, not 1"):
        finetune_skill(TASK, 1, agent_dir, 60, tmp_path / "killed", bank_path, cfg, progress=False, env=env)
    assert (tmp_path / "killed" / "checkpoint.json").read_text() == before


def test_finetune_command_line(env, bank_path, tmp_path, capsys):
    import yaml

    from reinforcegen_ros.cli import main
    from reinforcegen_ros.finetune.config import DEFAULT_CONFIG

    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(DEFAULT_CONFIG.read_text()), **TINY_RL}))
    from test_hsp_training import synthetic_hsp_episode, write_h5

    demos = write_h5(tmp_path / "demos.hdf5", [synthetic_hsp_episode(s) for s in range(2)])
    args = ["finetune", "skill", "--task", TASK, "--stage", "0", "--agent", str(agent_dir), "--steps", "20", "--out", str(tmp_path / "run"),
            "--bank", str(bank_path), "--demos", str(demos), "--config", str(config)]
    assert main(args) == 0
    assert "stage 0 of coffee: success" in capsys.readouterr().out
    assert (tmp_path / "run" / "agent" / "residual.json").exists() and any((tmp_path / "run" / "tb").iterdir())
    assert (tmp_path / "run" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["updates"] > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["agent_weights"] == "last" and summary["weights_of_env_steps"] == summary["env_steps"]
    # --agent-weights is a resumable change: the finished run rewrites its agent with the best-evaluated residual
    assert main(args + ["--agent-weights", "best"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    best = max(summary["history"], key=lambda h: h["success"])  # ties keep the earlier
    assert summary["agent_weights"] == "best" and summary["weights_of_env_steps"] == best["env_steps"]
    assert json.loads((tmp_path / "run" / "agent" / "residual.json").read_text())["info"]["0"]["weights_of_env_steps"] == best["env_steps"]
    assert main(args[:-2] + ["--config", str(config), "--alpha", "1"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["finetune", "skill", "--task", TASK, "--stage", "7", "--agent", str(agent_dir), "--steps", "5", "--out", str(tmp_path / "r2"),
                 "--bank", str(bank_path), "--config", str(config)]) == 2
    assert "stage 7 out of range" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_correlated_exploration_noise_keeps_its_std_and_holds_a_push():
    """explore_correlation: AR(1) noise of unit std whose lag-1 correlation is the setting, so ten ticks of it add up to
    a push about 2.7x longer than ten independent draws; 0 is exactly the independent draws a run made before."""
    from reinforcegen_ros.finetune.residual_rl import exploration_noise

    def series(rho: float, n: int, seed: int = 0) -> np.ndarray:
        rng, last, out = np.random.default_rng(seed), None, []
        for _ in range(n):
            last = exploration_noise(rng, rho, last)
            out.append(last)
        return np.array(out)

    held = series(0.9, 20000)
    assert held.std() == pytest.approx(1.0, abs=0.06)
    lag1 = np.mean([np.corrcoef(held[:-1, d], held[1:, d])[0, 1] for d in range(7)])
    assert lag1 == pytest.approx(0.9, abs=0.02)
    push = lambda x: x[: len(x) // 10 * 10].reshape(-1, 10, 7).sum(1).std()  # noqa: E731
    independent = series(0.0, 20000)
    assert push(held) / push(independent) > 2.3
    assert np.array_equal(independent[:50], np.random.default_rng(0).normal(0.0, 1.0, (50, 7)))
    with pytest.raises(ValueError, match="explore_correlation"):
        FinetuneConfig(explore_correlation=1.0)


def test_demo_skill_segments_become_residual_transitions_ending_at_the_termination_signal():
    from reinforcegen_ros.finetune.demos import base_actions, demo_buffer
    from reinforcegen_ros.finetune.residual_rl import sample_batch

    from test_hsp_training import CLOSE, CONNECT, SKILL, synthetic_hsp_episode
    from test_residual import tiny_agent

    agent, episodes = tiny_agent(), [synthetic_hsp_episode(s) for s in range(3)]
    bound = np.r_[np.full(6, 0.1), 0.0]
    buf = demo_buffer(episodes, agent, 0, bound, alpha=5.0)
    rows, _ = buf.state()
    per_episode = SKILL - CLOSE  # stage 0's signal holds from the step the gripper closes: that transition ends the run
    assert len(buf) == 3 * per_episode and rows["terminal"].sum() == 3 and rows["terminal"][per_episode - 1]
    ep = episodes[0]
    feats = agent.normalise(torch.from_numpy(agent.spec.lowdim(ep.obs, batched=True))).numpy()
    base = base_actions(agent, 0, feats)
    steps = slice(CONNECT, CONNECT + per_episode)
    assert np.allclose(rows["res"][:per_episode], np.clip(ep.actions[steps] - base[steps], -bound, bound), atol=1e-6)
    assert np.allclose(rows["reward"][:per_episode], rows["terminal"][:per_episode] - 5.0 * (rows["res"][:per_episode] ** 2).sum(1), atol=1e-6)
    assert np.all(np.abs(rows["res"]) <= bound + 1e-7) and np.all(rows["res"][:, 6] == 0)
    cfg = FinetuneConfig(**{**TINY_RL, "batch_size": 8, "demo_fraction": 0.5})
    online = ReplayBuffer(16, buf.obs_dim)
    online.add(np.zeros(buf.obs_dim), np.zeros(7), np.zeros(7), 0.0, False, False, np.zeros(buf.obs_dim), np.zeros(7))
    batch, actor_rows = sample_batch(online, buf, cfg, np.random.default_rng(0))
    assert actor_rows == 4 and len(batch["obs"]) == 8 and not batch["obs"][:4].any() and batch["obs"][4:].any()
    with pytest.raises(ValueError, match="no skill steps of stage 1"):
        demo_buffer([ep.__class__(**{**ep.__dict__, "phase": np.zeros_like(ep.phase)})], agent, 1, bound, 5.0)


def test_run_without_a_bank_collects_one_with_the_agent_as_evaluation_builds_it(env, tmp_path):
    """An untrained agent's initiation pose is out of reach: every attempt is recorded with its reason, and the run stops."""
    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    cfg = FinetuneConfig(**{**TINY_RL, "bank_states": 1})
    with pytest.raises(ValueError, match=r"holds no states \(20 attempts reached none\)"):
        finetune_skill(TASK, 0, agent_dir, 10, tmp_path / "run", None, cfg, progress=False, env=env)
    bank = read_bank(tmp_path / "run" / "bank_stage0.hdf5")
    assert [a["seed"] for a in bank.attempts] == list(range(300000, 300020)) and "planning failed" in bank.attempts[0]["reason"]
    assert bank.source["pose"] == "learned" and bank.source["teacher"] is None and bank.source["hybrid"]["termination"] == "oracle"
    assert not (tmp_path / "run" / "checkpoint.json").exists()


def test_bank_attempts_on_a_process_pool_are_those_of_one_process(env, tmp_path):
    from reinforcegen_ros.finetune.reset_bank import build_bank

    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    banks = [build_bank(tmp_path / f"bank{w}.hdf5", TASK, 0, str(agent_dir), 2, seed=50, max_attempts=3, progress=False, workers=w)
             for w in (1, 2)]
    assert banks[0].attempts == banks[1].attempts and [a["seed"] for a in banks[1].attempts] == [50, 51, 52]
    assert read_bank(tmp_path / "bank2.hdf5").attempts == banks[0].attempts


def test_a_time_limit_ends_the_episode_as_a_failure_only_with_time_limit_terminal(env, bank_path, tmp_path):
    """The last transition of a cut-off episode is bootstrapped by default, terminal (a failure) with the setting."""
    from reinforcegen_ros.finetune.residual_rl import RunState, StageEnv, run_episode
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    class ZeroResidual:
        def act(self, _obs, _base, noise=None):
            return np.zeros(7)

    agent = HybridSkillPolicy.load(tiny_agent_dir(env, tmp_path / "base"), task=TASK)
    cfg = FinetuneConfig(**TINY_RL).replace(seed_steps=10_000)  # no updates: the buffer is what is looked at
    senv = StageEnv(env, agent, 0, load_bank(bank_path, TASK, 0, env), cfg.alpha, cfg.stage_time_limit)
    for terminal in (False, True):
        buffer = ReplayBuffer(100, len(senv.reset(0, 0)[0]))
        won = run_episode(senv, ZeroResidual(), buffer, RunState(), np.random.default_rng(0), cfg.replace(time_limit_terminal=terminal))
        rows, _ = buffer.state()
        n = cfg.stage_time_limit
        assert not won and len(buffer) == n  # the untrained agent never ends its stage: cut off at the limit
        assert rows["last"][n - 1] and not rows["last"][: n - 1].any()
        assert rows["terminal"][n - 1] == terminal and not rows["terminal"][: n - 1].any()
    with pytest.raises(ValueError, match="time_limit_terminal"):
        FinetuneConfig(time_limit_terminal="yes")


def test_reset_weights_favour_the_states_the_first_evaluation_failed():
    from reinforcegen_ros.finetune.residual_rl import reset_weights

    assert reset_weights(4, [1], 1.0) is None and reset_weights(4, [], 5.0) is None  # uniform, drawn as before
    w = reset_weights(5, [1, 3, 3], 4.0)
    assert np.allclose(w, np.array([1, 4, 1, 4, 1]) / 11)
    draws = np.random.default_rng(0).choice(5, size=22_000, p=w)
    assert abs(np.mean(draws == 1) / np.mean(draws == 0) - 4.0) < 0.4


def test_a_run_records_failed_states_and_its_reset_weight_and_refuses_another_on_resume(env, bank_path, tmp_path):
    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    cfg = FinetuneConfig(**TINY_RL).replace(reset_failed_weight=3.0)
    run = finetune_skill(TASK, 0, agent_dir, 20, tmp_path / "w", bank_path, cfg, progress=False, env=env)
    assert run["before"]["failed"] == [0, 1]  # the approach agent never ends its stage
    saved = json.loads((tmp_path / "w" / "checkpoint.json").read_text())["config"]
    assert saved["reset_failed_weight"] == 3.0
    with pytest.raises(ValueError, match="reset_failed_weight 3.0 vs 1.0"):
        finetune_skill(TASK, 0, agent_dir, 30, tmp_path / "w", bank_path, cfg.replace(reset_failed_weight=1.0), progress=False, env=env)
    later = {"reset_failed_weight", "bias_penalty", "time_limit_terminal", "penalty_in_reward", "actor_pessimism", "term_inputs", "term_all_ticks", "residual_rotation"}
    assert not later & set(FinetuneConfig().to_dict())  # at their defaults, records leave them out: older runs resume


def test_finetune_evaluate_replays_the_runs_own_evaluation_of_the_written_agent(env, bank_path, tmp_path, capsys, monkeypatch):
    """The written agent (base + residual) from the run's evaluation states, with its episode seeds and limit, takes the
    actions of the run's last evaluation and gets its outcomes, under a termination that depends on how the arm moved."""
    from reinforcegen_ros.cli import main
    from reinforcegen_ros.finetune.reset_bank import load_bank
    from reinforcegen_ros.finetune.stage_eval import evaluate_agent_stage
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    bank = load_bank(bank_path, TASK, 0, env)
    starts = [bank.restore(env, i)["robot0_eef_pos"].copy() for i in range(len(bank))]
    monkeypatch.setattr(env, "stage_done", lambda stage: min(np.linalg.norm(env.observe()["robot0_eef_pos"] - p) for p in starts) > 0.04)
    actions, step = [], env.step
    monkeypatch.setattr(env, "step", lambda action: actions.append(np.array(action)) or step(action))
    cfg = FinetuneConfig(**TINY_RL).replace(lr_actor=0.01)  # a residual that moves off zero within the run
    run = finetune_skill(TASK, 0, tiny_agent_dir(env, tmp_path / "base"), 40, tmp_path / "run", bank_path, cfg, progress=False, env=env)
    after = run["after"]
    assert after["success"] > 0 and after["env_steps"] > 0  # the arm moves 4 cm within the limit from some state
    agent = HybridSkillPolicy.load(tmp_path / "run" / "agent", task=TASK)
    run_actions = list(actions)
    actions.clear()
    result = evaluate_agent_stage(env, agent, 0, bank, [0, 1], time_limit=TINY_RL["stage_time_limit"])
    assert (result["success"], result["steps"], result["failed"]) == (after["success"], after["steps"], after["failed"])
    assert len(actions) == sum(o["steps"] for o in result["outcomes"])
    assert np.allclose(np.array(actions), np.array(run_actions[-len(actions):]), atol=1e-6)  # the run's evaluation came last
    agent.reset()
    agent.set_episode_seed(0)
    obs = bank.restore(env, 0)
    assert np.abs(agent.act(obs, 0) - agent.act(obs, 0, residual=False)).max() > 1e-3  # ... and the residual takes part
    # the command line on the bank (its own env, the real termination: the tiny agent never ends the stage)
    args = ["finetune", "evaluate", "--task", TASK, "--stage", "0", "--agent", str(tmp_path / "run" / "agent"), "--bank", str(bank_path),
            "--time-limit", "5", "--out", str(tmp_path / "eval.json")]
    assert main(args) == 0
    assert "stage 0 of coffee: 0/2 (0.0%, Wilson 0.0-65.8%) from bank states 0..1" in capsys.readouterr().out
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["failed"] == [0, 1] and [o["steps"] for o in saved["outcomes"]] == [5, 5]
    assert main(args[:-2] + ["--first", "1", "--states", "2"]) == 2
    assert "holds 2 states; states 1..2 asked for" in capsys.readouterr().err


def test_states_along_the_skill_replay_the_agent_from_the_bank_and_stop_where_the_stage_ends(env, bank_path, tmp_path, capsys, monkeypatch):
    """The bank's own states first, then those after 3 and 5 skill steps (the agent's episode seeds); a state whose stage
    has already ended is left out with its reason; the command writes a new bank file and refuses an existing one."""
    from reinforcegen_ros.cli import main
    from reinforcegen_ros.finetune.reset_bank import along_skill
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    agent_dir = tiny_agent_dir(env, tmp_path / "base")
    agent = HybridSkillPolicy.load(agent_dir, task=TASK)
    bank = load_bank(bank_path, TASK, 0, env)
    steps_taken = []
    real_step = env.step
    monkeypatch.setattr(env, "step", lambda action: steps_taken.append(1) or real_step(action))
    monkeypatch.setattr(env, "stage_done", lambda stage: len(steps_taken) == 9)  # the second state's 4th step ends the stage
    along = along_skill(bank, env, agent, [0, 3, 5], seed=70)
    assert len(steps_taken) == 5 + 4 and len(along) == 2 + 2 + 1
    assert np.array_equal(along.states[:2], bank.states) and list(along.seeds) == list(bank.seeds) + list(bank.seeds) + [bank.seeds[0]]
    assert along.attempts[-1] == {"seed": int(bank.seeds[1]), "reached": False, "reason": "stage ended after 4 skill steps"}
    monkeypatch.undo()
    obs = bank.restore(env, 1)  # state 1 after 3 steps, replayed
    agent.reset()
    agent.set_episode_seed(71)
    for _ in range(3):
        obs = env.step(agent.act(obs, 0))
    assert np.allclose(along.states[3], env.get_state()) and np.allclose(along.eef_pos[3], obs["robot0_eef_pos"])
    out = tmp_path / "along.hdf5"
    args = ["finetune", "bank", "--task", TASK, "--stage", "0", "--agent", str(agent_dir), "--bank", str(out), "--from-bank", str(bank_path),
            "--skill-steps", "0", "2", "--seed", "70"]
    assert main(args) == 0
    assert "4 states along stage 0's skill from the 2 states of" in capsys.readouterr().out
    written = load_bank(out, TASK, 0, env)
    assert written.source["skill_steps"] == [0, 2] and np.array_equal(written.states[:2], bank.states)
    assert main(args) == 2 and "exists; states along the skill go to a new bank file" in capsys.readouterr().err
