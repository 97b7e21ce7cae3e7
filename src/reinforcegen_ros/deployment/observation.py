"""Observations of the robot assembled from its latest sensor messages (the ROS side of ``TaskEnv.observe``).

A :class:`SensorCache` keeps the latest joint state, end-effector pose, object
poses and camera images with their stamps, dropping out-of-order, duplicate
or invalid messages with a reason. :meth:`SensorCache.observation` returns an
observation dict with the keys and layout of
:meth:`reinforcegen_ros.tasks.environment.TaskEnv.observe` (what the agents
were trained on), or the reason it cannot be built (missing or stale inputs).
The values come in as numpy arrays: the node converts messages with
:mod:`reinforcegen_ros.messages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from reinforcegen_ros.deployment.guards import OK, Check, StampGate, check_fresh, check_pose
from reinforcegen_ros.geometry import mat_to_quat, quat_to_mat, rotvec


@dataclass
class Sample:
    """One received value and its header stamp (ns)."""

    stamp_ns: int
    value: object


@dataclass
class SensorCache:
    """Latest valid sensor values (see module docstring).

    ``objects`` is the task's privileged object order (``StagedTask.OBJECTS``);
    ``cameras`` the cameras whose images the agent needs; ``need_objects``
    whether the object poses are part of the observation (privileged agents).
    """

    objects: Sequence[str] = ()
    cameras: Sequence[str] = ()
    need_objects: bool = True
    known_frames: Sequence[str] = ("world",)
    latest: dict[str, Sample] = field(default_factory=dict)
    gates: dict[str, StampGate] = field(default_factory=dict)

    def _accept(self, key: str, stamp_ns: int) -> Check:
        gate = self.gates.setdefault(key, StampGate(key))
        return gate.accept(stamp_ns)

    def put_joints(self, stamp_ns: int, joint_pos, gripper_qpos) -> Check:
        """Arm joints (7) and robosuite-convention finger positions (2)."""
        if joint_pos is None or np.size(joint_pos) != 7:
            return Check(False, "joint state lacks the 7 arm joints")
        q = np.asarray(joint_pos, dtype=float).reshape(7)
        g = np.zeros(2) if gripper_qpos is None else np.asarray(gripper_qpos, dtype=float).reshape(-1)
        if g.shape != (2,) or not (np.all(np.isfinite(q)) and np.all(np.isfinite(g))):
            return Check(False, "joint state contains NaN/inf or lacks the two finger joints")
        check = self._accept("joint_states", stamp_ns)
        if check.ok:
            self.latest["joints"] = Sample(int(stamp_ns), (q, g))
        return check

    def put_eef(self, stamp_ns: int, position, quaternion_xyzw, frame_id: str) -> Check:
        """Grip-site pose."""
        check = check_pose(position, quaternion_xyzw, frame_id, self.known_frames)
        if not check.ok:
            return Check(False, f"eef pose rejected: {check.reason}")
        check = self._accept("eef_pose", stamp_ns)
        if check.ok:
            q = np.asarray(quaternion_xyzw, dtype=float)
            self.latest["eef"] = Sample(int(stamp_ns), (np.asarray(position, dtype=float), q / np.linalg.norm(q)))
        return check

    def put_objects(self, stamp_ns: int, poses: dict[str, tuple], frame_id: str) -> Check:
        """Privileged object poses: name -> (position, quaternion xyzw); every task object is required."""
        missing = [n for n in self.objects if n not in poses]
        if missing:
            return Check(False, f"object poses lack {', '.join(missing)}")
        for name in self.objects:
            check = check_pose(*poses[name], frame_id, self.known_frames)
            if not check.ok:
                return Check(False, f"pose of '{name}' rejected: {check.reason}")
        check = self._accept("object_poses", stamp_ns)
        if check.ok:
            vec = np.concatenate([np.concatenate([np.asarray(poses[n][0], float), _unit(poses[n][1])]) for n in self.objects])
            self.latest["objects"] = Sample(int(stamp_ns), vec)
        return check

    def put_image(self, camera: str, stamp_ns: int, image: np.ndarray) -> Check:
        """An HxWx3 uint8 RGB image of ``camera``."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            return Check(False, f"image of '{camera}' must be HxWx3 uint8, got {img.shape} {img.dtype}")
        check = self._accept(f"image:{camera}", stamp_ns)
        if check.ok:
            self.latest[f"image:{camera}"] = Sample(int(stamp_ns), img)
        return check

    def stamp(self) -> int | None:
        """Stamp of the robot state (joint state and eef pose must agree in time; the older one counts)."""
        if "joints" not in self.latest or "eef" not in self.latest:
            return None
        return min(self.latest["joints"].stamp_ns, self.latest["eef"].stamp_ns)

    def observation(self, now_ns: int, max_age: float) -> tuple[dict | None, int, Check]:
        """``(obs, stamp_ns, OK)`` with every needed input at most ``max_age`` s old, else ``(None, 0, reason)``."""
        needed = ["joints", "eef"] + (["objects"] if self.need_objects else []) + [f"image:{c}" for c in self.cameras]
        for key in needed:
            if key not in self.latest:
                return None, 0, Check(False, f"no {key.replace('image:', 'image of ')} received yet")
            check = check_fresh(self.latest[key].stamp_ns, now_ns, max_age, key.replace("image:", "image of "))
            if not check.ok:
                return None, 0, check
        q, g = self.latest["joints"].value
        pos, quat = self.latest["eef"].value
        obs = {
            "robot0_eef_pos": pos.copy(),
            "robot0_eef_quat": quat.copy(),
            "robot0_eef_axis_angle": rotvec(quat_to_mat(quat)),
            "robot0_gripper_qpos": g.copy(),
            "robot0_joint_pos": q.copy(),
        }
        obs["object"] = self.latest["objects"].value.copy() if "objects" in self.latest else np.zeros(7 * len(self.objects))
        for cam in self.cameras:
            obs[f"{cam}_image"] = self.latest[f"image:{cam}"].value
        return obs, int(self.stamp()), OK


def _unit(q) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    return q / np.linalg.norm(q)


def pose_parts(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position and (x, y, z, w) quaternion of a 4x4 pose."""
    return np.asarray(pose[:3, 3], dtype=float), mat_to_quat(pose[:3, :3])
