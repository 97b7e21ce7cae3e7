"""Component cores: pose prediction and re-plan decisions, bounded base + residual skill actions, termination."""

import threading

import numpy as np
import pytest

from reinforcegen_ros.deployment.components import (
    PlanRequest, PosePredictorCore, SkillPolicyCore, TerminationCore, ZeroResidual, check_stage, load_agent,
)
from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.planning import PlanningFailed, Trajectory


class Agent:
    task, obs_mode, num_stages = "coffee", "privileged", 2

    def __init__(self):
        self.x, self.action, self.prob = 0.1, np.array([0.5, 0, 0, 0, 0, 0, 1.0]), 0.7

    def reset(self):
        pass

    def predict_pose(self, obs, stage):
        return make_pose([self.x, 0.0, 1.0], np.eye(3))

    def act(self, obs, stage):
        return self.action

    def termination_prob(self, obs, stage):
        return self.prob


class Planner:
    def __init__(self):
        self.calls, self.fail, self.scenes = [], False, []

    def set_scene(self, state):
        self.scenes.append(state)

    def plan(self, start, target, touch=()):
        self.calls.append((target.copy(), touch))
        if self.fail:
            raise PlanningFailed("target in collision")
        return Trajectory(poses=np.stack([target, target]))


OBS = {"robot0_joint_pos": np.zeros(7)}


def test_plans_at_a_new_stage_and_replans_only_beyond_epsilon():
    agent, planner = Agent(), Planner()
    core = PosePredictorCore(agent, planner, epsilon=0.05, reference_objects=("pod", "coffee_machine"))
    tick = core.tick(OBS, 0, 100, scene_state=np.ones(3))
    assert tick.plan is not None and tick.plan.touch == ("pod",) and tick.plan.stamp_ns == 100
    assert core.tick(OBS, 0, 101).plan is None  # busy: one plan at a time
    result = core.plan(tick.plan)
    assert result.trajectory is not None and planner.scenes[0].tolist() == [1, 1, 1]
    agent.x += 0.03
    assert core.tick(OBS, 0, 102).plan is None  # moved less than epsilon
    agent.x += 0.05
    late = core.tick(OBS, 0, 103).plan  # moved beyond epsilon from the planned target
    assert late is not None
    assert core.tick(OBS, 1, 104).plan is None  # the stage changed while planning: wait for the planner
    core.plan(late)
    assert core.planned is None  # a stage-0 result is not the stage-1 plan
    core.plan(core.tick(OBS, 1, 105).plan)
    assert planner.calls[-1][1] == ("coffee_machine",) and core.planned is not None
    no_replan = PosePredictorCore(agent, planner, replan=False)
    no_replan.plan(no_replan.tick(OBS, 0, 1).plan)
    agent.x += 0.5
    assert no_replan.tick(OBS, 0, 2).plan is None


def test_failed_plans_are_reported_and_not_retried_for_the_same_target():
    agent, planner = Agent(), Planner()
    planner.fail = True
    core = PosePredictorCore(agent, planner)
    result = core.plan(core.tick(OBS, 0, 1).plan)
    assert result.trajectory is None and "target in collision" in result.reason
    assert core.tick(OBS, 0, 2).plan is None
    agent.x += 0.1
    assert core.tick(OBS, 0, 3).plan is not None


def test_planner_exceptions_and_bad_predictions_never_raise():
    agent, planner = Agent(), Planner()
    planner.plan = lambda *a, **k: 1 / 0
    core = PosePredictorCore(agent, planner)
    result = core.plan(core.tick(OBS, 0, 1).plan)
    assert "ZeroDivisionError" in result.reason and not core.busy
    agent.predict_pose = lambda obs, stage: np.full((4, 4), np.nan)
    tick = core.tick(OBS, 0, 2)
    assert tick.pose is None and "NaN" in tick.reason
    agent.predict_pose = lambda obs, stage: (_ for _ in ()).throw(RuntimeError("boom"))
    assert "RuntimeError" in core.tick(OBS, 0, 3).reason


def test_background_planning_does_not_block_predictions():
    agent, planner = Agent(), Planner()
    gate = threading.Event()
    slow = planner.plan
    planner.plan = lambda *a, **k: (gate.wait(5), slow(*a, **k))[1]
    core = PosePredictorCore(agent, planner)
    job = core.tick(OBS, 0, 1).plan
    worker = threading.Thread(target=core.plan, args=(job,))
    worker.start()
    for i in range(5):  # predictions keep flowing while the planner works
        assert core.tick(OBS, 0, 2 + i).pose is not None
    gate.set()
    worker.join(5)
    assert core.planned is not None and not core.busy


class Residual:
    def __init__(self, value):
        self.value = np.asarray(value, dtype=float)

    def act(self, obs, stage):
        return self.value


def test_skill_actions_are_base_plus_residual_and_bounded():
    agent = Agent()
    assert np.allclose(SkillPolicyCore(agent).act(OBS, 0).action, agent.action)
    assert np.allclose(ZeroResidual().act(OBS, 0), 0)
    out = SkillPolicyCore(agent, Residual([0.4, -0.2, 0, 0, 0, 0, 0]), residual_scale=2.0, bound=0.8).act(OBS, 0)
    assert np.allclose(out.action, [0.8, -0.4, 0, 0, 0, 0, 1.0]) and np.allclose(out.residual[:2], [0.8, -0.4])
    bad = SkillPolicyCore(agent, Residual([np.nan] * 7)).act(OBS, 0)
    assert bad.action is None and "NaN" in bad.reason
    assert "7 values" in SkillPolicyCore(agent, Residual([0.0] * 3)).act(OBS, 0).reason
    with pytest.raises(ValueError, match="bound"):
        SkillPolicyCore(agent, bound=2.0)


def test_termination_decision_and_bad_probabilities():
    agent = Agent()
    est = TerminationCore(agent, 0.5).estimate(OBS, 0)
    assert est.probability == 0.7 and est.accepted
    assert not TerminationCore(agent, 0.8).estimate(OBS, 0).accepted
    agent.prob = float("nan")
    est = TerminationCore(agent).estimate(OBS, 0)
    assert not est.accepted and "not in [0, 1]" in est.reason
    assert check_stage(1, 2).ok and "out of range" in check_stage(2, 2).reason


def test_agent_directories_are_checked(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_agent(tmp_path / "missing", "coffee")
    with pytest.raises(ValueError, match="no agent directory"):
        load_agent("", "coffee")
    assert isinstance(PlanRequest(0, 1, np.zeros(7), np.eye(4)).touch, tuple)
