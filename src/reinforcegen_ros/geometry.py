"""Poses and SE(3) helpers used across the stack.

Conventions: a pose is a 4x4 homogeneous matrix in the world frame; quaternions
are (x, y, z, w), the order used by robosuite observations, scipy and ROS.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def quat_to_mat(quat_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of an (x, y, z, w) quaternion."""
    return Rotation.from_quat(np.asarray(quat_xyzw, dtype=float)).as_matrix()


def _rotation(rot: np.ndarray) -> Rotation:
    """scipy ``Rotation`` of one 3x3 matrix or a stack, as ``Rotation.from_matrix`` makes it.

    scipy's own check (positive determinant, Gram matrix within 1e-12 of I, else
    orthogonalise) costs most of the conversion; it is repeated here in plain
    numpy, and where it passes scipy is told to skip it, which gives the same result.
    """
    rot = np.asarray(rot, dtype=float)
    eye = np.eye(3)
    valid = np.all(np.abs(rot @ np.swapaxes(rot, -1, -2) - eye) <= 1e-12 + 1e-5 * eye) and np.all(np.linalg.det(rot) > 0)
    return Rotation.from_matrix(rot, assume_valid=bool(valid))


def mat_to_quat(rot: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion of a 3x3 rotation matrix, with w >= 0; quaternions (N, 4) of a stack (N, 3, 3)."""
    q = _rotation(rot).as_quat()
    return np.where(q[..., 3:] < 0, -q, q)


def mat_to_quat_rotvec(rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mat_to_quat(rot)`` and ``rotvec(rot)`` from one conversion (for one matrix or a stack)."""
    r = _rotation(rot)
    q = r.as_quat()
    return np.where(q[..., 3:] < 0, -q, q), r.as_rotvec()


def make_pose(pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """4x4 pose from a position and a 3x3 rotation."""
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = pos
    return pose


def pose_from_pos_quat(pos: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 pose from a position and an (x, y, z, w) quaternion."""
    return make_pose(pos, quat_to_mat(quat_xyzw))


def pose_to_pos_quat(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position and (x, y, z, w) quaternion of a 4x4 pose."""
    return pose[:3, 3].copy(), mat_to_quat(pose[:3, :3])


def pose_inv(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform."""
    inv = np.eye(4)
    inv[:3, :3] = pose[:3, :3].T
    inv[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return inv


def rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a 3x3 rotation."""
    return _rotation(rot).as_rotvec()


def rot_from_rotvec(vec: np.ndarray) -> np.ndarray:
    """3x3 rotation of an axis-angle vector."""
    return Rotation.from_rotvec(np.asarray(vec, dtype=float)).as_matrix()


def rot_z(angle: float) -> np.ndarray:
    """Rotation about the world z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def transform_relative(pose_src: np.ndarray, ref_src: np.ndarray, ref_new: np.ndarray) -> np.ndarray:
    """Object-centric transform: keep ``pose_src``'s pose relative to its reference object.

    T_W^{A'} = T_W^{R'} (T_W^{R})^{-1} T_W^{A}  (ReinforceGen Sec. III-B).
    Works on one pose (4x4) or a stack (N, 4, 4).
    """
    return ref_new @ pose_inv(ref_src) @ pose_src


def rotation_angle(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Geodesic angle in radians between two rotations."""
    cos = (np.trace(rot_a.T @ rot_b) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_distance(pose_a: np.ndarray, pose_b: np.ndarray) -> float:
    """Pose distance used to decide replanning (ReinforceGen eq. 5-7).

    Euclidean position distance plus the quaternion angle normalised to [0, 1]
    (the angle between the rotations divided by pi).
    """
    d_pos = float(np.linalg.norm(pose_a[:3, 3] - pose_b[:3, 3]))
    d_rot = rotation_angle(pose_a[:3, :3], pose_b[:3, :3]) / np.pi
    return d_pos + d_rot


def delta_pose_action(
    current: np.ndarray,
    target: np.ndarray,
    max_pos: float = 0.05,
    max_rot: float = 0.5,
    speed: float = 1.0,
) -> np.ndarray:
    """Normalised 6-D delta-pose action (OSC_POSE, world frame) moving ``current`` toward ``target``.

    ``max_pos``/``max_rot`` are the controller's output limits per step; ``speed``
    caps the normalised magnitude (1.0 = full controller range).
    """
    dpos = (target[:3, 3] - current[:3, 3]) / max_pos
    drot = rotvec(target[:3, :3] @ current[:3, :3].T) / max_rot
    return np.concatenate([_clip_norm(dpos, speed), _clip_norm(drot, speed)])


def _clip_norm(vec: np.ndarray, limit: float) -> np.ndarray:
    """Scale ``vec`` down so that its largest component is at most ``limit``."""
    peak = float(np.max(np.abs(vec))) if vec.size else 0.0
    return vec * (limit / peak) if peak > limit else vec
