"""The Franka adapter core: the skill's 20 Hz delta-pose commands as a 1 kHz Cartesian pose command, without ROS.

What a franka_ros2 robot side needs to stand in for ``robosuite_bridge``
(docs/ROS_INTERFACES.md): each ``/eef_command`` is one 50 ms step of OSC_POSE
(normalised delta position x 0.05 m and axis-angle x 0.5 rad in the agent's
world frame, gripper -1 open / +1 close). :class:`FrankaCartesianAdapter` turns
it into what franka_ros2's **Cartesian pose command interface** takes
(``franka_semantic_components::FrankaCartesianPoseInterface``, the
``cartesian_pose`` command interfaces that ``cartesian_pose_example_controller``
writes): a pose of the end effector in the robot base frame (``O_T_EE``, a
column-major 4x4) every controller cycle (1 kHz), moving continuously.

- :meth:`on_state` takes the measured ``O_T_EE`` (franka state, base frame);
  :meth:`eef_pose_world` gives it in the agent's world frame (``/eef_pose``)
  through ``robot.world_to_base``.
- :meth:`on_command` applies the guard (the ``guards`` limits of franka.yaml)
  and the stamp rules of the bridge (duplicate / out-of-order / stale stamps
  refused; a hold replaces the command of its stamp) and sets the goal: the
  measured pose moved by the delta, as OSC_POSE does (no wind-up against
  contact). The gripper becomes a Move (open) or Grasp (close) request of
  franka_gripper, only when its sign changes.
- :meth:`cycle` is called once per controller cycle and returns the pose to
  command: the last commanded pose moved toward the goal by a first-order
  filter, with the per-cycle translation and rotation limited to the guard's
  speeds and their change per cycle to ``max_*_acceleration``. Without a fresh
  command (``command_timeout``) the goal becomes the current commanded pose:
  the arm decelerates and holds.

In a robot, :meth:`cycle` belongs in the real-time controller (C++); here it is
the reference law, tested on synthetic states and commands. Never run on a
Franka.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reinforcegen_ros.deployment.guards import NS, OK, Check, CommandGuard, StampGate, accept_command_stamp, check_matrix_pose
from reinforcegen_ros.geometry import make_pose, pose_inv, quat_to_mat, rot_from_rotvec, rotvec


@dataclass
class FrankaAdapterConfig:
    """Adapter settings; defaults from ``config/ros/franka.yaml`` through :meth:`from_config`."""

    control_rate: float = 20.0  # Hz of /eef_command (one OSC_POSE step per command)
    controller_rate: float = 1000.0  # Hz of the ros2_control loop
    command_timeout: float = 0.1  # s: a goal older than this is dropped (hold)
    max_position_step: float = 0.05  # m per command at normalised delta 1.0
    max_rotation_step: float = 0.5  # rad per command at normalised delta 1.0
    max_linear_speed: float = 0.25  # m/s of the commanded pose
    max_angular_speed: float = 1.0  # rad/s
    max_linear_acceleration: float = 5.0  # m/s^2 (libfranka allows 13)
    max_angular_acceleration: float = 10.0  # rad/s^2 (libfranka allows 25)
    filter_time_constant: float = 0.02  # s of the first-order filter toward the goal
    gripper_max_width: float = 0.08  # m (Move to open)
    gripper_speed: float = 0.05  # m/s
    grasp_force: float = 40.0  # N

    @classmethod
    def from_config(cls, deployment: dict) -> "FrankaAdapterConfig":
        """From a merged deployment config (franka.yaml over deployment.yaml): the robot and guards sections."""
        robot, guards = deployment.get("robot") or {}, deployment.get("guards") or {}
        keys = {"controller_rate", "gripper_max_width", "gripper_speed", "grasp_force"}
        out = cls(**{k: float(robot[k]) for k in keys if k in robot})
        for key in ("max_linear_speed", "max_angular_speed", "max_position_step", "max_rotation_step", "control_rate"):
            if key in guards:
                setattr(out, key, float(guards[key]))
        if "command_timeout" in (deployment.get("bridge") or {}):
            out.command_timeout = float(deployment["bridge"]["command_timeout"])
        return out


@dataclass
class GripperRequest:
    """A franka_gripper action goal: ``move`` (open to ``width``) or ``grasp`` (close with ``force``)."""

    action: str
    width: float
    speed: float
    force: float = 0.0


def pose_from_list(values) -> np.ndarray:
    """A 4x4 pose of ``[x, y, z, qx, qy, qz, qw]`` (``robot.world_to_base``) or of a 4x4."""
    arr = np.asarray(values, dtype=float)
    if arr.shape == (4, 4):
        return arr.copy()
    if arr.shape != (7,) or not np.all(np.isfinite(arr)) or abs(np.linalg.norm(arr[3:]) - 1) > 1e-3:
        raise ValueError(f"a pose is [x, y, z, qx, qy, qz, qw] with a unit quaternion, got {values}")
    return make_pose(arr[:3], quat_to_mat(arr[3:] / np.linalg.norm(arr[3:])))


def to_column_major(pose: np.ndarray) -> np.ndarray:
    """The 16 values of franka's ``O_T_EE`` (column-major) of a 4x4 pose."""
    return np.asarray(pose, dtype=float).reshape(4, 4).flatten(order="F")


def from_column_major(values) -> np.ndarray:
    """A 4x4 pose of franka's column-major 16 values."""
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (16,):
        raise ValueError(f"O_T_EE has 16 values, got {arr.size}")
    return arr.reshape(4, 4, order="F")


class FrankaCartesianAdapter:
    """See module docstring."""

    def __init__(self, world_to_base, guard: CommandGuard | None = None, config: FrankaAdapterConfig | None = None):
        self.world_T_base = pose_from_list(world_to_base)
        self.base_T_world = pose_inv(self.world_T_base)
        self.guard = guard or CommandGuard()
        self.config = config or FrankaAdapterConfig()
        self.gate = StampGate("eef command")
        self.measured: np.ndarray | None = None  # O_T_EE (base frame)
        self.commanded: np.ndarray | None = None  # last pose sent to the controller (base frame)
        self.goal: np.ndarray | None = None
        self.goal_stamp = 0
        self.velocity = np.zeros(6)  # per-cycle step of the last cycle (translation, rotation vector)
        self.gripper_closed: bool | None = None

    # ------------------------------------------------------------------ inputs
    def on_state(self, stamp_ns: int, o_t_ee) -> Check:
        """Measured ``O_T_EE`` (column-major 16 values or 4x4, base frame); the first one starts the commanded pose."""
        try:
            pose = from_column_major(o_t_ee) if np.size(o_t_ee) == 16 and np.ndim(o_t_ee) == 1 else np.asarray(o_t_ee, dtype=float)
        except ValueError as exc:
            return Check(False, f"robot state rejected: {exc}")
        check = check_matrix_pose(pose)
        if not check.ok:
            return Check(False, f"robot state rejected: {check.reason}")
        self.measured = pose
        if self.commanded is None:
            self.commanded = pose.copy()
        return OK

    def eef_pose_world(self) -> np.ndarray | None:
        """The measured end-effector pose in the agent's world frame (for ``/eef_pose``)."""
        return None if self.measured is None else self.world_T_base @ self.measured

    def on_command(self, stamp_ns: int, action) -> tuple[Check, GripperRequest | None]:
        """A 7-D ``/eef_command``: the new goal (base frame) and, when the gripper sign changed, its request."""
        if self.measured is None:
            return Check(False, "no robot state yet"), None
        world_eef = self.eef_pose_world()
        filtered, check = self.guard.filter(action, world_eef[:3, 3])
        if not check.ok:
            return check, None
        gate = accept_command_stamp(self.gate, stamp_ns, filtered)
        if not gate.ok:
            return gate, None
        cfg = self.config
        goal_world = make_pose(world_eef[:3, 3] + filtered[:3] * cfg.max_position_step,
                               rot_from_rotvec(filtered[3:6] * cfg.max_rotation_step) @ world_eef[:3, :3])
        self.goal, self.goal_stamp = self.base_T_world @ goal_world, int(stamp_ns)
        if not np.any(filtered[:6]):
            self.goal = self.commanded.copy()  # a hold: stop where the command is, not where the arm lags
        return check, self._gripper(float(filtered[6]))

    def _gripper(self, command: float) -> GripperRequest | None:
        close = command > 0.0
        if close == self.gripper_closed:
            return None
        self.gripper_closed = close
        cfg = self.config
        if close:
            return GripperRequest("grasp", 0.0, cfg.gripper_speed, cfg.grasp_force)
        return GripperRequest("move", cfg.gripper_max_width, cfg.gripper_speed)

    # ------------------------------------------------------------------ the controller cycle
    def cycle(self, now_ns: int) -> np.ndarray | None:
        """The ``O_T_EE`` pose (4x4, base frame) to command in this controller cycle (None before the first state)."""
        if self.commanded is None:
            return None
        cfg = self.config
        if self.goal is None or (int(now_ns) - self.goal_stamp) / NS > cfg.command_timeout:
            self.goal = self.commanded.copy()  # no fresh command: decelerate and hold
        dt = 1.0 / cfg.controller_rate
        alpha = 1.0 - np.exp(-dt / cfg.filter_time_constant)
        want = np.concatenate([
            alpha * (self.goal[:3, 3] - self.commanded[:3, 3]),
            alpha * rotvec(self.goal[:3, :3] @ self.commanded[:3, :3].T),
        ])
        step = np.concatenate([
            _limit(want[:3], self.velocity[:3], cfg.max_linear_speed * dt, cfg.max_linear_acceleration * dt * dt),
            _limit(want[3:], self.velocity[3:], cfg.max_angular_speed * dt, cfg.max_angular_acceleration * dt * dt),
        ])
        self.velocity = step
        self.commanded = make_pose(self.commanded[:3, 3] + step[:3], rot_from_rotvec(step[3:]) @ self.commanded[:3, :3])
        return self.commanded.copy()


def _limit(want: np.ndarray, last: np.ndarray, max_step: float, max_change: float) -> np.ndarray:
    """``want`` (a per-cycle step) with its norm at most ``max_step`` and its change from ``last`` at most ``max_change``."""
    change = want - last
    n = float(np.linalg.norm(change))
    if n > max_change:
        change *= max_change / n
    step = last + change
    n = float(np.linalg.norm(step))
    if n > max_step:
        step *= max_step / n
    return step
