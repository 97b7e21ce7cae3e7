"""The robosuite bridge core on a real Coffee TaskEnv: frames, commands, holds and joint trajectories."""

import numpy as np
import pytest

from reinforcegen_ros.deployment.bridge import BridgeConfig, RobosuiteBridge
from reinforcegen_ros.deployment.guards import CommandGuard, GuardConfig
from reinforcegen_ros.deployment.observation import SensorCache, pose_parts
from reinforcegen_ros.messages import ARM_JOINT_NAMES


@pytest.fixture(scope="module")
def bridge():
    return RobosuiteBridge("coffee", BridgeConfig(seed=3), CommandGuard(GuardConfig()))


def test_frame_carries_what_the_nodes_publish_and_matches_the_training_observation(bridge):
    before = bridge.frame.stamp_ns
    frame = bridge.reset(3)
    assert frame.stamp_ns == before + 5 * 10**7 and frame.step == 0 and frame.source == "hold"  # the clock never goes back
    assert frame.joint_pos.shape == (7,) and frame.gripper_qpos.shape == (2,)
    assert {"panda_link0", "panda_link7", "panda_hand", "panda_grip_site", "pod", "coffee_machine"} <= set(frame.tf)
    assert len(frame.stage_done) == 2 and frame.sim_state.ndim == 1 and not frame.success
    cache = SensorCache(objects=bridge.env.objects)
    cache.put_joints(frame.stamp_ns, frame.joint_pos, frame.gripper_qpos)
    cache.put_eef(frame.stamp_ns, *pose_parts(frame.eef_pose), "world")
    cache.put_objects(frame.stamp_ns, {n: pose_parts(p) for n, p in frame.object_poses.items()}, "world")
    obs, stamp, why = cache.observation(frame.stamp_ns, 0.25)
    truth = bridge.env.observe()
    assert why.ok and stamp == frame.stamp_ns
    for key in ("robot0_eef_pos", "robot0_eef_axis_angle", "robot0_gripper_qpos", "robot0_joint_pos", "object"):
        assert np.allclose(obs[key], truth[key], atol=1e-9), key
    assert np.allclose(np.abs(obs["robot0_eef_quat"] @ truth["robot0_eef_quat"]), 1.0)


def test_a_command_is_applied_once_then_the_robot_holds(bridge):
    frame = bridge.reset(3)
    z0 = frame.eef_pose[2, 3]
    assert bridge.on_command(frame.stamp_ns, [0, 0, 0.5, 0, 0, 0, -1]).ok
    frame = bridge.step()
    assert frame.source == "command" and frame.applied[2] == 0.5
    frame = bridge.step()
    assert frame.source == "hold" and frame.hold_reason == "no fresh command"
    for _ in range(3):
        frame = bridge.step()
    assert frame.eef_pose[2, 3] > z0 + 0.005  # it moved up, and stays


def test_bad_stale_and_out_of_order_commands_leave_the_robot_still(bridge):
    frame = bridge.reset(3)
    x0 = frame.eef_pose[:3, 3].copy()
    assert "NaN" in bridge.on_command(frame.stamp_ns, [np.nan] * 7).reason
    assert "far outside" in bridge.on_command(frame.stamp_ns, [9, 0, 0, 0, 0, 0, 0]).reason
    assert bridge.on_command(frame.stamp_ns, [0.2, 0, 0, 0, 0, 0, -1]).ok
    assert "duplicate" in bridge.on_command(frame.stamp_ns, [0.2, 0, 0, 0, 0, 0, -1]).reason
    assert "out-of-order" in bridge.on_command(frame.stamp_ns - 1, [0.2, 0, 0, 0, 0, 0, -1]).reason
    bridge.command = (frame.stamp_ns - 10**9, bridge.command[1])  # make it a second old
    frame = bridge.step()
    assert frame.source == "hold" and frame.hold_reason == "command is stale"
    for _ in range(3):
        frame = bridge.step()
    assert np.linalg.norm(frame.eef_pose[:3, 3] - x0) < 0.003
    low = CommandGuard(GuardConfig(workspace_min=[-0.6, -0.6, frame.eef_pose[2, 3] - 0.001]))
    strict = RobosuiteBridge.__new__(RobosuiteBridge)
    strict.__dict__.update(bridge.__dict__)
    strict.guard = low
    assert "outside the workspace box in z" in strict.on_command(frame.stamp_ns + 1, [0, 0, -1, 0, 0, 0, 0]).reason


def test_joint_trajectory_reaches_its_goal(bridge):
    frame = bridge.reset(3)
    q0 = frame.joint_pos
    goal = q0 + np.array([0.15, -0.1, 0.0, 0.1, 0.0, 0.1, 0.2])
    path = np.linspace(q0, goal, 20)[1:]
    names = list(reversed(ARM_JOINT_NAMES))  # any joint order
    assert bridge.start_trajectory(names, path[:, ::-1], np.arange(1, 20) * 0.05).ok
    assert "already executing" in bridge.start_trajectory(names, path[:, ::-1]).reason
    event = None
    for _ in range(200):
        frame = bridge.step()
        if frame.trajectory is not None:
            event = frame.trajectory
            break
        assert frame.source == "trajectory"
    assert event is not None and event.success, event
    # OSC tracks the grip site: the goal's grip-site pose is reached; the arm's null space is not controlled
    target = bridge.kin.forward(goal)
    assert np.linalg.norm(frame.eef_pose[:3, 3] - target[:3, 3]) < 0.006
    assert event.error.shape == (7,) and np.abs(event.error).max() < 0.3


def test_invalid_trajectories_are_rejected_and_cancel_holds(bridge):
    frame = bridge.reset(3)
    q = frame.joint_pos
    assert "lacks joints panda_joint7" in bridge.start_trajectory(ARM_JOINT_NAMES[:6], [q[:6]]).reason
    assert "NaN" in bridge.start_trajectory(ARM_JOINT_NAMES, [np.full(7, np.nan)]).reason
    assert "limits of panda_joint4" in bridge.start_trajectory(ARM_JOINT_NAMES, [np.where(np.arange(7) == 3, 1.0, q)]).reason
    assert "shape" in bridge.start_trajectory(ARM_JOINT_NAMES, np.zeros((0, 7))).reason
    assert bridge.start_trajectory(ARM_JOINT_NAMES, [q + 0.3]).ok
    bridge.step()
    event = bridge.cancel_trajectory()
    assert not event.success and event.reason == "canceled" and not bridge.executing
    assert bridge.step().source == "hold"


def test_lockstep_steps_on_an_answered_frame_or_after_the_timeout(bridge):
    bridge.reset(3)
    cfg = bridge.config
    bridge.step(wall_now=100.0)
    assert not bridge.ready(100.0 + cfg.min_step_period / 2)
    assert not bridge.ready(100.0 + cfg.min_step_period)  # no command yet
    assert bridge.ready(100.0 + cfg.step_timeout)  # give up waiting: a hold step
    bridge.on_command(bridge.frame.stamp_ns, np.zeros(7))
    assert bridge.ready(100.0 + cfg.min_step_period)


def test_cameras_are_rendered_every_image_every_steps():
    cam = RobosuiteBridge("coffee", BridgeConfig(cameras=["agentview"], image_size=32, image_every=2))
    frame = cam.reset(0)
    assert frame.images["agentview"].shape == (32, 32, 3) and frame.images["agentview"].dtype == np.uint8
    assert cam.step().images == {} and "agentview" in cam.step().images
    cache = SensorCache(cameras=("agentview",), need_objects=False)
    assert cache.put_image("agentview", frame.stamp_ns, frame.images["agentview"]).ok


def test_reset_scene_follows_the_seed_sequence_and_keeps_the_clock_running():
    b = RobosuiteBridge("coffee", BridgeConfig(seed=5))
    assert b.frame.stamp_ns == 10**9 and b.seed == 5
    b.step()
    moved = b.step()
    assert moved.stamp_ns == 10**9 + 2 * 5 * 10**7
    frame, check = b.reset_scene(-1)  # SEED_NEXT: the launch seed first ...
    assert check.ok and b.seed == 5 and frame.step == 0 and frame.stamp_ns == moved.stamp_ns + 5 * 10**7
    assert np.allclose(frame.sim_state, RobosuiteBridge("coffee", BridgeConfig(seed=5)).frame.sim_state)  # the seed's initial scene
    _, check = b.reset_scene(-1)  # ... then one more per reset
    assert check.ok and b.seed == 6
    frame, check = b.reset_scene(11)
    assert check.ok and b.seed == 11 and b.next_seed == 12
    other = RobosuiteBridge("coffee", BridgeConfig(seed=11)).frame
    assert np.allclose(frame.object_poses["pod"], other.object_poses["pod"])
    assert "seed must be >= 0" in b.reset_scene(-2)[1].reason and "not an integer" in b.reset_scene("x")[1].reason
    # a command answering a frame from before the reset is refused; one for the new frame is applied
    assert "before the scene reset" in b.on_command(moved.stamp_ns, [0, 0, 0.5, 0, 0, 0, -1]).reason
    assert b.on_command(frame.stamp_ns, [0, 0, 0.5, 0, 0, 0, -1]).ok and b.step().source == "command"
    b.close()
    assert b.closed and "released" in b.reset_scene(0)[1].reason


def test_a_hold_replaces_the_command_of_its_stamp(bridge):
    """The stale-command warning after an e-stop: the sequencer's hold had the stamp of the command it stops."""
    frame = bridge.reset(3)
    z0 = frame.eef_pose[2, 3]
    assert bridge.on_command(frame.stamp_ns, [0, 0, 1.0, 0, 0, 0, -1]).ok
    assert bridge.on_command(frame.stamp_ns, [0, 0, 0, 0, 0, 0, -1]).ok  # the e-stop hold: accepted, replaces it
    frame = bridge.step()
    assert frame.source == "command" and not np.any(frame.applied[:6])
    assert abs(frame.eef_pose[2, 3] - z0) < 0.002
    assert "out-of-order" in bridge.on_command(frame.stamp_ns - 5 * 10**7 - 1, [0, 0, 0, 0, 0, 0, -1]).reason  # only its own stamp
    assert bridge.on_command(frame.stamp_ns, [0, 0, 0.5, 0, 0, 0, -1]).ok
    assert "duplicate" in bridge.on_command(frame.stamp_ns, [0, 0, 0.5, 0, 0, 0, -1]).reason  # a motion is applied once
