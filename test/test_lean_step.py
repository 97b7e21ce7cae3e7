"""The lean step path applies robosuite's own torques in every substep (issue 17)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from reinforcegen_ros.tasks import TASKS
from reinforcegen_ros.tasks import lean_control
from reinforcegen_ros.tasks.environment import TaskEnv, simulation_settings
from reinforcegen_ros.tasks.lean_control import LeanStep

TORQUE_TOL = 1e-9
_ENVS: dict[str, TaskEnv] = {}


def stock_env(task: str) -> TaskEnv:
    """One stock-path environment per task for the whole module."""
    if task not in _ENVS:
        _ENVS[task] = TaskEnv(task, step_path="stock")
    return _ENVS[task]


def teardown_module():
    for env in _ENVS.values():
        env.close()


def snapshot(rs) -> tuple:
    """The whole integration state of MuJoCo (incl. warm start and ctrl) and robosuite's step state."""
    m, d = rs.sim.model._model, rs.sim.data._data
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, state, spec)
    return state, rs.robots[0].gripper["right"].current_action.copy(), rs.timestep, rs.cur_time


def restore(rs, snap) -> None:
    state, grip, rs.timestep, rs.cur_time = snap
    mujoco.mj_setState(rs.sim.model._model, rs.sim.data._data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    rs.robots[0].gripper["right"].current_action = grip.copy()


def substep_ctrl(step, rs, action) -> np.ndarray:
    """``ctrl`` and ``qfrc_applied`` as written for each substep of one control step.

    MuJoCo calls ``mjcb_control`` at the end of every ``mj_step1``, when ``ctrl`` still
    holds what the previous substep applied, whoever calls MuJoCo; the last substep's
    values are read after the step.
    """
    data, record = rs.sim.data._data, []

    def control_callback(m, d):
        record.append(np.concatenate([d.ctrl, d.qfrc_applied]))

    mujoco.set_mjcb_control(control_callback)
    try:
        step(action)
    finally:
        mujoco.set_mjcb_control(None)
    return np.array(record[1:] + [np.concatenate([data.ctrl, data.qfrc_applied])])


def compare_step(rs, lean, action) -> tuple[float, float, float]:
    """From the current state, max |difference| of: ctrl in the first substep (the same state for both paths),
    ctrl in any substep (states apart by rounding after the first), qpos after the step."""
    snap = snapshot(rs)
    stock = substep_ctrl(rs.step, rs, action)
    stock_qpos, stock_grip = rs.sim.data.qpos.copy(), rs.robots[0].gripper["right"].current_action.copy()
    stock_goal = (rs.robots[0].part_controllers["right"].goal_pos.copy(), rs.robots[0].part_controllers["right"].goal_ori.copy())
    restore(rs, snap)
    fast = substep_ctrl(lean, rs, action)
    arm = rs.robots[0].part_controllers["right"]
    assert stock.shape == fast.shape == (lean.substeps, rs.sim.model.nu + rs.sim.model.nv)
    np.testing.assert_array_equal(rs.robots[0].gripper["right"].current_action, stock_grip)
    np.testing.assert_allclose(arm.goal_pos, stock_goal[0], atol=1e-12)
    np.testing.assert_allclose(arm.goal_ori, stock_goal[1], atol=1e-12)
    assert rs.timestep == snap[2] + 1
    diff = np.abs(stock - fast)
    return float(diff[0].max()), float(diff.max()), float(np.abs(rs.sim.data.qpos - stock_qpos).max())


def random_states(env: TaskEnv, rng: np.random.Generator, n: int = 3):
    """Yield ``n`` states reached by random arm motion with the gripper opening and closing, the last one
    with the closed hand pressed down onto whatever lies below it (contacts)."""
    env.reset(seed=int(rng.integers(1000)))
    for k in range(n):
        for _ in range(int(rng.integers(2, 5))):
            env.env.step(np.append(rng.uniform(-1, 1, 6), rng.choice([-1.0, 1.0])))
        if k == n - 1:
            for _ in range(25):
                env.env.step(np.array([0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]))
            assert env.env.check_contact(env.env.robots[0].gripper["right"])
        yield


@pytest.mark.parametrize("task", list(TASKS))
def test_torques_equal_robosuite_in_every_substep(task):
    env = stock_env(task)
    rs, rng = env.env, np.random.default_rng(sum(map(ord, task)))
    lean = LeanStep(rs)
    worst = []
    for _ in random_states(env, rng):
        for action in (np.append(rng.uniform(-1.5, 1.5, 6), rng.uniform(-1, 1)), np.append(rng.uniform(-0.2, 0.2, 6), 0.0)):
            worst.append(compare_step(rs, lean, action))
    first, any_substep, qpos = np.max(worst, axis=0)
    assert first < TORQUE_TOL, f"{task}: max |ctrl difference| in the first substep {first:.3g}"
    # Later substeps start from states apart by rounding, which a finger pressed on an object can amplify
    # within the step to ~1e-4 N m (the stock path against itself with qvel changed by 1e-15 parts the same way).
    assert any_substep < 1e-3 and qpos < 1e-5, (any_substep, qpos)


@pytest.mark.parametrize("task", list(TASKS))
def test_first_step_after_reset_and_a_few_steps_stay_close(task):
    """The first step uses the state robosuite's new controller cached; then ten steps of both paths."""
    env = stock_env(task)
    rs, rng = env.env, np.random.default_rng(3)
    actions = np.concatenate([rng.uniform(-1, 1, (10, 6)), np.repeat([[1.0], [-1.0]], 5, axis=0)], axis=1)
    runs = []
    for path in ("stock", "lean"):
        env.reset(seed=5)
        lean = LeanStep(rs)
        step = rs.step if path == "stock" else lean
        first = substep_ctrl(step, rs, actions[0])
        for a in actions[1:]:
            step(a)
        rs.sim.forward()
        runs.append((first, rs.sim.get_state().flatten(), env.observe()))
    assert np.abs(runs[0][0] - runs[1][0]).max() < TORQUE_TOL
    np.testing.assert_allclose(runs[1][1], runs[0][1], atol=1e-6)
    for key, value in runs[0][2].items():
        np.testing.assert_allclose(runs[1][2][key], value, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("mutate", ["kp", "kd", "gripper", "ctrl limit"])
def test_comparison_catches_a_wrong_law(mutate):
    """The equality test above would fail for a 1% gain error or a wrong gripper or torque limit."""
    env = stock_env("coffee")
    rs, rng = env.env, np.random.default_rng(0)
    lean = LeanStep(rs)
    next(random_states(env, rng, 1))
    lean(np.zeros(7))  # bound to the current controllers
    if mutate == "kp":
        lean.kp = lean.kp * 1.01
    elif mutate == "kd":
        lean.kd = lean.kd * 1.01
    elif mutate == "gripper":
        lean.grip_hi = lean.grip_hi * 0.5  # half the finger command range
    else:
        lean.hi = lean.hi * 0.01
    rs.robots[0].gripper["right"].current_action[:] = [-0.4, 0.4]  # fingers between open and closed
    first, _, _ = compare_step(rs, lean, np.array([0.9, -0.8, 0.7, 0.5, -0.5, 0.4, 1.0]))
    assert first > 1e-6


def test_singular_substeps_fall_back_to_robosuite(monkeypatch):
    env = stock_env("threading")
    rs, rng = env.env, np.random.default_rng(1)
    lean = LeanStep(rs)
    next(random_states(env, rng, 1))
    monkeypatch.setattr(lean_control, "osc_substep", lambda *args: False)
    first, any_substep, qpos = compare_step(rs, lean, np.array([0.3, 0.2, -0.4, 0.1, 0.0, -0.2, 1.0]))
    assert first < TORQUE_TOL and any_substep < 1e-3 and qpos < 1e-5


def test_spd_inverse_matches_numpy_and_rejects_singular():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    spd, out = a @ a.T + 0.1 * np.eye(7), np.empty((7, 7))
    assert lean_control.spd_inverse(spd, out)
    np.testing.assert_allclose(out, np.linalg.inv(spd), rtol=1e-9, atol=1e-12)
    singular = np.outer(a[0], a[0])
    assert not lean_control.spd_inverse(singular, out)


def test_task_env_paths_reset_and_restore_alike():
    """TaskEnv on both paths: step counter, observations, and a restored state driven from itself.

    A state restored right after a reset must be driven from the restored pose,
    not from the pose robosuite's new controller cached at reset (which pulls
    the arm back by about a centimetre in one step). The gripper command and the
    null-space posture are controller state outside the saved state; both are
    made equal here (zeroed command, same reset seed).
    """
    lean, stock = TaskEnv("nut_assembly"), stock_env("nut_assembly")
    assert lean.step_path == simulation_settings()["step_path"] == "lean" and stock.step_path == "stock"
    action = np.array([0.8, -0.6, 0.5, 0.1, 0.2, -0.1, 1.0])
    obs = {}
    for env in (stock, lean):
        env.reset(seed=2)
        for _ in range(3):
            env.step(action)
        state = env.get_state()
        env.step(action)
        env.set_state(state)
        env.env.robots[0].gripper["right"].current_action[:] = 0.0  # as after a reset
        after_step = env.step(action)
        env.reset(seed=2)
        env.set_state(state)
        after_reset = env.step(action)
        for key in after_step:
            np.testing.assert_allclose(after_reset[key], after_step[key], atol=1e-5, err_msg=f"{env.step_path}: {key}")
        assert env.env.timestep == 1 and np.isclose(env.env.cur_time, env.env.control_timestep) and not env.env.done
        obs[env.step_path] = after_reset
    assert obs["lean"].keys() == obs["stock"].keys()
    for key in obs["stock"]:
        np.testing.assert_allclose(obs["lean"][key], obs["stock"][key], atol=1e-6, err_msg=key)
    lean.close()


def test_unknown_step_path_is_refused():
    with pytest.raises(ValueError, match="step path"):
        TaskEnv("coffee", step_path="fast")


def test_observation_converts_each_frame_as_before():
    """Observations convert all frames' rotations in one call; the values are those of one call per frame."""
    from reinforcegen_ros.geometry import mat_to_quat, rotvec

    env = stock_env("coffee_preparation")
    env.reset(seed=4)
    obs = env.step(np.array([0.3, 0.1, -0.2, 0.3, -0.2, 0.5, 1.0]))
    eef = env.eef_pose()
    expected = np.concatenate([np.concatenate([p[:3, 3], mat_to_quat(p[:3, :3])]) for p in env.object_poses().values()])
    np.testing.assert_array_equal(obs["object"], expected)
    np.testing.assert_array_equal(obs["robot0_eef_quat"], mat_to_quat(eef[:3, :3]))
    np.testing.assert_array_equal(obs["robot0_eef_axis_angle"], rotvec(eef[:3, :3]))
    assert obs["robot0_eef_quat"][3] >= 0 and len(obs["object"]) == 7 * len(env.objects)


def test_settled_positions_are_reused_only_while_the_state_is_untouched(monkeypatch):
    """TaskEnv's lean step ends with ``settle()`` (``mj_step1``) instead of ``sim.forward()`` and reuses it as the next
    step's first ``mj_step1``: states, observations and stage answers equal ``sim.forward()``'s to the bit, also
    across a restored state and a ``qpos`` written without a forward (which the next step must recompute)."""
    task = "coffee_preparation"
    fast, ref = TaskEnv(task), TaskEnv(task)
    monkeypatch.setattr(ref._lean_step, "settle", ref.env.sim.forward)  # the step as it was: mj_forward after it
    calls = {"n": 0}
    step1 = mujoco.mj_step1

    def counted(m, d):
        calls["n"] += 1
        step1(m, d)

    monkeypatch.setattr(mujoco, "mj_step1", counted)
    rng = np.random.default_rng(7)
    actions = np.concatenate([rng.uniform(-1, 1, (30, 6)), np.repeat([[1.0], [-1.0], [1.0]], 10, axis=0)], axis=1)
    for env in (fast, ref):
        env.reset(seed=3)
    saved, per_step = None, []
    for t, action in enumerate(actions):
        if t == 5:
            saved = fast.get_state()
        if t == 12:
            for env in (fast, ref):
                env.set_state(saved)
        if t == 20:  # a joint moved without a forward: kinematics are stale, so mj_step1 must run again
            for env in (fast, ref):
                env.env.sim.data.qpos[env.env.robots[0]._ref_joint_pos_indexes[0]] += 0.01
        before = calls["n"]
        obs = fast.step(action)
        per_step.append(calls["n"] - before)
        expected = ref.step(action)
        np.testing.assert_array_equal(fast.get_state(), ref.get_state())
        for key in expected:
            np.testing.assert_array_equal(obs[key], expected[key], err_msg=key)
        assert [fast.stage_done(k) for k in range(len(fast.stages))] == [ref.stage_done(k) for k in range(len(ref.stages))]
    substeps = fast._lean_step.substeps
    assert per_step[1] == substeps  # the first substep's mj_step1 came from settle(); settle() counts one
    assert per_step[12] == per_step[20] == substeps + 1  # after set_state and after a bare qpos write: recomputed
    fast.close()
    ref.close()


def test_mass_matrix_index_reads_what_mj_full_m_copies():
    env = stock_env("threading")
    rs = env.env
    env.reset(seed=1)
    env.step(np.array([0.5, -0.3, 0.2, 0.1, 0.4, -0.2, 1.0]))
    lean = LeanStep(rs)
    m, d = rs.sim.model._model, rs.sim.data._data
    full = np.zeros((m.nv, m.nv))
    mujoco.mj_fullM(m, full, d.qM)
    block = np.where(lean.m_idx >= 0, d.qM[np.maximum(lean.m_idx, 0)], 0.0)
    np.testing.assert_array_equal(block, full[np.ix_(lean.dof_idx, lean.dof_idx)])
    assert (lean.m_idx >= 0).all()  # the arm is one chain: every pair of its dofs couples


def test_frame_conversion_equals_geometry_to_the_bit():
    """``frame_quats_rotvecs`` (cheaper validity test) gives ``geometry.mat_to_quat_rotvec``'s numbers, also where
    a matrix is slightly off a rotation and both hand it to scipy's orthogonalisation."""
    from scipy.spatial.transform import Rotation

    from reinforcegen_ros.geometry import mat_to_quat_rotvec
    from reinforcegen_ros.tasks.environment import frame_quats_rotvecs

    rots = Rotation.random(64, random_state=0).as_matrix()
    rots[0] = np.eye(3)
    rots[1] = np.diag([1.0, -1.0, -1.0])  # half turn: w = 0
    for stack in (rots, rots + 1e-9, rots[:1] + 1e-13):
        for got, want in zip(frame_quats_rotvecs(stack), mat_to_quat_rotvec(stack)):
            np.testing.assert_array_equal(got, want)


def test_control_rate_physics_row_replays_the_lean_trajectory():
    """benchmarks/control_rate.py's "physics, lean's ctrl" row runs bare physics on the lean path's very trajectory."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("control_rate", Path(__file__).resolve().parents[1] / "benchmarks" / "control_rate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    actions = np.concatenate([np.random.default_rng(1).uniform(-0.3, 0.3, size=(15, 6)), np.ones((15, 1))], axis=1)
    env = TaskEnv("threading", step_path="lean")
    env.reset(seed=0)
    for a in actions:
        env.step(a)
    step, reset = bench.physics_replay("threading")
    reset(actions)
    assert lean_control.mujoco is mujoco  # the recorder is gone once recorded
    for a in actions:
        step(a)
    data = next(c.cell_contents for c in step.__closure__ if isinstance(c.cell_contents, mujoco.MjData))
    assert np.array_equal(data.qpos, env.env.sim.data.qpos) and np.array_equal(data.qvel, env.env.sim.data.qvel)
    env.close()


def test_sensors_in_the_last_substep_only_change_nothing_but_time(monkeypatch):
    """The lean step computes MuJoCo's sensors in its last substep only: states, sensor readings and accelerations
    after every step equal, to the bit, those of the step that computes them in every substep, and the model's
    disable flags are left as they were (also a sensor switch the caller set)."""
    task = "coffee_preparation"
    fast, ref = TaskEnv(task), TaskEnv(task)
    m_ref = ref.env.sim.model._model
    assert fast.env.sim.model._model.nsensor > 0
    calls = {"fast": 0, "ref": 0}
    step2 = mujoco.mj_step2

    def counted(m, d):
        key = "ref" if m is m_ref else "fast"
        calls[key] += not (m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_SENSOR)
        step2(m, d)

    monkeypatch.setattr(mujoco, "mj_step2", counted)
    rng = np.random.default_rng(11)
    for env in (fast, ref):
        env.reset(seed=5)
    for t in range(12):
        action = np.append(rng.uniform(-1, 1, 6), 1.0 if t < 6 else -1.0)
        monkeypatch.setattr(lean_control, "SENSORS_LAST_SUBSTEP_ONLY", True)
        fast.step(action)
        monkeypatch.setattr(lean_control, "SENSORS_LAST_SUBSTEP_ONLY", False)
        ref.step(action)
        np.testing.assert_array_equal(fast.get_state(), ref.get_state())
        for name in ("sensordata", "qacc", "efc_force", "cfrc_ext"):
            np.testing.assert_array_equal(getattr(fast.env.sim.data._data, name), getattr(ref.env.sim.data._data, name), err_msg=name)
    substeps = fast._lean_step.substeps
    assert calls == {"fast": 12, "ref": 12 * substeps}  # sensors computed once per step against every substep
    assert fast.env.sim.model._model.opt.disableflags == 0
    fast.env.sim.model._model.opt.disableflags = mujoco.mjtDisableBit.mjDSBL_SENSOR  # the caller's own switch stays
    monkeypatch.setattr(lean_control, "SENSORS_LAST_SUBSTEP_ONLY", True)
    fast.step(np.zeros(7))
    assert fast.env.sim.model._model.opt.disableflags == mujoco.mjtDisableBit.mjDSBL_SENSOR
    fast.close()
    ref.close()
