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
