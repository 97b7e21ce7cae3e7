"""Deployment guards and sensor assembly: bad commands, poses, frames and stamps are refused with a reason."""

import numpy as np
import pytest

from reinforcegen_ros.deployment.config import load_deployment_config
from reinforcegen_ros.deployment.guards import (
    CommandGuard, GuardConfig, StampGate, check_fresh, check_matrix_pose, check_pose, hold_action,
)
from reinforcegen_ros.deployment.observation import SensorCache

EEF = np.array([0.0, 0.0, 1.0])
Q = np.array([0.0, 0.0, 0.0, 1.0])


def guard(**kw) -> CommandGuard:
    return CommandGuard(GuardConfig(**kw))


def test_small_excess_is_clipped_and_gripper_kept():
    out, check = guard().filter([1.2, -0.1, 0, 0, 0, 0, 1.3], EEF)
    assert check.ok and out[0] == 1.0 and out[6] == 1.0 and out[1] == -0.1


@pytest.mark.parametrize("bad, why", [
    ([np.nan, 0, 0, 0, 0, 0, 0], "NaN"),
    ([0, 0, np.inf, 0, 0, 0, 0], "NaN or inf"),
    ([5.0, 0, 0, 0, 0, 0, 0], "far outside"),
    ([0.0] * 6, "7 values"),
    ("go", "not numeric"),
])
def test_bad_commands_are_rejected_with_reason(bad, why):
    out, check = guard().filter(bad, EEF)
    assert out is None and not check.ok and why in check.reason


def test_velocity_limits_reject_or_scale():
    fast = [1.0, 1.0, 0, 0, 0, 0, -1]  # 1.41 m/s
    out, check = guard(max_linear_speed=0.5).filter(fast, EEF)
    assert out is None and "linear speed 1.41 m/s exceeds the limit 0.5" in check.reason
    out, check = guard(max_linear_speed=0.5, velocity_mode="scale").filter(fast, EEF)
    assert check.ok and "scaled" in check.reason
    assert np.linalg.norm(out[:3]) * 0.05 * 20 == pytest.approx(0.5)
    out, check = guard(max_angular_speed=1.0).filter([0, 0, 0, 0, 0, 0.5, 0], EEF)
    assert out is None and "angular speed" in check.reason
    with pytest.raises(ValueError, match="velocity_mode"):
        GuardConfig.from_dict({"velocity_mode": "fast"})


def test_workspace_box_refuses_leaving_and_allows_returning():
    g = guard(workspace_min=[-0.5, -0.5, 0.9], workspace_max=[0.5, 0.5, 1.5])
    out, check = g.filter([0, 0, -1, 0, 0, 0, 0], np.array([0.0, 0.0, 0.92]))
    assert out is None and "outside the workspace box in z" in check.reason
    assert g.filter([0, 0, 0.5, 0, 0, 0, 0], np.array([0.0, 0.0, 0.92]))[1].ok
    # already outside (below): moving back up is allowed, moving further down is not
    assert g.filter([0, 0, 0.5, 0, 0, 0, 0], np.array([0.0, 0.0, 0.85]))[1].ok
    assert not g.filter([0, 0, -0.5, 0, 0, 0, 0], np.array([0.0, 0.0, 0.85]))[1].ok
    assert not g.filter([0, 0, 0.5, 0, 0, 0, 0], np.array([np.nan, 0.0, 1.0]))[1].ok
    with pytest.raises(ValueError, match="min < max"):
        CommandGuard(GuardConfig(workspace_min=[0, 0, 2], workspace_max=[1, 1, 1]))


def test_hold_action_keeps_gripper():
    assert hold_action(1.0).tolist() == [0, 0, 0, 0, 0, 0, 1.0]
    assert hold_action(float("nan"))[6] == -1.0


def test_pose_checks():
    assert check_pose([0, 0, 1], Q, "world").ok
    assert "unknown frame 'map'" in check_pose([0, 0, 1], Q, "map").reason
    assert "NaN" in check_pose([np.nan, 0, 1], Q, "world").reason
    assert "norm" in check_pose([0, 0, 1], [0, 0, 0, 0], "world").reason
    assert check_matrix_pose(np.eye(4)).ok
    bad = np.eye(4)
    bad[0, 0] = 2
    assert "rigid" in check_matrix_pose(bad).reason
    assert "NaN" in check_matrix_pose(np.full((4, 4), np.nan)).reason
    assert "4x4" in check_matrix_pose(np.eye(3)).reason


def test_stamp_gate_and_freshness():
    gate = StampGate("joint state")
    assert gate.accept(100).ok and gate.accept(200).ok
    assert "out-of-order" in gate.accept(150).reason
    assert "duplicate" in gate.accept(200).reason
    assert "no stamp" in gate.accept(0).reason
    assert check_fresh(1_000_000_000, 1_200_000_000, 0.25).ok
    assert "stale" in check_fresh(1_000_000_000, 1_300_000_000, 0.25, "eef pose").reason
    assert "future" in check_fresh(2_000_000_000, 1_000_000_000, 0.25).reason


def test_sensor_cache_drops_bad_messages_and_reports_missing_or_stale_inputs():
    c = SensorCache(objects=("pod", "machine"), need_objects=True)
    obs, _, why = c.observation(10**9, 0.25)
    assert obs is None and "no joints" in why.reason
    assert c.put_joints(10**9, np.zeros(7), np.array([0.02, -0.02])).ok
    assert not c.put_joints(10**9 - 1, np.zeros(7), np.zeros(2)).ok  # out of order
    assert "NaN" in c.put_joints(2 * 10**9, np.full(7, np.nan), np.zeros(2)).reason
    assert "unknown frame" in c.put_eef(10**9, EEF, Q, "camera").reason
    assert c.put_eef(10**9, EEF, Q, "world").ok
    assert "lack machine" in c.put_objects(10**9, {"pod": (EEF, Q)}, "world").reason
    assert "NaN" in c.put_objects(10**9, {"pod": (EEF, Q), "machine": ([np.nan] * 3, Q)}, "world").reason
    assert c.put_objects(10**9, {"pod": (EEF, Q), "machine": (EEF, Q)}, "world").ok
    obs, stamp, why = c.observation(10**9 + 10**8, 0.25)
    assert why.ok and stamp == 10**9 and obs["object"].shape == (14,) and obs["robot0_joint_pos"].shape == (7,)
    assert set(obs) >= {"robot0_eef_pos", "robot0_eef_quat", "robot0_eef_axis_angle", "robot0_gripper_qpos"}
    obs, _, why = c.observation(2 * 10**9, 0.25)
    assert obs is None and "stale" in why.reason
    cam = SensorCache(cameras=("agentview",), need_objects=False)
    assert "uint8" in cam.put_image("agentview", 1, np.zeros((4, 4, 3))).reason


def test_deployment_config_merges_robot_files():
    from reinforcegen_ros.deployment.config import CONFIG_DIR
    from reinforcegen_ros.deployment.sequencer import SequencerConfig

    sim = load_deployment_config(robot_file=CONFIG_DIR / "sim.yaml")
    franka = load_deployment_config(robot_file=CONFIG_DIR / "franka.yaml")
    assert franka["guards"]["max_linear_speed"] < sim["guards"]["max_linear_speed"]
    assert franka["guards"]["workspace_min"] != sim["guards"]["workspace_min"]
    assert sim["guards"]["control_rate"] == franka["guards"]["control_rate"]  # untouched keys kept
    assert len(franka["robot"]["joint_names"]) == 7 and franka["robot"]["trajectory_action"].endswith("follow_joint_trajectory")
    for cfg in (sim, franka):
        GuardConfig.from_dict(cfg["guards"])
        SequencerConfig.from_dict(cfg["sequencer"])
    with pytest.raises(ValueError, match="unknown deployment config sections: gaurds"):
        load_deployment_config(overrides={"gaurds": {}})
    with pytest.raises(ValueError, match="unknown guards settings"):
        GuardConfig.from_dict({"max_speed": 1})


def test_dataclass_defaults_equal_deployment_yaml():
    """One source of defaults: every settings dataclass of the deployment layer equals its section of deployment.yaml."""
    import dataclasses

    from reinforcegen_ros.deployment.bridge import BridgeConfig
    from reinforcegen_ros.deployment.sequencer import SequencerConfig

    cfg = load_deployment_config()
    for cls, section in ((GuardConfig, "guards"), (SequencerConfig, "sequencer"), (BridgeConfig, "bridge")):
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in dataclasses.fields(cls)}
        assert defaults == cfg[section], section


def test_command_stamp_rule_of_a_robot_side():
    from reinforcegen_ros.deployment.guards import accept_command_stamp

    gate = StampGate("eef command")
    assert accept_command_stamp(gate, 100, [0.5, 0, 0, 0, 0, 0, 1]).ok
    assert "duplicate" in accept_command_stamp(gate, 100, [0.5, 0, 0, 0, 0, 0, 1]).reason  # a motion is applied once
    assert accept_command_stamp(gate, 100, hold_action(1.0)).ok  # a hold with that stamp replaces it
    assert "out-of-order" in accept_command_stamp(gate, 99, hold_action(1.0)).reason
