"""Ground-truth stage terminations: the last stage is task success, placing stages end on release."""

from __future__ import annotations

import numpy as np
import pytest

from reinforcegen_ros.tasks import TASKS
from reinforcegen_ros.tasks.environment import TaskEnv

# task -> (placing stage, predicate that must hold besides the release, object that must be let go)
PLACING = {
    "three_piece_assembly": (1, "is_seated", "piece_1"),
    "nut_assembly": (1, "nut_on_peg", "square_nut"),
    "coffee_preparation": (1, "mug_on_tray", "mug"),
}


@pytest.fixture(scope="module", params=sorted(TASKS))
def env(request):
    env = TaskEnv(request.param)
    env.reset(seed=0)
    yield env
    env.close()


@pytest.mark.parametrize("solved", [True, False])
def test_last_stage_terminates_exactly_when_the_task_succeeds(env, solved, monkeypatch):
    monkeypatch.setattr(env.env, "_check_success", lambda: solved)
    assert env.stage_done(len(env.stages) - 1) is solved
    assert env.success() is solved
    with pytest.raises(IndexError):
        env.stage_done(len(env.stages))


def test_placing_stage_ends_only_once_the_hand_has_withdrawn(env, monkeypatch):
    if env.task not in PLACING:
        pytest.skip(f"{env.task} has no placing stage before its last")
    stage, placed, name = PLACING[env.task]
    monkeypatch.setattr(env.env, placed, lambda *args: True)
    away = {"now": False}
    monkeypatch.setattr(env.env, "withdrawn", lambda obj, clearance=None: away["now"] or obj != name)
    assert not env.stage_done(stage)  # placed, but the hand still at it: the next connect would carry it or start wedged
    away["now"] = True
    assert env.stage_done(stage)


def test_withdrawn_measures_the_gap_between_gripper_and_object(env):
    """In the initial scene the hand is far from every object; with a clearance larger than that gap it is not."""
    name = env.stages[0].reference_object
    gap = float(np.linalg.norm(env.eef_pose()[:3, 3] - env.object_poses()[name][:3, 3]))
    assert env.env.withdrawn(name)
    assert not env.env.withdrawn(name, clearance=gap + 0.1)


def test_reference_frame_takes_its_orientation_from_the_orientation_object():
    """The pod in the drawer: its position, the drawer's orientation (the pod's own yaw is meaningless)."""
    from reinforcegen_ros.geometry import make_pose, rot_z
    from reinforcegen_ros.tasks.base import Stage

    pod, drawer = make_pose(np.array([0.1, 0.2, 0.9]), rot_z(1.3)), make_pose(np.array([0.0, 0.3, 0.85]), rot_z(-0.4))
    plain, fixed = Stage("grasp_pod", "pod", ""), Stage("grasp_pod", "pod", "", orientation_object="drawer")
    assert np.allclose(plain.reference_frame({"pod": pod, "drawer": drawer}), pod)
    frame = fixed.reference_frame({"pod": pod, "drawer": drawer})
    assert np.allclose(frame[:3, 3], pod[:3, 3]) and np.allclose(frame[:3, :3], drawer[:3, :3])


PADS = ("left_fingerpad", "right_fingerpad")


@pytest.fixture(scope="module", params=sorted(TASKS))
def scripted(request):
    """A task environment and the states of its first successful scripted demo (seeds 0, 1, 2)."""
    from reinforcegen_ros.demos.collect import CollectReport, make_demonstrator, scripted_attempts

    env = TaskEnv(request.param)
    episode = next(scripted_attempts(env, make_demonstrator(env.task, env.config), range(3), CollectReport(env.task)), None)
    assert episode is not None, f"no scripted {env.task} demo succeeded on seeds 0-2"
    yield env, episode.states
    env.close()


def test_vectorised_contact_tests_equal_robosuites(scripted):
    """On every state of a scripted demo (and with the fingers then closed in place), grasp and pad contacts are robosuite's."""
    from robosuite.utils import sim_utils

    from reinforcegen_ros.tasks.contacts import touching

    env, states = scripted
    task, staged, sim = env.task, env.env, env.env.sim
    gripper = staged.robots[0].gripper["right"]
    objects = [name for name in env.objects if name in staged.mujoco_objects]
    masks = {name: staged.geom_masks().get(f"test:{name}", lambda: geoms) for name, geoms in (
        [(name, staged.mujoco_objects[name].contact_geoms) for name in objects] + [(pad, gripper.important_geoms[pad]) for pad in PADS])}
    seen = {True: 0, False: 0}
    for state in states:
        for squeeze in (False, True):
            env.set_state(state)
            if squeeze:
                env.close_gripper_in_place()
            for name in objects:
                grasped = staged._check_grasp(gripper=staged.robots[0].gripper, object_geoms=staged.mujoco_objects[name])
                assert staged.grasped(name) is grasped, (task, name)
                seen[grasped] += 1
                for pad in PADS:
                    assert touching(sim.data._data, masks[pad], masks[name]) is sim_utils.check_contact(
                        sim, gripper.important_geoms[pad], staged.mujoco_objects[name])
            for pad in PADS:
                assert touching(sim.data._data, masks[pad]) is sim_utils.check_contact(sim, gripper.important_geoms[pad])
    assert seen[True] > 10 and seen[False] > 10, seen


def withdrawn_every_pair(staged, name: str, clearance: float) -> bool:
    """The withdrawal test measuring every gripper/object geom pair, ids looked up by name."""
    import mujoco

    ids = [[staged.sim.model.geom_name2id(g) for g in model.contact_geoms]
           for model in (staged.robots[0].gripper["right"], staged.mujoco_objects[name])]
    model, data = staged.sim.model._model, staged.sim.data._data
    return all(mujoco.mj_geomDistance(model, data, g, o, clearance, None) >= clearance for g in ids[0] for o in ids[1])


def test_withdrawn_on_masked_geom_ids_equals_looking_them_up_by_name(scripted):
    """On every state of a scripted demo, touching, at the release clearance and a wider one: withdrawn and hugging
    states (``withdrawn`` skips pairs whose bounding spheres are clearly apart; measuring every pair agrees)."""
    env, states = scripted
    task, staged = env.task, env.env
    objects = [name for name in env.objects if name in staged.mujoco_objects]
    seen = {True: 0, False: 0}
    for state in states:
        env.set_state(state)
        for name in objects:
            for clearance in (0.0, staged.RELEASE_CLEARANCE, 0.1):
                away = withdrawn_every_pair(staged, name, clearance)
                assert staged.withdrawn(name, clearance) is away, (task, name, clearance)
                seen[away] += 1
    assert seen[True] > 10 and seen[False] > 10, seen
