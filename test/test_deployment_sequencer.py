"""The stage sequencer core with fake component answers, a fake robot and no simulator or ROS."""

import numpy as np
import pytest

from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.deployment.sequencer import SequencerConfig, StageSequencer
from reinforcegen_ros.geometry import make_pose, mat_to_quat, rot_from_rotvec, rot_z
from reinforcegen_ros.hybrid import HybridConfig

NS = 10**9
DT = NS // 20
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def pose_at(x, y=0.0, z=1.0):
    return make_pose([x, y, z], rot_z(0.0) @ DOWN)


class World:
    """A grip site that moves half of each commanded delta."""

    def __init__(self):
        self.eef = pose_at(0.0)
        self.joints = np.zeros(7)

    def obs(self):
        return {
            "robot0_eef_pos": self.eef[:3, 3].copy(), "robot0_eef_quat": mat_to_quat(self.eef[:3, :3]),
            "robot0_joint_pos": self.joints.copy(), "robot0_gripper_qpos": np.zeros(2), "object": np.zeros(7),
        }

    def step(self, a):
        self.eef = make_pose(self.eef[:3, 3] + 0.5 * a[:3] * 0.05, rot_from_rotvec(0.5 * a[3:6] * 0.5) @ self.eef[:3, :3])


class Components:
    """Fake pose predictor (+ 5-waypoint straight plans, ``path_delay`` answers late), skill policy and
    termination (after ``skill_len`` answers)."""

    def __init__(self, skill_len=3, plan_fails=False, pose_fn=None, path_delay=0):
        self.skill_len, self.plan_fails, self.path_delay = skill_len, plan_fails, path_delay
        self.pending = []
        self.pose_fn = pose_fn or (lambda stage, n: pose_at(0.1 * (stage + 1)))
        self.n_pose, self.n_skill, self.planned = {}, {}, {}
        self.silent_skill = False

    def answer(self, seq: StageSequencer, status, world: World):
        k, s = status.stage_index, status.stamp_ns
        if status.phase in ("predict", "plan", "connect"):
            n = self.n_pose.get(k, 0)
            self.n_pose[k] = n + 1
            pose = self.pose_fn(k, n)
            seq.on_predicted_pose(s, pose)
            if k not in self.planned or np.abs(self.planned[k][:3, 3] - pose[:3, 3]).max() > 0.05:
                if self.plan_fails:
                    self.pending.append((s, None, "planning failed: target in collision"))
                else:
                    start = world.eef
                    poses = np.stack([make_pose(start[:3, 3] + (pose[:3, 3] - start[:3, 3]) * t, pose[:3, :3]) for t in np.linspace(0.2, 1, 5)])
                    self.pending.append((s, poses, ""))
                self.planned[k] = pose
            while self.pending and (self.path_delay == 0 or len(self.pending) > 1 or n % (self.path_delay + 1) == self.path_delay):
                seq.on_path(*self.pending.pop(0))
        elif status.phase == "skill" and not self.silent_skill:
            n = self.n_skill.get(k, 0)
            self.n_skill[k] = n + 1
            seq.on_skill_command(s, np.array([0.1, 0, 0, 0, 0, 0, 1.0 if k == 0 else -1.0]))
            seq.on_termination(s, 1.0 if n + 1 >= self.skill_len else 0.1)


def make_seq(**kw):
    hybrid = HybridConfig(planner="straight_line", connect_max_steps=200, skill_max_steps=50)
    return StageSequencer("coffee", ["grasp_pod", "insert_pod_close_lid"], hybrid, SequencerConfig(**kw), CommandGuard(GuardConfig()), horizon=600)


def tick(seq, now, obs, stamp, comps=None, world=None, problem=""):
    """One tick as the node runs it: begin (status out), the components answer, complete; one merged output."""
    out = seq.begin(now, obs, stamp, problem)
    if not out.pending:
        return out
    status = out.status
    if comps is not None:
        comps.answer(seq, status, world)
    done = seq.complete(now)
    done.status = done.status or status
    done.warnings = out.warnings + done.warnings
    return done


def drive(seq, world, comps, ticks=400, t0=NS, start=True):
    """Run ``ticks`` ticks 50 ms apart; returns the outputs."""
    if start:
        assert seq.start("coffee", 0.0, t0).ok
    outs, now = [], t0
    for i in range(ticks):
        now += DT
        out = tick(seq, now, world.obs(), now, comps, world)
        outs.append(out)
        if out.result is not None:
            break
        if out.command is not None:
            world.step(out.command)
    return outs


def test_runs_both_stages_to_success_from_component_answers():
    seq, world = make_seq(), World()
    outs = drive(seq, world, Components())
    result = outs[-1].result
    assert result.success and result.reason == "success" and result.stages_completed == 2
    phases = [(o.status.stage_index, o.status.phase) for o in outs if o.status]
    order = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert order == [(0, "predict"), (0, "connect"), (0, "skill"), (1, "predict"), (1, "connect"), (1, "skill"), (1, "done")]
    assert all(np.all(np.abs(o.command) <= 1) for o in outs if o.command is not None)
    assert world.eef[0, 3] > 0.15  # the skill commands moved the arm on
    # after the result: one hold, then silence until the next goal
    hold = tick(seq, 10**12, world.obs(), 10**12)
    assert hold.command.tolist()[:6] == [0] * 6 and tick(seq, 10**12 + DT, world.obs(), 10**12 + DT).command is None


def test_status_shows_plan_while_the_planner_works():
    seq, world = make_seq(), World()
    outs = drive(seq, world, Components(path_delay=3))
    assert outs[-1].result.success
    phases = [o.status.phase for o in outs if o.status and o.status.stage_index == 0]
    assert phases[:5] == ["predict", "plan", "plan", "plan", "connect"]


def test_replans_when_the_prediction_moves_beyond_epsilon():
    seq, world = make_seq(), World()
    comps = Components(pose_fn=lambda stage, n: pose_at(0.1 * (stage + 1) + (0.08 if n >= 3 else 0.0)))
    outs = drive(seq, world, comps)
    assert outs[-1].result.success
    assert max(o.status.replan_count for o in outs if o.status and o.status.stage_index == 0) >= 1


def test_planning_failure_fails_the_goal_with_the_planner_reason():
    seq, world = make_seq(), World()
    comps = Components(plan_fails=True)
    real_on_path = seq.on_path

    def reason_then_empty_path(stamp, poses, reason=""):  # the node sends the reason, then an empty path
        real_on_path(stamp, poses, reason)
        return real_on_path(stamp, None)

    seq.on_path = reason_then_empty_path
    outs = drive(seq, world, comps)
    r = outs[-1].result
    assert not r.success and "target in collision" in r.reason and r.stages_completed == 0
    assert outs[-1].status.phase == "failed" and outs[-1].status.failure_reason == r.reason
    assert np.all(outs[-1].command[:6] == 0)


def test_emergency_stop_latches_until_released():
    seq, world = make_seq(), World()
    comps = Components(skill_len=1000)
    drive(seq, world, comps, ticks=20)
    r = seq.set_emergency_stop(True, 5 * NS)
    assert r is not None and not r.success and r.reason == "emergency stop"
    check = seq.start("coffee", 0.0, 6 * NS)
    assert not check.ok and "emergency stop is latched" in check.reason
    seq.set_emergency_stop(False, 7 * NS)
    assert seq.start("coffee", 0.0, 8 * NS).ok


def test_stale_observations_hold_still_then_the_watchdog_fails_the_goal():
    seq, world = make_seq(watchdog_timeout=0.5), World()
    comps = Components(skill_len=1000)
    drive(seq, world, comps, ticks=30)
    x = world.eef[:3, 3].copy()
    frozen = world.obs()
    now = stamp = seq.last_obs_ns  # the observation stops changing
    outs = []
    for i in range(20):
        now += DT
        out = tick(seq, now, frozen, stamp)
        outs.append(out)
        if out.result:
            break
        world.step(out.command)
    assert "holding still: no new observation" in outs[0].warnings[0]
    assert all("no new observation" in o.warnings[0] for o in outs[:-1])
    assert np.allclose(world.eef[:3, 3], x)  # held still throughout
    assert "watchdog: no new observation for more than 0.5 s" in outs[-1].result.reason
    # a new observation that is already too old is stale
    seq, world = make_seq(), World()
    drive(seq, world, Components(skill_len=1000), ticks=5)
    out = tick(seq, seq.last_obs_ns + NS, world.obs(), seq.last_obs_ns + DT)
    assert "observation is stale" in out.warnings[0] and np.all(out.command[:6] == 0)


def test_out_of_order_and_missing_observations_do_not_advance_the_executor():
    seq, world = make_seq(), World()
    comps = Components(skill_len=1000)
    drive(seq, world, comps, ticks=10)
    ticks = seq.executor.status.ticks
    out = tick(seq, NS + 11 * DT, world.obs(), NS + 5 * DT)  # older than the last observation
    assert seq.executor.status.ticks == ticks and np.all(out.command[:6] == 0)
    out = tick(seq, NS + 12 * DT, None, 0, problem="no joints received yet")
    assert "no joints received yet" in out.warnings[0]
    bad = world.obs()
    bad["robot0_eef_pos"] = np.array([np.nan, 0, 1])
    out = tick(seq, NS + 13 * DT, bad, NS + 13 * DT)  # NaN observation: the executor itself fails
    assert out.result is not None and "NaN" in out.result.reason


def test_silent_skill_policy_holds_then_times_out():
    seq, world = make_seq(input_timeout=0.5), World()
    comps = Components()
    comps.silent_skill = True
    outs = drive(seq, world, comps)
    r = outs[-1].result
    assert not r.success and "no fresh skill policy command" in r.reason


def test_phase_and_goal_time_limits():
    seq, world = make_seq(phase_limits={"skill": 1.0}), World()
    outs = drive(seq, world, Components(skill_len=10_000))
    assert "phase skill of stage 0 exceeded its limit of 1 s" in outs[-1].result.reason
    seq, world = make_seq(), World()
    assert seq.start("coffee", 0.5, NS).ok
    outs = drive(seq, world, Components(skill_len=10_000), start=False)
    assert "time limit of 0.5 s" in outs[-1].result.reason
    with pytest.raises(ValueError, match="unknown phases"):
        SequencerConfig.from_dict({"phase_limits": {"grasp": 1}})


def test_goals_for_another_task_or_while_busy_are_rejected():
    seq = make_seq()
    assert "runs task 'coffee'" in seq.start("threading", 0.0, NS).reason
    assert "time_limit" in seq.start("coffee", -1.0, NS).reason
    assert seq.start("coffee", 0.0, NS).ok
    assert "already running" in seq.start("coffee", 0.0, NS).reason
    r = seq.cancel(2 * NS)
    assert not r.success and r.reason == "canceled" and r.duration == pytest.approx(1.0)


def test_bad_or_unattributable_answers_are_rejected():
    seq, world = make_seq(), World()
    comps = Components(skill_len=1000)
    drive(seq, world, comps, ticks=3)
    s = seq.last_status.stamp_ns
    assert "answers no recent status" in seq.on_skill_command(123, np.zeros(7)).reason
    assert "rejected" in seq.on_predicted_pose(s, np.full((4, 4), np.nan)).reason
    assert "7 finite" in seq.on_skill_command(s, [np.nan] * 7).reason
    assert "not in [0, 1]" in seq.on_termination(s, 1.5).reason
    assert "finite 4x4" in seq.on_path(s, np.zeros((3, 3))).reason


def test_answers_for_an_earlier_stage_are_never_used_for_the_next_one():
    seq, world = make_seq(), World()
    comps = Components(skill_len=2)
    outs = drive(seq, world, comps, ticks=400)
    assert outs[-1].result.success
    # stage-0 skill actions ([0.1, ..., +1]) never drive stage 1: there it is holds or stage-1 actions ([0.1, ..., -1])
    stage1 = [o.command for o in outs if o.status and o.status.stage_index == 1 and o.command is not None]
    assert stage1 and not any(c[0] == 0.1 and c[6] == 1.0 for c in stage1)
    assert any(c[0] == 0.1 and c[6] == -1.0 for c in stage1)


def test_guard_refuses_commands_leaving_the_workspace():
    hybrid = HybridConfig(planner="straight_line", connect_max_steps=200, skill_max_steps=50)
    guard = CommandGuard(GuardConfig(workspace_max=[0.12, 0.6, 1.6]))
    seq = StageSequencer("coffee", ["a", "b"], hybrid, SequencerConfig(max_rejected_commands=5), guard, horizon=600)
    world = World()
    outs = drive(seq, world, Components(skill_len=1000))
    assert any("outside the workspace box in x" in w for o in outs for w in o.warnings)
    assert "consecutive commands rejected by the safety guard" in outs[-1].result.reason
    assert world.eef[0, 3] <= 0.12 + 1e-9


def test_a_tick_uses_the_answers_to_its_own_status_and_falls_back_to_recent_ones():
    seq, world = make_seq(), World()
    comps = Components(skill_len=10_000)
    drive(seq, world, comps, ticks=40)  # into the skill phase
    assert seq.executor.phase.value == "skill"
    now = seq.last_obs_ns + DT
    out = seq.begin(now, world.obs(), now)
    assert out.pending and out.status.phase == "skill" and out.command is None and not seq.answers_ready()
    seq.on_skill_command(now, np.array([0.3, 0, 0, 0, 0, 0, 1.0]))
    assert not seq.answers_ready()  # the termination estimate is missing
    seq.on_termination(now, 0.2)
    assert seq.answers_ready()
    done = seq.complete(now)
    assert done.command[0] == pytest.approx(0.3)  # the answer computed on this tick's observation
    now += DT
    assert seq.begin(now, world.obs(), now).pending and not seq.answers_ready()
    done = seq.complete(now)  # no answer this time: the previous one (50 ms old) is used
    assert done.command[0] == pytest.approx(0.3)
    for _ in range(8):  # answers older than max_input_age are not: hold still
        now += DT
        seq.begin(now, world.obs(), now)
        done = seq.complete(now)
    assert np.all(done.command[:6] == 0)
    assert seq.complete(now).command is None  # nothing pending


# ---------------------------------------------------------------------- issue 20: status always on, diagnostics, stamps, reset
class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_idle_status_at_the_control_rate_between_goals():
    seq, world = make_seq(), World()
    outs = [tick(seq, NS + i * DT // 2, world.obs(), NS + i * DT // 2) for i in range(8)]  # ticks at 40 Hz, no goal
    idle = [o.status for o in outs if o.status is not None]
    assert len(idle) == 4 and all(o.command is None for o in outs)  # 20 Hz: every second tick
    assert all(s.phase == "idle" and s.stage_index == -1 and s.stage_name == "" and s.target is None for s in idle)
    assert tick(seq, 10 * NS, None, 0, problem="no joints received yet").status.phase == "idle"  # no robot: still on
    drive(seq, world, Components(), t0=20 * NS)  # a goal; after its result: one hold, then idle again
    after = [tick(seq, 100 * NS + i * DT, world.obs(), 100 * NS + i * DT) for i in range(3)]
    assert after[0].command is not None and after[0].status is None
    assert [o.status.phase for o in after[1:]] == ["idle", "idle"] and after[2].command is None


def test_every_command_stamp_is_later_than_the_last_so_the_estop_hold_is_never_a_duplicate():
    seq, world = make_seq(), World()
    outs = drive(seq, world, Components(skill_len=1000), ticks=20)
    stamps = [o.stamp_ns for o in outs if o.command is not None]
    assert stamps == sorted(set(stamps)) and stamps[-1] == seq.last_obs_ns  # commands carry their observation's stamp
    now = seq.last_obs_ns  # the node's clock still shows the frame the last command answered
    assert seq.set_emergency_stop(True, now).reason == "emergency stop"
    hold, stamp = seq.hold_command(now)
    assert stamp == now + 1 and not np.any(hold[:6])  # later than the command it stops (was: equal, "duplicate eef command")
    final = tick(seq, now + DT, world.obs(), now + DT)  # the one hold after the goal: stamped with its observation
    assert final.stamp_ns == now + DT
    again = seq.command_stamp(now)  # whatever a caller proposes, stamps only grow
    assert again == now + DT + 1
    seq.set_emergency_stop(False, now + 2 * DT)
    assert tick(seq, now + 2 * DT, world.obs(), now + 2 * DT).command is None  # release sends nothing


def test_a_goal_on_a_simulated_robot_waits_for_its_reset_scene():
    hybrid = HybridConfig(planner="straight_line", connect_max_steps=200, skill_max_steps=50)
    seq = StageSequencer("coffee", ["a", "b"], hybrid, SequencerConfig(reset_timeout=1.0), CommandGuard(GuardConfig()), horizon=600, can_reset=True)
    world = World()
    assert "seed must be" in seq.start("coffee", 0.0, NS, seed=-3).reason
    assert seq.start("coffee", 0.0, NS, seed=4).ok and seq.reset_seed == 4
    out = tick(seq, NS + DT, world.obs(), NS + DT)  # the old scene: not used, no command
    assert out.status.phase == "reset" and out.status.stage_index == -1 and out.command is None and not out.pending
    reset_stamp = NS + 2 * DT
    seq.scene_ready(reset_stamp, 4, reset_stamp)
    assert seq.reset_seed is None
    out = tick(seq, reset_stamp + DT // 2, world.obs(), NS + DT)  # an observation from before the reset arrives late
    assert "no observation of the reset scene yet" in out.warnings[0] and np.all(out.command[:6] == 0)
    comps = Components()
    outs = drive(seq, world, comps, t0=reset_stamp, start=False)
    assert outs[-1].result.success and outs[-1].result.seed == 4
    assert seq.start("coffee", 0.0, 100 * NS, seed=-2).ok and seq.reset_seed is None  # SEED_KEEP: no reset
    seq.cancel(101 * NS)
    # no answer from the bridge: the goal fails after reset_timeout; a refused reset fails it at once
    assert seq.start("coffee", 0.0, 200 * NS, seed=-1).ok and seq.reset_seed == -1
    out = tick(seq, 200 * NS + 2 * NS, world.obs(), 200 * NS + 2 * NS)
    assert not out.result.success and "no new scene within 1 s" in out.result.reason and out.status.phase == "failed"
    assert seq.start("coffee", 0.0, 300 * NS, seed=2).ok
    r = seq.reset_failed("the simulator was released", 300 * NS)
    assert not r.success and r.reason == "scene reset failed: the simulator was released" and r.stages_completed == 0
    # a real robot is never reset: the seed is ignored, said so
    real = make_seq()
    check = real.start("coffee", 0.0, NS, seed=3)
    assert check.ok and "seed 3 ignored" in check.reason and real.reset_seed is None


def test_diagnostics_report_tick_rate_answer_timeouts_and_planning_latency():
    clock = FakeClock()
    hybrid = HybridConfig(planner="straight_line", connect_max_steps=200, skill_max_steps=1000)
    seq = StageSequencer("coffee", ["a", "b"], hybrid, SequencerConfig(diagnostics_window=1.0), CommandGuard(GuardConfig()), horizon=600, clock=clock)
    d = seq.diagnostics(NS)
    assert d.level == 0 and d.message == "idle" and d.values["goal_active"] == "false" and d.values["tick_rate_hz"] == "0.00"
    world, comps = World(), Components(skill_len=1000, path_delay=2)
    assert seq.start("coffee", 0.0, NS).ok
    now = NS
    for i in range(60):  # 20 Hz of wall time; the first path arrives two ticks after its status
        now += DT
        clock.t += 0.05
        out = tick(seq, now, world.obs(), now, comps, world)
        assert out.result is None
        world.step(out.command)
    d = seq.diagnostics(now)
    assert d.level == 0 and float(d.values["tick_rate_hz"]) == pytest.approx(20.0, abs=1.5)
    assert d.values["answer_timeouts_in_window"] == "0" and int(d.values["plans_received"]) >= 1
    assert float(d.values["planning_latency_ms_max"]) == pytest.approx(100.0, abs=1.0)  # 2 ticks of 50 ms
    for i in range(20):  # the skill policy falls silent and the robot slows to 5 Hz: WARN
        now += 4 * DT
        clock.t += 0.2
        comps.silent_skill = True
        tick(seq, now, world.obs(), now, comps, world)
    d = seq.diagnostics(now)
    assert d.level == 1 and "below half the control rate" in d.message and int(d.values["answer_timeouts_in_window"]) > 0
    assert int(d.values["answer_timeouts_total"]) > 0
    seq.set_emergency_stop(True, now)
    d = seq.diagnostics(now)
    assert d.level == 2 and d.message == "emergency stop latched" and d.values["last_result"] == "emergency stop"
    assert d.values["goals_failed"] == "1"


def test_episode_boundaries_frame_each_goal_and_shutdown_ends_a_running_goal():
    seq, world = make_seq(), World()
    outs = drive(seq, world, Components())
    assert outs[-1].result.success
    start, end = seq.take_episode_events()
    commands = [o for o in outs if o.command is not None]
    assert (start.event, end.event, start.episode_index) == (0, 1, 0)
    assert start.stamp_ns == commands[0].stamp_ns and end.stamp_ns == commands[-1].stamp_ns
    assert end.success and end.num_steps == len(commands) and end.attrs["reason"] == "success" and '"goal": 0' in end.attrs_json
    assert seq.take_episode_events() == []
    assert seq.start("coffee", 0.0, 100 * NS).ok
    r = seq.shutdown(101 * NS)
    assert not r.success and r.reason == "node shutting down" and not seq.active
    assert seq.take_episode_events() == []  # no command went out: no episode
    assert seq.shutdown(102 * NS) is None
