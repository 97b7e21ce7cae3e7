"""Robustness to action noise (paper Fig. 8): ``reinforcegen eval --action-noise SIGMA`` perturbs skill actions only."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from reinforcegen_ros.evaluation.harness import evaluate, register_cli
from reinforcegen_ros.hybrid import Command, Phase
from reinforcegen_ros.rollout import SkillActionNoise, run_episode

TASK = "coffee"
SEED = 200_000
HORIZON = 60  # coffee's replay agent connects for ~13 steps, then runs its first skill


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from reinforcegen_ros.demos.collect import collect

    out = tmp_path_factory.mktemp("noise") / "source.hdf5"
    collect(TASK, 2, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def episode(source):
    """``play(seed, **run_episode kwargs)``: (commands issued, actions sent to the environment, result) of one short episode."""
    from reinforcegen_ros.hybrid import HybridConfig
    from reinforcegen_ros.policies.replay import SourceReplayAgent
    from reinforcegen_ros.rollout import make_executor
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    env = TaskEnv(TASK)
    cfg = task_config(TASK)
    executor = make_executor(env, SourceReplayAgent.from_dataset(str(source), env), HybridConfig.load(cfg, termination="oracle"),
                             cfg.get("planning"))
    commands, sent = [], []
    tick, step = executor.tick, env.step
    executor.tick = lambda obs: commands.append(tick(obs)) or commands[-1]
    env.step = lambda action: sent.append(np.array(action)) or step(action)

    def play(seed: int = SEED, **kwargs):
        commands.clear()
        sent.clear()
        result = run_episode(env, executor, seed, HORIZON, **kwargs)
        return list(commands), list(sent), result

    yield play
    env.close()


def outcome(result) -> dict:
    """An episode result without its wall time."""
    return {k: v for k, v in result.to_dict().items() if k != "seconds"}


def test_noise_is_on_the_arm_dims_of_skill_actions_only():
    action = np.array([0.1, -0.2, 0.3, 0.0, 0.1, -0.1, 1.0])
    noise = SkillActionNoise(0.1, 7)
    noisy = noise(Command(action.copy(), 0, Phase.SKILL))
    assert np.all(noisy[:6] != action[:6]) and noisy[6] == action[6]
    for phase in (Phase.CONNECT, Phase.DONE, Phase.FAILED):
        command = Command(action.copy(), 0, phase)
        assert noise(command) is command.action  # sent as issued
    draws = np.array([noise(Command(np.zeros(7), 0, Phase.SKILL)) for _ in range(4000)])
    assert abs(draws[:, :6].mean()) < 0.01 and 0.095 < draws[:, :6].std() < 0.105 and not draws[:, 6].any()
    first = [SkillActionNoise(0.1, seed)(Command(np.zeros(7), 0, Phase.SKILL)) for seed in (7, 7, 8)]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])  # per episode seed
    zero = Command(action.copy(), 0, Phase.SKILL)
    assert SkillActionNoise(0.0, 7)(zero) is zero.action


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_negative_or_non_finite_noise_is_refused(sigma, source, tmp_path, capsys):
    with pytest.raises(ValueError, match="finite number >= 0"):
        SkillActionNoise(sigma, 0)
    with pytest.raises(ValueError, match="--action-noise must be a finite number >= 0"):
        evaluate(TASK, f"replay:{source}", episodes=1, out_dir=tmp_path / "out", progress=False, action_noise=sigma)
    from reinforcegen_ros.cli import main

    assert main(["eval", "--task", TASK, "--agent", f"replay:{source}", "--episodes", "1", "--out", str(tmp_path / "cli"),
                 "--action-noise", str(sigma)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--action-noise must be a finite number >= 0" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


def test_episode_noise_hits_skill_actions_only_and_replays_per_seed(episode):
    plain_commands, plain_sent, plain = episode()
    _, zero_sent, zero = episode(action_noise=0.0)
    assert len(zero_sent) == len(plain_sent) and all(np.array_equal(a, b) for a, b in zip(zero_sent, plain_sent))
    assert outcome(zero) == outcome(plain)  # no flag and zero noise: the same episode
    assert all(np.array_equal(c.action, a) for c, a in zip(plain_commands, plain_sent))

    commands, sent, noisy = episode(action_noise=0.1)
    phases = [c.phase for c in commands[: len(sent)]]
    assert Phase.CONNECT in phases and Phase.SKILL in phases
    for command, action in zip(commands, sent):
        if command.phase == Phase.SKILL:
            assert np.all(action[:6] != command.action[:6]) and action[6] == command.action[6]
        else:  # the connect segment follows the planner's path as issued
            assert np.array_equal(action, command.action)

    again_commands, again_sent, again = episode(action_noise=0.1)
    assert len(again_sent) == len(sent) and all(np.array_equal(a, b) for a, b in zip(again_sent, sent))
    assert outcome(again) == outcome(noisy)  # reproducible from the episode seed

    other_commands, other_sent, _ = episode(seed=SEED, action_noise=0.2)
    first = next(i for i, c in enumerate(commands) if c.phase == Phase.SKILL)
    assert np.allclose(other_sent[first][:6] - other_commands[first].action[:6], 2 * (sent[first][:6] - commands[first].action[:6]))


def test_eval_records_the_noise_and_refuses_to_resume_with_another(source, tmp_path):
    """The noise level is in the log header and the report; resuming with another one is refused like other settings."""
    short = {"episode_horizon": 40}
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--task", TASK, "--agent", f"replay:{source}", "--episodes", "1", "--seed", str(SEED),
                              "--set", "episode_horizon=40", "--termination", "oracle", "--action-noise", "0.05",
                              "--out", str(tmp_path / "noisy")])
    args.func(args)
    log = tmp_path / "noisy" / "episodes.jsonl"
    assert json.loads(log.read_text().splitlines()[0])["settings"]["action_noise"] == 0.05
    assert json.loads((tmp_path / "noisy" / "results.json").read_text())["settings"]["action_noise"] == 0.05
    run = dict(task=TASK, agent_spec=f"replay:{source}", episodes=1, seed=SEED, hybrid=short, termination="oracle", progress=False)
    for other in (0.0, 0.1):
        with pytest.raises(ValueError, match="other settings"):
            evaluate(**run, out_dir=tmp_path / "noisy", resume=True, action_noise=other)
    kept = evaluate(**run, out_dir=tmp_path / "noisy", resume=True, action_noise=0.05)
    assert kept["settings"]["action_noise"] == 0.05 and len(kept["episodes_detail"]) == 1  # resumed, nothing replayed

    plain = evaluate(**run, out_dir=tmp_path / "plain")
    zero = evaluate(**run, out_dir=tmp_path / "zero", action_noise=0.0)
    assert plain["settings"]["action_noise"] == zero["settings"]["action_noise"] == 0.0
    assert [outcome_dict(r) for r in plain["episodes_detail"]] == [outcome_dict(r) for r in zero["episodes_detail"]]
    log = tmp_path / "plain" / "episodes.jsonl"  # a log from before the flag: played without noise
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    del header["settings"]["action_noise"]
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="other settings"):
        evaluate(**run, out_dir=tmp_path / "plain", resume=True, action_noise=0.05)
    assert len(evaluate(**run, out_dir=tmp_path / "plain", resume=True)["episodes_detail"]) == 1


def outcome_dict(row: dict) -> dict:
    """An episode record without its wall time."""
    return {k: v for k, v in row.items() if k != "seconds"}


def noise_row(sigma: float, successes: int, agent: str = "runs/a", episodes: int = 100, task: str = TASK) -> dict:
    """A table row as :func:`tables.table_row` builds it, for an HSP-Priv evaluation at action noise ``sigma``."""
    from reinforcegen_ros.evaluation.harness import wilson_interval

    return {"dir": f"{agent}_{sigma}", "task": task, "agent": agent, "pose": "teacher", "replan": False, "termination": "oracle",
            "teacher": "generation", "skill_ft": agent.endswith("ft"), "termination_ft": False, "keep_plan": False,
            "action_noise": sigma, "episodes": episodes, "successes": successes, "success_rate": successes / episodes,
            "wilson95": wilson_interval(successes, episodes), "complete": True}


def test_noise_table_gives_success_relative_to_the_same_agent_without_noise(tmp_path):
    from reinforcegen_ros.evaluation.tables import noise_table, plot_noise

    rows = [noise_row(0.1, 60), noise_row(0.0, 80), noise_row(0.0, 90, "runs/ft"), noise_row(0.1, 81, "runs/ft")]
    lines = noise_table(rows).splitlines()[2:]
    assert len(lines) == 4
    base, ft = [line for line in lines if "`runs/a`" in line], [line for line in lines if "`runs/ft`" in line]
    assert "| 0 |" in base[0] and "100.0%" in base[0].split("|")[9]  # the noise-free run first, its own reference
    assert "| 0.1 |" in base[1] and "75.0%" in base[1].split("|")[9]  # 60/80
    assert "Skill-FT" in ft[1] and "90.0%" in ft[1].split("|")[9]  # 81/90
    png = plot_noise(rows, tmp_path / "fig8.png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("rows, message", [
    ([noise_row(0.1, 60)], "no run without action noise"),
    ([noise_row(0.0, 80), noise_row(0.0, 70)], "two runs of"),
])
def test_noise_table_refuses_groups_without_a_reference_or_with_a_level_twice(rows, message):
    from reinforcegen_ros.evaluation.tables import noise_table

    with pytest.raises(ValueError, match=message):
        noise_table(rows)


def test_eval_table_noise_plot_from_evaluation_directories(source, tmp_path, capsys):
    from reinforcegen_ros.cli import main

    for sigma in (0.0, 0.2):
        assert main(["eval", "--task", TASK, "--agent", f"replay:{source}", "--episodes", "1", "--seed", str(SEED),
                     "--set", "episode_horizon=40", "--termination", "oracle", "--action-noise", str(sigma),
                     "--out", str(tmp_path / f"n{sigma}")]) == 0
    capsys.readouterr()
    png = tmp_path / "fig8.png"
    assert main(["eval-table", str(tmp_path / "n0.0"), str(tmp_path / "n0.2"), "--noise-plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| 0.2 |" in out and "relative to no noise" in out and png.is_file()
    assert main(["eval-table", str(tmp_path / "n0.2"), "--noise"]) == 2  # no reference: one-line error
    assert "no run without action noise" in capsys.readouterr().err
