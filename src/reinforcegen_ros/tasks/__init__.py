"""The five long-horizon tasks of the ReinforceGen benchmark and their registry."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

# robosuite announces optional extras (private macros, robosuite_models, mink) at
# import as warnings; keep its errors, drop that noise from every command's output.
logging.getLogger("robosuite_logs").addFilter(lambda record: record.levelno >= logging.ERROR)

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"


@dataclass(frozen=True)
class TaskInfo:
    """Where a task's environment class and scripted demonstrator live."""

    name: str
    env_class: str  # "module:Class"
    demonstrator: str  # "module:Class"


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("coffee", "reinforcegen_ros.tasks.coffee:Coffee", "reinforcegen_ros.demos.scripted.coffee:CoffeeDemonstrator"),
        TaskInfo(
            "threading",
            "reinforcegen_ros.tasks.threading:Threading",
            "reinforcegen_ros.demos.scripted.threading:ThreadingDemonstrator",
        ),
        TaskInfo(
            "three_piece_assembly",
            "reinforcegen_ros.tasks.three_piece_assembly:ThreePieceAssembly",
            "reinforcegen_ros.demos.scripted.three_piece_assembly:ThreePieceAssemblyDemonstrator",
        ),
        TaskInfo(
            "nut_assembly",
            "reinforcegen_ros.tasks.nut_assembly:NutAssemblyStaged",
            "reinforcegen_ros.demos.scripted.nut_assembly:NutAssemblyDemonstrator",
        ),
        TaskInfo(
            "coffee_preparation",
            "reinforcegen_ros.tasks.coffee_preparation:CoffeePreparation",
            "reinforcegen_ros.demos.scripted.coffee_preparation:CoffeePreparationDemonstrator",
        ),
    )
}


class UnknownTaskError(ValueError):
    """Raised for a task name that is not registered."""


def task_info(name: str) -> TaskInfo:
    """Registry entry of ``name``, or a one-line error listing the known tasks."""
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def load_object(path: str):
    """Import ``module:attr``."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def env_class(name: str) -> type:
    """The robosuite environment class of a task (importing it registers it with robosuite)."""
    return load_object(task_info(name).env_class)


def stages(name: str) -> tuple:
    """The stages of a task."""
    return env_class(name).STAGES


def task_config(name: str, path: str | Path | None = None) -> dict:
    """The task's YAML configuration (``config/tasks/<name>.yaml`` unless ``path`` is given)."""
    task_info(name)
    cfg_path = Path(path) if path else CONFIG_DIR / "tasks" / f"{name}.yaml"
    with open(cfg_path) as fh:
        return yaml.safe_load(fh) or {}


__all__ = ["TASKS", "TaskInfo", "UnknownTaskError", "task_info", "env_class", "stages", "task_config", "load_object"]
