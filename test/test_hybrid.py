"""The hybrid executor's state machine (paper Algorithm 1) with fake agents, a fake planner, no simulator."""

import numpy as np
import pytest

from reinforcegen_ros.datagen.object_centric import SkillSource
from reinforcegen_ros.geometry import make_pose, mat_to_quat, pose_distance, pose_inv, rot_from_rotvec, rot_z
from reinforcegen_ros.hybrid import Command, HybridConfig, HybridExecutor, Phase, check_observation
from reinforcegen_ros.planning import PlanningFailed, Trajectory
from reinforcegen_ros.policies.teacher import PrivilegedTeacher, TeacherPoseAgent, object_pose_from_obs
from reinforcegen_ros.tasks.base import Stage

DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
HOME = make_pose([0.0, 0.0, 1.0], DOWN)
POD_STAGE = [Stage("grasp_pod", "pod", "")]


def pose_at(x: float, y: float = 0.0, z: float = 1.0, yaw: float = 0.0) -> np.ndarray:
    return make_pose([x, y, z], rot_z(yaw) @ DOWN)


class FakeWorld:
    """A grip site that moves half of each commanded delta (like OSC_POSE's lag), plus joints."""

    def __init__(self, frozen: bool = False):
        self.eef = HOME.copy()
        self.joints = np.zeros(7)
        self.frozen = frozen

    def obs(self) -> dict:
        return {
            "robot0_eef_pos": self.eef[:3, 3].copy(),
            "robot0_eef_quat": mat_to_quat(self.eef[:3, :3]),
            "robot0_joint_pos": self.joints.copy(),
            "robot0_gripper_qpos": np.zeros(2),
            "object": np.zeros(7),
        }

    def step(self, action: np.ndarray) -> dict:
        if not self.frozen:
            self.eef = make_pose(self.eef[:3, 3] + 0.5 * action[:3] * 0.05, rot_from_rotvec(0.5 * action[3:6] * 0.5) @ self.eef[:3, :3])
            self.joints = self.joints + 0.01
        return self.obs()


class FakePlanner:
    """Straight two-waypoint 'plans'; records every call; can be told to fail."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[np.ndarray, np.ndarray, tuple]] = []
        self.fail = fail

    def plan(self, start_joints, target, touch=()):
        self.calls.append((np.array(start_joints), np.array(target), tuple(touch)))
        if self.fail:
            raise PlanningFailed(self.fail)
        return Trajectory(poses=np.stack([target, target]), joints=np.stack([start_joints + 1.0, start_joints + 2.0]))


class FakeAgent:
    """Scripted predictions (a function of the stage and the number of predictions so far), constant actions,
    and a termination probability that rises after ``skill_len`` skill actions (or follows ``probs``)."""

    task, obs_mode = "fake", "privileged"

    def __init__(self, num_stages=2, predict=None, skill_len=3, probs=None, gripper=(1.0, -1.0)):
        self.num_stages = num_stages
        self.predict = predict or (lambda stage, n: pose_at(0.1 * (stage + 1)))
        self.skill_len, self.probs, self.gripper = skill_len, probs, gripper
        self.resets = 0
        self.reset()

    def reset(self):
        self.resets += 1
        self.n_pred = [0] * self.num_stages
        self.n_act = [0] * self.num_stages

    def predict_pose(self, obs, stage):
        self.n_pred[stage] += 1
        return self.predict(stage, self.n_pred[stage] - 1)

    def act(self, obs, stage):
        self.n_act[stage] += 1
        return np.array([0.1, 0, 0, 0, 0, 0, self.gripper[stage % len(self.gripper)]])

    def termination_prob(self, obs, stage):
        if self.probs is not None:
            return self.probs[min(self.n_act[stage] - 1, len(self.probs) - 1)]
        return 1.0 if self.n_act[stage] >= self.skill_len else 0.0


def run(executor: HybridExecutor, world: FakeWorld, max_ticks: int = 2000) -> list[Command]:
    commands = []
    obs = world.obs()
    for _ in range(max_ticks):
        cmd = executor.tick(obs)
        commands.append(cmd)
        if executor.finished:
            break
        obs = world.step(cmd.action)
    return commands


def cfg(**kw) -> HybridConfig:
    base = dict(planner="straight_line", connect_max_steps=200, skill_max_steps=50, termination_confirm_ticks=1)  # tests count ticks from the first prediction
    base.update(kw)
    return HybridConfig(**base)


def test_phase_sequence_through_two_stages_to_done():
    agent, planner = FakeAgent(), FakePlanner()
    ex = HybridExecutor(agent, planner, cfg(), reference_objects=("pod", "machine"))
    commands = run(ex, FakeWorld())
    st = ex.status
    assert st.phase == Phase.DONE and st.failure_kind == "" and st.replans == 0
    assert [(s, p) for _, s, p in st.transitions] == [
        (0, "predict"), (0, "plan"), (0, "connect"), (0, "skill"),
        (1, "predict"), (1, "plan"), (1, "connect"), (1, "skill"), (1, "done"),
    ]
    assert [c[2] for c in planner.calls] == [("pod",), ("machine",)]
    # every command is a valid action; skills ran exactly until termination fired
    assert all(c.action.shape == (7,) and np.all(np.abs(c.action) <= 1) for c in commands)
    assert agent.n_act == [3, 3]
    assert sum(st.stage_steps) == len(commands) - 1 == sum(c.phase in (Phase.CONNECT, Phase.SKILL) for c in commands)
    # connect carries joint targets of the joint-space plan; the first connect holds the gripper open,
    # the second keeps the last skill gripper command (closed)
    connect = [c for c in commands if c.phase == Phase.CONNECT]
    assert all(c.joint_target is not None for c in connect)
    assert {c.action[6] for c in connect if c.stage == 0} == {-1.0} and {c.action[6] for c in connect if c.stage == 1} == {1.0}
    # finished executors keep answering with hold commands
    hold = ex.tick(FakeWorld().obs())
    assert hold.phase == Phase.DONE and np.allclose(hold.action[:6], 0)
    ex.reset()
    assert ex.status.phase == Phase.PREDICT and ex.status.stage == 0 and agent.resets == 3  # init + reset() + init call


def _drifting_predictions(offsets):
    """Stage 0 predictions: far target (so connect lasts) shifted along x by offsets[n] at the n-th prediction."""
    def predict(stage, n):
        return pose_at(0.5 + offsets[min(n, len(offsets) - 1)], 0.3) if stage == 0 else pose_at(0.2)
    return predict


def test_replans_exactly_when_prediction_moves_more_than_epsilon():
    offsets = [0.0, 0.0, 0.04, 0.049, 0.12, 0.12, 0.15, 0.16, 0.16]  # vs current target: -, 0, .04, .049, .12 R, 0, .03, .04, .04
    agent, planner = FakeAgent(predict=_drifting_predictions(offsets)), FakePlanner()
    ex = HybridExecutor(agent, planner, cfg(epsilon=0.05))
    world = FakeWorld()
    obs = world.obs()
    for _ in range(len(offsets)):
        obs = world.step(ex.tick(obs).action)
    st = ex.status
    assert st.replans == 1 and st.replans_per_stage == [1, 0]
    assert len(planner.calls) == 2
    assert np.allclose(planner.calls[1][1][:3, 3], [0.62, 0.3, 1.0])
    assert np.allclose(st.target, planner.calls[1][1])
    # the re-plan starts from the joints observed at that tick
    assert np.allclose(planner.calls[1][0], 0.01 * 4)
    # a rotation beyond epsilon (angle / pi) also triggers a re-plan
    rot = lambda stage, n: make_pose([0.5, 0.3, 1.0], rot_z(0.0 if n < 3 else 0.2) @ DOWN) if stage == 0 else pose_at(0.2)  # noqa: E731
    assert pose_distance(rot(0, 0), rot(0, 3)) > 0.05
    agent, planner = FakeAgent(predict=rot), FakePlanner()
    ex = HybridExecutor(agent, planner, cfg(epsilon=0.05))
    world = FakeWorld()
    obs = world.obs()
    for _ in range(6):
        obs = world.step(ex.tick(obs).action)
    assert ex.status.replans == 1 and len(planner.calls) == 2


def test_no_replans_when_replanning_is_off():
    offsets = [0.0, 0.2, 0.4, 0.6]
    agent, planner = FakeAgent(predict=_drifting_predictions(offsets)), FakePlanner()
    ex = HybridExecutor(agent, planner, cfg(replan=False))
    world = FakeWorld()
    obs = world.obs()
    for _ in range(10):
        obs = world.step(ex.tick(obs).action)
    assert ex.status.replans == 0 and len(planner.calls) == 1
    assert np.allclose(ex.status.target[:3, 3], [0.5, 0.3, 1.0])
    assert agent.n_pred[0] == 10  # the predictor still runs every tick (status shows it; the plan is kept)


class FailAfterFirstPlan(FakePlanner):
    """The first plan succeeds; later ones (re-plans) fail while ``failing`` is true."""

    def __init__(self):
        super().__init__()
        self.failing = True

    def plan(self, start_joints, target, touch=()):
        if self.calls and self.failing:
            self.calls.append((np.array(start_joints), np.array(target), tuple(touch)))
            raise PlanningFailed("target in collision")
        return super().plan(start_joints, target, touch)


def test_failed_replan_fails_or_keeps_the_current_plan():
    offsets = [0.0, 0.1, 0.11, 0.12, 0.3, 0.3]  # re-plan wanted at n=1; n=2, 3 are within epsilon of that failed one
    agent, planner = FakeAgent(predict=_drifting_predictions(offsets)), FailAfterFirstPlan()
    ex = HybridExecutor(agent, planner, cfg(epsilon=0.05))  # Algorithm 1 as written: a failed re-plan ends the episode
    world = FakeWorld()
    obs = world.obs()
    for _ in range(3):
        obs = world.step(ex.tick(obs).action)
    assert ex.status.failure_kind == "planning_failed" and len(planner.calls) == 2
    agent, planner = FakeAgent(predict=_drifting_predictions(offsets)), FailAfterFirstPlan()
    ex = HybridExecutor(agent, planner, cfg(epsilon=0.05, keep_plan_on_replan_failure=True))
    world = FakeWorld()
    obs = world.obs()
    for n in range(4):
        obs = world.step(ex.tick(obs).action)
        assert ex.phase == Phase.CONNECT and np.allclose(ex.status.target[:3, 3], [0.5, 0.3, 1.0])  # old plan followed
    assert ex.status.failed_replans == 1 and len(planner.calls) == 2  # not retried within epsilon of the failed target
    planner.failing = False
    obs = world.step(ex.tick(obs).action)  # the prediction moved on (0.3): re-planned
    st = ex.status
    assert st.replans == 1 and len(planner.calls) == 3 and np.allclose(st.target[:3, 3], [0.8, 0.3, 1.0])


def test_connect_timeout_fails_with_reason():
    ex = HybridExecutor(FakeAgent(), FakePlanner(), cfg(connect_max_steps=7))
    commands = run(ex, FakeWorld(frozen=True))
    st = ex.status
    assert st.phase == Phase.FAILED and st.failure_kind == "connect_timeout"
    assert "stage 0 connect" in st.failure_reason and "7 connect steps" in st.failure_reason
    assert sum(c.phase == Phase.CONNECT for c in commands) == 7


def test_skill_timeout_fails_with_reason():
    ex = HybridExecutor(FakeAgent(skill_len=10**9), FakePlanner(), cfg(skill_max_steps=9))
    commands = run(ex, FakeWorld())
    st = ex.status
    assert st.failure_kind == "skill_timeout" and "stage 0 skill" in st.failure_reason
    assert sum(c.phase == Phase.SKILL for c in commands) == 9


def test_planning_failure_fails_with_reason_and_never_raises():
    ex = HybridExecutor(FakeAgent(), FakePlanner(fail="target unreachable"), cfg())
    cmd = ex.tick(FakeWorld().obs())
    st = ex.status
    assert st.phase == Phase.FAILED and st.failure_kind == "planning_failed"
    assert "target unreachable" in st.failure_reason and "stage 0 plan" in st.failure_reason
    assert cmd.phase == Phase.FAILED and np.allclose(cmd.action[:6], 0)


@pytest.mark.parametrize(
    "corrupt, kind",
    [
        (lambda o: o.update(robot0_eef_pos=np.array([np.nan, 0, 0])), "invalid_observation"),
        (lambda o: o.update(object=np.full(7, np.inf)), "invalid_observation"),
        (lambda o: o.pop("robot0_joint_pos"), "invalid_observation"),
        (lambda o: o.update(robot0_eef_quat=np.zeros(3)), "invalid_observation"),
    ],
)
def test_invalid_observation_fails_with_reason(corrupt, kind):
    ex = HybridExecutor(FakeAgent(), FakePlanner(), cfg())
    world = FakeWorld()
    obs = world.obs()
    for _ in range(3):
        obs = world.step(ex.tick(obs).action)
    corrupt(obs)
    cmd = ex.tick(obs)
    assert ex.status.failure_kind == kind and ex.status.failure_reason
    assert cmd.phase == Phase.FAILED and np.all(np.isfinite(cmd.action))


def test_bad_agent_outputs_fail_instead_of_raising():
    class Broken(FakeAgent):
        def act(self, obs, stage):
            raise RuntimeError("network exploded")

    ex = HybridExecutor(Broken(), FakePlanner(), cfg())
    run(ex, FakeWorld())
    assert ex.status.failure_kind == "error" and "network exploded" in ex.status.failure_reason

    class NanAction(FakeAgent):
        def act(self, obs, stage):
            return np.full(7, np.nan)

    ex = HybridExecutor(NanAction(), FakePlanner(), cfg())
    run(ex, FakeWorld())
    assert ex.status.failure_kind == "invalid_action"

    ex = HybridExecutor(FakeAgent(predict=lambda s, n: np.full((4, 4), np.nan)), FakePlanner(), cfg())
    ex.tick(FakeWorld().obs())
    assert ex.status.failure_kind == "invalid_pose"


def test_termination_threshold_is_respected():
    probs = [0.1, 0.5, 0.55, 0.8, 0.95]
    agent = FakeAgent(num_stages=1, probs=probs)
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination_threshold=0.5))
    run(ex, FakeWorld())
    assert ex.status.phase == Phase.DONE and agent.n_act == [3]  # 0.5 is not above the threshold, 0.55 is
    assert ex.status.termination_prob == pytest.approx(0.55)
    agent = FakeAgent(num_stages=1, probs=probs)
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination_threshold=0.9))
    run(ex, FakeWorld())
    assert agent.n_act == [5]
    agent = FakeAgent(num_stages=1, probs=probs)
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination_threshold=0.99, skill_max_steps=20))
    run(ex, FakeWorld())
    assert ex.status.failure_kind == "skill_timeout" and agent.n_act == [20]


def test_no_prediction_yet_holds_still_without_failing():
    agent = FakeAgent(num_stages=1, predict=lambda stage, n: None if n < 3 else pose_at(0.1))  # a predictor still warming up
    ex = HybridExecutor(agent, FakePlanner(), cfg())
    world = FakeWorld()
    for _ in range(3):
        command = ex.tick(world.obs())
        assert ex.phase == Phase.PREDICT and not ex.finished
        assert np.all(command.action[:6] == 0) and command.action[6] == ex.config.initial_gripper
    run(ex, world)
    assert ex.status.phase == Phase.DONE and agent.n_pred[0] >= 4


def test_termination_must_hold_on_consecutive_ticks():
    probs = [0.9, 0.1, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1]  # a lone spike or a pair is not enough with 3 ticks
    agent = FakeAgent(num_stages=1, probs=probs)
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination_confirm_ticks=3))
    run(ex, FakeWorld())
    assert ex.status.phase == Phase.DONE and agent.n_act == [8]  # the 6th-8th actions are followed by 0.9 three times
    agent = FakeAgent(num_stages=1, probs=probs)
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination_confirm_ticks=1))
    run(ex, FakeWorld())
    assert agent.n_act == [1]
    with pytest.raises(ValueError, match="termination_confirm_ticks"):
        HybridConfig(termination_confirm_ticks=0)


def test_oracle_termination_ignores_the_classifier():
    calls = []

    def oracle(stage):
        calls.append(stage)
        return len([c for c in calls if c == stage]) >= 4

    agent = FakeAgent(skill_len=1)  # the classifier would end each skill after one action
    ex = HybridExecutor(agent, FakePlanner(), cfg(termination="oracle"), oracle=oracle)
    run(ex, FakeWorld())
    assert ex.status.phase == Phase.DONE and agent.n_act == [4, 4] and calls == [0] * 4 + [1] * 4
    with pytest.raises(ValueError, match="oracle"):
        HybridExecutor(agent, FakePlanner(), cfg(termination="oracle"))


def test_config_layers_and_validation(tmp_path):
    default = HybridConfig.load()
    assert default.epsilon == 0.05 and default.termination_threshold == 0.5 and default.replan
    merged = HybridConfig.load({"hybrid": {"epsilon": 0.1, "skill_max_steps": 7}}, replan=False, termination=None)
    assert merged.epsilon == 0.1 and merged.skill_max_steps == 7 and merged.replan is False and merged.termination == "learned"
    with pytest.raises(ValueError, match="unknown hybrid executor settings: epsilon_typo"):
        HybridConfig.load({"hybrid": {"epsilon_typo": 1}})
    with pytest.raises(ValueError, match="unknown termination"):
        HybridConfig(termination="magic")
    assert check_observation(FakeWorld().obs()) == ""


def _teacher_sources():
    ref_a, ref_b = make_pose([0.1, 0.0, 0.8], np.eye(3)), make_pose([-0.2, 0.1, 0.8], rot_z(0.5))
    def src(demo, ref, init):
        return SkillSource(demo, 0, ref, init, np.stack([init, init]), np.array([-1.0, 1.0]))
    return [[src(0, ref_a, make_pose([0.1, 0.0, 0.9], DOWN)), src(1, ref_b, make_pose([-0.2, 0.1, 0.95], rot_z(0.5) @ DOWN))]]


def test_teacher_transforms_the_source_initiation_pose_by_the_live_reference():
    teacher = PrivilegedTeacher(_teacher_sources(), POD_STAGE, ["pod"], strategy="nearest", nearest_k=1)
    now = make_pose([0.15, 0.05, 0.8], rot_z(0.3))
    obs = {"object": np.concatenate([now[:3, 3], mat_to_quat(now[:3, :3])])}
    assert np.allclose(object_pose_from_obs(obs, ["pod"], "pod"), now)
    pred = teacher.predict_pose(obs, 0)
    src = teacher.source(obs, 0)
    assert src.demo == 0  # nearest reference pose
    assert np.allclose(pose_inv(now) @ pred, pose_inv(src.reference_pose) @ src.initiation_pose)
    # the segment is chosen once per episode: the object moving does not switch it, the pose follows the object
    moved = make_pose([-0.2, 0.1, 0.8], rot_z(0.5))
    obs2 = {"object": np.concatenate([moved[:3, 3], mat_to_quat(moved[:3, :3])])}
    assert teacher.source(obs2, 0) is src
    assert np.allclose(pose_inv(moved) @ teacher.predict_pose(obs2, 0), pose_inv(src.reference_pose) @ src.initiation_pose)
    teacher.reset()
    assert teacher.source(obs2, 0).demo == 1
    # random selection is reproducible per episode seed
    teacher = PrivilegedTeacher(_teacher_sources(), POD_STAGE, ["pod"], strategy="random")
    picks = []
    for _ in range(2):
        teacher.reset(seed=7)
        picks.append([(teacher.reset(), teacher.source(obs, 0).demo)[1] for _ in range(6)])
    assert picks[0] == picks[1]


def test_teacher_pose_agent_replaces_only_the_pose():
    teacher = PrivilegedTeacher(_teacher_sources(), POD_STAGE, ["pod"], nearest_k=1)
    agent = FakeAgent(num_stages=1)
    wrapped = TeacherPoseAgent(agent, teacher)
    obs = FakeWorld().obs()
    obs["object"] = np.array([0.1, 0.0, 0.8, 0, 0, 0, 1.0])
    assert np.allclose(wrapped.predict_pose(obs, 0), make_pose([0.1, 0.0, 0.9], DOWN))
    assert agent.n_pred == [0]
    assert np.allclose(wrapped.act(obs, 0), agent.act(obs, 0)) and wrapped.termination_prob(obs, 0) == agent.termination_prob(obs, 0)
    with pytest.raises(ValueError, match="stages"):
        TeacherPoseAgent(FakeAgent(num_stages=2), teacher)


def test_teacher_pose_agent_holds_the_teachers_connect_gripper_and_seeds_it():
    class ReplayLikeTeacher:  # the source-replay agent's interface (HSP-Priv's "generation" teacher)
        num_stages = 1

        def __init__(self):
            self.seeds, self.resets = [], 0

        def predict_pose(self, obs, stage):
            return make_pose([0.2, 0.0, 1.0], DOWN)

        def set_episode_seed(self, seed):
            self.seeds.append(seed)

        def reset(self):
            self.resets += 1

        def connect_gripper(self, stage):
            return -1.0

    teacher = ReplayLikeTeacher()
    wrapped = TeacherPoseAgent(FakeAgent(num_stages=1), teacher)
    wrapped.set_episode_seed(5)
    wrapped.reset()
    assert teacher.seeds == [5] and teacher.resets == 1 and wrapped.connect_gripper(0) == -1.0
    plain = TeacherPoseAgent(FakeAgent(num_stages=1), PrivilegedTeacher(_teacher_sources(), POD_STAGE, ["pod"], nearest_k=1))
    assert plain.connect_gripper(0) is None  # the transform-only teacher has no gripper: the executor keeps its own


class ConnectGripperAgent(FakeAgent):
    """Names the gripper command to hold while connecting to each stage."""

    def connect_gripper(self, stage):
        return (0.5, None)[stage]


def test_connect_holds_the_gripper_the_agent_names_for_the_stage():
    executor = HybridExecutor(ConnectGripperAgent(gripper=(1.0, -1.0)), FakePlanner(), cfg())
    commands = run(executor, FakeWorld())
    connect = {k: {float(c.action[6]) for c in commands if c.phase == Phase.CONNECT and c.stage == k} for k in (0, 1)}
    assert connect[0] == {0.5}  # the agent's choice instead of initial_gripper
    assert connect[1] == {1.0}  # None: the last skill's gripper command is kept
