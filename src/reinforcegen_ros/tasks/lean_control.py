"""The lean step path: robosuite's control step without robosuite's per-substep Python.

robosuite 1.5.2 runs a 20 Hz control step as 25 physics substeps of 2 ms. In
every substep (``lite_physics``: ``mj_step1`` → control → ``mj_step2``) its
composite controller re-reads the grip site's pose, velocity and Jacobians and
the arm's mass matrix through its binding utilities, evaluates the OSC_POSE law,
clips the torques to the actuators' ``ctrlrange`` and writes them to
``data.ctrl``; the gripper controller writes its command; then every observable
is updated. Most of the step's time goes there, not into the physics.

:class:`LeanStep` makes the same control step on MuJoCo's arrays: indices and
constants are read from robosuite's controller objects when they are built, and
each substep makes one ``mj_jacSite`` call and one call of the compiled kernel
:func:`osc_substep`, which reads the arm's block of the mass matrix straight
from MuJoCo's packed ``qM``. After the step, :meth:`LeanStep.settle` stands in for
``sim.forward()`` and saves the next step's first ``mj_step1``. The law is robosuite's
``OperationalSpaceController.run_controller`` for delta input in the world
frame, fixed impedance, no interpolation, decoupled position and orientation:

    F = kp_p (x_goal - x) - kd_p v                  Λ   = (J M⁻¹ Jᵀ)⁻¹
    T = kp_r e(R_goal, R) - kd_r ω                  Λ_p = (J_p M⁻¹ J_pᵀ)⁻¹,  Λ_r = (J_r M⁻¹ J_rᵀ)⁻¹
    τ = Jᵀ [Λ_p F; Λ_r T] + qfrc_bias + Nᵀ M (10 (q₀ - q) - 2√10 q̇),   N = I - M⁻¹ Jᵀ Λ J

clipped to the actuators' ctrlrange, where e(R_goal, R) = ½ Σ_i R[:, i] × R_goal[:, i]
is robosuite's orientation error, v, ω the grip site's velocity (J q̇ over all
dofs), and q₀ the arm's posture when the controller was built (at reset). The
symmetric positive-definite inverses are taken by Cholesky factorisation (equal
to robosuite's ``inv``/``pinv`` to rounding); a substep whose matrices are not
positive definite (an exact kinematic singularity) falls back to robosuite's own
controller.

The goal is set at the first substep of a control step from the grip site's pose
then ("achieved" goal update): x_goal = x + Δx, R_goal = R(Δr) R, with the arm
action clipped to [-1, 1] and scaled to the controller's output range, and R(Δr)
made by robosuite's own ``axisangle2quat``/``quat2mat`` (which round the
rotation through float32). The Panda gripper adds ±0.2 sign(a) per control step
to its ``current_action`` ∈ [-1, 1]² and commands it mapped onto its actuators'
ctrlrange, in every substep the same.

State stays where robosuite keeps it, so the two paths can be mixed and reset
behaves as before: the goal is written to the arm controller, the gripper
command lives in the gripper model's ``current_action`` (zeroed at reset), q₀ is
the controller's ``initial_joint``, and the controllers that every reset builds
anew are bound again on the next step. The first substep after a controller is
built goes through robosuite's own controller, because robosuite then uses the
robot state the controller cached when it was built. robosuite's observables
and reward are not updated on this path; its step counter, time and ``done``
flag are.
"""

from __future__ import annotations

import mujoco
import numpy as np
from numba import njit
from robosuite.utils.transform_utils import axisangle2quat, quat2mat

NULLSPACE_KP = 10.0  # robosuite's posture gain in the null space (``nullspace_torques(joint_kp=10)``)
# Sensors feed no dynamics and nothing reads them between substeps, so MuJoCo computes them in the last substep
# only (the wrist force/torque sensors cost an ``mj_rnePostConstraint`` per substep, about 2.5% of Coffee
# Preparation's physics); every substep's state is the same to the bit either way (``test/test_lean_step.py``).
SENSORS_LAST_SUBSTEP_ONLY = True


# The kernels use loops and np.empty/np.zeros only: each further numpy function a
# numba kernel uses adds seconds to its one-time compilation, and loops beat a
# BLAS call at these sizes anyway.


@njit(cache=True)
def _mm(a, b):
    """Product of small matrices."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            aik = a[i, k]
            for j in range(b.shape[1]):
                out[i, j] += aik * b[k, j]
    return out


@njit(cache=True)
def _mv(a, x):
    """Product of a small matrix and a vector."""
    out = np.zeros(a.shape[0])
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[i] += a[i, k] * x[k]
    return out


@njit(cache=True)
def _transpose(a):
    """A C-ordered copy of ``a``'s transpose."""
    out = np.empty((a.shape[1], a.shape[0]))
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j, i] = a[i, j]
    return out


@njit(cache=True)
def spd_inverse(a, out):
    """Write the inverse of the symmetric positive-definite ``a`` to ``out``; False if ``a`` is not positive definite."""
    n = a.shape[0]
    low = np.zeros((n, n))  # Cholesky factor, a = L Lᵀ
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not s > 0.0:
            return False
        low[j, j] = np.sqrt(s)
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = s / low[j, j]
    inv_low = np.zeros((n, n))  # L⁻¹ by forward substitution
    for j in range(n):
        inv_low[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s -= low[i, k] * inv_low[k, j]
            inv_low[i, j] = s / low[i, i]
    for i in range(n):  # a⁻¹ = L⁻ᵀ L⁻¹
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += inv_low[k, i] * inv_low[k, j]
            out[i, j] = s
            out[j, i] = s
    return True


@njit(cache=True)
def osc_torques(M, jac, q, qd, pos, rot, vel, goal_pos, goal_rot, q0, bias, kp, kd, uncouple, tau):
    """Write the OSC_POSE torques (before clipping) to ``tau``; False where a matrix is singular.

    ``jac`` is the grip site's (6, n) Jacobian over the arm's dofs (position rows
    first), ``vel`` its 6-D velocity, ``pos``/``rot`` its pose and ``bias`` the
    arm's ``qfrc_bias`` (gravity and Coriolis compensation).
    """
    n = M.shape[0]
    wrench = np.empty(6)  # desired force and torque
    for k in range(3):
        wrench[k] = (goal_pos[k] - pos[k]) * kp[k] + (-vel[k]) * kd[k]
    for k in range(3):  # orientation error ½ Σ_i rot[:, i] × goal_rot[:, i], component k
        a, b = (k + 1) % 3, (k + 2) % 3
        e = 0.0
        for i in range(3):
            e += rot[a, i] * goal_rot[b, i] - rot[b, i] * goal_rot[a, i]
        wrench[3 + k] = 0.5 * e * kp[3 + k] + (-vel[3 + k]) * kd[3 + k]

    m_inv, lam = np.empty((n, n)), np.empty((6, 6))
    if not spd_inverse(M, m_inv):
        return False
    jac_t = _transpose(jac)
    m_inv_jt = _mm(m_inv, jac_t)
    lam_inv = _mm(jac, m_inv_jt)  # J M⁻¹ Jᵀ; its diagonal blocks are J_p M⁻¹ J_pᵀ and J_r M⁻¹ J_rᵀ
    if not spd_inverse(lam_inv, lam):
        return False
    if uncouple:
        part, block = np.empty((3, 3)), np.empty((3, 3))
        for r in range(0, 6, 3):
            for i in range(3):
                for j in range(3):
                    part[i, j] = lam_inv[r + i, r + j]
            if not spd_inverse(part, block):
                return False
            wrench[r:r + 3] = _mv(block, wrench[r:r + 3])
    else:
        wrench = _mv(lam, wrench)
    jbar_j = _mm(_mm(m_inv_jt, lam), jac)  # N = I - Jbar J
    acc = np.empty(n)
    kv = 2.0 * np.sqrt(NULLSPACE_KP)
    for i in range(n):
        acc[i] = NULLSPACE_KP * (q0[i] - q[i]) - kv * qd[i]
    posture = _mv(M, acc)
    task = _mv(jac_t, wrench)
    for i in range(n):
        s = 0.0
        for k in range(n):
            s += ((1.0 if i == k else 0.0) - jbar_j[k, i]) * posture[k]
        tau[i] = task[i] + bias[i] + s
    return True


@njit(cache=True)
def osc_substep(qpos, qvel, qfrc_bias, site_xpos, site_xmat, jacp, jacr, qm, m_idx, ctrl, site,
                qpos_idx, dof_idx, act_idx, lo, hi, goal_pos, goal_rot, q0, kp, kd, uncouple, tau):
    """One substep of the arm's control on MuJoCo's arrays: gather, :func:`osc_torques`, clip into ``ctrl``.

    ``jacp``/``jacr`` are the grip site's (3, nv) Jacobians of this substep and
    ``qm`` MuJoCo's packed mass matrix ``qM``; ``m_idx[i, j]`` is the ``qM`` entry
    that ``mj_fullM`` copies to the arm's (i, j) (-1: zero), see
    :func:`mass_matrix_index`. Writes nothing and returns False where
    :func:`osc_torques` does.
    """
    n = dof_idx.shape[0]
    M, jac = np.empty((n, n)), np.empty((6, n))
    q, qd, bias = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        for j in range(n):
            M[i, j] = qm[m_idx[i, j]] if m_idx[i, j] >= 0 else 0.0
        for r in range(3):
            jac[r, i] = jacp[r, dof_idx[i]]
            jac[3 + r, i] = jacr[r, dof_idx[i]]
        q[i] = qpos[qpos_idx[i]]
        qd[i] = qvel[dof_idx[i]]
        bias[i] = qfrc_bias[dof_idx[i]]
    lin, ang = _mv(jacp, qvel), _mv(jacr, qvel)  # over all dofs, as robosuite's get_site_xvelp/xvelr
    vel, pos, rot = np.empty(6), np.empty(3), np.empty((3, 3))
    for r in range(3):
        vel[r], vel[3 + r], pos[r] = lin[r], ang[r], site_xpos[site, r]
        for c in range(3):
            rot[r, c] = site_xmat[site, 3 * r + c]
    if not osc_torques(M, jac, q, qd, pos, rot, vel, goal_pos, goal_rot, q0, bias, kp, kd, uncouple, tau):
        return False
    for i in range(n):
        ctrl[act_idx[i]] = min(max(tau[i], lo[i]), hi[i])
    return True


def mass_matrix_index(model, dofs: np.ndarray) -> np.ndarray:
    """For dofs ``dofs``, the index into ``qM`` of each entry of their block of the full mass matrix (-1: zero).

    Found by letting ``mj_fullM`` expand ``qM = 1, 2, ..., nM``, so the kernel
    reads the very values ``mj_fullM`` would copy, whatever ``qM``'s layout.
    """
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, full, np.arange(1.0, model.nM + 1.0))
    return np.ascontiguousarray(full[np.ix_(dofs, dofs)] - 1.0).astype(np.int64)


class LeanStep:
    """The control step of a single-Panda robosuite environment through the lean path.

    ``LeanStep(env)(action)`` advances ``env`` as ``env.step(action)`` does (the
    same torques in every substep), without robosuite's observables and reward.
    Raises ``NotImplementedError`` for controller settings it does not reproduce
    (see the module docstring).
    """

    def __init__(self, env):
        self.env = env
        self._bind()

    def _bind(self) -> None:
        """Read indices and constants from robosuite's current controllers."""
        from robosuite.controllers.parts.arm.osc import OperationalSpaceController
        from robosuite.controllers.parts.gripper.simple_grip import SimpleGripController
        from robosuite.models.grippers.panda_gripper import PandaGripper

        env = self.env
        if len(env.robots) != 1:
            raise NotImplementedError("the lean step path drives one robot")
        robot = env.robots[0]
        parts = robot.part_controllers
        arm, grip, gripper = parts.get("right"), parts.get("right_gripper"), robot.gripper.get("right")
        if set(parts) != {"right", "right_gripper"} or type(robot.composite_controller).__name__ != "CompositeController":
            raise NotImplementedError(f"the lean step path needs robosuite's BASIC composite controller of an arm and a gripper, got {list(parts)}")
        if not (type(arm) is OperationalSpaceController and arm.use_ori and arm.impedance_mode == "fixed"
                and arm.input_type == "delta" and arm.input_ref_frame == "world"
                and arm.interpolator_pos is None and arm.interpolator_ori is None
                and arm.position_limits is None and not np.array(arm.orientation_limits).any()
                and getattr(arm, "_goal_update_mode", "achieved") == "achieved"):
            raise NotImplementedError("the lean step path reproduces OSC_POSE with fixed impedance, delta input in the world frame, "
                                      "no interpolation, no goal limits and 'achieved' goal updates")
        if not (type(grip) is SimpleGripController and grip.use_action_scaling and grip.interpolator is None
                and isinstance(gripper, PandaGripper) and gripper.dof == 1):
            raise NotImplementedError("the lean step path reproduces the Panda gripper under robosuite's GRIP controller")
        model = env.sim.model._model
        center = model.site(f"{arm.naming_prefix}{arm.part_name}_center").id
        if model.body_weldid[model.site_bodyid[center]] != 0:
            raise NotImplementedError("the lean step path assumes a fixed robot base (zero base velocity)")

        self.robot, self.arm, self.grip, self.gripper = robot, arm, grip, gripper
        self.site = int(model.site(arm.ref_name).id)
        self.qpos_idx = np.asarray(arm.qpos_index, dtype=np.int64)
        self.dof_idx = np.asarray(arm.qvel_index, dtype=np.int64)
        self.act_idx = np.asarray(robot._ref_actuators_indexes_dict["right"], dtype=np.int64)
        self.grip_act = np.asarray(robot._ref_actuators_indexes_dict["right_gripper"], dtype=np.int64)
        self.lo, self.hi = (model.actuator_ctrlrange[self.act_idx, k].copy() for k in (0, 1))
        self.grip_lo, self.grip_hi = (model.actuator_ctrlrange[self.grip_act, k].copy() for k in (0, 1))
        self.kp, self.kd = np.array(arm.kp, dtype=float), np.array(arm.kd, dtype=float)
        self.uncouple = bool(arm.uncoupling)
        self.arm_range = tuple(np.array(v, dtype=float) for v in (arm.input_min, arm.input_max, arm.output_min, arm.output_max))
        self.grip_range = tuple(np.array(v, dtype=float) for v in (grip.input_min, grip.input_max, grip.output_min, grip.output_max))
        nv = model.nv
        self.jacp, self.jacr = np.zeros((3, nv)), np.zeros((3, nv))
        self.m_idx = mass_matrix_index(model, self.dof_idx)
        self.tau = np.zeros(len(self.dof_idx))
        self.substeps = int(env.control_timestep / env.model_timestep)
        # robosuite's scale_action as clip, then (a - offset) * scale + shift, with its constants computed once
        self.arm_scale, self.grip_scale = (self._scale_constants(*r) for r in (self.arm_range, self.grip_range))
        self.finger_sign = np.array([-1.0, 1.0]) * gripper.speed  # PandaGripper.format_action: fingers move apart
        self._settled = None  # what settle() left MuJoCo's positions and velocities computed for

    @staticmethod
    def _scale_constants(in_min, in_max, out_min, out_max) -> tuple[np.ndarray, ...]:
        """(in_min, in_max, offset, scale, shift) of robosuite's ``scale_action``."""
        scale = np.abs(out_max - out_min) / np.abs(in_max - in_min)
        return in_min, in_max, (in_max + in_min) / 2.0, scale, (out_max + out_min) / 2.0

    @staticmethod
    def _scaled(action, in_min, in_max, offset, scale, shift) -> np.ndarray:
        """robosuite's ``scale_action`` (clip to the input range, map onto the output range) with constants from :meth:`_scale_constants`."""
        return (np.minimum(np.maximum(action, in_min), in_max) - offset) * scale + shift

    def _set_goal(self, action: np.ndarray, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The arm's goal from the grip-site pose at the first substep, and the gripper's command (written to ``ctrl``)."""
        delta = self._scaled(action[:6], *self.arm_scale)
        goal_pos, goal_rot = pos + delta[0:3], np.dot(quat2mat(axisangle2quat(delta[3:6])), rot)
        self.arm.goal_pos, self.arm.goal_ori = goal_pos, goal_rot
        gripper = self.gripper  # PandaGripper.format_action, then the GRIP controller's scaling
        current = gripper.current_action + self.finger_sign * np.sign(action[6:7])
        gripper.current_action = np.minimum(np.maximum(current, -1.0), 1.0)
        self.grip.goal_qvel = self._scaled(gripper.current_action, *self.grip_scale)
        lo, hi = self.grip_lo, self.grip_hi
        self.env.sim.data._data.ctrl[self.grip_act] = np.minimum(np.maximum(0.5 * (hi + lo) + 0.5 * (hi - lo) * self.grip.goal_qvel, lo), hi)
        return goal_pos, goal_rot

    @staticmethod
    def _state_key(d) -> np.ndarray:
        """What ``mj_step1`` computes from (positions, velocities, activations, mocap and equality state) and a
        sample of what it computed (body positions, contact count), in one array (see :meth:`settle`)."""
        return np.concatenate((d.qpos, d.qvel, d.act, d.mocap_pos.ravel(), d.mocap_quat.ravel(), d.eq_active,
                               d.xpos.ravel(), (d.ncon,)))

    def _still_settled(self, m, d) -> bool:
        """True when :meth:`settle` ran last on this model and data and nothing has changed the state since."""
        settled, self._settled = self._settled, None
        if settled is None or settled[0] is not m or settled[1] is not d or mujoco.get_mjcb_control() is not None:
            return False
        return bool(np.array_equal(self._state_key(d), settled[2]))

    def settle(self) -> None:
        """After a step, compute what MuJoCo derives from positions and velocities, as ``sim.forward()`` does for them.

        Poses, contacts, the mass matrix and sensors up to the velocity stage come
        out as from ``mj_forward``; this runs ``mj_step1``, which computes exactly
        those, and skips the acceleration stage (actuator forces, the constraint
        solver), which the next substep's ``mj_step2`` recomputes: ``qacc``,
        constraint forces and acceleration sensors keep the last substep's values.
        The next control step then reuses this work for its first substep instead
        of repeating ``mj_step1``, if nothing has changed the state in between (the
        positions, velocities, mocap and equality state and the computed body
        positions are compared) and no ``mjcb_control`` is set. The model is not
        compared: a model changed between steps needs ``sim.forward()`` before the
        next step. The trajectory is the same to the bit as with ``mj_forward`` here
        (``test/test_lean_step.py``).
        """
        sim = self.env.sim
        m, d = sim.model._model, sim.data._data
        if not self.env.lite_physics or mujoco.get_mjcb_control() is not None or m.opt.enableflags & mujoco.mjtEnableBit.mjENBL_ENERGY:
            sim.forward()
            self._settled = None
            return
        mujoco.mj_step1(m, d)
        self._settled = (m, d, self._state_key(d))

    def __call__(self, action: np.ndarray) -> None:
        """Advance the environment by one control step with ``action`` (arm 6 + gripper 1)."""
        env = self.env
        if env.done:
            raise ValueError("executing action in terminated episode")
        if env.robots[0].part_controllers["right"] is not self.arm:  # robosuite builds new controllers at reset
            self._bind()
        arm, robot, tau = self.arm, self.robot, self.tau
        m, d = env.sim.model._model, env.sim.data._data
        action = np.asarray(action, dtype=float)
        pre, post = (mujoco.mj_step1, mujoco.mj_step2) if env.lite_physics else (mujoco.mj_forward, mujoco.mj_step)
        fresh = self._still_settled(m, d)  # mj_step1 of the first substep already done by settle()
        env.timestep += 1
        flags, last = m.opt.disableflags, self.substeps - 1
        if SENSORS_LAST_SUBSTEP_ONLY and m.nsensor:
            m.opt.disableflags = flags | mujoco.mjtDisableBit.mjDSBL_SENSOR

        def advance(i: int) -> None:
            """Finish substep ``i``; the last one with the caller's flags, so the step's sensor readings are
            the last substep's, as on the stock path."""
            if i == last:
                m.opt.disableflags = flags
            post(m, d)

        try:
            start = 0
            if not arm.new_update:  # a controller just built: robosuite sets this goal from the state it cached then
                if not fresh:
                    pre(m, d)
                robot.control(action, policy_step=True)
                advance(0)
                goal_pos, goal_rot, start, fresh = arm.goal_pos, arm.goal_ori, 1, False
            q0 = np.array(arm.initial_joint, dtype=float)
            qpos, qvel, bias, xpos, xmat, qM, ctrl = d.qpos, d.qvel, d.qfrc_bias, d.site_xpos, d.site_xmat, d.qM, d.ctrl
            site, jacp, jacr, m_idx = self.site, self.jacp, self.jacr, self.m_idx
            for i in range(start, self.substeps):
                if not fresh:
                    pre(m, d)
                fresh = False
                if i == 0:
                    goal_pos, goal_rot = self._set_goal(action, xpos[site].copy(), xmat[site].reshape(3, 3).copy())
                mujoco.mj_jacSite(m, d, jacp, jacr, site)
                if not osc_substep(qpos, qvel, bias, xpos, xmat, jacp, jacr, qM, m_idx, ctrl, site, self.qpos_idx, self.dof_idx,
                                   self.act_idx, self.lo, self.hi, goal_pos, goal_rot, q0, self.kp, self.kd, self.uncouple, tau):
                    arm.new_update = True  # singular: robosuite's controller, with its pseudo-inverses, for this substep
                    robot.control(action, policy_step=False)
                    tau[:] = arm.torques
                advance(i)
        finally:
            m.opt.disableflags = flags
        arm.new_update = True
        arm.torques = tau.copy()
        env.cur_time += env.control_timestep
        env.done = (env.timestep >= env.horizon) and not env.ignore_done


__all__ = ["LeanStep", "mass_matrix_index", "osc_substep", "osc_torques", "spd_inverse", "NULLSPACE_KP"]
