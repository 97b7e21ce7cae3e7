"""The per-task fine-tuning recipe (paper Table VI) and ``reinforcegen finetune run``.

The order of the steps comes from the task YAMLs; the orchestration (each step
from the agent the step before wrote, resuming without redoing finished steps,
refusing another run's directory) is shown with stand-in sub-runs that copy
their input agent and mark it; one Coffee recipe runs the real termination
fine-tuning and residual RL end to end on tiny budgets.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from reinforcegen_ros.finetune import recipe as rc
from reinforcegen_ros.finetune import residual_rl, termination_ft
from reinforcegen_ros.finetune.config import FinetuneConfig, load_config


def tiny_agent(task: str, path):
    """An untrained tiny privileged agent of ``task``, saved to ``path`` (no simulator needed)."""
    from reinforcegen_ros.policies.configuration_hsp import HSPConfig
    from reinforcegen_ros.policies.encoders import ObservationSpec
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.tasks import env_class, stages

    from test_hsp_training import TINY

    torch.manual_seed(0)
    cfg = HSPConfig(**TINY)
    spec = ObservationSpec.for_mode("privileged", len(env_class(task).OBJECTS) * 7, cfg)
    return HybridSkillPolicy(task, "privileged", [s.name for s in stages(task)], spec, cfg).save(path)


# ---------------------------------------------------------------------- the recipe is configuration
def test_recipe_order_per_task_comes_from_the_task_yamls():
    names = {task: [s.name for s in rc.recipe_steps(load_config(task=task))]
             for task in ("coffee", "threading", "nut_assembly", "three_piece_assembly", "coffee_preparation")}
    assert names == {"coffee": ["stage1"], "threading": ["stage1"], "nut_assembly": ["stage1", "stage2"],
                     "three_piece_assembly": ["term", "stage1", "stage3"], "coffee_preparation": ["stage1", "stage2", "stage3", "stage4"]}
    assert rc.recipe_steps(load_config(task="three_piece_assembly"))[0] == rc.Step("term", (0, 1, 2, 3))
    # termination fine-tuning after the skills unless term_first; skill stages run in stage order
    late = FinetuneConfig(skill_stages=[3, 1], term_stages=[2])
    assert [s.name for s in rc.recipe_steps(late)] == ["stage1", "stage3", "term"]
    assert load_config(task="coffee", skill_stages=[0]).skill_stages == [0] and FinetuneConfig().skill_stages == []
    for bad in ({"skill_stages": [-1]}, {"skill_stages": "1"}, {"recipe_steps": 0}, {"term_first": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FinetuneConfig(**bad)


def test_recipe_settings_do_not_block_resuming_a_skill_run():
    """A residual RL checkpoint made before (or with another) recipe settings still matches."""
    saved = {k: v for k, v in FinetuneConfig().to_dict().items() if k not in ("skill_stages", "term_first", "recipe_steps")}
    assert FinetuneConfig(skill_stages=[1], recipe_steps=5, term_first=True).mismatches(saved) == []
    assert FinetuneConfig(alpha=1.0).mismatches(saved) == ["alpha 5.0 vs 1.0"]


# ---------------------------------------------------------------------- orchestration with stand-in sub-runs
class FakeRuns:
    """Stand-ins for finetune_skill and finetune_termination: copy the input agent to <out>/agent and mark it."""

    def __init__(self, monkeypatch, die_at: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.die_at = die_at
        monkeypatch.setattr(residual_rl, "finetune_skill", self.skill)
        monkeypatch.setattr(termination_ft, "finetune_termination", self.term)

    def _copy(self, name: str, agent_dir, out) -> None:
        self.calls.append((name, str(agent_dir)))
        if name == self.die_at:
            self.die_at = None
            (out / "checkpoint.json").parent.mkdir(parents=True, exist_ok=True)
            (out / "checkpoint.json").write_text("{}")
            raise KeyboardInterrupt
        shutil.rmtree(out / "agent", ignore_errors=True)
        shutil.copytree(agent_dir, out / "agent")
        (out / "agent" / f"mark_{name}.txt").write_text(f"{name} call {len(self.calls)}")  # another agent on every call

    def skill(self, task, stage, agent_dir, steps, out, bank, config, **options):
        self._copy(f"stage{stage}", agent_dir, out)
        row = {"success": 0.25 * stage, "steps": 40.0, "episodes": 2}
        return {"env_steps": steps, "episodes": 3, "seconds": 1.0, "before": row, "after": {**row, "success": 0.5}}

    def term(self, task, agent_dir, episodes, out, config, stages, **options):
        self._copy("term", agent_dir, out)
        report = {str(k): {"samples": episodes, "positives": 1, "rejected": 0, "skipped": None} for k in stages}
        return {"episodes": episodes, "successes": 1, "fine_tuned_stages": list(stages), "stages": report}


TPA = "three_piece_assembly"


@pytest.fixture(scope="module")
def tpa_agent(tmp_path_factory):
    return tiny_agent(TPA, tmp_path_factory.mktemp("tpa") / "agent")


def test_each_step_starts_from_the_agent_the_step_before_wrote(tpa_agent, tmp_path, monkeypatch):
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    fake, out = FakeRuns(monkeypatch), tmp_path / "run"
    seen = []
    record = rc.run_recipe(TPA, tpa_agent, out, load_config(task=TPA), steps=7, term_episodes=3, progress=False, on_step=seen.append)
    assert fake.calls == [("term", str(tpa_agent)), ("stage1", str(out / "term" / "agent")), ("stage3", str(out / "stage1" / "agent"))]
    assert [r["dir"] for r in seen] == [str(out / n) for n in ("term", "stage1", "stage3")] and not any(r["skipped"] for r in seen)
    final = out / "agent"
    assert sorted(p.name for p in final.glob("mark_*")) == ["mark_stage1.txt", "mark_stage3.txt", "mark_term.txt"]
    assert HybridSkillPolicy.load(final, task=TPA).task == TPA and not (out / "agent.tmp").exists()
    saved = json.loads((out / "recipe.json").read_text())
    assert saved == record and saved["done"] and saved["env_steps"] == 14 and saved["agent"] == str(final)
    term, s1, s3 = saved["steps"]
    assert term["stages"] == [0, 1, 2, 3] and term["result"]["episodes"] == 3 and term["input"] == rc.agent_digest(tpa_agent)
    assert s1["result"]["before"]["success"] == 0.25 and s1["result"]["after"]["success"] == 0.5 and s1["input"] == term["output"]
    assert s3["input"] == s1["output"] == rc.agent_digest(out / "stage1" / "agent") and s3["output"] == rc.agent_digest(final)
    assert "skill of stage 3: success 0.75 -> 0.50 on 2 bank states after 7 env steps" in rc.step_line(s3)


def test_a_killed_recipe_resumes_without_redoing_finished_steps(tpa_agent, tmp_path, monkeypatch):
    out, cfg = tmp_path / "run", load_config(task=TPA)
    fake = FakeRuns(monkeypatch, die_at="stage3")
    with pytest.raises(KeyboardInterrupt):
        rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False)
    saved = json.loads((out / "recipe.json").read_text())
    assert [r["done"] for r in saved["steps"]] == [True, True, False] and not saved["done"] and not (out / "agent").exists()
    assert saved["steps"][2]["input"] == saved["steps"][1]["output"] and saved["steps"][2]["output"] is None
    fake.calls.clear()
    seen = []
    rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False, on_step=seen.append)
    assert fake.calls == [("stage3", str(out / "stage1" / "agent"))] and [r["skipped"] for r in seen] == [True, True, False]
    assert "(finished before)" in rc.step_line(seen[0]) and (out / "agent" / "mark_stage3.txt").exists()
    # a finished recipe run again does nothing but copy the agent; a step whose agent changed is run again, and the ones after it
    fake.calls.clear()
    rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False)
    assert fake.calls == []
    (out / "stage1" / "agent" / "mark_stage1.txt").write_text("edited")
    fake.calls.clear()
    rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False)
    assert [c[0] for c in fake.calls] == ["stage1", "stage3"]


def test_another_recipe_agent_or_settings_is_refused_and_nothing_is_overwritten(tpa_agent, tmp_path, monkeypatch):
    fake, out, cfg = FakeRuns(monkeypatch), tmp_path / "run", load_config(task=TPA)
    rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False)
    before = (out / "recipe.json").read_text()
    other = tmp_path / "other_agent"
    shutil.copytree(tpa_agent, other)
    (other / "notes.txt").write_text("another agent")
    cases = [((tpa_agent, cfg.replace(skill_stages=[1])), {"steps": 7}, "another recipe"),
             ((other, cfg), {"steps": 7}, "another agent"),
             ((tpa_agent, cfg), {"steps": 8}, "another steps"),
             ((tpa_agent, cfg.replace(alpha=1.0)), {"steps": 7}, "another config.alpha")]
    fake.calls.clear()
    for (agent, config), budget, message in cases:
        with pytest.raises(ValueError, match=message):
            rc.run_recipe(TPA, agent, out, config, term_episodes=3, progress=False, **budget)
    assert fake.calls == [] and (out / "recipe.json").read_text() == before
    # a progress-only change (eval_every) is not another run
    rc.run_recipe(TPA, tpa_agent, out, cfg.replace(eval_every=99), steps=7, term_episodes=3, progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds other files .notes.txt"):
        rc.run_recipe(TPA, tpa_agent, busy, cfg, steps=7, term_episodes=3, progress=False)
    for config, message in ((cfg.replace(skill_stages=[7]), "stage 7 out of range"),
                            (cfg.replace(skill_stages=[], term_stages=[]), "has no fine-tuning recipe")):
        with pytest.raises(ValueError, match=message):
            rc.run_recipe(TPA, tpa_agent, tmp_path / "new", config, steps=7, progress=False)
    with pytest.raises(ValueError, match="for task 'three_piece_assembly', not 'coffee'"):
        rc.run_recipe("coffee", tpa_agent, tmp_path / "new", load_config(task="coffee"), steps=7, progress=False)
    with pytest.raises(ValueError, match="--steps and --term-episodes must be at least 1, got 0, 200"):
        rc.run_recipe(TPA, tpa_agent, tmp_path / "new", cfg, steps=0, progress=False)
    with pytest.raises(ValueError, match="teacher-source"):
        rc.run_recipe(TPA, tpa_agent, tmp_path / "new", cfg, steps=7, pose="teacher", teacher_source=str(tmp_path / "nothing.hdf5"))
    assert not (tmp_path / "new").exists()


def test_finetune_run_command_prints_a_line_per_step(tmp_path, monkeypatch, capsys):
    from reinforcegen_ros.cli import main

    FakeRuns(monkeypatch)
    agent = tiny_agent("coffee", tmp_path / "agent")
    args = ["finetune", "run", "--task", "coffee", "--agent", str(agent), "--out", str(tmp_path / "run"), "--steps", "11"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "coffee recipe: stage1" and lines[1].startswith("skill of stage 1: success 0.25 -> 0.50") and len(lines) == 3
    saved = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert "fine-tuned agent:" in lines[2] and saved["steps"][0]["result"]["env_steps"] == 11
    assert main(args[:-1] + ["12"]) == 2 and "another steps" in capsys.readouterr().err
    assert main(["finetune", "recipe", "--task", "coffee", "--agent", str(agent), "--out", str(tmp_path / "run"), "--steps", "11"]) == 0


# ---------------------------------------------------------------------- the real sub-runs, tiny
def test_coffee_recipe_end_to_end_with_real_sub_runs(tmp_path, monkeypatch):
    """Termination of stage 0 first, then residual RL of stage 0 against it: the final agent carries both."""
    from reinforcegen_ros.demos.collect import collect
    from reinforcegen_ros.evaluation import harness
    from reinforcegen_ros.finetune.reset_bank import read_bank
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    from test_finetune import TINY_RL
    from test_termination_ft import FAST, ReplaySkills

    source = tmp_path / "source.hdf5"
    collect("coffee", 2, source, seed=0, progress=False)
    real = harness.build_agent  # the source-replay teacher's skills drive rollouts and banks (the tiny agent's would not get there)
    monkeypatch.setattr(harness, "build_agent", lambda settings, factory: (lambda e, a: (e, ReplaySkills(a)))(*real(settings, factory)))
    agent = tiny_agent("coffee", tmp_path / "agent")
    tiny = {**TINY_RL, **FAST, "term_train_steps": 50, "term_min_class_samples": 1, "term_min_auc": 0.0, "term_seed": 200000}
    cfg = load_config(task="coffee", **tiny, bank_states=2, term_stages=[0], skill_stages=[0], term_first=True)
    out = tmp_path / "run"
    record = rc.run_recipe("coffee", agent, out, cfg, steps=20, term_episodes=4, pose="teacher", teacher_source=str(source), progress=False)
    term, skill = record["steps"]
    assert term["result"]["episodes"] == 4 and term["result"]["fine_tuned_stages"] == [0], term
    assert skill["result"]["env_steps"] >= 20 and record["env_steps"] == skill["result"]["env_steps"]
    # stage 0's reset bank was collected by the agent with the fine-tuned termination
    bank = read_bank(out / "stage0" / "bank_stage0.hdf5")
    assert bank.source["termination_ft"] is not None and len(bank) == 2
    final = HybridSkillPolicy.load(out / "agent", task="coffee")
    assert final.residual.stages == [0] and final.termination_ft.stages == [0]
    assert final.residual.info["0"]["env_steps"] == skill["result"]["env_steps"]
    assert (out / "agent" / "model.safetensors").read_bytes() == (agent / "model.safetensors").read_bytes()
    # run again: both steps are found finished
    ran = []
    monkeypatch.setattr(residual_rl, "finetune_skill", lambda *a, **k: ran.append(a))
    again = rc.run_recipe("coffee", agent, out, cfg, steps=20, term_episodes=4, pose="teacher", teacher_source=str(source), progress=False)
    assert ran == [] and [r["skipped"] for r in again["steps"]] == [True, True]
    assert np.isfinite(again["wall_s"])


def test_demos_reach_every_skill_step_and_are_part_of_the_run(tpa_agent, tmp_path, monkeypatch):
    fake, out, cfg = FakeRuns(monkeypatch), tmp_path / "run", load_config(task=TPA)
    seen: list = []
    fake.skill = lambda *a, **options: seen.append(options.get("demos")) or FakeRuns.skill(fake, *a, **options)
    monkeypatch.setattr(residual_rl, "finetune_skill", fake.skill)
    demos = tmp_path / "gen.hdf5"
    demos.write_bytes(b"not read by the stand-in")
    record = rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False, demos=demos)
    assert seen == [demos, demos] and str(demos.resolve()) in record["identity"]["demos"]
    with pytest.raises(ValueError, match="another demos"):
        rc.run_recipe(TPA, tpa_agent, out, cfg, steps=7, term_episodes=3, progress=False)
    with pytest.raises(ValueError, match="is not a file"):
        rc.run_recipe(TPA, tpa_agent, tmp_path / "new", cfg, steps=7, progress=False, demos=tmp_path / "missing.hdf5")
    assert not (tmp_path / "new").exists()
