"""Forward and inverse kinematics of the task's arm on a scratch copy of the live scene.

The scratch ``MjData`` shares the live model, so kinematics (and collision
checks built on it) see the current positions of objects and fixtures while
never disturbing the running simulation.
"""

from __future__ import annotations

import mujoco
import numpy as np

from reinforcegen_ros.geometry import make_pose, rotvec


class ArmKinematics:
    """FK/IK of the robot arm's grip site, using the live scene's model."""

    def __init__(self, env):
        robosuite_env = env.env if hasattr(env, "env") else env
        self.sim = robosuite_env.sim
        self.model = self.sim.model._model
        robot = robosuite_env.robots[0]
        self.qpos_idx = np.array(robot._ref_joint_pos_indexes)
        self.dof_idx = np.array(robot._ref_joint_vel_indexes)
        self.site_id = robot.eef_site_id["right"]
        self.lower = self.model.jnt_range[robot._ref_joint_indexes, 0].copy()
        self.upper = self.model.jnt_range[robot._ref_joint_indexes, 1].copy()
        self.data = mujoco.MjData(self.model)

    def sync(self) -> None:
        """Copy the live scene's positions into the scratch data."""
        self.data.qpos[:] = self.sim.data.qpos
        mujoco.mj_kinematics(self.model, self.data)

    def wrist_turns(self, joints: np.ndarray) -> list[np.ndarray]:
        """``joints`` and its variants with the last (flange) joint turned by +-pi, those within the limits.

        A grip pose has IK solutions that differ by a half turn of the wrist
        (for a 180-degree symmetric grasp, or the other way round a turn); local
        IK from one seed finds only the nearest, so callers try all three.
        """
        out = [np.array(joints, dtype=float)]
        for turn in (np.pi, -np.pi):
            q = np.array(joints, dtype=float)
            q[-1] += turn
            if self.lower[-1] <= q[-1] <= self.upper[-1]:
                out.append(q)
        return out

    def current_joints(self) -> np.ndarray:
        """The live arm joint positions."""
        return np.array(self.sim.data.qpos[self.qpos_idx])

    def forward(self, joints: np.ndarray) -> np.ndarray:
        """Grip-site world pose at ``joints`` (other bodies as in the live scene)."""
        self.data.qpos[:] = self.sim.data.qpos
        self.data.qpos[self.qpos_idx] = joints
        mujoco.mj_kinematics(self.model, self.data)
        return make_pose(self.data.site_xpos[self.site_id], self.data.site_xmat[self.site_id].reshape(3, 3))

    def inverse(
        self, target: np.ndarray, seed_joints: np.ndarray, iters: int = 200, tol: float = 1e-3, damping: float = 1e-2, slack: float = 0.0
    ) -> np.ndarray | None:
        """Damped least-squares IK for the grip site; ``None`` if not converged within joint limits.

        ``slack`` (rad) widens the limits: the solution then stays on the seed's
        branch as a task-space controller would, and may lie beyond the limits.
        """
        lower, upper = self.lower - slack, self.upper + slack
        q = np.clip(np.array(seed_joints, dtype=float), lower, upper)
        jacp, jacr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        for _ in range(iters):
            pose = self.forward(q)
            err = np.concatenate([target[:3, 3] - pose[:3, 3], rotvec(target[:3, :3] @ pose[:3, :3].T)])
            if np.linalg.norm(err[:3]) < tol and np.linalg.norm(err[3:]) < 10 * tol:
                return q
            mujoco.mj_comPos(self.model, self.data)  # the Jacobian needs com-based quantities
            mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.site_id)
            jac = np.vstack([jacp[:, self.dof_idx], jacr[:, self.dof_idx]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
            q = np.clip(q + dq, lower, upper)
        return None
