"""Settings of skill fine-tuning by residual RL; the defaults are ``config/finetune.yaml``'s values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from reinforcegen_ros.policies.residual import ResidualConfig
from reinforcegen_ros.tasks import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "finetune.yaml"
# settings that may change when a run is resumed; all others must match the checkpoint
RESUMABLE_CHANGES = ("eval_every", "eval_episodes", "checkpoint_every", "num_threads", "agent_weights")
AGENT_WEIGHTS = ("best", "last")


@dataclass
class FinetuneConfig:
    """One stage's residual RL (see ``config/finetune.yaml`` for a line per setting)."""

    residual_hidden_dim: int = 256
    residual_layers: int = 2
    action_scale: float = 0.1
    residual_gripper: bool = False
    alpha: float = 5.0
    stage_time_limit: int = 200
    bank_states: int = 100
    bank_seed: int = 300000
    critic_hidden_dim: int = 256
    critic_layers: int = 2
    num_critics: int = 2
    lr_actor: float = 0.000001
    lr_critic: float = 0.0001
    discount: float = 0.99
    nstep: int = 3
    batch_size: int = 256
    buffer_size: int = 200000
    seed_steps: int = 4000
    updates_per_step: int = 2
    actor_delay: int = 2
    critic_warmup: int = 10000
    tau: float = 0.005
    explore_std: float = 0.2
    target_std: float = 0.2
    target_clip: float = 0.5
    analytic_penalty: bool = True
    demo_fraction: float = 0.5
    eval_every: int = 5000
    eval_episodes: int = 20
    checkpoint_every: int = 5000
    agent_weights: str = "best"
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("residual_hidden_dim", "residual_layers", "stage_time_limit", "bank_states", "critic_hidden_dim", "critic_layers",
                     "num_critics", "nstep", "batch_size", "buffer_size", "updates_per_step", "actor_delay", "eval_every",
                     "eval_episodes", "checkpoint_every", "num_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("alpha", "seed_steps", "critic_warmup", "explore_std", "target_std", "target_clip", "lr_actor", "lr_critic", "seed"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 0, got {getattr(self, name)}")
        if self.agent_weights not in AGENT_WEIGHTS:
            raise ValueError(f"unknown agent_weights '{self.agent_weights}'; choose one of {', '.join(AGENT_WEIGHTS)}")
        if not 0.0 <= self.demo_fraction < 1.0:
            raise ValueError(f"fine-tuning setting 'demo_fraction' must be in [0, 1), got {self.demo_fraction}")
        if not 0.0 < self.discount <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"fine-tuning settings 'discount' and 'tau' must be in (0, 1], got {self.discount}, {self.tau}")
        self.residual_config()  # validates the residual's settings

    def residual_config(self) -> ResidualConfig:
        """The residual network's settings."""
        return ResidualConfig(self.residual_hidden_dim, self.residual_layers, self.action_scale, self.residual_gripper)

    @classmethod
    def from_dict(cls, values: dict) -> "FinetuneConfig":
        """Build from a mapping; unknown keys raise a one-line ValueError."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown fine-tuning setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "FinetuneConfig":
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    def mismatches(self, other: dict) -> list[str]:
        """Settings (other than the resumable ones) in which ``other`` (a saved mapping) differs from this config."""
        ours = self.to_dict()
        return [f"{k} {other.get(k)!r} vs {v!r}" for k, v in ours.items() if k not in RESUMABLE_CHANGES and other.get(k) != v]


def load_config(path: str | Path | None = None, task: str | None = None, **overrides) -> FinetuneConfig:
    """``config/finetune.yaml`` (or ``path``), the task YAML's ``finetune`` section, then the non-None ``overrides``."""
    from reinforcegen_ros.policies.configuration_hsp import read_yaml

    values = read_yaml(path or DEFAULT_CONFIG)
    if task is not None:
        from reinforcegen_ros.tasks import task_config

        values.update(task_config(task).get("finetune") or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FinetuneConfig.from_dict(values)


__all__ = ["FinetuneConfig", "load_config", "DEFAULT_CONFIG", "RESUMABLE_CHANGES"]
