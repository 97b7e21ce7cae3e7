"""Ground-truth stage terminations: the last stage is task success, placing stages end on release."""

from __future__ import annotations

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


def test_placing_stage_ends_only_once_the_object_is_released(env, monkeypatch):
    if env.task not in PLACING:
        pytest.skip(f"{env.task} has no placing stage before its last")
    stage, placed, name = PLACING[env.task]
    monkeypatch.setattr(env.env, placed, lambda *args: True)
    held = {"now": True}
    monkeypatch.setattr(env.env, "grasped", lambda obj: held["now"] and obj == name)
    assert not env.stage_done(stage)  # placed, but still in the hand: the next connect would carry it away
    held["now"] = False
    assert env.stage_done(stage)
