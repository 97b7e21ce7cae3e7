"""Settings of ReinforceGen fine-tuning (residual RL of the skills, termination fine-tuning); the defaults are ``config/finetune.yaml``'s values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from reinforcegen_ros.policies.residual import ResidualConfig
from reinforcegen_ros.tasks import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "finetune.yaml"
# settings that may change when a run is resumed; all others must match the checkpoint
RESUMABLE_CHANGES = ("eval_every", "eval_episodes", "checkpoint_every", "num_threads", "agent_weights", "device")
# the image encoder's settings (DrQ-v2, paper Table V): they take part only with encoder 'image', and a low-dimensional run's
# records (checkpoint, recipe.json, residual info) leave them out, as they were before the image encoder existed
IMAGE_SETTINGS = ("encoder", "feature_dim", "image_hidden_dim", "image_channels", "shift_pad", "lr_encoder")
ENCODERS = ("lowdim", "image")
DEVICES = ("cpu", "cuda")
# termination fine-tuning's settings (Sec. IV-C): they do not take part in a residual RL run
TERMINATION_SETTINGS = ("term_stages", "term_reject_threshold", "term_seed", "term_hidden_dim", "term_layers", "term_inputs",
                        "term_all_ticks", "term_train_steps", "term_lr", "term_weight_decay", "term_batch_size", "term_holdout",
                        "term_min_class_samples", "term_min_auc")
# the recipe's settings (finetune/recipe.py): which steps run and their budgets, not how one sub-run learns
RECIPE_SETTINGS = ("skill_stages", "term_first", "recipe_steps", "recipe_term_episodes")
# settings added after runs were recorded: a run's records leave each out at its default, so earlier runs still resume
LATER_SETTINGS = ("residual_rotation", "reset_failed_weight", "bias_penalty", "time_limit_terminal", "penalty_in_reward",
                  "actor_pessimism", "term_inputs", "term_all_ticks", "success_reward", "explore_correlation")
AGENT_WEIGHTS = ("best", "last")
SUCCESS_REWARDS = ("termination", "predicted")


@dataclass
class FinetuneConfig:
    """One stage's residual RL (see ``config/finetune.yaml`` for a line per setting)."""

    residual_hidden_dim: int = 256
    residual_layers: int = 2
    action_scale: float = 0.1
    residual_gripper: bool = False
    residual_rotation: bool = True
    alpha: float = 5.0
    stage_time_limit: int = 200
    time_limit_terminal: bool = False
    success_reward: str = "termination"
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
    explore_correlation: float = 0.0
    target_std: float = 0.2
    target_clip: float = 0.5
    analytic_penalty: bool = True
    penalty_in_reward: bool = True
    demo_fraction: float = 0.5
    reset_failed_weight: float = 1.0
    bias_penalty: float = 0.0
    actor_pessimism: float = 0.0
    encoder: str = "lowdim"
    feature_dim: int = 50
    image_hidden_dim: int = 1024
    image_channels: int = 32
    shift_pad: int = 4
    lr_encoder: float = 0.0001
    device: str = "cpu"
    eval_every: int = 5000
    eval_episodes: int = 20
    checkpoint_every: int = 5000
    agent_weights: str = "best"
    seed: int = 0
    num_threads: int = 1
    term_stages: list[int] = field(default_factory=list)
    term_reject_threshold: float = 0.4
    term_seed: int = 400000
    term_hidden_dim: int = 64
    term_layers: int = 2
    term_inputs: str = "state"
    term_all_ticks: bool = False
    term_train_steps: int = 2000
    term_lr: float = 0.001
    term_weight_decay: float = 0.0001
    term_batch_size: int = 256
    term_holdout: float = 0.2
    term_min_class_samples: int = 5
    term_min_auc: float = 0.6
    skill_stages: list[int] = field(default_factory=list)
    term_first: bool = False
    recipe_steps: int = 200000
    recipe_term_episodes: int = 200

    def __post_init__(self) -> None:
        for name in ("residual_hidden_dim", "residual_layers", "stage_time_limit", "bank_states", "critic_hidden_dim", "critic_layers",
                     "num_critics", "nstep", "batch_size", "buffer_size", "updates_per_step", "actor_delay", "eval_every",
                     "eval_episodes", "checkpoint_every", "num_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("alpha", "bias_penalty", "actor_pessimism", "seed_steps", "critic_warmup", "explore_std", "target_std", "target_clip", "lr_actor", "lr_critic", "seed"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 0, got {getattr(self, name)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder '{self.encoder}'; choose one of {', '.join(ENCODERS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device '{self.device}'; choose one of {', '.join(DEVICES)}")
        for name in ("feature_dim", "image_hidden_dim", "image_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 1, got {getattr(self, name)}")
        if not (int(self.shift_pad) >= 0 and float(self.lr_encoder) >= 0):
            raise ValueError(f"fine-tuning settings 'shift_pad' and 'lr_encoder' must be at least 0, got {self.shift_pad}, {self.lr_encoder}")
        if not 0.0 <= float(self.explore_correlation) < 1.0:
            raise ValueError(f"fine-tuning setting 'explore_correlation' must be in [0, 1), got {self.explore_correlation}")
        if self.success_reward not in SUCCESS_REWARDS:
            raise ValueError(f"unknown success_reward '{self.success_reward}'; choose one of {', '.join(SUCCESS_REWARDS)}")
        if self.agent_weights not in AGENT_WEIGHTS:
            raise ValueError(f"unknown agent_weights '{self.agent_weights}'; choose one of {', '.join(AGENT_WEIGHTS)}")
        if not float(self.reset_failed_weight) > 0:
            raise ValueError(f"fine-tuning setting 'reset_failed_weight' must be above 0, got {self.reset_failed_weight}")
        if not 0.0 <= self.demo_fraction < 1.0:
            raise ValueError(f"fine-tuning setting 'demo_fraction' must be in [0, 1), got {self.demo_fraction}")
        if not 0.0 < self.discount <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"fine-tuning settings 'discount' and 'tau' must be in (0, 1], got {self.discount}, {self.tau}")
        for name in ("time_limit_terminal", "penalty_in_reward", "residual_rotation"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"fine-tuning setting '{name}' must be true or false, got {getattr(self, name)!r}")
        self.residual_config()  # validates the residual's settings
        self._check_termination_settings()
        self._check_recipe_settings()

    def _check_recipe_settings(self) -> None:
        for name in ("recipe_steps", "recipe_term_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 1, got {getattr(self, name)}")
        if not isinstance(self.term_first, bool):
            raise ValueError(f"fine-tuning setting 'term_first' must be true or false, got {self.term_first!r}")
        self.skill_stages = _stage_list("skill_stages", self.skill_stages)

    def _check_termination_settings(self) -> None:
        for name in ("term_hidden_dim", "term_train_steps", "term_batch_size", "term_min_class_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fine-tuning setting '{name}' must be at least 1, got {getattr(self, name)}")
        if int(self.term_layers) < 0:
            raise ValueError(f"fine-tuning setting 'term_layers' must be at least 0 (0: logistic regression), got {self.term_layers}")
        from reinforcegen_ros.policies.fine_tuned_termination import PREDICTOR_INPUTS

        if not isinstance(self.term_all_ticks, bool):
            raise ValueError(f"fine-tuning setting 'term_all_ticks' must be true or false, got {self.term_all_ticks!r}")
        if self.term_inputs not in PREDICTOR_INPUTS:
            raise ValueError(f"unknown term_inputs '{self.term_inputs}'; choose one of {', '.join(PREDICTOR_INPUTS)}")
        if not 0.0 <= self.term_reject_threshold < 1.0:
            raise ValueError(f"fine-tuning setting 'term_reject_threshold' must be in [0, 1), got {self.term_reject_threshold}")
        if not 0.0 <= self.term_min_auc <= 1.0:
            raise ValueError(f"fine-tuning setting 'term_min_auc' must be in [0, 1], got {self.term_min_auc}")
        if not 0.0 <= self.term_holdout < 1.0:
            raise ValueError(f"fine-tuning setting 'term_holdout' must be in [0, 1), got {self.term_holdout}")
        if not (self.term_lr > 0 and self.term_weight_decay >= 0 and self.term_seed >= 0):
            raise ValueError("fine-tuning settings 'term_lr' > 0, 'term_weight_decay' >= 0 and 'term_seed' >= 0 are required, "
                             f"got {self.term_lr}, {self.term_weight_decay}, {self.term_seed}")
        self.term_stages = _stage_list("term_stages", self.term_stages)

    @property
    def reward_alpha(self) -> float:
        """The residual penalty's coefficient in the stage reward (online and demo transitions): alpha, or 0 without
        ``penalty_in_reward``."""
        return float(self.alpha) if self.penalty_in_reward else 0.0

    def residual_config(self) -> ResidualConfig:
        """The residual network's settings (with the image encoder: DrQ-v2's hidden width and its encoder's settings)."""
        if self.encoder == "image":
            return ResidualConfig(self.image_hidden_dim, self.residual_layers, self.action_scale, self.residual_gripper, "image",
                                  self.feature_dim, self.image_channels, rotation=self.residual_rotation)
        return ResidualConfig(self.residual_hidden_dim, self.residual_layers, self.action_scale, self.residual_gripper,
                              rotation=self.residual_rotation)

    def critic_width(self) -> int:
        """Hidden width of the critics: ``critic_hidden_dim``, or DrQ-v2's ``image_hidden_dim`` with the image encoder."""
        return self.image_hidden_dim if self.encoder == "image" else self.critic_hidden_dim

    @classmethod
    def from_dict(cls, values: dict) -> "FinetuneConfig":
        """Build from a mapping; unknown keys raise a one-line ValueError."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown fine-tuning setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """The settings as recorded by runs; without the image encoder's (``IMAGE_SETTINGS``) when ``encoder`` is 'lowdim',
        and without each of ``LATER_SETTINGS`` at its default."""
        values = asdict(self)
        if self.encoder == "lowdim":
            for name in IMAGE_SETTINGS:
                values.pop(name)
        for name in LATER_SETTINGS:
            if values[name] == _DEFAULTS[name]:
                values.pop(name)
        return values

    def replace(self, **changes) -> "FinetuneConfig":
        return FinetuneConfig.from_dict({**asdict(self), **changes})

    def mismatches(self, other: dict) -> list[str]:
        """Residual RL settings (other than the resumable ones) in which ``other`` (a saved mapping) differs from this config."""
        ours = {**self.to_dict(), **{k: getattr(self, k) for k in LATER_SETTINGS}}
        other = {**{k: _DEFAULTS[k] for k in LATER_SETTINGS}, **other}  # records leave them out at their defaults
        skip = RESUMABLE_CHANGES + TERMINATION_SETTINGS + RECIPE_SETTINGS
        return [f"{k} {other.get(k)!r} vs {v!r}" for k, v in ours.items() if k not in skip and other.get(k) != v]


_DEFAULTS = {f.name: f.default for f in fields(FinetuneConfig)}


def resolve_device(name: str):
    """``torch.device(name)``; one-line ValueError when CUDA is asked for on a machine without it."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False); use --device cpu")
    if name not in DEVICES:
        raise ValueError(f"unknown device '{name}'; choose one of {', '.join(DEVICES)}")
    return torch.device(name)


def _stage_list(name: str, value) -> list[int]:
    """``value`` as sorted distinct stage indices; ValueError (one line) unless it is a list of non-negative integers."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in value):
        raise ValueError(f"fine-tuning setting '{name}' must be a list of stage indices, got {value!r}")
    return sorted(set(int(k) for k in value))


def load_config(path: str | Path | None = None, task: str | None = None, **overrides) -> FinetuneConfig:
    """``config/finetune.yaml`` (or ``path``), the task YAML's ``finetune`` section, then the non-None ``overrides``."""
    from reinforcegen_ros.policies.configuration_hsp import read_yaml

    values = read_yaml(path or DEFAULT_CONFIG)
    if task is not None:
        from reinforcegen_ros.tasks import task_config

        values.update(task_config(task).get("finetune") or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FinetuneConfig.from_dict(values)


__all__ = ["FinetuneConfig", "load_config", "resolve_device", "DEFAULT_CONFIG", "RESUMABLE_CHANGES", "IMAGE_SETTINGS", "LATER_SETTINGS",
           "TERMINATION_SETTINGS", "RECIPE_SETTINGS"]
