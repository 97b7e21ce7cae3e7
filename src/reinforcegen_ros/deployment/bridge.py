"""The robosuite bridge core: a task environment behaving as a ROS robot, without ROS.

:class:`RobosuiteBridge` steps a :class:`~reinforcegen_ros.tasks.environment.TaskEnv`
at the control rate and produces, per step, a :class:`BridgeFrame` with
everything the node publishes: joint states, the grip-site pose, privileged
object poses, camera images (every ``image_every`` steps), TF frames (robot
base, links, grip site, objects), the flattened simulator state with the
ground-truth stage labels, and the simulation clock.

What it applies each step, in order of priority:

1. a joint trajectory being executed (``FollowJointTrajectory`` semantics: the
   joint waypoints become grip-site waypoints by forward kinematics and are
   tracked through the OSC controller with the project's
   :class:`~reinforcegen_ros.planning.TrajectoryFollower`; success when the
   final waypoint is reached, abort on timeout or cancel);
2. the latest end-effector command, if it passed the command guard and is not
   older than ``command_timeout`` (sim time) and not applied before: a delta
   command is applied once;
3. otherwise it holds still (zero delta, gripper unchanged).

A hold (zero delta) is never refused for its stamp: one stamped like the
command queued before it replaces that command (the emergency stop's hold must
win over the motion it stops).

In ``lockstep`` mode the node steps as soon as a command answering the latest
frame has arrived (and at least ``min_step_period`` wall seconds passed), or
after ``step_timeout`` wall seconds with a hold, so a slow machine slows the
simulated clock instead of dropping commands.

:meth:`RobosuiteBridge.reset_scene` resets the scene to a seed (``~/reset`` and
ExecuteTask goals): ``SEED_NEXT`` (-1) takes the next seed of its sequence (the
``seed`` setting first, then one more per reset). The simulated clock never goes
back: a reset takes one control period, so the new scene's first frame has a new
stamp and every node's stamp gate accepts it. :meth:`RobosuiteBridge.close`
releases the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reinforcegen_ros.deployment.config import settings_from_dict
from reinforcegen_ros.deployment.guards import NS, OK, Check, CommandGuard, StampGate, accept_command_stamp, hold_action
from reinforcegen_ros.geometry import make_pose
from reinforcegen_ros.messages import ARM_JOINT_NAMES, WORLD_FRAME
from reinforcegen_ros.planning import Trajectory, TrajectoryFollower

SEED_NEXT = -1  # ResetScene / ExecuteTask: the bridge's next scene
ROBOT_BODY_PREFIX = "robot0_"  # robosuite's body names of the arm (robot0_link0..7, robot0_right_hand)
ROS_LINK_PREFIX = "panda_"  # the Panda URDF's link names (panda_link0..7, panda_hand)


@dataclass
class BridgeConfig:
    """Bridge settings (``bridge`` section of ``config/ros/deployment.yaml``)."""

    control_rate: float = 20.0
    command_timeout: float = 0.1  # s (sim time): an older command is not applied
    sim_time_offset: float = 1.0  # s: simulated clock at reset (ROS treats time 0 as unset)
    cameras: list[str] = field(default_factory=list)  # rendered cameras ([] = none)
    image_size: int = 84
    image_every: int = 1  # render the cameras every this many steps
    lockstep: bool = True
    min_step_period: float = 0.05  # s (wall) between steps in lockstep mode
    step_timeout: float = 0.1  # s (wall) a lockstep bridge waits for a command before holding
    trajectory_gain: float = 2.0  # TrajectoryFollower gain
    trajectory_time_factor: float = 3.0  # abort a trajectory after this times its duration ...
    trajectory_min_time: float = 3.0  # ... but not before this many seconds
    eef_frame: str = "panda_grip_site"
    base_frame: str = "panda_link0"
    publish_link_tf: bool = True  # TF of the arm links (off when robot_state_publisher uses a URDF)
    seed: int = 0  # scene at start-up and the first seed of SEED_NEXT resets

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "BridgeConfig":
        return settings_from_dict(cls, cfg, "bridge")


@dataclass
class TrajectoryEvent:
    """End of a joint trajectory execution."""

    success: bool
    reason: str
    error: np.ndarray  # final joint error (7,)


@dataclass
class BridgeFrame:
    """Everything the bridge publishes after one step."""

    stamp_ns: int
    step: int
    joint_pos: np.ndarray
    gripper_qpos: np.ndarray
    eef_pose: np.ndarray
    object_poses: dict[str, np.ndarray]
    tf: dict[str, np.ndarray]  # child frame -> 4x4 pose in the world frame
    images: dict[str, np.ndarray]
    observation: dict[str, np.ndarray]  # TaskEnv.observe() (low-dimensional): what a dataset stores per step
    sim_state: np.ndarray
    stage_done: list[bool]
    success: bool
    applied: np.ndarray
    source: str  # trajectory | command | hold
    hold_reason: str = ""
    trajectory: TrajectoryEvent | None = None


class RobosuiteBridge:
    """See module docstring."""

    def __init__(self, task: str, config: BridgeConfig | None = None, guard: CommandGuard | None = None, env=None):
        from reinforcegen_ros.planning.kinematics import ArmKinematics
        from reinforcegen_ros.tasks.environment import TaskEnv

        self.task = task
        self.config = config or BridgeConfig()
        self.guard = guard or CommandGuard()
        cams = tuple(self.config.cameras)
        self.env = env or TaskEnv(task, cameras=cams or None, image_size=self.config.image_size, render=bool(cams))
        self.kin = ArmKinematics(self.env)
        self.stage_names = [s.name for s in self.env.stages]
        model = self.env.env.sim.model
        self._links = {
            name.replace(ROBOT_BODY_PREFIX, ROS_LINK_PREFIX).replace("right_hand", "hand"): model.body_name2id(name)
            for name in model.body_names
            if name.startswith(ROBOT_BODY_PREFIX) and ("link" in name or name.endswith("right_hand"))
        }
        self.period_ns = int(round(NS / self.config.control_rate))
        self.clock_steps = 0  # control periods since start-up: the simulated clock (never reset)
        self.next_seed = int(self.config.seed)
        self.gate = StampGate("eef command")
        self.frame: BridgeFrame | None = None
        self.closed = False
        self.reset(self.config.seed, advance_sequence=False)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, advance_sequence: bool = True) -> BridgeFrame:
        """New scene of ``seed`` (None or ``SEED_NEXT``: the next seed of the sequence); commands and trajectories dropped.

        The clock advances one control period (unless nothing was published yet), so stamps keep increasing.
        """
        if seed is None or int(seed) == SEED_NEXT:
            seed = self.next_seed
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"a scene seed is >= 0 or {SEED_NEXT} (the next scene), got {seed}")
        if advance_sequence:
            self.next_seed = seed + 1
        self.env.reset(seed=seed)
        self.seed = seed
        if self.frame is not None:
            self.clock_steps += 1
        self.steps = 0
        self.command: tuple[int, np.ndarray] | None = None
        self.gripper = -1.0
        self.follower: TrajectoryFollower | None = None
        self._traj_joints: np.ndarray | None = None
        self._wall_last = -1e18
        self.frame = self._frame(hold_action(self.gripper), "hold", "reset")
        self.scene_ns = self.frame.stamp_ns  # commands stamped earlier answer the previous scene
        return self.frame

    def reset_scene(self, seed: int) -> tuple[BridgeFrame | None, Check]:
        """``~/reset``: the new scene's first frame, or None with the reason the reset was refused; never raises."""
        if self.closed:
            return None, Check(False, "the simulator was released (shutting down)")
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            return None, Check(False, f"seed {seed!r} is not an integer")
        if seed < SEED_NEXT:
            return None, Check(False, f"seed must be >= 0 or {SEED_NEXT} (the next scene), got {seed}")
        try:
            return self.reset(seed), OK
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the bridge stays up
            return None, Check(False, f"reset of scene {seed} raised {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Release the simulator (shutdown); later resets are refused."""
        if not self.closed:
            self.closed = True
            self.follower = None
            self.env.close()

    @property
    def now_ns(self) -> int:
        """Simulated time of the current state."""
        return int(round(self.config.sim_time_offset * NS)) + self.clock_steps * self.period_ns

    # ------------------------------------------------------------------ inputs
    def on_command(self, stamp_ns: int, action) -> Check:
        """An end-effector command (7-D); rejected ones are not applied (the robot holds still)."""
        filtered, check = self.guard.filter(action, self.frame.eef_pose[:3, 3])
        if not check.ok:
            return check
        check = accept_command_stamp(self.gate, stamp_ns, filtered)
        if not check.ok:
            return check
        if int(stamp_ns) < self.scene_ns:
            return Check(False, f"command stamped {int(stamp_ns)} ns answers a frame from before the scene reset at {self.scene_ns} ns")
        self.command = (int(stamp_ns), filtered)
        return OK

    def start_trajectory(self, joint_names, positions, times=None) -> Check:
        """Execute joint waypoints (FollowJointTrajectory goal); rejected with a reason when invalid."""
        if self.follower is not None:
            return Check(False, "a trajectory is already executing")
        names = [str(n) for n in joint_names]
        missing = [n for n in ARM_JOINT_NAMES if n not in names]
        if missing:
            return Check(False, f"trajectory lacks joints {', '.join(missing)}")
        try:
            pos = np.asarray(positions, dtype=float)
        except (TypeError, ValueError):
            return Check(False, "trajectory positions are not numeric")
        if pos.ndim != 2 or pos.shape[1] != len(names) or len(pos) == 0:
            return Check(False, f"trajectory needs N x {len(names)} positions, got shape {pos.shape}")
        if not np.all(np.isfinite(pos)):
            return Check(False, "trajectory contains NaN or inf")
        joints = pos[:, [names.index(n) for n in ARM_JOINT_NAMES]]
        out = (joints < self.kin.lower - 1e-6) | (joints > self.kin.upper + 1e-6)
        if np.any(out):
            j = int(np.flatnonzero(out.any(axis=0))[0])
            return Check(False, f"trajectory leaves the limits of {ARM_JOINT_NAMES[j]} [{self.kin.lower[j]:.3f}, {self.kin.upper[j]:.3f}]")
        poses = np.stack([self.kin.forward(q) for q in joints])
        duration = float(np.max(times)) if times is not None and len(times) else len(joints) / self.config.control_rate
        self.follower = TrajectoryFollower(Trajectory(poses, joints), gain=self.config.trajectory_gain)
        self._traj_joints = joints
        self._traj_deadline = self.steps + int(max(duration * self.config.trajectory_time_factor, self.config.trajectory_min_time) * self.config.control_rate)
        return OK

    def cancel_trajectory(self, reason: str = "canceled") -> TrajectoryEvent | None:
        """Stop the running trajectory (the robot holds still)."""
        if self.follower is None:
            return None
        event = TrajectoryEvent(False, reason, self._joint_error())
        self.follower = None
        return event

    @property
    def executing(self) -> bool:
        return self.follower is not None

    # ------------------------------------------------------------------ stepping
    def ready(self, wall_now: float) -> bool:
        """Whether a lockstep bridge should step now (a fixed-rate bridge always steps on its timer)."""
        cfg = self.config
        since = wall_now - self._wall_last
        if not cfg.lockstep or self.follower is not None:
            return since >= cfg.min_step_period - 1e-6
        answered = self.command is not None and self.command[0] >= self.frame.stamp_ns
        return (answered and since >= cfg.min_step_period - 1e-6) or since >= cfg.step_timeout - 1e-6

    def step(self, wall_now: float = 0.0) -> BridgeFrame:
        """Apply one control step (see module docstring) and return the new frame."""
        self._wall_last = wall_now
        event, reason = None, ""
        if self.follower is not None:
            eef = self.env.eef_pose()
            if self.follower.done(eef):
                event = TrajectoryEvent(True, "goal reached", self._joint_error())
                self.follower = None
            elif self.steps >= self._traj_deadline:
                event = TrajectoryEvent(False, "trajectory timed out before reaching its goal", self._joint_error())
                self.follower = None
        if self.follower is not None:
            action, source = np.append(self.follower.action(self.env.eef_pose()), self.gripper), "trajectory"
        elif self.command is not None and (self.now_ns - self.command[0]) / NS <= self.config.command_timeout:
            action, source = self.command[1], "command"
            self.command = None  # a delta command is applied once
        else:
            reason = "no fresh command" if self.command is None else "command is stale"
            self.command = None
            action, source = hold_action(self.gripper), "hold"
        self.gripper = float(action[6])
        self.env.step(action)
        self.steps += 1
        self.clock_steps += 1
        self.frame = self._frame(action, source, reason, event)
        return self.frame

    # ------------------------------------------------------------------ outputs
    def _frame(self, action: np.ndarray, source: str, reason: str, event: TrajectoryEvent | None = None) -> BridgeFrame:
        env, cfg = self.env, self.config
        obs_robot = env.env.robots[0]
        sim = env.env.sim
        eef = env.eef_pose()
        objects = env.object_poses()
        tf = {cfg.eef_frame: eef}
        tf.update({name: pose for name, pose in objects.items()})
        for name, body in self._links.items():
            if cfg.publish_link_tf or name == cfg.base_frame:
                tf[name] = make_pose(sim.data.body_xpos[body], sim.data.body_xmat[body].reshape(3, 3))
        images = {}
        if cfg.cameras and self.steps % max(1, cfg.image_every) == 0:
            images = {cam: env.render(cam) for cam in cfg.cameras}
        return BridgeFrame(
            stamp_ns=self.now_ns,
            step=self.steps,
            joint_pos=np.array(sim.data.qpos[obs_robot._ref_joint_pos_indexes]),
            gripper_qpos=np.array(sim.data.qpos[obs_robot._ref_gripper_joint_pos_indexes["right"]]),
            eef_pose=eef,
            object_poses=objects,
            tf=tf,
            images=images,
            observation=env.observe(),
            sim_state=env.get_state(),
            stage_done=[env.stage_done(k) for k in range(len(self.stage_names))],
            success=env.success(),
            applied=np.asarray(action, dtype=float),
            source=source,
            hold_reason=reason,
            trajectory=event,
        )

    def _joint_error(self) -> np.ndarray:
        if self._traj_joints is None:
            return np.zeros(7)
        return self._traj_joints[-1] - self.kin.current_joints()


__all__ = ["BridgeConfig", "BridgeFrame", "RobosuiteBridge", "SEED_NEXT", "TrajectoryEvent", "WORLD_FRAME"]
