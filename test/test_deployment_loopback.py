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
    assert run.phases[0] == (0, "predict") and np.isfinite(graph.bridge.frame.eef_pose).all()
    # a residual stored as a policy directory: its actions (gripper excluded) are added, the sum bounded
    obs, _, why = graph.cache.observation(graph.bridge.frame.stamp_ns, 1.0)
    residual = PolicyResidual(path, TASK)
    assert why.ok and residual.act(obs, 0)[6] == 0.0
    out = SkillPolicyCore(agent, residual, residual_scale=0.5, bound=0.2).act(obs, 0)
    assert np.allclose(out.action[:6], np.clip(out.base[:6] + out.residual[:6], -0.2, 0.2))
    assert np.allclose(out.residual, 0.5 * residual.act(obs, 0))
