"""Residual skill policy: pi = pi_base + pi_res on tiny agents (no simulator).

A fresh residual leaves the base's actions exactly as they were, its output is
bounded, it is saved and loaded with the agent directory (and through the paths
evaluation and deployment use), and a residual made for another task, stage list,
observation layout or base is refused with one line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reinforcegen_ros.policies.configuration_hsp import HSPConfig
from reinforcegen_ros.policies.encoders import ObservationSpec
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.finetune.config import FinetuneConfig
from reinforcegen_ros.policies.residual import ACTION_DIM, RESIDUAL_CONFIG, RESIDUAL_WEIGHTS, ResidualConfig, ResidualNet, SkillResidual, has_residual

from test_hsp_training import STAGES, TINY, obs_at, synthetic_hsp_episode

RES = ResidualConfig(hidden_dim=16, layers=2, action_scale=0.1, gripper=False)


def tiny_agent(seed: int = 0, task: str = "coffee", relative: bool = True) -> HybridSkillPolicy:
    """An untrained tiny privileged agent with random weights and input normalisation."""
    torch.manual_seed(seed)
    cfg = HSPConfig(**{**TINY, "relative_objects": relative})
    spec = ObservationSpec.for_mode("privileged", 14, cfg)
    agent = HybridSkillPolicy(task, "privileged", list(STAGES), spec, cfg)
    rng = np.random.default_rng(seed)
    agent.set_obs_stats(rng.normal(0, 0.1, spec.feature_dim), rng.uniform(0.5, 2.0, spec.feature_dim))
    return agent


def randomise(residual: SkillResidual, seed: int = 1) -> None:
    """Non-zero weights everywhere (as after fine-tuning), with outputs that saturate."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in residual.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 3.0)


@pytest.fixture(scope="module")
def observations():
    ep = synthetic_hsp_episode(3)
    return [obs_at(ep, t) for t in range(0, len(ep.actions), 3)]


def actions(agent, observations, stage, **kw):
    agent.reset()
    agent.set_episode_seed(5)
    return np.array([agent.act(o, stage, **kw) for o in observations])


def test_fresh_residual_acts_exactly_as_the_base(observations):
    agent = tiny_agent()
    base = actions(agent, observations, 1)
    agent.attach_residual(SkillResidual.for_agent(agent, RES, stages=[0, 1]))
    assert np.array_equal(actions(agent, observations, 1), base)  # bit for bit: the output layer is zero
    assert np.array_equal(actions(agent, observations, 1, residual=False), base)


def test_residual_is_bounded_and_leaves_the_gripper_and_other_stages_alone(observations):
    agent = tiny_agent()
    base0, base1 = actions(agent, observations, 0), actions(agent, observations, 1)
    residual = SkillResidual.for_agent(agent, RES, stages=[1])
    randomise(residual)
    agent.attach_residual(residual)
    out1 = actions(agent, observations, 1)
    diff = out1 - base1
    assert np.abs(diff).max() <= 0.1 + 1e-6 and np.abs(diff[:, :6]).max() > 0.05  # saturated near the bound
    assert np.array_equal(out1[:, 6], base1[:, 6]) and np.all(np.abs(out1) <= 1.0)
    assert np.array_equal(actions(agent, observations, 0), base0)  # stage 0 has no residual
    # batched: every output within the bound whatever the input
    net = residual.net(1)
    out = net(torch.randn(64, residual.feature_dim) * 10, torch.rand(64, 7) * 2 - 1)
    assert out.abs().max() <= 0.1 and torch.all(out[:, 6] == 0)
    with_gripper = SkillResidual.for_agent(agent, ResidualConfig(16, 1, 0.2, True), stages=[0])
    randomise(with_gripper)
    assert with_gripper.net(0)(torch.randn(8, residual.feature_dim), torch.zeros(8, 7))[:, 6].abs().max() > 0


def test_save_load_round_trip_is_exact_and_through_evaluation_and_deployment(tmp_path, observations):
    from reinforcegen_ros.deployment.components import PolicyResidual, SkillPolicyCore, load_agent
    from reinforcegen_ros.evaluation.harness import build_agent

    agent = tiny_agent()
    residual = SkillResidual.for_agent(agent, RES, stages=[1])
    randomise(residual)
    residual.info = {"1": {"env_steps": 10}}
    agent.attach_residual(residual)
    expected = actions(agent, observations, 1)
    agent.save(tmp_path / "ft")
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == ["config.json", "model.safetensors", RESIDUAL_CONFIG, RESIDUAL_WEIGHTS]
    loaded = HybridSkillPolicy.load(tmp_path / "ft", task="coffee")
    assert loaded.residual.stages == [1] and loaded.residual.info == {"1": {"env_steps": 10}}
    assert np.array_equal(actions(loaded, observations, 1), expected)
    _, evaluated = build_agent({"agent": str(tmp_path / "ft"), "task": "coffee", "pose": "learned"}, lambda *a: None)
    assert np.array_equal(actions(evaluated, observations, 1), expected)
    deployed = load_agent(tmp_path / "ft", "coffee")
    core = SkillPolicyCore(deployed)
    deployed.set_episode_seed(5)
    assert np.allclose(core.act(observations[0], 1).action, expected[0])
    with pytest.raises(ValueError, match="pass it as the agent"):
        PolicyResidual(tmp_path / "ft", "coffee")
    # saving the agent without its residual removes the residual files with it
    loaded.attach_residual(None)
    loaded.save(tmp_path / "ft")
    assert not has_residual(tmp_path / "ft") and HybridSkillPolicy.load(tmp_path / "ft").residual is None


def test_mismatched_residuals_are_refused_with_one_line(tmp_path):
    agent = tiny_agent()
    residual = SkillResidual.for_agent(agent, RES, stages=[1])
    with pytest.raises(ValueError, match="task 'coffee', not 'threading'"):
        tiny_agent(task="threading").attach_residual(residual)
    other_layout = tiny_agent(relative=False)
    with pytest.raises(ValueError, match="another observation layout.*relative_objects"):
        other_layout.attach_residual(residual)
    with pytest.raises(ValueError, match="another input normalisation"):
        tiny_agent(seed=7).attach_residual(residual)
    with pytest.raises(ValueError, match="stage 2 out of range"):
        residual.add_stage(2)
    renamed = SkillResidual("coffee", ["a", "b"], agent.spec.to_dict(), residual.norm_sha256, RES)
    with pytest.raises(ValueError, match="fine-tuned for stages"):
        agent.attach_residual(renamed)
    # on disk: a residual beside other base weights, or with a stage list edited, is refused by load
    agent.attach_residual(residual)
    agent.save(tmp_path / "a")
    tiny_agent(seed=2).save(tmp_path / "b")
    for name in (RESIDUAL_CONFIG, RESIDUAL_WEIGHTS):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    with pytest.raises(ValueError, match="other base weights"):
        HybridSkillPolicy.load(tmp_path / "b")
    meta = json.loads((tmp_path / "a" / RESIDUAL_CONFIG).read_text())
    (tmp_path / "a" / RESIDUAL_CONFIG).write_text(json.dumps({**meta, "stages": [0, 1]}))
    with pytest.raises(ValueError, match="does not match the residual's config"):
        HybridSkillPolicy.load(tmp_path / "a")
    (tmp_path / "a" / RESIDUAL_WEIGHTS).write_bytes(b"broken")
    with pytest.raises(ValueError, match="does not match 'residual.json'"):
        HybridSkillPolicy.load(tmp_path / "a")
    with pytest.raises(ValueError, match="action_scale"):
        ResidualConfig(16, 2, 1.5, False)


def test_a_residual_without_rotation_leaves_the_rotation_command_to_the_base():
    """``rotation`` false: dimensions 3-5 stay zero whatever the weights, the setting survives its file round trip, and a
    residual with rotation (the default) writes its settings as before the setting existed."""
    config = ResidualConfig(16, 2, 0.1, False, rotation=False)
    net = ResidualNet(5, config)
    torch.nn.init.normal_(net.out.weight)
    torch.nn.init.normal_(net.out.bias)
    out = net(torch.randn(8, 5), torch.zeros(8, ACTION_DIM))
    assert torch.all(out[:, 3:7] == 0) and torch.all(out[:, :3].abs() > 0) and torch.all(out.abs() <= 0.1)
    assert ResidualConfig.from_dict(config.to_dict()) == config and config.to_dict()["rotation"] is False
    assert "rotation" not in RES.to_dict() and ResidualConfig.from_dict(RES.to_dict()).rotation
    assert FinetuneConfig(residual_rotation=False).residual_config().rotation is False
