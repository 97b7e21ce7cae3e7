"""Connect-segment planning in a real task scene (Coffee): kinematics, collision checks, OMPL, execution."""

from __future__ import annotations

import numpy as np
import pytest

from reinforcegen_ros.geometry import make_pose, rot_z, rotation_angle
from reinforcegen_ros.planning.base import PlanningFailed, Trajectory, TrajectoryFollower
from reinforcegen_ros.planning.collision import CollisionChecker
from reinforcegen_ros.planning.ompl_planner import OMPLPlanner, planning_config
from reinforcegen_ros.planning.straight_line import StraightLinePlanner
from reinforcegen_ros.tasks.environment import TaskEnv

SEED = 1  # a Coffee scene where the pod and the machine leave room on both sides of the machine
TABLE_TOP = 0.8


@pytest.fixture(scope="module")
def env():
    env = TaskEnv("coffee")
    yield env
    env.close()


@pytest.fixture(scope="module")
def planner(env):
    return OMPLPlanner(env)


@pytest.fixture()
def scene(env, planner):
    """Fresh scene; returns the grip-site home pose."""
    env.reset(SEED)
    return env.eef_pose()


def down(home: np.ndarray, yaw: float = 0.0) -> np.ndarray:
    """The home (pointing-down) grip orientation turned by ``yaw`` about world z."""
    return rot_z(yaw) @ home[:3, :3]


def across_machine(env, home: np.ndarray, side: float) -> np.ndarray:
    """A low pose beside the coffee machine, on the pod's side (side=-1) or the far side (+1)."""
    machine, pod = env.object_poses()["coffee_machine"][:3, 3], env.object_poses()["pod"][:3, 3]
    d = machine[:2] - pod[:2]
    d /= np.linalg.norm(d)
    return make_pose([*(machine[:2] + side * 0.17 * d), 0.86], down(home))


def assert_valid_trajectory(traj, target, planner, env):
    """Joint waypoints within limits and collision free (fresh checker), spacing bounded, exact target last."""
    cfg = planner.config
    checker = CollisionChecker(env, margin=cfg["collision"]["margin"])
    assert traj.joints is not None and len(traj.joints) == len(traj.poses) >= 1
    assert np.all(traj.joints >= planner.kin.lower - 1e-9) and np.all(traj.joints <= planner.kin.upper + 1e-9)
    hits = [(k, checker.contacts(q)) for k, q in enumerate(traj.joints)]
    assert not [h for h in hits if h[1]], f"colliding waypoints: {[h for h in hits if h[1]][:3]}"
    np.testing.assert_allclose(traj.poses[-1], target, atol=1e-9)
    fk_last = planner.kin.forward(traj.joints[-1])
    assert np.linalg.norm(fk_last[:3, 3] - target[:3, 3]) < 2e-3
    for a, b in zip(traj.poses[:-2], traj.poses[1:-1]):
        assert np.linalg.norm(b[:3, 3] - a[:3, 3]) <= cfg["max_step"] + 1e-6
        assert rotation_angle(a[:3, :3], b[:3, :3]) <= cfg["max_rot_step"] + 1e-6


def test_config_defaults_and_overrides():
    cfg = planning_config({"time_limit": 0.5, "ik": {"seeds": 3}})
    assert cfg["time_limit"] == 0.5 and cfg["ik"]["seeds"] == 3
    assert cfg["ik"]["iters"] == planning_config()["ik"]["iters"]  # nested keys merged, not replaced
    assert cfg["planner"] == "RRTConnect"


def test_fk_ik_round_trip(env, planner, scene):
    rng = np.random.default_rng(0)
    kin = planner.kin
    home_q = kin.current_joints()
    for _ in range(5):
        q = np.clip(home_q + rng.normal(0.0, 0.2, 7), kin.lower, kin.upper)
        pose = kin.forward(q)
        sol = kin.inverse(pose, home_q, iters=300, tol=1e-4)
        assert sol is not None
        back = kin.forward(sol)
        assert np.linalg.norm(back[:3, 3] - pose[:3, 3]) < 1e-3
        assert rotation_angle(back[:3, :3], pose[:3, :3]) < 1e-2


def test_collision_checker_reports_and_ignores(env, planner, scene):
    checker = CollisionChecker(env)
    kin = planner.kin
    home_q = kin.current_joints()
    assert not checker.contacts(home_q)  # home is free
    # put the left finger pad (not the grip site between the open fingers) at the pod's centre
    site = checker.set_joints(home_q)
    pad = checker._geom_id("gripper0_right_finger1_pad_collision")
    pad_in_site = site[:3, :3].T @ (checker.data.geom_xpos[pad] - site[:3, 3])
    pod = env.object_poses()["pod"][:3, 3]
    q_in = kin.inverse(make_pose(pod - site[:3, :3] @ pad_in_site, site[:3, :3]), home_q, iters=300)
    assert q_in is not None
    pairs = {frozenset((c.geom1, c.geom2)) for c in checker.contacts(q_in)}
    assert any("gripper0_right_finger1_pad_collision" in p and any(n.startswith("pod") for n in p) for p in pairs), pairs
    relaxed = CollisionChecker(env, ignore=[("gripper", "pod")])
    assert not any(n.startswith("pod") for c in relaxed.contacts(q_in) for n in (c.geom1, c.geom2))
    assert checker.in_collision(q_in) and not checker.in_collision(q_in, checker.pair_mask([("gripper", "pod")]))


def test_attached_object_follows_grip_site(env, planner, scene):
    checker = CollisionChecker(env, attach_held=False)
    assert checker.held_bodies() == []  # nothing is held at reset
    checker.attach(env.env.mujoco_objects["pod"].root_body)
    q = planner.kin.current_joints() + np.array([0.3, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    site = checker.set_joints(q)
    body = checker._body_id(env.env.mujoco_objects["pod"].root_body)
    expected = site @ checker.attached[next(iter(checker.attached))]
    np.testing.assert_allclose(checker.data.xpos[body], expected[:3, 3], atol=1e-9)


def test_reachable_target_direct(env, planner, scene):
    pod = env.object_poses()["pod"]
    target = make_pose(pod[:3, 3] + [0.0, 0.0, 0.08], down(scene, 0.4))
    traj = planner.plan(planner.kin.current_joints(), target, touch=("pod",))
    assert planner.last_info["method"] == "direct"
    assert_valid_trajectory(traj, target, planner, env)


def test_target_behind_machine_needs_sampling(env, planner, scene):
    start = planner.kin.inverse(across_machine(env, scene, -1.0), planner.kin.current_joints(), iters=300)
    assert start is not None
    target = across_machine(env, scene, +1.0)
    traj = planner.plan(start, target)
    assert planner.last_info["method"] == "RRTConnect"  # the straight joint segment was rejected
    assert_valid_trajectory(traj, target, planner, env)


@pytest.mark.parametrize("where", ["table", "machine"])
def test_target_in_collision_fails(env, planner, scene, where):
    if where == "table":
        pod = env.object_poses()["pod"][:3, 3]
        pos = [pod[0] + 0.1, pod[1], TABLE_TOP - 0.03]
    else:
        pos = env.object_poses()["coffee_machine"][:3, 3] + [0.0, 0.0, -0.015]  # inside the machine's head
    with pytest.raises(PlanningFailed, match="collision"):
        planner.plan(planner.kin.current_joints(), make_pose(pos, down(scene)))


def test_unreachable_target_fails(env, planner, scene):
    far = make_pose(scene[:3, 3] + [2.0, 0.0, 0.0], scene[:3, :3])
    with pytest.raises(PlanningFailed, match="unreachable: .* reaches at most"):
        planner.plan(planner.kin.current_joints(), far)
    # within the reach bound but still out of reach pointing down: IK fails from every seed
    high = make_pose(planner.shoulder + [0.0, 0.0, 0.95 * planner.reach], down(scene))
    with pytest.raises(PlanningFailed, match="unreachable: no IK solution"):
        planner.plan(planner.kin.current_joints(), high)


@pytest.mark.parametrize("bad", ["nan", "shape", "rotation"])
def test_malformed_target_fails(env, planner, scene, bad):
    target = scene.copy()
    if bad == "nan":
        target[0, 3] = np.nan
    elif bad == "shape":
        target = target[:3]
    else:
        target[:3, :3] *= 2.0
    with pytest.raises(PlanningFailed):
        planner.plan(planner.kin.current_joints(), target)


def test_straight_line_spacing(env, planner, scene):
    sl = StraightLinePlanner(planner.kin.forward, max_step=0.02, max_rot_step=0.15)
    target = make_pose(scene[:3, 3] + [0.15, -0.2, -0.1], down(scene, 1.0))
    traj = sl.plan(planner.kin.current_joints(), target)
    poses = np.concatenate([scene[None], traj.poses])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    angles = [rotation_angle(a[:3, :3], b[:3, :3]) for a, b in zip(poses[:-1], poses[1:])]
    assert np.all(steps <= 0.02 + 1e-9) and max(angles) <= 0.15 + 1e-9
    assert len(traj) == int(np.ceil(max(np.linalg.norm(target[:3, 3] - scene[:3, 3]) / 0.02, 1.0 / 0.15)))
    np.testing.assert_allclose(traj.poses[-1], target, atol=1e-9)


def test_execute_sampled_trajectory(env, planner, scene):
    """Reach the pod-side pose, then follow an RRTConnect trajectory around the machine with env.step."""
    for side, max_steps in ((-1.0, 150), (+1.0, 700)):
        target = across_machine(env, scene, side)
        traj = planner.plan(planner.kin.current_joints(), target)
        follower = TrajectoryFollower(traj)
        for _ in range(max_steps):
            eef = env.eef_pose()
            if follower.done(eef):
                break
            env.step(np.concatenate([follower.action(eef), [-1.0]]))
        assert np.linalg.norm(env.eef_pose()[:3, 3] - target[:3, 3]) < 0.01, f"side {side}: not reached in {max_steps} steps"
    assert planner.last_info["method"] == "RRTConnect"


def run_follower(env, traj, max_steps: int, gripper: float = -1.0) -> None:
    follower = TrajectoryFollower(traj)
    for _ in range(max_steps):
        eef = env.eef_pose()
        if follower.done(eef):
            return
        env.step(np.concatenate([follower.action(eef), [gripper]]))


def test_grasped_object_is_attached(env, planner, scene):
    """Approach the pod (touching it is allowed near the target), grasp it, then plan with it attached."""
    pod = env.object_poses()["pod"][:3, 3]
    kin = planner.kin
    above = make_pose(pod + [0.0, 0.0, 0.08], down(scene))
    run_follower(env, planner.plan(kin.current_joints(), above), 150)
    grasp = make_pose(pod + [0.0, 0.0, 0.005], down(scene))
    run_follower(env, planner.plan(kin.current_joints(), grasp, touch=("pod",)), 150)
    for _ in range(15):
        env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    planner.checker.sync()
    pod_root = env.env.mujoco_objects["pod"].root_body
    assert planner.checker.attached_names() == [pod_root]
    # the held pod moves with the arm: pushing it into the table is a collision of the pod, not of the gripper
    eef = env.eef_pose()
    q_low = kin.inverse(make_pose(eef[:3, 3] + [0.0, 0.0, -0.015], eef[:3, :3]), kin.current_joints(), iters=300)
    pairs = [{c.geom1, c.geom2} for c in planner.checker.contacts(q_low)]
    assert any("table_collision" in p and any(n.startswith("pod") for n in p) for p in pairs), pairs
    # ... which a target may only have when the table is among the objects the plan may touch there
    pressed = make_pose(eef[:3, 3] + [0.0, 0.0, -0.015], eef[:3, :3])
    with pytest.raises(PlanningFailed, match="collision"):
        planner.plan(kin.current_joints(), pressed)
    traj = planner.plan(kin.current_joints(), pressed, touch=("table_collision",))
    np.testing.assert_allclose(traj.poses[-1], pressed, atol=1e-9)
    lift = make_pose(env.eef_pose()[:3, 3] + [0.0, 0.0, 0.12], down(scene))
    traj = planner.plan(kin.current_joints(), lift)
    assert planner.checker.attached_names() == [pod_root]  # plan() re-synced and kept the pod attached
    run_follower(env, traj, 200, gripper=1.0)
    assert env.object_poses()["pod"][2, 3] > pod[2] + 0.08  # the pod came along


def test_coarse_collision_checks_never_return_a_colliding_path(env, planner, scene):
    """With a very coarse check resolution, the waypoint verification (and its finer re-plans) still holds."""
    coarse = OMPLPlanner(env, {"check_resolution": 0.3})
    start = planner.kin.inverse(across_machine(env, scene, -1.0), planner.kin.current_joints(), iters=300)
    target = across_machine(env, scene, +1.0)
    try:
        traj = coarse.plan(start, target)
    except PlanningFailed as exc:
        assert "between collision checks" in str(exc)
    else:
        assert_valid_trajectory(traj, target, coarse, env)
        assert coarse.last_info["retries"] >= 1 or coarse.last_info["method"] != "direct"


def test_sampled_plans_are_reproducible_whatever_came_before(env, planner, scene):
    """Same query, same path: seeded from the query and bounded by collision checks, not wall-clock time."""
    start = planner.kin.inverse(across_machine(env, scene, -1.0), planner.kin.current_joints(), iters=300)
    target = across_machine(env, scene, +1.0)
    first = planner.plan(start, target)
    assert planner.last_info["method"] == "RRTConnect"
    checks = planner.last_info["checks"]
    planner.plan(planner.kin.current_joints(), make_pose(scene[:3, 3] + [0.0, 0.05, 0.0], scene[:3, :3]))  # other queries in between
    other = OMPLPlanner(env, {"max_checks": 10000})  # a fresh planner in the same process
    for again in (planner.plan(start, target), other.plan(start, target)):
        np.testing.assert_array_equal(again.joints, first.joints)
    assert planner.last_info["checks"] == checks


def test_sampling_stops_after_its_collision_check_budget(env, scene):
    tight = OMPLPlanner(env, {"max_checks": 5, "cartesian": False})
    start = tight.kin.inverse(across_machine(env, scene, -1.0), tight.kin.current_joints(), iters=300)
    with pytest.raises(PlanningFailed, match="within 5 collision checks"):
        tight.plan(start, across_machine(env, scene, +1.0))


def test_follower_does_not_skip_a_wrist_turn_in_place():
    """Waypoints that differ only in rotation are followed in order, not matched by position and skipped."""
    start = make_pose(np.array([0.5, 0.0, 1.0]), np.eye(3))
    # the long way round, the hand swinging 1 cm out and back: the last waypoint is the nearest by position
    angles = np.linspace(0.1, 5.0, 40)
    turn = np.stack([make_pose(start[:3, 3] + [0.01 * np.sin(np.pi * (i + 1) / 40), 0, 0], rot_z(a)) for i, a in enumerate(angles)])
    follower = TrajectoryFollower(Trajectory(poses=turn), lookahead=1)
    action = follower.action(start)
    assert follower.index <= 1
    assert action[5] > 0  # turning positive about z, toward the next waypoint, not the short way to the last one


def test_wrist_turns_offer_the_other_half_turn_within_limits(planner):
    kin = planner.kin
    q = np.array(kin.home, dtype=float) if hasattr(kin, "home") else (kin.lower + kin.upper) / 2
    q[-1] = 0.5
    turns = kin.wrist_turns(q)
    assert [round(t[-1], 4) for t in turns] == [0.5, round(0.5 - np.pi, 4)]  # +pi would pass the upper limit
    assert all(np.allclose(t[:-1], q[:-1]) for t in turns)
