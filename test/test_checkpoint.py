"""training/checkpoint.py: tuple keys round trip, optimizer state restored exactly, a save killed midway keeps the last one."""

from __future__ import annotations

import pytest
import torch

from reinforcegen_ros.training.checkpoint import Checkpoint, key_label, keyed_from_json, keyed_to_json

KEYS = [(0, "pose"), (1, "term")]


def _step(modules, optimizers):
    for key, module in modules.items():
        loss = module(torch.ones(1, 3)).pow(2).sum()
        optimizers[key].zero_grad()
        loss.backward()
        optimizers[key].step()


def _run(seed: int = 0):
    torch.manual_seed(seed)
    modules = {key: torch.nn.Linear(3, 2) for key in KEYS}
    optimizers = {key: torch.optim.AdamW(m.parameters(), lr=0.1) for key, m in modules.items()}
    return modules, optimizers


def _model(modules):
    return {f"{key_label(k)}.{n}": v.detach().clone() for k, m in modules.items() for n, v in m.state_dict().items()}


def test_save_load_round_trip_with_tuple_keys(tmp_path):
    modules, optimizers = _run()
    _step(modules, optimizers)
    ckpt = Checkpoint(tmp_path, "test_format")
    best = {KEYS[1]: {"weight": torch.full((2, 3), 7.0)}}
    ckpt.save(1, _model(modules), optimizers, {"epoch": 1, "steps": keyed_to_json({KEYS[0]: 3})}, {"best": best})
    snap = ckpt.load()
    assert snap.meta["epoch"] == 1 and keyed_from_json(snap.meta["steps"]) == {(0, "pose"): 3}
    assert set(snap.optimizers) == set(KEYS) and torch.equal(snap.groups["best"][KEYS[1]]["weight"], best[KEYS[1]]["weight"])
    assert all(torch.equal(v, _model(modules)[k]) for k, v in snap.model.items())
    # restored optimizers continue exactly like the originals
    other, other_opt = _run(seed=1)
    for key in KEYS:
        other[key].load_state_dict(modules[key].state_dict())
    snap.restore_optimizers(other_opt)
    _step(modules, optimizers), _step(other, other_opt)
    assert all(torch.equal(a, b) for key in KEYS for a, b in zip(modules[key].parameters(), other[key].parameters()))


def test_a_save_killed_before_its_json_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    modules, optimizers = _run()
    ckpt = Checkpoint(tmp_path, "test_format")
    ckpt.save(1, _model(modules), optimizers, {"epoch": 1})
    _step(modules, optimizers)

    def killed(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr("reinforcegen_ros.io.atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(2, _model(modules), optimizers, {"epoch": 2})
    monkeypatch.undo()
    assert ckpt.load().meta["epoch"] == 1  # the JSON still names epoch 1's tensor file
    assert not list(tmp_path.glob("*.tmp"))
    ckpt.clear()
    assert not ckpt.exists() and not list(tmp_path.iterdir())
