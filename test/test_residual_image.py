"""Residual RL's image path (DrQ-v2's encoder) and ``--device``, on tiny camera agents (32x32 frames).

The image learner fits a fixed toy batch through its encoder (trained by the critic
only), random shift moves pixels but keeps shapes, frames sit in the replay buffer
as uint8, a short run on a rendering Coffee scene writes an agent whose image
residual loads and acts within the bound, mismatched encoders and ``--device cuda``
without CUDA are refused with one line, and a low-dimensional run's records keep
the format they had before the image path existed (an older checkpoint resumes
to the same results).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reinforcegen_ros.finetune import residual_rl
from reinforcegen_ros.finetune.config import FinetuneConfig, resolve_device
from reinforcegen_ros.finetune.encoders import ImageEncoder, LowDimEncoder, make_encoder
from reinforcegen_ros.finetune.replay_buffer import ImageReplayBuffer
from reinforcegen_ros.finetune.residual_rl import CHECKPOINT_FORMAT, ResidualTD3, finetune_skill
from reinforcegen_ros.policies.configuration_hsp import HSPConfig
from reinforcegen_ros.policies.encoders import ObservationSpec
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.policies.residual import RESIDUAL_CONFIG, RESIDUAL_WEIGHTS, ImageResidualNet, ResidualImageEncoder, SkillResidual

from test_finetune import TINY_RL, executor_for
from test_hsp_training import STAGES, TINY

TASK, SIZE, CAMERAS = "coffee", 32, ["agentview", "robot0_eye_in_hand"]
TINY_IMAGE = {**TINY_RL, "encoder": "image", "feature_dim": 8, "image_hidden_dim": 32, "image_channels": 8, "batch_size": 8,
              "seed_steps": 4, "stage_time_limit": 8, "eval_every": 100, "eval_episodes": 1, "checkpoint_every": 8}


def tiny_rgb_agent(seed: int = 0, size: int = SIZE, cameras=CAMERAS, stages=STAGES) -> HybridSkillPolicy:
    """An untrained tiny camera agent with random input normalisation."""
    torch.manual_seed(seed)
    cfg = HSPConfig(**{**TINY, "obs_mode": "rgb", "image_size": size, "cameras": list(cameras)})
    agent = HybridSkillPolicy(TASK, "rgb", list(stages), ObservationSpec.for_mode("rgb", 0, cfg, list(cameras)), cfg)
    rng = np.random.default_rng(seed)
    agent.set_obs_stats(rng.normal(0, 0.1, agent.spec.feature_dim), rng.uniform(0.5, 2.0, agent.spec.feature_dim))
    return agent


def rgb_obs(rng: np.random.Generator, size: int = SIZE) -> dict:
    obs = {"robot0_eef_pos": rng.normal(size=3), "robot0_eef_axis_angle": rng.normal(size=3), "robot0_gripper_qpos": rng.normal(size=2),
           "robot0_joint_pos": rng.normal(size=7)}
    return {**obs, **{f"{cam}_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for cam in CAMERAS}}


def image_learner(agent, cfg: FinetuneConfig, seed: int = 0):
    from reinforcegen_ros.policies.hsp import limit_threads

    limit_threads(cfg.num_threads)
    torch.manual_seed(seed)
    residual = SkillResidual.for_agent(agent, cfg.residual_config(), stages=[0])
    encoder, actor = make_encoder(residual.net(0), residual.feature_dim, residual.spec, cfg)
    return residual, encoder, ResidualTD3(actor, residual.feature_dim, cfg, torch.Generator().manual_seed(1), encoder)


# ---------------------------------------------------------------------- the learner, without a simulator

def run_killed_at_first_checkpoint(monkeypatch, run) -> None:
    """Call ``run()`` with residual RL killed (KeyboardInterrupt) right after its first checkpoint is written."""
    real = residual_rl.save_checkpoint

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(residual_rl, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(residual_rl, "save_checkpoint", real)

def test_image_learner_fits_a_fixed_batch_through_its_encoder_and_stores_uint8_frames():
    """Reward = whether the agentview frame's top-left square is bright: only the images tell; the critic loss falls."""
    cfg = FinetuneConfig(**{**TINY_IMAGE, "lr_critic": 1e-3, "lr_encoder": 1e-3, "critic_warmup": 0, "batch_size": 64})
    agent = tiny_rgb_agent()
    residual, encoder, learner = image_learner(agent, cfg)
    assert isinstance(encoder, ImageEncoder) and encoder.out_dim == 8 + agent.spec.feature_dim
    assert learner.policy is residual.net(0) and learner.actor is residual.net(0).head
    rng = np.random.default_rng(0)
    buf = encoder.make_buffer(64)
    assert isinstance(buf, ImageReplayBuffer)
    for i in range(64):
        obs = rgb_obs(rng)
        bright = i % 2 == 0
        obs["agentview_image"][:12, :12] = 255 if bright else 0
        o = encoder.observe(agent, obs)
        buf.add(o, np.zeros(7), np.zeros(7), float(bright), True, True, o, np.zeros(7))
    assert buf.arrays["frames"].dtype == np.uint8 and buf.arrays["frames"].shape == (64, 6, SIZE, SIZE)
    assert buf.arrays["next_frames"].dtype == np.uint8 and buf.bytes_per_transition == 2 * 6 * SIZE * SIZE + 4 * (2 * 18 + 22) + 2
    with pytest.raises(ValueError, match="'frames' must be uint8"):
        buf.add({**o, "frames": o["frames"].astype(np.float32)}, np.zeros(7), np.zeros(7), 0.0, False, False, o, np.zeros(7))
    batch = buf.sample(64, 1, cfg.discount, np.random.default_rng(1))
    assert batch["frames"].dtype == np.uint8 and batch["frames"].shape == (64, 6, SIZE, SIZE)
    conv0 = residual.net(0).encoder.convs[0].weight.detach().clone()
    losses = [learner.update(batch)["critic_loss"] for _ in range(150)]
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5]), (losses[:5], losses[-10:])
    assert not torch.equal(conv0, residual.net(0).encoder.convs[0].weight)  # the critic's gradient trains the encoder
    # the actor step of update() reads detached features: no gradient reaches the encoder from it
    learner.update_critic = lambda *args: {}
    for p in residual.net(0).parameters():
        p.grad = None
    head = residual.net(0).head.out.weight.detach().clone()
    learner.update(batch)
    learner.update(batch)  # (actor_delay 2)
    assert not torch.equal(head, residual.net(0).head.out.weight)  # the actor stepped ...
    assert all(p.grad is None for p in residual.net(0).encoder.parameters())  # ... and the encoder saw none of it
    # the checkpoint names the encoder's weights, optimizer and shift RNG
    assert any(k.startswith("encoder/convs.0") for k in learner.tensors()) and set(learner.optimizers()) == {"actor", "critic", "encoder"}
    assert set(encoder.rng_state()) == {"shift"}


def test_random_shift_moves_pixels_but_keeps_shapes():
    cfg = FinetuneConfig(**TINY_IMAGE)
    _, encoder, _ = image_learner(tiny_rgb_agent(), cfg)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 6, SIZE, SIZE), dtype=np.uint8))
    shifted = encoder.random_shift(frames)
    assert shifted.shape == frames.shape and shifted.dtype == torch.float32
    assert shifted.min() >= 0 and shifted.max() <= 255
    moved = [not torch.equal(shifted[i], frames[i].float()) for i in range(16)]
    assert sum(moved) >= 12  # (9 x 9 offsets; 1 in 81 stays put)
    # each row is its frames translated by at most pad pixels, all channels (both cameras) alike
    padded = torch.nn.functional.pad(frames.float(), (4,) * 4, mode="replicate")
    for i in range(16):
        hits = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(padded[i, :, dy : dy + SIZE, dx : dx + SIZE], shifted[i])]
        assert len(hits) == 1, i
    encoder.pad = 0
    assert torch.equal(encoder.random_shift(frames), frames.float())


# ---------------------------------------------------------------------- bad input
def test_mismatched_encoders_and_layouts_are_refused_with_one_line(tmp_path):
    rgb, cfg = tiny_rgb_agent(), FinetuneConfig(**TINY_IMAGE)
    with pytest.raises(ValueError, match="observes cameras .*use encoder 'image'"):
        SkillResidual.for_agent(rgb, FinetuneConfig(**TINY_RL).residual_config())
    from test_residual import tiny_agent

    with pytest.raises(ValueError, match="observes no cameras .*use encoder 'lowdim'"):
        SkillResidual.for_agent(tiny_agent(), cfg.residual_config())
    residual = SkillResidual.for_agent(rgb, cfg.residual_config(), stages=[1])
    for other, pattern in ((tiny_rgb_agent(size=40), "another observation layout.*image_size"),
                           (tiny_rgb_agent(cameras=["agentview"]), "another observation layout.*cameras")):
        other.set_obs_stats(rgb.obs_mean.numpy(), rgb.obs_std.numpy())
        with pytest.raises(ValueError, match=pattern):
            other.attach_residual(residual)
    # on disk: an image residual whose config was edited to another encoder or feature size
    rgb.attach_residual(residual)
    rgb.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / RESIDUAL_CONFIG).read_text())
    assert meta["format_version"] == 2 and meta["config"]["encoder"] == "image"
    lowdim = {k: v for k, v in meta["config"].items() if k not in ("encoder", "feature_dim", "image_channels")}
    for config, pattern in ((lowdim, "lowdim encoder, but the agent observes cameras"), ({**meta["config"], "feature_dim": 9},
                            "does not match the residual's config")):
        (tmp_path / "a" / RESIDUAL_CONFIG).write_text(json.dumps({**meta, "config": config}))
        with pytest.raises(ValueError, match=pattern) as err:
            HybridSkillPolicy.load(tmp_path / "a")
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="14 pixels are too small for the residual's image encoder"):
        ResidualImageEncoder(2, 14, 8, 8)


def test_device_cuda_without_cuda_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    from reinforcegen_ros.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^--device cuda: no CUDA device is available here"):
        resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        FinetuneConfig(device="tpu")
    out = tmp_path / "run"
    args = ["finetune", "skill", "--task", TASK, "--stage", "0", "--agent", str(tmp_path / "missing"), "--steps", "5", "--out", str(out),
            "--device", "cuda"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA device is available" in err and len(err.splitlines()) == 1 and not out.exists()


def test_lowdim_records_keep_their_format():
    """What a low-dimensional run records is what it recorded before the image path (no image settings; residual format 1)."""
    cfg = FinetuneConfig()
    assert cfg.encoder == "lowdim" and not {"encoder", "feature_dim", "image_hidden_dim", "shift_pad"} & set(cfg.to_dict())
    assert set(cfg.residual_config().to_dict()) == {"hidden_dim", "layers", "action_scale", "gripper"}
    assert cfg.replace(feature_dim=64).replace(encoder="image").feature_dim == 64
    assert cfg.mismatches({k: v for k, v in cfg.to_dict().items() if k != "device"}) == []  # a checkpoint of before --device
    assert FinetuneConfig(encoder="image").mismatches(cfg.to_dict())[0].startswith("encoder None vs 'image'")
    assert isinstance(make_encoder(torch.nn.Linear(1, 1), 3, {}, cfg)[0], LowDimEncoder)


# ---------------------------------------------------------------------- a run on a rendering scene
@pytest.fixture(scope="module")
def rgb_env():
    from reinforcegen_ros.tasks.environment import TaskEnv

    e = TaskEnv(TASK, obs_mode="rgb", cameras=tuple(CAMERAS), image_size=SIZE)
    yield e
    e.close()


def test_image_run_resumes_and_writes_an_agent_whose_image_residual_loads_and_acts(rgb_env, tmp_path, monkeypatch):
    from reinforcegen_ros.finetune.reset_bank import collect_bank
    from reinforcegen_ros.training.checkpoint import Checkpoint

    bank = collect_bank(tmp_path / "bank.hdf5", rgb_env, executor_for(rgb_env), TASK, 0, states=1, seed=300, source={"agent": "approach"},
                        horizon=200)
    assert len(bank) == 1
    agent_dir = tiny_rgb_agent(stages=[s.name for s in rgb_env.stages]).save(tmp_path / "base")
    cfg = FinetuneConfig(**TINY_IMAGE)
    with pytest.raises(ValueError, match="image encoder has no demo frames"):
        finetune_skill(TASK, 0, agent_dir, 8, tmp_path / "x", tmp_path / "bank.hdf5", cfg, progress=False, env=rgb_env, demos="d.hdf5")
    run_killed_at_first_checkpoint(monkeypatch, lambda: finetune_skill(TASK, 0, agent_dir, 16, tmp_path / "run", tmp_path / "bank.hdf5",
                                                                       cfg, progress=False, env=rgb_env))
    snap = Checkpoint(tmp_path / "run", CHECKPOINT_FORMAT).load()
    replay = snap.groups["replay"][(0, "replay")]
    assert replay["frames"].dtype == torch.uint8 and replay["frames"].shape[1:] == (6, SIZE, SIZE) and 8 <= len(replay["frames"]) < 16
    assert (0, "encoder") in snap.optimizers and any(k.startswith("encoder/") for k in snap.model)
    summary = finetune_skill(TASK, 0, agent_dir, 16, tmp_path / "run", tmp_path / "bank.hdf5", cfg, progress=False, env=rgb_env)
    assert summary["env_steps"] >= 16 and summary["updates"] > 0
    # the agent directory: base + image residual (encoder weights with the actor), loaded as evaluation loads it
    assert any(k.startswith("nets.0.encoder.convs") for k in json_keys(tmp_path / "run" / "agent" / RESIDUAL_WEIGHTS))
    agent = HybridSkillPolicy.load(tmp_path / "run" / "agent", task=TASK)
    assert isinstance(agent.residual.net(0), ImageResidualNet) and agent.residual.config.encoder == "image"
    obs = rgb_env.reset(seed=5)
    agent.set_episode_seed(1)
    base = agent.act(obs, 0, residual=False)
    agent.set_episode_seed(1)
    assert not np.array_equal(agent.act(obs, 0), base)
    with torch.no_grad():  # saturated weights: the output still goes through the same bound, the gripper left alone
        for p in agent.residual.net(0).parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 3.0)
    agent.set_episode_seed(1)
    diff = agent.act(obs, 0) - base
    assert np.abs(diff).max() <= 0.1 + 1e-6 and np.abs(diff[:6]).max() > 0.05 and diff[6] == 0
    other = dict(obs, agentview_image=np.zeros_like(obs["agentview_image"]))
    agent.set_episode_seed(1)
    base_other = agent.act(other, 0, residual=False)
    agent.set_episode_seed(1)
    assert not np.allclose(agent.act(other, 0) - base_other, diff)  # the residual reads the frames
    # agent_weights 'best' (the base so far): the residual of env step 0 (encoder included) is written
    best = finetune_skill(TASK, 0, agent_dir, 16, tmp_path / "run", tmp_path / "bank.hdf5", cfg.replace(agent_weights="best"),
                          progress=False, env=rgb_env)
    assert best["weights_of_env_steps"] == 0
    agent = HybridSkillPolicy.load(tmp_path / "run" / "agent", task=TASK)
    torch.manual_seed(0)  # as the run made the stage's residual
    fresh = SkillResidual.for_agent(agent, cfg.residual_config(), stages=[0])
    assert all(torch.equal(v, agent.residual.state_dict()[k]) for k, v in fresh.state_dict().items())


def json_keys(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


# ---------------------------------------------------------------------- low-dimensional runs of before
def test_a_lowdim_checkpoint_of_before_the_image_path_resumes_to_the_same_results(tmp_path, monkeypatch):
    """A checkpoint whose settings lack ``device`` and the image settings (as written before them) resumes like an uninterrupted run."""
    from reinforcegen_ros.finetune.reset_bank import collect_bank
    from reinforcegen_ros.tasks.environment import TaskEnv
    from reinforcegen_ros.training.checkpoint import Checkpoint

    from test_finetune import tiny_agent_dir

    env = TaskEnv(TASK)
    try:
        collect_bank(tmp_path / "bank.hdf5", env, executor_for(env), TASK, 0, states=1, seed=300, source={"agent": "approach"}, horizon=200)
        agent_dir = tiny_agent_dir(env, tmp_path / "base")
        cfg = FinetuneConfig(**{**TINY_RL, "checkpoint_every": 12, "stage_time_limit": 6})
        run = lambda out: finetune_skill(TASK, 0, agent_dir, 30, tmp_path / out, tmp_path / "bank.hdf5", cfg, progress=False, env=env)
        whole = run("whole")
        assert whole["updates"] > 0
        run_killed_at_first_checkpoint(monkeypatch, lambda: run("killed"))
        record = json.loads((tmp_path / "killed" / "checkpoint.json").read_text())
        assert "device" in record["config"] and not {"encoder", "feature_dim", "shift_pad"} & set(record["config"])
        record["config"].pop("device")
        (tmp_path / "killed" / "checkpoint.json").write_text(json.dumps(record))
        snap = Checkpoint(tmp_path / "killed", CHECKPOINT_FORMAT).load()  # the layout of before: no encoder anywhere
        assert {k.split("/")[0] for k in snap.model} == {"actor", "actor_target", "critic", "critic_target"}
        assert set(snap.optimizers) == {(0, "actor"), (0, "critic")} and set(snap.groups["rng"][(0, "rng")]) == {"torch"}
        assert set(snap.groups["replay"][(0, "replay")]) == {"obs", "base", "res", "reward", "terminal", "last", "next_obs", "next_base"}
        resumed = run("killed")
    finally:
        env.close()
    assert resumed["history"] == whole["history"] and all(resumed[k] == whole[k] for k in ("env_steps", "episodes", "updates"))
    snaps = [Checkpoint(tmp_path / d, CHECKPOINT_FORMAT).load() for d in ("whole", "killed")]
    assert snaps[0].meta["numpy_rng"] == snaps[1].meta["numpy_rng"]
    for name, value in snaps[0].model.items():
        assert torch.equal(value, snaps[1].model[name]), name
