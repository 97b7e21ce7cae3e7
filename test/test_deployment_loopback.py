"""The node cores wired as the ROS graph wires them (no ROS): goals run end to end on a real Coffee scene."""

import numpy as np
import pytest

from deployment_support import TASK, source_demos, tiny_agent
from reinforcegen_ros.deployment.components import PolicyResidual, SimulationScenePlanner, SkillPolicyCore, load_agent
from reinforcegen_ros.deployment.config import load_deployment_config
from reinforcegen_ros.deployment.loopback import LoopbackGraph
from reinforcegen_ros.policies.replay import SourceReplayAgent
from reinforcegen_ros.tasks import task_config
from reinforcegen_ros.tasks.environment import TaskEnv


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return source_demos(tmp_path_factory.mktemp("demos") / "coffee_source.hdf5", 2)


@pytest.fixture(scope="module")
def env():
    return TaskEnv(TASK, config=task_config(TASK))


def test_replay_agent_solves_coffee_through_the_graph(demos, env):
    agent = SourceReplayAgent.from_dataset(demos, env)
    graph = LoopbackGraph(TASK, agent, SimulationScenePlanner(TASK, "straight_line"), load_deployment_config(), env=env)
    agent.set_episode_seed(1)
    run = graph.run_goal(1)
    assert run.result.success and run.result.stages_completed == 2 and env.success(), run.result
    assert [p for p in run.phases if p[1] in ("connect", "skill", "done")] == [(0, "connect"), (0, "skill"), (1, "connect"), (1, "skill"), (1, "done")]
    assert run.result.duration == pytest.approx(run.steps * 0.05, abs=0.06)
    assert len(run.latencies_ms["skill_policy"]) > 10 and len(run.latencies_ms["planning"]) >= 2


def test_tiny_agent_runs_and_a_foreign_agent_is_refused(demos, env, tmp_path):
    path = tiny_agent(demos, tmp_path / "hsp")
    with pytest.raises(ValueError, match="holds a policy for task 'coffee', not 'threading'"):
        load_agent(path, "threading")
    agent = load_agent(path, TASK)
    graph = LoopbackGraph(TASK, agent, SimulationScenePlanner(TASK, "straight_line"), load_deployment_config(), env=env)
    run = graph.run_goal(0, max_steps=40)
    assert run.steps == 40 or run.result is not None  # a 1-epoch agent may fail; it must do so with a reason
    if run.result is not None:
        assert run.result.reason
    assert run.phases[:2] == [(-1, "reset"), (0, "predict")] and np.isfinite(graph.bridge.frame.eef_pose).all()
    # a residual stored as a policy directory: its actions (gripper excluded) are added, the sum bounded
    obs, _, why = graph.cache.observation(graph.bridge.frame.stamp_ns, 1.0)
    residual = PolicyResidual(path, TASK)
    assert why.ok and residual.act(obs, 0)[6] == 0.0
    out = SkillPolicyCore(agent, residual, residual_scale=0.5, bound=0.2).act(obs, 0)
    assert np.allclose(out.action[:6], np.clip(out.base[:6] + out.residual[:6], -0.2, 0.2))
    assert np.allclose(out.residual, 0.5 * residual.act(obs, 0))


def test_goals_after_an_emergency_stop_start_from_their_own_reset_scene(demos, env):
    """Issue 20: a goal after an aborted one starts from a seeded scene; the e-stop hold is never refused as a duplicate."""
    from reinforcegen_ros.deployment.bridge import BridgeConfig, RobosuiteBridge

    agent = SourceReplayAgent.from_dataset(demos, env)
    graph = LoopbackGraph(TASK, agent, SimulationScenePlanner(TASK, "straight_line"), load_deployment_config(), env=env)
    seq = graph.sequencer
    agent.set_episode_seed(1)
    first = graph.run_goal(1, max_steps=15)
    assert first.result is None and seq.last_status.phase == "connect", first.phases
    graph.tick(graph.bridge.frame)  # the tick's command goes out stamped with the frame; the bridge has not stepped yet
    graph.emergency_stop(True)  # the e-stop arrives now: its hold must not be refused as a duplicate of that command
    assert first.result.reason == "emergency stop" and first.result.seed == 1
    assert not [r for r in first.refused if "duplicate" in r], first.refused  # the stale-command warning of issue 20
    assert graph.bridge.command is not None and not np.any(graph.bridge.command[1][:6])  # the hold is what the bridge applies next
    graph.bridge.step()
    moved = graph.bridge.frame.eef_pose[:3, 3].copy()
    graph.tick(graph.bridge.step())  # the sequencer's one hold after the goal, then idle statuses
    idle = [graph.tick(graph.bridge.step()).status for _ in range(3)]
    assert [s.phase for s in idle] == ["idle"] * 3 and all(s.stage_index == -1 for s in idle)
    assert "emergency stop is latched" in graph.run_goal(2).result.reason
    graph.emergency_stop(False)

    agent.set_episode_seed(2)
    scenes = []
    second = graph.run_goal(2, max_steps=60, on_step=lambda g, f, o: scenes.append(f.sim_state) if not scenes else None)
    fresh = RobosuiteBridge(TASK, BridgeConfig(seed=2), env=TaskEnv(TASK, config=task_config(TASK)))
    assert graph.bridge.seed == 2 and np.linalg.norm(fresh.frame.eef_pose[:3, 3] - moved) > 1e-3
    assert second.phases[0] == (-1, "reset") and (0, "connect") in second.phases, second.phases  # planned from the reset scene
    assert second.result is None or "IK" not in second.result.reason
    assert not [r for r in second.refused if "duplicate" in r or "before the scene reset" in r], second.refused
    events = seq.take_episode_events()
    assert [(e.event, e.episode_index) for e in events] == [(0, 0), (1, 0), (0, 1)]  # the goal refused by the latch is no episode
    assert events[1].attrs["reason"] == "emergency stop" and events[1].attrs["seed"] == 1 and not events[1].success
    assert events[0].stamp_ns <= events[1].stamp_ns < events[2].stamp_ns and events[1].num_steps > 5
