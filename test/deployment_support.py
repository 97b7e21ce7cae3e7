"""Helpers shared by the deployment tests (ROS-free and launch tests): source demos and a tiny trained agent."""

from __future__ import annotations

from pathlib import Path

TASK = "coffee"
TINY_HSP = {
    "hidden_dim": 32, "encoder_layers": 1, "head_layers": 1, "epochs": 1, "batch_size": 64,
    "val_fraction": 0.5, "num_threads": 1,
}


def source_demos(out: Path, num: int = 2) -> Path:
    """``num`` scripted Coffee demos (seeds from 0) written to ``out``."""
    from reinforcegen_ros.demos.collect import collect

    report = collect(TASK, num, out, seed=0, progress=False)
    assert report.successes == num, f"scripted demos failed: {report}"
    return out


def tiny_agent(dataset: Path, out: Path) -> Path:
    """A one-epoch privileged hybrid skill policy for Coffee (it runs; it is not meant to succeed)."""
    from reinforcegen_ros.training.bc import train_hsp

    train_hsp(TASK, dataset, out, "privileged", TINY_HSP, progress=False)
    return out
