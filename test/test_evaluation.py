"""Evaluation: Wilson intervals, real rollouts of the source-replay agent on coffee, the parallel harness and its report."""

import argparse
import json

import numpy as np
import pytest

from reinforcegen_ros.evaluation.harness import evaluate, markdown_report, register_cli, summarize, wilson_interval
from reinforcegen_ros.rollout import EpisodeResult

TASK = "coffee"
SEED = 200_000


@pytest.mark.parametrize(
    "k, n, low, high",
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (50, 100, 0.4038, 0.5962), (1, 4, 0.0456, 0.6994)],
)
def test_wilson_interval_matches_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(3, 7)
    assert lo < 3 / 7 < hi
    for n in range(1, 60):  # the interval always contains the observed rate (0 and 1 exactly)
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_summary_counts_stages_steps_and_failures():
    ok = EpisodeResult(0, 1, True, [True, True], [40, 120], 160)
    ok2 = EpisodeResult(1, 2, True, [True, True], [60, 100], 160)
    late = EpisodeResult(2, 3, False, [True, False], [50, 30], 80, failure_stage=1, failure_kind="skill_timeout", failure_reason="stage 1 skill: ...")
    early = EpisodeResult(3, 4, False, [False, False], [300, 0], 300, failure_stage=0, failure_kind="connect_timeout", failure_reason="stage 0 connect: ...")
    s = summarize([ok, ok2, late, early], ["grasp", "insert"])
    assert s["successes"] == 2 and s["success_rate"] == 0.5 and s["wilson95"] == list(wilson_interval(2, 4))
    assert [r["successes"] for r in s["stages"]] == [3, 2] and [r["reached"] for r in s["stages"]] == [4, 3]
    assert s["stages"][0]["mean_steps"] == 50 and s["stages"][1]["median_steps"] == 110
    assert s["failures"] == {"skill_timeout": 1, "connect_timeout": 1}
    assert s["failures_by_stage"] == {"insert": {"skill_timeout": 1}, "grasp": {"connect_timeout": 1}}
    assert s["failures_with_goal_held"] == {}
    other = EpisodeResult(4, 5, False, [False, False], [90, 0], 90, failure_stage=0, failure_kind="skill_timeout", failure_reason="stage 0 skill: ...")
    report = markdown_report({**summarize([late, other], ["grasp", "insert"]), "task": "coffee", "agent": "a", "command": "c", "seeds": [1, 5],
                              "settings": {"termination": "oracle", "replan": True, "pose": "learned", "horizon": 9}})
    assert "| insert | skill_timeout | 1 | stage 1 skill: ... |" in report and "| grasp | skill_timeout | 1 | stage 0 skill: ... |" in report
    late.goal_held_at_failure = True  # the insert had succeeded, the classifier never said so
    assert summarize([ok, late, early], ["grasp", "insert"])["failures_with_goal_held"] == {"skill_timeout": 1}


def test_bad_arguments_fail_before_any_worker(tmp_path):
    with pytest.raises(FileNotFoundError, match="agent directory"):
        evaluate(TASK, str(tmp_path / "missing"), episodes=1, out_dir=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="replay source"):
        evaluate(TASK, "replay:" + str(tmp_path / "missing.hdf5"), episodes=1, out_dir=tmp_path / "out")
    (tmp_path / "agent").mkdir()
    with pytest.raises(ValueError, match="--teacher-source"):
        evaluate(TASK, str(tmp_path / "agent"), episodes=1, pose="teacher", out_dir=tmp_path / "out")
    # an agent directory that cannot be loaded fails before any worker starts or any file is written
    with pytest.raises(ValueError, match="not a hybrid skill policy directory"):
        evaluate(TASK, str(tmp_path / "agent"), episodes=1, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # one whose config reads but whose weights do not: the run fails with the worker's reason (no hanging pool)
    from reinforcegen_ros.policies.hsp import FORMAT, FORMAT_VERSION

    (tmp_path / "agent" / "config.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "config": {}}))
    with pytest.raises(RuntimeError, match="worker setup failed"):
        evaluate(TASK, str(tmp_path / "agent"), episodes=1, out_dir=tmp_path / "out", progress=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from reinforcegen_ros.demos.collect import collect

    out = tmp_path_factory.mktemp("eval") / "source.hdf5"
    collect(TASK, 3, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def pooled(source, tmp_path_factory):
    """The replay agent over 4 episodes on 2 spawned workers."""
    out = tmp_path_factory.mktemp("eval") / "pool"
    summary = evaluate(TASK, f"replay:{source}", episodes=4, workers=2, seed=SEED, out_dir=out, progress=False)
    return summary, out


def test_replay_agent_solves_coffee_on_a_pool(pooled):
    summary, out = pooled
    detail = summary["episodes_detail"]
    assert [d["seed"] for d in detail] == [SEED + i for i in range(4)] and [d["index"] for d in detail] == list(range(4))
    assert summary["successes"] == 4, [d["failure_reason"] for d in detail]
    for d in detail:
        assert d["stage_success"] == [True, True] and d["failure_kind"] == ""
        assert sum(d["stage_steps"]) == d["steps"] and all(n > 10 for n in d["stage_steps"])
    assert summary["stages"][1]["successes"] == 4 and summary["median_steps"] < 600


def test_report_files_are_consistent(pooled):
    summary, out = pooled
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["successes"] == summary["successes"] and on_disk["wilson95"] == list(wilson_interval(summary["successes"], 4))
    assert on_disk["seeds"] == [SEED, SEED + 3] and on_disk["settings"]["termination"] == "learned"
    md = (out / "results.md").read_text()
    lo, hi = on_disk["wilson95"]
    assert f"| 4 | {summary['successes']} | {100 * summary['success_rate']:.1f}% | {100 * lo:.1f}–{100 * hi:.1f}% |" in md
    assert "grasp_pod" in md and "insert_pod_close_lid" in md
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_cli_variant_meets_the_same_scenes(pooled, source, tmp_path):
    summary, _ = pooled
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "variant"
    args = parser.parse_args(["eval", "--task", TASK, "--agent", f"replay:{source}", "--episodes", "2", "--workers", "1",
                              "--seed", str(SEED), "--termination", "oracle", "--no-replan", "--out", str(out)])
    args.func(args)
    variant = json.loads((out / "results.json").read_text())
    assert variant["settings"]["termination"] == "oracle" and variant["settings"]["replan"] is False
    assert variant["settings"]["hybrid"]["replan"] is False and variant["settings"]["hybrid"]["termination"] == "oracle"
    # same seeds -> same scenes, whichever agent runs in them; other seeds -> other scenes
    for a, b in zip(summary["episodes_detail"], variant["episodes_detail"]):
        assert a["seed"] == b["seed"] and np.allclose(a["scene"], b["scene"])
    assert not np.allclose(summary["episodes_detail"][0]["scene"], summary["episodes_detail"][1]["scene"])
    assert variant["successes"] == 2 and all(d["replans"] == 0 for d in variant["episodes_detail"])


def test_video_has_one_frame_per_step_and_horizon_fails_with_reason(source, tmp_path):
    import imageio.v2 as imageio

    summary = evaluate(TASK, f"replay:{source}", episodes=1, seed=SEED, video=1, video_size=64,
                       hybrid={"episode_horizon": 25}, out_dir=tmp_path, progress=False)
    ep = summary["episodes_detail"][0]
    assert not ep["success"] and ep["failure_kind"] == "horizon" and ep["steps"] == 25
    assert "horizon of 25 steps" in ep["failure_reason"] and summary["failures"] == {"horizon": 1}
    assert ep["goal_held_at_failure"] is False  # 25 steps are too few to grasp the pod
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == [f"episode_0000_seed_{SEED}.mp4"] and ep["video"] == str(videos[0])
    reader = imageio.get_reader(videos[0])
    first = reader.get_data(0)
    assert reader.count_frames() == 25 and first.shape == (64, 64, 3)
    assert first[:8].mean() < first[20:].mean()  # the dark text band of the overlay


def test_resume_keeps_finished_episodes_and_refuses_other_settings(source, tmp_path):
    short = {"episode_horizon": 10}
    first = evaluate(TASK, f"replay:{source}", episodes=2, seed=SEED, hybrid=short, out_dir=tmp_path, progress=False)
    log = tmp_path / "episodes.jsonl"
    assert len(log.read_text().splitlines()) == 3  # header + 2 episodes
    with open(log, "a") as fh:
        fh.write('{"index": 2, "cut by a ki')  # a line cut by a kill is played again
    again = evaluate(TASK, f"replay:{source}", episodes=3, seed=SEED, hybrid=short, out_dir=tmp_path, progress=False, resume=True)
    assert [d["index"] for d in again["episodes_detail"]] == [0, 1, 2]
    assert again["episodes_detail"][:2] == first["episodes_detail"]  # kept, not replayed (same seconds)
    with pytest.raises(ValueError, match="other settings"):
        evaluate(TASK, f"replay:{source}", episodes=3, seed=SEED + 1, hybrid=short, out_dir=tmp_path, progress=False, resume=True)
    # a log written before an executor setting existed still resumes (the setting counts at its default)
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    del header["settings"]["hybrid"]["keep_plan_on_replan_failure"]
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    kept = evaluate(TASK, f"replay:{source}", episodes=3, seed=SEED, hybrid=short, out_dir=tmp_path, progress=False, resume=True)
    assert kept["episodes_detail"] == again["episodes_detail"]
    with pytest.raises(ValueError, match="other settings"):  # but not at another value
        evaluate(TASK, f"replay:{source}", episodes=3, seed=SEED, hybrid={**short, "keep_plan_on_replan_failure": True},
                 out_dir=tmp_path, progress=False, resume=True)


def test_set_overrides_are_typed_and_checked():
    from reinforcegen_ros.evaluation.harness import parse_overrides

    assert parse_overrides(["termination_confirm_ticks=3", "replan=false", "epsilon=0.1"]) == {
        "termination_confirm_ticks": 3, "replan": False, "epsilon": 0.1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["epsilon"])


def test_eval_table_rows_from_complete_and_partial_runs(pooled, tmp_path, capsys):
    from reinforcegen_ros.evaluation.tables import load_run, table_row
    from reinforcegen_ros.evaluation.tables import register_cli as register_table_cli

    summary, out = pooled
    row = table_row(load_run(out))
    assert row["complete"] and row["episodes"] == 4 and row["successes"] == summary["successes"]
    assert row["seeds"] == [SEED, SEED + 3] and row["stage_success"] == [s["successes"] for s in summary["stages"]]
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (out / "episodes.jsonl").read_text().splitlines()
    (partial / "episodes.jsonl").write_text("\n".join(lines[:3]) + "\n")  # header + 2 episodes, no results.json
    parser = argparse.ArgumentParser()
    register_table_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval-table", str(out), str(partial), "--markdown", str(tmp_path / "t.md")])
    args.func(args)
    text = (tmp_path / "t.md").read_text()
    assert text == capsys.readouterr().out
    assert "| coffee | HSP + Replan | learned termination | privileged | - | 4 |" in text
    assert "| coffee | HSP + Replan | learned termination | privileged | - | 2 (partial) |" in text
    with pytest.raises(ValueError, match="not an evaluation directory"):
        load_run(tmp_path)


def test_eval_table_compares_runs_on_their_first_episodes(pooled, tmp_path, capsys):
    """--episodes N counts the first N episodes of every run: the same seeds, however long each run is."""
    from reinforcegen_ros.evaluation.tables import load_run, table_row
    from reinforcegen_ros.evaluation.tables import register_cli as register_table_cli

    _, out = pooled
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()[1:]]
    first_two = table_row(load_run(out, 2))
    assert first_two["complete"] and first_two["episodes"] == 2 and first_two["seeds"] == [SEED, SEED + 1]
    assert first_two["successes"] == sum(e["success"] for e in episodes if e["index"] < 2)
    assert not load_run(out, 5)["complete"]  # 4 episodes played: that run is partial for a comparison over 5
    parser = argparse.ArgumentParser()
    register_table_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval-table", str(out), "--episodes", "2"])
    args.func(args)
    assert f"| {SEED}..{SEED + 1} |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 1"):
        load_run(out, 0)


def test_eval_table_names_the_agents_observations(tmp_path):
    from reinforcegen_ros.evaluation.tables import agent_summary

    from reinforcegen_ros.policies.hsp import FORMAT, FORMAT_VERSION

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "obs_mode": "rgb", "config": {"policy_head": "gmm"}}
    (tmp_path / "config.json").write_text(json.dumps(meta))
    assert agent_summary(str(tmp_path)) == {"obs_mode": "rgb", "policy_head": "gmm", "skill_ft": False}
    (tmp_path / "residual.json").write_text("{}")
    assert agent_summary(str(tmp_path))["skill_ft"] is True
    assert agent_summary(str(tmp_path / "gone"))["obs_mode"] == "unknown"
    assert agent_summary("replay:data/coffee_source.hdf5")["obs_mode"] == "privileged"


def test_logs_from_before_gmm_action_resume_only_as_mode(tmp_path):
    """A header without gmm_action was written when GMM skills took their most probable mode."""
    from dataclasses import asdict

    from reinforcegen_ros.evaluation.harness import same_settings, skill_action
    from reinforcegen_ros.hybrid import HybridConfig

    hybrid = json.loads(json.dumps(asdict(HybridConfig())))
    legacy = {"task": "coffee", "agent": "runs/x", "seed": 1, "pose": "learned", "hybrid": hybrid, "horizon": 600}
    assert same_settings(legacy, {**legacy, "gmm_action": "mode"})
    assert not same_settings(legacy, {**legacy, "gmm_action": "sample"})
    assert same_settings(legacy, {**legacy, "gmm_action": None})  # agents without a GMM head
    with pytest.raises(ValueError, match="applies to GMM skill policies"):
        skill_action("replay:data/coffee_source.hdf5", "sample")
    with pytest.raises(ValueError, match="unknown GMM action"):
        skill_action("replay:data/coffee_source.hdf5", "mean")
    assert skill_action("replay:data/coffee_source.hdf5", None) is None


def test_eval_table_pivot_puts_variants_side_by_side(pooled, tmp_path):
    from reinforcegen_ros.evaluation.tables import load_run, pivot_table, table_row

    summary, out = pooled
    lines = (out / "episodes.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    header["settings"]["hybrid"]["replan"] = False  # the same episodes, filed as the HSP row of a stopped run
    (tmp_path / "episodes.jsonl").write_text("\n".join([json.dumps(header), *lines[1:3]]) + "\n")
    rows = [table_row(load_run(out)), table_row(load_run(tmp_path))]
    text = pivot_table(rows).splitlines()
    assert text[0] == "| task | HSP + Replan [privileged, learned termination] | HSP [privileged, learned termination] |"
    k = summary["successes"]
    lo, hi = rows[0]["wilson95"]
    assert text[2] == f"| coffee | {100 * k / 4:.1f}% ({k}/4) [{100 * lo:.1f}–{100 * hi:.1f}] | 100.0% (2/2, partial) [34.2–100.0] |"
    assert text[3] == f"| mean over tasks | {100 * k / 4:.2f}% (1 of 1 tasks) | 100.00% (1 of 1 tasks) |"
    rows[1]["termination"] = "oracle"
    paper = pivot_table(rows, paper=True).splitlines()
    assert paper[0].endswith("| HSP [privileged, ground-truth termination] | paper: HSP + Replan | paper: HSP |")
    assert paper[2].endswith("| 80.20% | 55.38% |") and paper[3].endswith("| 66.88% (5 tasks) | 44.68% (5 tasks) |")
    with pytest.raises(ValueError, match="two runs for coffee / HSP"):
        pivot_table([rows[0], rows[0]])


def test_eval_table_names_fine_tuned_agents_as_the_paper(pooled):
    """A teacher-pose row whose agent carries a residual is the paper's "HSP-Priv + Skill-FT" and gets its column."""
    from reinforcegen_ros.evaluation.tables import load_run, pivot_table, table_row, variant_name

    row = table_row(load_run(pooled[1]))
    assert row["skill_ft"] is False and variant_name(row) == "HSP + Replan"
    row = {**row, "pose": "teacher", "teacher": "generation", "termination": "oracle", "skill_ft": True}
    assert variant_name(row) == "HSP-Priv + Skill-FT"
    assert pivot_table([row], paper=True).splitlines()[2].endswith("| 97.03% |")
    assert variant_name({**row, "termination_ft": True, "action_noise": 0.1}) == "HSP-Priv + Skill-FT + Term-FT (action noise 0.1)"


def test_skill_steps_are_recorded_and_tabled_per_stage(pooled, tmp_path):
    """Each episode records its skills' steps; eval-table --skills reports skill success among started skills (Table II)."""
    from reinforcegen_ros.evaluation.tables import load_run, skills_table, table_row

    summary, out = pooled
    row = table_row(load_run(out))
    played = load_run(out)["episodes"]
    assert all(0 < r.skill_steps[k] <= r.stage_steps[k] for r in played for k in range(2) if r.stage_success[k])
    started = sum(r.skill_steps[1] > 0 for r in played)
    assert row["skills"][1]["skill_started"] == started
    assert row["skills"][1]["skill_success"] == sum(r.stage_success[1] for r in played if r.skill_steps[1] > 0) / started
    lines = (out / "episodes.jsonl").read_text().splitlines()
    old = [json.loads(line) for line in lines]
    for rec in old[1:]:
        rec.pop("skill_steps")  # a log from before skill steps were recorded
    (tmp_path / "episodes.jsonl").write_text("\n".join(json.dumps(rec) for rec in old) + "\n")
    text = skills_table([row, table_row(load_run(tmp_path))])
    assert "| coffee | HSP + Replan | learned termination | 1 " in text and "not recorded in this log" in text


def test_step_path_is_played_recorded_and_not_mixed_on_resume(source, tmp_path, monkeypatch):
    """--step-path reaches the episodes' TaskEnv, the report and the log header; logs without it count as lean."""
    from reinforcegen_ros.evaluation import harness

    played, close = [], harness.close_worker
    monkeypatch.setattr(harness, "close_worker", lambda: (played.append(harness._WORKER["env"].step_path), close()))
    short = {"episode_horizon": 10}
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--task", TASK, "--agent", f"replay:{source}", "--episodes", "1", "--seed", str(SEED),
                              "--set", "episode_horizon=10", "--step-path", "stock", "--out", str(tmp_path / "stock")])
    args.func(args)
    assert played == ["stock"]  # the step path of the environment the episode was played in
    assert json.loads((tmp_path / "stock" / "results.json").read_text())["settings"]["step_path"] == "stock"
    log = tmp_path / "stock" / "episodes.jsonl"
    assert json.loads(log.read_text().splitlines()[0])["settings"]["step_path"] == "stock"
    with pytest.raises(ValueError, match="other settings"):
        evaluate(TASK, f"replay:{source}", episodes=2, seed=SEED, hybrid=short, out_dir=tmp_path / "stock", progress=False,
                 resume=True, step_path="lean")
    lines = log.read_text().splitlines()  # the same log as written before the step path was recorded: lean
    header = json.loads(lines[0])
    del header["settings"]["step_path"]
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="other settings"):
        evaluate(TASK, f"replay:{source}", episodes=1, seed=SEED, hybrid=short, out_dir=tmp_path / "stock", progress=False,
                 resume=True, step_path="stock")
    kept = evaluate(TASK, f"replay:{source}", episodes=1, seed=SEED, hybrid=short, out_dir=tmp_path / "stock", progress=False, resume=True)
    assert kept["settings"]["step_path"] == "lean" and len(kept["episodes_detail"]) == 1  # resumed, nothing replayed
    with pytest.raises(ValueError, match="unknown step path 'fast'"):
        evaluate(TASK, f"replay:{source}", episodes=1, out_dir=tmp_path / "bad", step_path="fast")
    assert not (tmp_path / "bad").exists()


def test_logs_without_a_teacher_were_played_with_the_transform_only_teacher():
    from dataclasses import asdict

    from reinforcegen_ros.evaluation.harness import same_settings
    from reinforcegen_ros.hybrid import HybridConfig

    hybrid = json.loads(json.dumps(asdict(HybridConfig())))
    legacy = {"task": "coffee", "agent": "runs/x", "seed": 1, "pose": "teacher", "hybrid": hybrid, "horizon": 600,
              "gmm_action": "sample", "step_path": "lean"}
    assert same_settings(legacy, {**legacy, "teacher": "transform"})
    assert not same_settings(legacy, {**legacy, "teacher": "generation"})
    assert same_settings({**legacy, "teacher": "generation"}, {**legacy, "teacher": "generation"})
