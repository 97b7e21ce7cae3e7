"""reinforcegen_msgs definitions, rosbags type registration, CDR serialization and conversions."""

from __future__ import annotations

import array
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reinforcegen_ros import messages as M

OUR_TYPES = [
    M.T_STAGE_STATUS,
    M.T_EEF_COMMAND,
    M.T_OBJECT_POSES,
    M.T_DEMO_STEP,
    M.T_EPISODE_MARKER,
    "reinforcegen_msgs/action/ExecuteTask_Goal",
    "reinforcegen_msgs/action/ExecuteTask_Result",
    "reinforcegen_msgs/action/ExecuteTask_Feedback",
    "reinforcegen_msgs/action/ExecuteTask_FeedbackMessage",
    M.T_RESET_SCENE_REQUEST,
    M.T_RESET_SCENE_RESPONSE,
]


@pytest.fixture(scope="module")
def store():
    return M.make_typestore()


@pytest.fixture(scope="module")
def m(store):
    return M.MsgClasses.from_typestore(store)


def random_pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    pose[:3, 3] = rng.normal(size=3)
    return pose


def cdr_round_trip(store, msg, typename):
    raw = store.serialize_cdr(msg, typename)
    assert bytes(raw[:2]) in (b"\x00\x01", b"\x00\x00")  # CDR encapsulation header (LE / BE)
    return store.deserialize_cdr(raw, typename)


# ----------------------------------------------------------------------------- package files
def test_interface_package_lists_every_definition():
    cmake = (M.MSG_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/\w+\.(?:msg|srv|action))"', cmake))
    on_disk = {f"{p.parent.name}/{p.name}" for p in M.MSG_DIR.glob("*/*") if p.suffix in (".msg", ".srv", ".action")}
    assert listed == on_disk and len(on_disk) == 7
    pkg = ET.parse(M.MSG_DIR / "package.xml").getroot()
    assert pkg.get("format") == "3" and pkg.findtext("name") == "reinforcegen_msgs"
    assert pkg.findtext("member_of_group") == "rosidl_interface_packages"
    assert pkg.find("export").findtext("build_type") == "ament_cmake"
    deps = {d.text for d in pkg.findall("depend")}
    assert {"std_msgs", "geometry_msgs", "builtin_interfaces", "action_msgs"} <= deps


def test_types_are_registered(store):
    for name in OUR_TYPES:
        assert name in store.types
    assert store.types[M.T_STAGE_STATUS].PHASE_DONE == "done"
    assert tuple(getattr(store.types[M.T_STAGE_STATUS], f"PHASE_{p.upper()}") for p in M.STATUS_PHASES) == M.STATUS_PHASES
    assert store.types[M.T_EPISODE_MARKER].END == 1


def test_action_is_split_into_goal_result_feedback():
    defs = M.interface_definitions()
    assert "string task" in defs["reinforcegen_msgs/action/ExecuteTask_Goal"]
    assert "int64 seed -1" in defs["reinforcegen_msgs/action/ExecuteTask_Goal"]
    assert "int64 seed -1" in defs[M.T_RESET_SCENE_REQUEST] and "builtin_interfaces/Time stamp" in defs[M.T_RESET_SCENE_RESPONSE]
    assert "stages_completed" in defs["reinforcegen_msgs/action/ExecuteTask_Result"]
    assert "StageStatus status" in defs["reinforcegen_msgs/action/ExecuteTask_Feedback"]


def test_missing_interface_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="interface package not found"):
        M.interface_definitions(tmp_path)


# ----------------------------------------------------------------------------- CDR
def test_cdr_round_trip_of_our_messages(store, m):
    pose = random_pose(0)
    cmd = cdr_round_trip(store, M.action_to_msg(np.linspace(-1, 1, 7), 1_500_000_123, m), M.T_EEF_COMMAND)
    np.testing.assert_array_equal(M.action_from_msg(cmd), np.linspace(-1, 1, 7))
    assert M.stamp_from_msg(cmd.header.stamp) == 1_500_000_123 and cmd.header.frame_id == "world"

    status = M.stage_status_to_msg(7, 2, "insert", "plan", m, target_pose=pose, termination_probability=0.25, replan_count=3, failure_reason="x")
    back = M.stage_status_from_msg(cdr_round_trip(store, status, M.T_STAGE_STATUS))
    assert (back.stamp_ns, back.stage_index, back.stage_name, back.phase, back.replan_count, back.failure_reason) == (7, 2, "insert", "plan", 3, "x")
    assert back.termination_probability == 0.25
    np.testing.assert_allclose(back.target_pose, pose, atol=1e-12)

    objs = {"mug": random_pose(1), "pod": random_pose(2)}
    back_objs = M.object_poses_from_msg(cdr_round_trip(store, M.object_poses_to_msg(objs, 9, m), M.T_OBJECT_POSES))
    assert list(back_objs) == ["mug", "pod"]
    for k in objs:
        np.testing.assert_allclose(back_objs[k], objs[k], atol=1e-12)

    state = np.random.default_rng(0).normal(size=33)
    step = m.DemoStep(
        header=M.header_to_msg(5, m), episode_index=4, step=11, stage_index=1, phase=-1,
        state=m.float64s(state), stage_done=m.bools([True, False, True]), reward=0.5, initiation_pose=M.pose_to_msg(pose, m),
        obs_names=M.strings(["a", "b"]), obs_sizes=m.uint32s([1, 2]), obs=m.float64s([1.0, 2.0, 3.0]),
    )
    back_step = cdr_round_trip(store, step, M.T_DEMO_STEP)
    np.testing.assert_array_equal(back_step.state, state)
    assert back_step.state.dtype == np.float64
    assert back_step.stage_done.tolist() == [True, False, True] and back_step.phase == -1
    assert back_step.obs_names == ["a", "b"] and back_step.obs_sizes.tolist() == [1, 2]
    np.testing.assert_allclose(M.pose_from_msg(back_step.initiation_pose), pose, atol=1e-12)

    marker = m.EpisodeMarker(header=M.header_to_msg(0, m), event=1, episode_index=3, task="coffee",
                             stage_names=["grasp", "insert"], num_steps=10, success=True, attrs_json='{"seed": 1}')
    back_marker = cdr_round_trip(store, marker, M.T_EPISODE_MARKER)
    assert back_marker.stage_names == ["grasp", "insert"] and back_marker.success and back_marker.attrs_json == '{"seed": 1}'


def test_cdr_round_trip_of_the_action(store, m):
    goal_t = store.types[M.T_EXECUTE_TASK_GOAL]
    assert (goal_t.SEED_NEXT, goal_t.SEED_KEEP) == (M.SEED_NEXT, M.SEED_KEEP)
    goal = cdr_round_trip(store, M.execute_task_goal_to_msg(goal_t, "coffee", 60.0, seed=7), M.T_EXECUTE_TASK_GOAL)
    assert M.execute_task_goal_from_msg(goal) == M.ExecuteTaskGoalData("coffee", 60.0, 7)
    result_t = store.types[M.T_EXECUTE_TASK_RESULT]
    msg = M.execute_task_result_to_msg(result_t, False, "timeout", 2, 12.5, seed=7)
    result = cdr_round_trip(store, msg, M.T_EXECUTE_TASK_RESULT)
    assert (result.success, result.reason, result.stages_completed, result.duration, result.seed) == (False, "timeout", 2, 12.5, 7)
    fb_t = store.types["reinforcegen_msgs/action/ExecuteTask_FeedbackMessage"]
    uuid = store.types["unique_identifier_msgs/msg/UUID"](uuid=np.arange(16, dtype=np.uint8))
    feedback = store.types["reinforcegen_msgs/action/ExecuteTask_Feedback"](status=M.stage_status_to_msg(1, 0, "grasp", "skill", m))
    back = cdr_round_trip(store, fb_t(goal_id=uuid, feedback=feedback), "reinforcegen_msgs/action/ExecuteTask_FeedbackMessage")
    assert back.feedback.status.phase == "skill" and back.goal_id.uuid.tolist() == list(range(16))


def test_execute_task_goal_seed_and_limits_are_checked(store):
    goal_t = store.types[M.T_EXECUTE_TASK_GOAL]
    assert M.execute_task_goal_to_msg(goal_t, "coffee").seed == M.SEED_NEXT  # the default: the bridge's next scene
    assert M.execute_task_goal_from_msg(goal_t(task="coffee", time_limit=0.0, seed=M.SEED_KEEP)).seed == M.SEED_KEEP

    class OldGoal:  # a client built against the goal without a seed
        task, time_limit = "coffee", 5.0

    assert M.execute_task_goal_from_msg(OldGoal()).seed == M.SEED_NEXT
    with pytest.raises(ValueError, match="seed must be"):
        M.execute_task_goal_to_msg(goal_t, "coffee", seed=-3)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="time_limit"):
            M.execute_task_goal_to_msg(goal_t, "coffee", bad)


def test_reset_scene_service_round_trip(store, m):
    req_t, res_t = store.types[M.T_RESET_SCENE_REQUEST], store.types[M.T_RESET_SCENE_RESPONSE]
    assert req_t.SEED_NEXT == M.SEED_NEXT
    assert cdr_round_trip(store, req_t(seed=4), M.T_RESET_SCENE_REQUEST).seed == 4
    res = res_t(success=False, message="", seed=0, stamp=M.stamp_to_msg(0, m))
    res = M.reset_scene_response_to_msg(res, True, "", 4, 3_050_000_000, m)
    back = cdr_round_trip(store, res, M.T_RESET_SCENE_RESPONSE)
    assert back.success and back.seed == 4 and M.stamp_from_msg(back.stamp) == 3_050_000_000


def test_idle_and_reset_statuses(store, m):
    for phase in ("idle", "reset"):
        back = M.stage_status_from_msg(cdr_round_trip(store, M.stage_status_to_msg(5, -1, "", phase, m), M.T_STAGE_STATUS))
        assert back.phase == phase and back.stage_index == -1
    assert store.types[M.T_STAGE_STATUS].PHASE_IDLE == "idle" and store.types[M.T_STAGE_STATUS].PHASE_RESET == "reset"


def test_diagnostics_and_episode_markers(store, m):
    from reinforcegen_ros.deployment.sequencer import DiagnosticData

    diag = DiagnosticData(1, "reinforcegen: stage_sequencer", "slow", {"tick_rate_hz": "9.50", "answer_timeouts_in_window": "3"}, "coffee")
    arr = cdr_round_trip(store, M.diagnostics_to_msg([diag], 2_000_000_000, m), M.T_DIAGNOSTIC_ARRAY)
    st = arr.status[0]
    assert M.diagnostic_level(st.level) == 1 and st.name == diag.name and st.hardware_id == "coffee"
    assert {kv.key: kv.value for kv in st.values} == diag.values and M.stamp_from_msg(arr.header.stamp) == 2 * 10**9
    assert M.diagnostic_level(b"\x02") == 2  # rclpy's byte fields are bytes
    with pytest.raises(ValueError, match="level"):
        M.diagnostics_to_msg([DiagnosticData(7, "x", "", {})], 1, m)
    marker = M.episode_marker_to_msg(m, 1, 9, 3, "coffee", ["a", "b"], num_steps=12, success=True, attrs_json='{"seed": 2}')
    back = cdr_round_trip(store, marker, M.T_EPISODE_MARKER)
    assert (back.event, back.episode_index, back.num_steps, back.success, back.attrs_json) == (1, 3, 12, True, '{"seed": 2}')
    with pytest.raises(ValueError, match="START"):
        M.episode_marker_to_msg(m, 2, 9, 3, "coffee", [])


def test_standard_messages_round_trip(store, m):
    joints = np.arange(7) * 0.1
    grip = np.array([0.03, -0.02])
    msg = cdr_round_trip(store, M.joint_state_to_msg(joints, grip, 3, m), M.T_JOINT_STATE)
    assert msg.name[-2:] == list(M.FINGER_JOINT_NAMES)
    np.testing.assert_array_equal(msg.position[-2:], [0.03, 0.02])  # ROS convention: both fingers positive
    arm, fingers = M.joint_state_from_msg(msg)
    np.testing.assert_array_equal(arm, joints)
    np.testing.assert_array_equal(fingers, grip)

    img = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    back = M.image_from_msg(cdr_round_trip(store, M.image_to_msg(img, 4, m, "agentview"), M.T_IMAGE))
    np.testing.assert_array_equal(back, img)

    pose = random_pose(3)
    ps = cdr_round_trip(store, M.pose_stamped_to_msg(pose, 8, m), M.T_POSE_STAMPED)
    np.testing.assert_allclose(M.pose_from_msg(ps.pose), pose, atol=1e-12)


# ----------------------------------------------------------------------------- conversions
def test_quaternion_order_is_xyzw(m):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    msg = M.pose_to_msg(pose, m)
    q = msg.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    pos, quat = M.pos_quat_from_msg(M.pos_quat_to_msg([1, 2, 3], [0, 0, 0, 1], m))
    np.testing.assert_array_equal(pos, [1, 2, 3])
    np.testing.assert_array_equal(quat, [0, 0, 0, 1])


def test_joint_state_by_name_and_missing_fingers(m):
    msg = M.joint_state_to_msg(np.arange(7.0), None, 0, m)
    assert M.joint_state_from_msg(msg)[1] is None
    # a driver may publish joints in another order and with extra joints
    names = ["extra", *reversed(M.ARM_JOINT_NAMES), *M.FINGER_JOINT_NAMES]
    pos = np.array([9.0, *reversed(np.arange(7.0)), 0.04, 0.01])
    msg = m.JointState(header=M.header_to_msg(0, m, ""), name=names, position=pos, velocity=np.zeros(0), effort=np.zeros(0))
    arm, fingers = M.joint_state_from_msg(msg)
    np.testing.assert_array_equal(arm, np.arange(7.0))
    np.testing.assert_array_equal(fingers, [0.04, -0.01])


def test_bgr8_images_are_converted(m):
    img = np.random.default_rng(1).integers(0, 256, (4, 3, 3), dtype=np.uint8)
    msg = M.image_to_msg(img, 0, m)
    msg.encoding = "bgr8"
    np.testing.assert_array_equal(M.image_from_msg(msg), img[..., ::-1])
    msg.encoding = "mono16"
    with pytest.raises(ValueError, match="unsupported image encoding"):
        M.image_from_msg(msg)
    with pytest.raises(ValueError, match="uint8"):
        M.image_to_msg(img.astype(np.float32), 0, m)


def test_rclpy_style_sequences_are_read(store):
    """The rclpy path: sequences as array.array/lists, read by the same functions."""
    rm = M.MsgClasses.from_ros(lambda name: store.types[name])
    msg = M.joint_state_to_msg(np.arange(7.0), np.array([0.01, -0.01]), 0, rm)
    assert isinstance(msg.position, array.array) and msg.position.typecode == "d"
    arm, fingers = M.joint_state_from_msg(msg)
    np.testing.assert_array_equal(arm, np.arange(7.0))
    np.testing.assert_array_equal(fingers, [0.01, -0.01])
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    img_msg = M.image_to_msg(img, 0, rm)
    assert isinstance(img_msg.data, array.array)
    np.testing.assert_array_equal(M.image_from_msg(img_msg), img)
    assert rm.bools([1, 0]) == [True, False]


# ----------------------------------------------------------------------------- rejection
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(m, bad):
    pose = random_pose(4)
    pose[1, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        M.pose_to_msg(pose, m)
    action = np.zeros(7)
    action[6] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        M.action_to_msg(action, 0, m)
    with pytest.raises(ValueError, match="pose of 'mug'"):
        M.object_poses_to_msg({"ok": np.eye(4), "mug": pose}, 0, m)
    msg = M.action_to_msg(np.zeros(7), 0, m)
    msg.delta.angular.y = bad
    with pytest.raises(ValueError, match="EefCommand contains NaN"):
        M.action_from_msg(msg)
    pmsg = M.pose_to_msg(np.eye(4), m)
    pmsg.orientation.w = bad
    with pytest.raises(ValueError, match="quaternion contains NaN"):
        M.pose_from_msg(pmsg)
    with pytest.raises(ValueError, match="termination probability"):
        M.stage_status_to_msg(0, 0, "s", "skill", m, termination_probability=bad)


def test_malformed_inputs_are_rejected(m):
    with pytest.raises(ValueError, match="7 values"):
        M.action_to_msg(np.zeros(6), 0, m)
    with pytest.raises(ValueError, match="4x4"):
        M.pose_to_msg(np.eye(3), m)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ValueError, match="not a rigid transform"):
        M.pose_to_msg(sheared, m)
    with pytest.raises(ValueError, match="unit norm"):
        M.pos_quat_to_msg(np.zeros(3), [0, 0, 0, 2], m)
    zero = M.pos_quat_to_msg(np.zeros(3), [0, 0, 0, 1], m)
    zero.orientation.w = 0.0
    with pytest.raises(ValueError, match="quaternion is zero"):
        M.pose_from_msg(zero)
    with pytest.raises(ValueError, match="unknown phase"):
        M.stage_status_to_msg(0, 0, "s", "wander", m)
    with pytest.raises(ValueError, match="arm joint positions"):
        M.joint_state_to_msg(np.zeros(6), None, 0, m)
    with pytest.raises(ValueError, match="non-negative"):
        M.header_to_msg(-1, m)
