"""One source of defaults: every settings dataclass read from a YAML file has the YAML's values as its defaults.

Code that builds a config without the YAML (``HybridConfig()``, ``HSPConfig()``,
``HybridExecutor(config=None)``, tests) then runs what ``eval``, ``train`` and the
ROS nodes run. ``config/planning.yaml`` has no dataclass (the planner merges dicts).
"""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
import yaml

from reinforcegen_ros.deployment.bridge import BridgeConfig
from reinforcegen_ros.deployment.config import DEFAULT_FILE, load_deployment_config
from reinforcegen_ros.deployment.franka import FrankaAdapterConfig
from reinforcegen_ros.deployment.guards import GuardConfig
from reinforcegen_ros.deployment.sequencer import SequencerConfig
from reinforcegen_ros.finetune.config import DEFAULT_CONFIG as FINETUNE_YAML
from reinforcegen_ros.finetune.config import FinetuneConfig
from reinforcegen_ros.hybrid import CONFIG_PATH as HYBRID_YAML
from reinforcegen_ros.hybrid import HybridConfig
from reinforcegen_ros.policies.configuration_hsp import DEFAULT_CONFIG as HSP_YAML
from reinforcegen_ros.policies.configuration_hsp import HSPConfig


def _yaml(path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def _plain(value):
    """Tuples as lists, the way YAML writes sequences."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


PAIRS = [
    pytest.param(HybridConfig, lambda: _yaml(HYBRID_YAML), id="hybrid.yaml"),
    pytest.param(HSPConfig, lambda: _yaml(HSP_YAML), id="hsp.yaml"),
    pytest.param(FinetuneConfig, lambda: _yaml(FINETUNE_YAML), id="finetune.yaml"),
    pytest.param(GuardConfig, lambda: _yaml(DEFAULT_FILE)["guards"], id="ros/deployment.yaml:guards"),
    pytest.param(SequencerConfig, lambda: _yaml(DEFAULT_FILE)["sequencer"], id="ros/deployment.yaml:sequencer"),
    pytest.param(BridgeConfig, lambda: _yaml(DEFAULT_FILE)["bridge"], id="ros/deployment.yaml:bridge"),
]


@pytest.mark.parametrize("cls,read", PAIRS)
def test_dataclass_defaults_equal_the_yaml(cls, read):
    values = read()
    names = {f.name for f in fields(cls)}
    assert set(values) == names, f"keys only in the YAML: {sorted(set(values) - names)}; only in {cls.__name__}: {sorted(names - set(values))}"
    defaults = _plain(asdict(cls()))
    differ = {k: (defaults[k], values[k]) for k in names if defaults[k] != _plain(values[k])}
    assert not differ, f"{cls.__name__} default vs YAML: {differ}"


def test_franka_adapter_defaults_equal_franka_yaml():
    """FrankaAdapterConfig's defaults are what config/ros/franka.yaml (over deployment.yaml) gives."""
    merged = load_deployment_config(robot_file=DEFAULT_FILE.with_name("franka.yaml"))
    assert FrankaAdapterConfig.from_config(merged) == FrankaAdapterConfig()


@pytest.mark.parametrize("path", sorted((FINETUNE_YAML.parent / "finetune_runs").glob("*.yaml")), ids=lambda p: p.name)
def test_the_reported_runs_settings_are_overrides_of_finetune_yaml(path):
    """config/finetune_runs/*.yaml (the settings of the runs in docs/RESULTS.md) name only settings finetune.yaml has, and load."""
    from reinforcegen_ros.finetune.config import load_config

    overrides = _yaml(path)
    assert overrides and set(overrides) <= set(_yaml(FINETUNE_YAML)), f"{path.name}: unknown settings {set(overrides) - set(_yaml(FINETUNE_YAML))}"
    config = load_config(path)
    assert all(getattr(config, k) == v for k, v in overrides.items())
