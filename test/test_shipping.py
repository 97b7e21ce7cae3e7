"""``reinforcegen ship``: an agent and its model card in models/<task>/, quoting only its own evaluations."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.policies.hsp import HybridSkillPolicy
from reinforcegen_ros.rollout import EpisodeResult
from reinforcegen_ros.shipping import ship
from reinforcegen_ros.training.loop import train_hsp

from test_hsp_training import TINY, synthetic_hsp_episode


def fake_evaluation(path, agent, successes: list[bool], termination="oracle", pose="teacher") -> None:
    """An evaluation directory as `reinforcegen eval` leaves it (episode log and results.json)."""
    path.mkdir(parents=True)
    hybrid = {**asdict(HybridConfig()), "termination": termination}
    header = {"settings": {"task": "coffee", "agent": str(agent), "pose": pose, "hybrid": hybrid, "seed": 5}}
    if pose == "teacher":
        header["settings"]["teacher"] = "generation"
    rows = [EpisodeResult(i, 5 + i, ok, [ok, ok], [10, 10], 20).to_dict() for i, ok in enumerate(successes)]
    (path / "episodes.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    (path / "results.json").write_text(json.dumps({"episodes": len(successes), "command": "reinforcegen eval --task coffee"}))


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    root = tmp_path_factory.mktemp("agents")
    episodes = [synthetic_hsp_episode(s) for s in range(4)]
    for name, seed in (("a", 0), ("b", 1)):
        train_hsp("coffee", episodes, root / name, "privileged", {**TINY, "seed": seed, "policy_steps": 3}, progress=False)
    return root


def test_ship_copies_the_agent_and_writes_a_card_with_its_measured_rows(agents, tmp_path):
    fake_evaluation(tmp_path / "e1", agents / "a", [True, True, False])
    fake_evaluation(tmp_path / "e2", agents / "a", [False, True], termination="learned", pose="learned")
    out = ship("coffee", agents / "a", tmp_path / "models" / "coffee", [tmp_path / "e1", tmp_path / "e2"], "reinforcegen train ...")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert HybridSkillPolicy.load(out, task="coffee").info["component_steps"]["stage0.policy"] == 3
    card = (out / "README.md").read_text()
    assert "| HSP-Priv | ground-truth termination | 3 | 5..7 | 2 | 66.7% |" in card
    assert "| HSP + Replan | learned termination | 2 | 5..6 | 1 | 50.0% |" in card
    assert "policy 3" in card and "`reinforcegen train ...`" in card and "`reinforcegen eval --task coffee`" in card
    # shipping again replaces the folder whole; nothing temporary is left
    ship("coffee", agents / "a", out, [], "again")
    assert "not measured" in (out / "README.md").read_text() and sorted(p.name for p in out.parent.iterdir()) == ["coffee"]


def test_ship_refuses_another_agents_evaluation_or_task_and_writes_nothing(agents, tmp_path):
    fake_evaluation(tmp_path / "e", agents / "b", [True])
    with pytest.raises(ValueError, match="not the shipped agent's"):
        ship("coffee", agents / "a", tmp_path / "m", [tmp_path / "e"], "x")
    with pytest.raises(ValueError):
        ship("threading", agents / "a", tmp_path / "m", [], "x")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.tmp").exists()


def test_ship_keeps_a_fine_tuned_agents_residual(agents, tmp_path):
    from reinforcegen_ros.policies.residual import RESIDUAL_CONFIG, RESIDUAL_WEIGHTS, ResidualConfig, SkillResidual

    agent = HybridSkillPolicy.load(agents / "a", task="coffee")
    agent.attach_residual(SkillResidual.for_agent(agent, ResidualConfig(hidden_dim=8, layers=1, action_scale=0.1, gripper=False), stages=[1]))
    agent.save(tmp_path / "ft")
    out = ship("coffee", tmp_path / "ft", tmp_path / "models" / "coffee", [], "reinforcegen finetune ...")
    assert (out / RESIDUAL_CONFIG).is_file() and (out / RESIDUAL_WEIGHTS).is_file()
    assert HybridSkillPolicy.load(out, task="coffee").residual is not None


def test_ship_keeps_a_fine_tuned_agents_termination_predictors(agents, tmp_path):
    from reinforcegen_ros.policies.fine_tuned_termination import (
        TERM_CONFIG, TERM_WEIGHTS, PredictorConfig, TerminationPredictors, task_state_layout,
    )

    agent = HybridSkillPolicy.load(agents / "a", task="coffee")
    agent.attach_termination_ft(TerminationPredictors("coffee", agent.stage_names, task_state_layout("coffee"), 0.4, PredictorConfig(8, 1), [1]))
    agent.save(tmp_path / "ft")
    out = ship("coffee", tmp_path / "ft", tmp_path / "models" / "coffee", [], "reinforcegen finetune term ...")
    assert (out / TERM_CONFIG).is_file() and (out / TERM_WEIGHTS).is_file()
    assert HybridSkillPolicy.load(out, task="coffee").termination_ft.stages == [1]
