"""Configuration of the Hybrid Skill Policy networks and of their imitation training.

Values come from ``config/hsp.yaml`` (the defaults), then the task YAML's optional
``hsp:`` section, then explicit overrides (CLI flags). Unknown keys are errors so
that a typo in a YAML file is not silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from reinforcegen_ros.demos.episode import OBJECT_KEY
from reinforcegen_ros.tasks import CONFIG_DIR
from reinforcegen_ros.tasks.environment import PROPRIO_KEYS as _PROPRIO

DEFAULT_CONFIG = CONFIG_DIR / "hsp.yaml"
OBS_MODES = ("privileged", "rgb")
POLICY_HEADS = ("mlp", "gmm")
GMM_ACTIONS = ("sample", "mode")
WEIGHT_CHOICES = ("last", "best_val")
PROPRIO_KEYS = list(_PROPRIO)
COMPONENTS = ("pose", "policy", "term")  # per stage: initiation pose predictor, skill policy, termination classifier

# Settings that may differ when a training run is resumed; all others define the
# networks, the labels or the optimisation and must match the checkpoint.
RESUMABLE_CHANGES = ("epochs", "pose_steps", "policy_steps", "term_steps", "num_threads", "inference_threads", "gmm_action",
                     "weights")


@dataclass
class HSPConfig:
    """Observation mode, network sizes, label choices and optimisation settings.

    The defaults equal ``config/hsp.yaml`` (``test/test_config_defaults.py`` holds them equal).
    """

    # observations
    obs_mode: str = "privileged"
    cameras: list[str] | None = None  # rgb mode; None: the task YAML's ``cameras``
    image_size: int = 84
    proprio_keys: list[str] = field(default_factory=lambda: list(PROPRIO_KEYS))
    rotation_features: bool = True  # axis-angle / quaternion inputs as continuous 6D rotations
    relative_objects: bool = True  # privileged mode: also feed each object's position relative to the gripper
    std_floor: float = 0.01  # smallest standard deviation used to normalise a dimension
    # networks
    hidden_dim: int = 256
    encoder_layers: int = 2
    head_layers: int = 2
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32, 32, 32])
    image_feature_dim: int = 64
    proprio_feature_dim: int = 64
    shift_pad: int = 4  # random-shift augmentation (pixels), training only
    policy_head: str = "gmm"  # "mlp" (deterministic regression) or "gmm" (Gaussian mixture)
    gmm_modes: int = 5
    gmm_min_std: float = 0.01  # in normalised action units
    pose_proprio: bool = True  # the initiation pose predictor also reads proprioception (false: objects or cameras only)
    pose_modes: int = 1  # initiation pose hypotheses (winner-takes-all training); 1 = a single regressed pose
    gmm_action: str = "sample"  # run time: "sample" the mode from its weights, or the most probable "mode"
    recurrent: bool = False  # GRU skill policy trained on sequences (BC-RNN)
    rnn_hidden: int = 256
    rnn_seq_len: int = 10  # training sequence length; act() restarts the hidden state this often
    # labels
    term_next_stage_steps: int = 10  # first steps of stage k+1 added to stage k's termination data
    term_pos_weight: float | None = 1.0  # BCE weight of positives; None: #negatives / #positives
    # optimisation
    epochs: int = 50  # passes over the samples of every component without a step budget
    pose_steps: int | None = None  # gradient-step budget of each stage's pose predictor (None: ``epochs`` passes)
    policy_steps: int | None = None  # ... of each stage's skill policy
    term_steps: int | None = None  # ... of each stage's termination classifier
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    rot_loss_weight: float = 1.0  # geodesic rotation loss (rad) against normalised position MSE
    val_fraction: float = 0.1  # share of episodes held out for validation
    seed: int = 0
    weights: str = "last"  # the agent's weights per component: the "last" epoch's, or "best_val" (lowest held-out loss)
    num_threads: int = 1  # torch CPU threads for training (at most 2; 2 collapse when the cores are shared)
    inference_threads: int = 1  # torch CPU threads set by HybridSkillPolicy.load (batch-1 inference)

    def __post_init__(self) -> None:
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"unknown observation mode '{self.obs_mode}'; choose one of {', '.join(OBS_MODES)}")
        if self.policy_head not in POLICY_HEADS:
            raise ValueError(f"unknown policy head '{self.policy_head}'; choose one of {', '.join(POLICY_HEADS)}")
        if self.weights not in WEIGHT_CHOICES:
            raise ValueError(f"unknown weights choice '{self.weights}'; choose one of {', '.join(WEIGHT_CHOICES)}")
        if self.gmm_action not in GMM_ACTIONS:
            raise ValueError(f"unknown gmm_action '{self.gmm_action}'; choose one of {', '.join(GMM_ACTIONS)}")
        for name in ("image_size", "pose_modes", "hidden_dim", "encoder_layers", "head_layers", "epochs", "batch_size", "rnn_seq_len", "num_threads", "inference_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"HSP setting '{name}' must be at least 1, got {getattr(self, name)}")
        for comp in COMPONENTS:
            budget = self.step_budget(comp)
            if budget is not None and int(budget) < 1:
                raise ValueError(f"HSP setting '{comp}_steps' must be at least 1 or null, got {budget}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"HSP setting 'val_fraction' must be in [0, 1), got {self.val_fraction}")

    def step_budget(self, component: str) -> int | None:
        """Gradient steps each stage's ``component`` trains for; None: ``epochs`` passes over its samples."""
        return getattr(self, f"{component}_steps")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, values: dict) -> "HSPConfig":
        """Build from a mapping; unknown keys raise a one-line ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown HSP setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable mapping."""
        return asdict(self)

    def replace(self, **changes) -> "HSPConfig":
        """A copy with some settings changed (validated)."""
        return HSPConfig.from_dict({**self.to_dict(), **changes})

    def mismatches(self, other: "HSPConfig") -> list[str]:
        """Settings (other than the resumable ones) in which ``other`` differs from this config."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {b[k]!r} vs {a[k]!r}" for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]]


def read_yaml(path: str | Path) -> dict:
    """A YAML file's mapping (empty file: empty mapping); one-line errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"HSP config '{path}' does not exist")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"HSP config '{path}' is not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"HSP config '{path}' must hold a mapping of settings")
    return data


def load_config(path: str | Path | None = None, task: str | None = None, **overrides) -> HSPConfig:
    """Defaults from ``path`` (``config/hsp.yaml``), the task YAML's ``hsp`` section, then ``overrides``.

    Overrides whose value is ``None`` are ignored (unset CLI flags).
    """
    values = read_yaml(path or DEFAULT_CONFIG)
    if task is not None:
        from reinforcegen_ros.tasks import task_config

        values.update(task_config(task).get("hsp") or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return HSPConfig.from_dict(values)


def resolve_config(config: "HSPConfig | dict | str | Path | None", task: str | None = None, **overrides) -> HSPConfig:
    """Accept a config object, a mapping of settings, a YAML path or None (defaults)."""
    if isinstance(config, HSPConfig):
        return config.replace(**{k: v for k, v in overrides.items() if v is not None})
    if isinstance(config, dict):
        base = load_config(None, task).to_dict()
        base.update(config)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return HSPConfig.from_dict(base)
    return load_config(config, task, **overrides)


__all__ = ["COMPONENTS", "HSPConfig", "load_config", "resolve_config", "OBS_MODES", "POLICY_HEADS", "PROPRIO_KEYS", "OBJECT_KEY", "DEFAULT_CONFIG"]
