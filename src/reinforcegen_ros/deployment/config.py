"""Settings of the deployment layer: ``config/ros/deployment.yaml`` merged with a robot file."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "ros"
DEFAULT_FILE = CONFIG_DIR / "deployment.yaml"
SECTIONS = ("guards", "sensors", "sequencer", "pose_predictor", "skill_policy", "bridge", "robot")


def load_deployment_config(path: str | Path | None = None, robot_file: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Sections of ``path`` (default ``config/ros/deployment.yaml``), then ``robot_file``, then ``overrides``."""
    cfg = _read(Path(path) if path else DEFAULT_FILE)
    for extra in (_read(Path(robot_file)) if robot_file else {}, overrides or {}):
        cfg = merge(cfg, extra)
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown deployment config sections: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    return cfg


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"deployment config '{path}' not found")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"'{path}' must hold a mapping of sections")
    return data


def settings_from_dict(cls, cfg: dict | None, section: str):
    """Dataclass ``cls`` from a config section; unknown keys are an error (a typo must not pass silently)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown {section} settings: {', '.join(unknown)}")
    return cls(**cfg)


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, nested mappings key by key."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out
