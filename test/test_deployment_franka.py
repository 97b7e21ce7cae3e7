"""The Franka adapter core on synthetic states and commands: delta-pose commands -> a smooth 1 kHz O_T_EE command."""

import numpy as np
import pytest

from reinforcegen_ros.deployment.config import CONFIG_DIR, load_deployment_config
from reinforcegen_ros.deployment.franka import (
    FrankaAdapterConfig, FrankaCartesianAdapter, from_column_major, pose_from_list, to_column_major,
)
from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.geometry import make_pose, rot_from_rotvec, rotvec

NS = 10**9
DOWN = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # gripper pointing down in the base frame
BASE = [-0.56, 0.0, 0.912, 0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]  # base turned 90 deg about z in the world


def adapter(**kw):
    franka = load_deployment_config(robot_file=CONFIG_DIR / "franka.yaml")
    cfg = FrankaAdapterConfig.from_config(franka)
    for k, v in kw.items():
        setattr(cfg, k, v)
    a = FrankaCartesianAdapter(BASE, CommandGuard(GuardConfig.from_dict(franka["guards"])), cfg)
    start = make_pose([0.0, -0.5, 0.3], DOWN)  # base frame; world (-0.06, 0.0, 1.212): inside franka.yaml's workspace box
    assert a.on_state(1, to_column_major(start)).ok
    return a, start


def run(a, commands, seconds, t0=NS):
    """Commands at 20 Hz (a list of 7-vectors, None = nothing sent), controller cycles at 1 kHz, perfect tracking."""
    poses, t = [], t0
    for i in range(int(seconds * 1000)):
        t = t0 + i * 10**6
        k = i // 50
        if i % 50 == 0 and k < len(commands) and commands[k] is not None:
            check, _ = a.on_command(t, commands[k])
            assert check.ok, check.reason
        pose = a.cycle(t)
        a.on_state(t, to_column_major(pose))
        poses.append(pose)
    return np.array(poses)


def test_frames_and_the_column_major_layout():
    pose = make_pose([0.1, 0.2, 0.3], rot_from_rotvec([0.1, -0.2, 0.3]))
    flat = to_column_major(pose)
    assert flat[12:15].tolist() == [0.1, 0.2, 0.3] and np.allclose(from_column_major(flat), pose)  # translation last
    a, start = adapter()
    world = a.eef_pose_world()
    assert np.allclose(world, pose_from_list(BASE) @ start)
    assert np.allclose(world[:3, 3], [-0.56 + 0.5, 0.0, 0.912 + 0.3])  # base y = -0.5 is world x = +0.5 after the turn
    with pytest.raises(ValueError, match="unit quaternion"):
        pose_from_list([0, 0, 0, 0, 0, 0, 0])
    assert not a.on_state(2, np.full(16, np.nan)).ok and not a.on_state(3, np.zeros(9)).ok


def test_a_stream_of_commands_moves_the_arm_in_the_world_frame_within_the_speed_and_acceleration_limits():
    a, start = adapter()
    cfg = a.config
    poses = run(a, [[0.2, 0, 0, 0, 0, 0, -1]] * 20, 1.2)  # +x in the world at 0.2 m/s for 1 s
    world = np.array([pose_from_list(BASE) @ p for p in poses])
    moved = world[-1, :3, 3] - world[0, :3, 3]
    assert moved[0] == pytest.approx(0.2, abs=0.02) and np.abs(moved[1:]).max() < 1e-6
    assert np.allclose(world[-1, :3, :3], world[0, :3, :3], atol=1e-9)  # orientation kept
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() <= cfg.max_linear_speed / 1000 + 1e-12
    accel = np.linalg.norm(np.diff(np.diff(poses[:, :3, 3], axis=0), axis=0), axis=1)
    assert accel.max() <= cfg.max_linear_acceleration / 1000**2 + 1e-12
    assert steps[-50:].max() < 1e-6  # commands stopped: decelerated and holding


def test_fast_commands_are_scaled_to_franka_speeds_and_rotations_turn_about_the_world_axis():
    a, start = adapter()
    poses = run(a, [[1.0, 0, 0, 0, 0, 0, -1]] * 10, 0.6)  # 1 m/s asked; franka.yaml scales to 0.25 m/s
    speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) * 1000
    assert speed.max() == pytest.approx(0.25, abs=1e-6)
    a, start = adapter()
    poses = run(a, [[0, 0, 0, 0, 0, 0.1, -1]] * 20, 1.2)  # 0.05 rad per command about world z: 1 rad/s, at the limit
    turn = rotvec(poses[-1, :3, :3] @ start[:3, :3].T)
    assert turn[2] == pytest.approx(1.0, abs=0.08) and np.abs(turn[:2]).max() < 1e-6  # base z = world z here
    assert np.allclose(poses[-1, :3, 3], start[:3, 3], atol=1e-9)


def test_stale_duplicate_and_refused_commands_and_a_hold_that_stops():
    a, start = adapter()
    assert "NaN" in a.on_command(NS, [np.nan] * 7)[0].reason
    assert a.on_command(NS, [0.2, 0, 0, 0, 0, 0, -1])[0].ok
    assert "duplicate" in a.on_command(NS, [0.2, 0, 0, 0, 0, 0, -1])[0].reason
    assert "out-of-order" in a.on_command(NS - 1, [0.2, 0, 0, 0, 0, 0, -1])[0].reason
    for i in range(20):
        a.on_state(NS + i * 10**6, to_column_major(a.cycle(NS + i * 10**6)))
    assert a.on_command(NS, [0, 0, 0, 0, 0, 0, -1])[0].ok  # the e-stop hold with the command's stamp: stop now
    before = a.commanded[:3, 3].copy()
    for i in range(20, 200):
        a.cycle(NS + i * 10**6)
    assert np.linalg.norm(a.commanded[:3, 3] - before) < 0.25 * 0.05  # stopped within the deceleration distance
    # a goal older than command_timeout is dropped: the arm holds
    b, start = adapter()
    b.on_command(NS, [0.2, 0, 0, 0, 0, 0, -1])
    far = NS + 10 * NS
    for i in range(100):
        b.cycle(far + i * 10**6)
    assert np.allclose(b.commanded, start, atol=1e-12)
    c, _ = adapter(max_linear_speed=10.0)
    c.guard = CommandGuard(GuardConfig(workspace_max=[-0.05, 0.45, 1.4], workspace_min=[-0.3, -0.45, 0.8]))  # eef at world x -0.06
    assert "outside the workspace box in x" in c.on_command(NS, [1.0, 0, 0, 0, 0, 0, -1])[0].reason
    assert "no robot state" in FrankaCartesianAdapter(BASE).on_command(NS, np.zeros(7))[0].reason


def test_gripper_requests_only_when_the_command_changes_sign():
    a, _ = adapter()
    kinds = [a.on_command(NS + k, [0, 0, 0, 0, 0, 0, g])[1] for k, g in enumerate([-1, -1, 1, 0.5, -0.2])]
    assert kinds[0].action == "move" and kinds[0].width == pytest.approx(0.08) and kinds[1] is None
    assert kinds[2].action == "grasp" and kinds[2].force == pytest.approx(40.0) and kinds[3] is None
    assert kinds[4].action == "move"
