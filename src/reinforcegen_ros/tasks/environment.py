"""The task environment as the rest of the stack sees it.

:class:`TaskEnv` wraps a staged robosuite environment with OSC_POSE delta-pose
control in the world frame at 20 Hz and produces the observation dictionaries
used throughout (paper Sec. IV): proprioception (eef position 3, eef rotation as
axis-angle 3, gripper 2, joints 7), privileged object poses, and optionally
84x84 RGB cameras. Images can also be rendered afterwards from saved states.

A control step goes through the lean step path by default
(:mod:`reinforcegen_ros.tasks.lean_control`: robosuite's OSC_POSE law evaluated
on MuJoCo's arrays, the same torques in every substep) or through robosuite's
own ``env.step`` (``step_path="stock"``); ``config/simulation.yaml`` holds the
default and a task YAML may override it in a ``simulation:`` section.
"""

from __future__ import annotations

import json
import os

from pathlib import Path

import numpy as np
import yaml

from numba import njit
from scipy.spatial.transform import Rotation

from reinforcegen_ros.geometry import mat_to_quat_rotvec
from reinforcegen_ros.tasks import env_class, task_config

OBS_MODES = ("privileged", "rgb")
PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_axis_angle", "robot0_gripper_qpos", "robot0_joint_pos")
RENDER_CONFIG = Path(__file__).resolve().parents[3] / "config" / "rendering.yaml"
SIMULATION_CONFIG = RENDER_CONFIG.with_name("simulation.yaml")
STEP_PATHS = ("lean", "stock")


@njit(cache=True)
def _clearly_rotations(rots) -> bool:
    """Whether every 3x3 matrix of ``rots`` passes ``geometry``'s rotation test with a wide margin.

    That test asks for a positive determinant and R Rᵀ within 1e-12 of I off the
    diagonal (1e-5 on it); here 0.5e-12 and 0.5e-5 and a determinant above 0.5, so
    rounding in either test cannot make them disagree where this one passes.
    """
    for n in range(rots.shape[0]):
        r = rots[n]
        for i in range(3):
            for j in range(3):
                g = r[i, 0] * r[j, 0] + r[i, 1] * r[j, 1] + r[i, 2] * r[j, 2] - (1.0 if i == j else 0.0)
                if not abs(g) <= (0.5e-5 if i == j else 0.5e-12):
                    return False
        det = (r[0, 0] * (r[1, 1] * r[2, 2] - r[1, 2] * r[2, 1]) - r[0, 1] * (r[1, 0] * r[2, 2] - r[1, 2] * r[2, 0])
               + r[0, 2] * (r[1, 0] * r[2, 1] - r[1, 1] * r[2, 0]))
        if not det > 0.5:
            return False
    return True


def frame_quats_rotvecs(rots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``geometry.mat_to_quat_rotvec`` of a stack of rotations, equal to the bit, with a cheaper validity test.

    Where :func:`_clearly_rotations` passes, ``geometry``'s own test passes too and
    scipy converts with ``assume_valid=True``, as ``geometry`` then does; otherwise
    ``geometry`` converts.
    """
    rots = np.ascontiguousarray(rots, dtype=float)
    if not _clearly_rotations(rots):
        return mat_to_quat_rotvec(rots)
    r = Rotation.from_matrix(rots, assume_valid=True)
    q = r.as_quat()
    return np.where(q[..., 3:] < 0, -q, q), r.as_rotvec()


def render_settings(task_cfg: dict | None = None) -> dict:
    """``config/rendering.yaml`` updated by the task YAML's ``render`` section."""
    with open(RENDER_CONFIG) as fh:
        cfg = yaml.safe_load(fh) or {}
    cfg.update((task_cfg or {}).get("render") or {})
    return cfg


def simulation_settings(task_cfg: dict | None = None) -> dict:
    """``config/simulation.yaml`` updated by the task YAML's ``simulation`` section."""
    with open(SIMULATION_CONFIG) as fh:
        cfg = yaml.safe_load(fh) or {}
    cfg.update((task_cfg or {}).get("simulation") or {})
    return cfg


def controller_config(max_pos: float = 0.05, max_rot: float = 0.5) -> dict:
    """robosuite composite controller config: OSC_POSE, delta input in the world frame."""
    from robosuite.controllers import load_composite_controller_config

    cfg = load_composite_controller_config(controller="BASIC", robot="Panda")
    arm = cfg["body_parts"]["right"]
    arm["input_ref_frame"] = "world"
    arm["output_max"] = [max_pos] * 3 + [max_rot] * 3
    arm["output_min"] = [-max_pos] * 3 + [-max_rot] * 3
    cfg["body_parts"] = {"right": arm}
    return cfg


class TaskEnv:
    """A staged task with the project's observation and action conventions."""

    def __init__(
        self,
        task: str,
        obs_mode: str = "privileged",
        cameras: tuple[str, ...] | None = None,
        image_size: int = 84,
        config: dict | None = None,
        render: bool | None = None,
        step_path: str | None = None,
    ):
        if obs_mode not in OBS_MODES:
            raise ValueError(f"unknown observation mode '{obs_mode}'; choose one of {', '.join(OBS_MODES)}")
        self.task = task
        self.obs_mode = obs_mode
        self.config = config if config is not None else task_config(task)
        self.cameras = tuple(cameras if cameras is not None else self.config.get("cameras", ["agentview", "robot0_eye_in_hand"]))
        self.image_size = image_size
        self.render_enabled = obs_mode == "rgb" if render is None else render
        self.step_path = step_path or simulation_settings(self.config)["step_path"]
        if self.step_path not in STEP_PATHS:
            raise ValueError(f"unknown step path '{self.step_path}'; choose one of {', '.join(STEP_PATHS)}")
        if self.render_enabled:
            os.environ.setdefault("MUJOCO_GL", "osmesa")
        import robosuite as suite

        cls = env_class(task)
        self.env_kwargs = dict(self.config.get("env_kwargs", {}))
        self.env = suite.make(
            cls.__name__,
            robots="Panda",
            controller_configs=controller_config(),
            has_renderer=False,
            has_offscreen_renderer=self.render_enabled,
            use_camera_obs=False,
            control_freq=20,
            horizon=int(self.config.get("horizon", 1000)),
            ignore_done=True,
            hard_reset=False,
            **self.env_kwargs,
        )
        self.stages = cls.STAGES
        self.objects = cls.OBJECTS
        self.render_config = render_settings(self.config)
        self._renderer = None
        self._lean_step = None
        if self.step_path == "lean":
            from reinforcegen_ros.tasks.lean_control import LeanStep

            self._lean_step = LeanStep(self.env)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> dict:
        """Start an episode; ``seed`` fixes the scene (object placement, robot noise)."""
        if seed is not None:
            self.env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.env.reset()
        return self.observe()

    def step(self, action: np.ndarray) -> dict:
        """Apply one 7-D action (normalised delta pose + gripper) for one 50 ms control step."""
        action = np.asarray(action, dtype=float)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 7 finite numbers, got shape {action.shape}")
        action = np.clip(action, -1.0, 1.0)
        if self._lean_step is not None:
            self._lean_step(action)
            self._lean_step.settle()  # sim.forward()'s positions and velocities, reused by the next step
        else:
            self.env.step(action)
            self.env.sim.forward()  # poses consistent with the saved state (mj_step leaves them one substep behind)
        return self.observe()

    # ------------------------------------------------------------------ observations
    def observe(self) -> dict:
        """Observation dict for the current state (proprio, privileged objects, optional images)."""
        eef = self.env.eef_pose()
        robot = self.env.robots[0]
        frames = np.stack([eef] + list(self.env.object_poses().values()))
        quats, rotvecs = frame_quats_rotvecs(frames[:, :3, :3])  # all frames at once
        qpos = self.env.sim.data.qpos
        obs = {
            "robot0_eef_pos": frames[0, :3, 3].copy(),
            "robot0_eef_quat": quats[0],
            "robot0_eef_axis_angle": rotvecs[0],
            "robot0_gripper_qpos": qpos[robot._ref_gripper_joint_pos_indexes["right"]],
            "robot0_joint_pos": qpos[robot._ref_joint_pos_indexes],
        }
        obs["object"] = np.concatenate([frames[1:, :3, 3], quats[1:]], axis=1).ravel()
        if self.obs_mode == "rgb":
            for cam in self.cameras:
                obs[f"{cam}_image"] = self.render(cam)
        return obs

    def render(self, camera: str, size: int | None = None) -> np.ndarray:
        """RGB image (HxWx3 uint8, upright) from ``camera`` (see :mod:`reinforcegen_ros.tasks.rendering`)."""
        if not self.render_enabled:
            raise RuntimeError("this environment was created without rendering; pass render=True")
        size = size or self.image_size
        if self._renderer is None:
            from reinforcegen_ros.tasks.rendering import CameraRenderer

            self._renderer = CameraRenderer(self.env.sim, self.render_config, size=self.image_size)
        return self._renderer.render(camera, size, size)

    # ------------------------------------------------------------------ state
    def get_state(self) -> np.ndarray:
        """Flattened MuJoCo state (time, qpos, qvel), as robomimic stores it."""
        return np.array(self.env.sim.get_state().flatten())

    def set_state(self, state: np.ndarray) -> None:
        """Restore a saved flattened state (no observation, so no rendering).

        The arm controller is told to re-read the robot at the next step: a
        controller that robosuite has just built (at reset) would otherwise set
        the next goal from the pose it cached at reset, pulling the arm back
        towards it for one control step.
        """
        self.env.sim.set_state_from_flattened(np.asarray(state))
        self.env.sim.forward()
        self.env.robots[0].part_controllers["right"].new_update = True

    def reset_to(self, state: np.ndarray) -> dict:
        """Restore a saved flattened state and return its observation."""
        self.set_state(state)
        return self.observe()

    def free_joint(self, name: str) -> str | None:
        """The free joint of object ``name`` (None for fixtures and arena bodies)."""
        import mujoco

        obj = getattr(self.env, "mujoco_objects", {}).get(name)
        if obj is None or not obj.joints:
            return None
        model = self.env.sim.model
        joint = obj.joints[0]
        if joint not in model.joint_names:  # fixture joints are named without the object's prefix
            return None
        return joint if model.jnt_type[model.joint_name2id(joint)] == mujoco.mjtJoint.mjJNT_FREE else None

    def object_qpos(self, joint: str) -> np.ndarray:
        """Position + quaternion (7) of a free joint in the current state."""
        return np.array(self.env.sim.data.get_joint_qpos(joint))

    def place_object(self, joint: str, qpos: np.ndarray) -> None:
        """Put a free-jointed object at ``qpos``, at rest, in the current state (no physics step)."""
        self.env.sim.data.set_joint_qpos(joint, np.asarray(qpos, dtype=float))
        self.env.sim.data.set_joint_qvel(joint, np.zeros(6))
        self.env.sim.forward()

    def close_gripper_in_place(self) -> None:
        """Put the finger joints at their closed limit in the current state, without stepping physics."""
        sim = self.env.sim
        robot = self.env.robots[0]
        for name, addr in zip(robot.gripper_joints["right"], robot._ref_gripper_joint_pos_indexes["right"]):
            low, high = sim.model.jnt_range[sim.model.joint_name2id(name)]
            sim.data.qpos[addr] = low if abs(low) <= abs(high) else high
        sim.forward()

    def eef_pose(self) -> np.ndarray:
        """World pose of the grip site."""
        return self.env.eef_pose()

    def object_poses(self) -> dict[str, np.ndarray]:
        """World poses of the privileged objects."""
        return self.env.object_poses()

    def reference_pose(self, stage: int) -> np.ndarray:
        """World pose of ``stage``'s reference object."""
        stage_ = self.stages[stage]
        return stage_.reference_frame({name: self.env.object_pose(name) for name in stage_.frame_objects})

    def stage_done(self, stage: int) -> bool:
        """Ground-truth termination of ``stage``."""
        return bool(self.env.stage_done(stage))

    def success(self) -> bool:
        """Ground-truth task success."""
        return bool(self.env._check_success())

    def env_args(self) -> dict:
        """robomimic ``env_args`` metadata so robomimic tools can re-create this environment."""
        kwargs = dict(self.env_kwargs)
        kwargs.update(
            robots=["Panda"],
            controller_configs=controller_config(),
            control_freq=20,
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            ignore_done=True,
        )
        return {"env_name": type(self.env).__name__, "type": 1, "env_kwargs": kwargs, "env_version": _robosuite_version(), "reinforcegen_task": self.task}

    def env_args_json(self) -> str:
        """``env_args`` as the JSON string robomimic reads from ``data.attrs``."""
        return json.dumps(self.env_args())

    def close(self) -> None:
        """Free the simulator (and the offscreen context, safely for other environments that render)."""
        if self.render_enabled and self.env.sim is not None:
            from reinforcegen_ros.tasks.rendering import free_offscreen_context

            free_offscreen_context(self.env.sim)
        self._renderer = None
        self.env.close()


def _robosuite_version() -> str:
    import robosuite

    return robosuite.__version__
