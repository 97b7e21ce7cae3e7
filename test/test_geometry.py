"""SE(3) helpers: object-centric transform, pose distance, delta-pose actions."""

import numpy as np

from reinforcegen_ros.geometry import (
    delta_pose_action,
    make_pose,
    mat_to_quat,
    pose_distance,
    pose_from_pos_quat,
    pose_inv,
    pose_to_pos_quat,
    rot_from_rotvec,
    rot_z,
    transform_relative,
)


def random_pose(rng):
    return make_pose(rng.normal(size=3), rot_from_rotvec(rng.normal(size=3)))


def test_pose_roundtrip_and_inverse():
    rng = np.random.default_rng(0)
    pose = random_pose(rng)
    pos, quat = pose_to_pos_quat(pose)
    assert np.allclose(pose_from_pos_quat(pos, quat), pose)
    assert np.allclose(pose @ pose_inv(pose), np.eye(4))
    assert mat_to_quat(pose[:3, :3])[3] >= 0


def test_transform_relative_keeps_pose_in_reference_frame():
    rng = np.random.default_rng(1)
    ref_src, ref_new, eef = random_pose(rng), random_pose(rng), random_pose(rng)
    moved = transform_relative(eef, ref_src, ref_new)
    assert np.allclose(pose_inv(ref_new) @ moved, pose_inv(ref_src) @ eef)
    stack = transform_relative(np.stack([eef, eef]), ref_src, ref_new)
    assert np.allclose(stack[1], moved)


def test_pose_distance_terms():
    a = np.eye(4)
    b = make_pose([0.03, 0.04, 0.0], np.eye(3))
    assert np.isclose(pose_distance(a, b), 0.05)
    c = make_pose([0, 0, 0], rot_z(np.pi / 2))
    assert np.isclose(pose_distance(a, c), 0.5)
    assert pose_distance(a, a) == 0.0


def test_delta_pose_action_points_to_target_and_is_bounded():
    cur = np.eye(4)
    tgt = make_pose([0.2, -0.01, 0.0], rot_z(0.1))
    act = delta_pose_action(cur, tgt)
    assert np.isclose(np.max(np.abs(act[:3])), 1.0) and act[0] > 0 and act[1] < 0
    assert act[5] > 0 and np.all(np.abs(act) <= 1.0)
    small = delta_pose_action(cur, make_pose([0.01, 0, 0], np.eye(3)))
    assert np.isclose(small[0], 0.2)


def test_rotation_conversions_equal_scipy_from_matrix():
    """mat_to_quat / rotvec skip scipy's validity check only where it would pass: scipy's own results throughout."""
    import pytest
    from scipy.spatial.transform import Rotation

    from reinforcegen_ros.geometry import rotvec

    rng = np.random.default_rng(1)
    mats = Rotation.random(200, random_state=2).as_matrix()
    bent = mats[:6].copy()
    bent[:, 0, 0] += np.array([1e-14, 5e-13, 2e-12, 1e-11, 1e-6, 1e-3])  # both sides of scipy's 1e-12 Gram test
    for rot in [*mats[:50], *bent, mats, bent, rng.normal(size=(3, 3)) + 3 * np.eye(3)]:
        expected = Rotation.from_matrix(rot)
        q = expected.as_quat()
        np.testing.assert_array_equal(mat_to_quat(rot), np.where(q[..., 3:] < 0, -q, q))
        np.testing.assert_array_equal(rotvec(rot), expected.as_rotvec())
    with pytest.raises(ValueError):
        mat_to_quat(np.diag([1.0, 1.0, -1.0]))  # left-handed, refused as scipy refuses it


def test_quat_and_rotvec_of_a_stack_equal_one_conversion_each():
    from scipy.spatial.transform import Rotation

    from reinforcegen_ros.geometry import mat_to_quat_rotvec, rotvec

    mats = Rotation.random(20, random_state=5).as_matrix()
    quats, vecs = mat_to_quat_rotvec(mats)
    for rot, q, v in zip(mats, quats, vecs):
        np.testing.assert_array_equal(q, mat_to_quat(rot))
        np.testing.assert_array_equal(v, rotvec(rot))
