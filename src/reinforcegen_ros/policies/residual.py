"""Residual skill policy (paper Sec. IV-B): pi_k = pi_k^base + pi_k^res on top of the frozen imitation policy.

The residual of stage k reads what the base skill policy reads (the agent's
normalised low-dimensional feature vector, :class:`ObservationSpec`; for a camera
agent also its camera frames through its own DrQ-v2-style image encoder,
:class:`ImageResidualNet`) plus the base action, and outputs a correction
bounded to ``action_scale`` per action
dimension (``tanh`` times the scale, in the environment's normalised [-1, 1]
action units, ResFiT's 0.1 by default). Its last layer starts at zero, so a
fresh residual leaves the base policy's actions exactly as they were; unless
``gripper`` is set, the gripper command stays the base policy's decision.

On disk a residual lives inside the agent directory beside the base weights:
``residual.safetensors`` (the networks of the fine-tuned stages) and
``residual.json`` (task, stage names, fine-tuned stages, observation layout,
checksums of the base weights and of its input normalisation, network
settings; format version 1 for low-dimensional residuals, as before, 2 for image
residuals, whose encoder weights are saved with the actor). :meth:`HybridSkillPolicy.load` attaches it, so evaluation, ``make
demo`` and the ROS skill policy core run the fine-tuned agent. A residual made
for another task, stage list, observation layout, encoder or base is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from reinforcegen_ros.io import atomic_path, atomic_write_json, file_sha256
from reinforcegen_ros.policies.encoders import mlp
from reinforcegen_ros.policies.skill_policy import ACTION_DIM

if TYPE_CHECKING:
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

RESIDUAL_FORMAT = "reinforcegen_residual"
RESIDUAL_VERSION = 2  # written for image residuals; low-dimensional ones are still written as (and read from) version 1
READABLE_VERSIONS = (1, 2)
ENCODERS = ("lowdim", "image")
IMAGE_KEYS = ("feature_dim", "image_channels")  # settings of the image encoder only (absent from low-dim residual files)
RESIDUAL_WEIGHTS = "residual.safetensors"
RESIDUAL_CONFIG = "residual.json"


@dataclass(frozen=True)
class ResidualConfig:
    """Network settings of a residual (their defaults live in ``config/finetune.yaml``)."""

    hidden_dim: int
    layers: int
    action_scale: float  # bound of each residual action dimension, in normalised action units
    gripper: bool  # whether the residual also corrects the gripper command
    encoder: str = "lowdim"  # lowdim: the agent's normalised features; image: + a conv encoder of its camera frames
    feature_dim: int = 0  # image: size of the encoder's projection (LayerNorm + tanh); 0 for lowdim
    image_channels: int = 0  # image: channels of each conv layer; 0 for lowdim
    rotation: bool = True  # whether the residual also corrects the rotation command (dimensions 3-5)

    def __post_init__(self) -> None:
        if int(self.hidden_dim) < 1 or int(self.layers) < 1:
            raise ValueError(f"residual hidden_dim and layers must be at least 1, got {self.hidden_dim}, {self.layers}")
        if not 0.0 < float(self.action_scale) <= 1.0:
            raise ValueError(f"residual action_scale must be in (0, 1], got {self.action_scale}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown residual encoder '{self.encoder}'; choose one of {', '.join(ENCODERS)}")
        image = self.encoder == "image"
        if image and (int(self.feature_dim) < 1 or int(self.image_channels) < 1):
            raise ValueError("image residual feature_dim and image_channels must be at least 1, "
                             f"got {self.feature_dim}, {self.image_channels}")
        if not image and (self.feature_dim or self.image_channels):
            raise ValueError("a low-dimensional residual has no feature_dim or image_channels (they are the image encoder's)")

    @classmethod
    def from_dict(cls, values: dict) -> "ResidualConfig":
        """From :meth:`to_dict`'s output (a low-dimensional residual's lacks the image settings, as files of version 1 do)."""
        known = {f.name for f in fields(cls)}
        required = known - set(IMAGE_KEYS) - {"encoder", "rotation"}
        if not required <= set(values) <= known:
            raise ValueError(f"residual settings must be {', '.join(sorted(required))} (+ {', '.join(IMAGE_KEYS)}, encoder); "
                             f"got {', '.join(sorted(values))}")
        return cls(**values)

    def to_dict(self) -> dict:
        """The settings; a low-dimensional residual's exactly as before the image encoder existed (and without
        ``rotation`` where it is on, as before that setting existed)."""
        values = asdict(self)
        if self.rotation:
            values.pop("rotation")
        if self.encoder == "lowdim":
            for key in ("encoder",) + IMAGE_KEYS:
                values.pop(key)
        return values


class ResidualNet(nn.Module):
    """(normalised features, base action) -> bounded residual action; the output layer starts at zero."""

    def __init__(self, feature_dim: int, config: ResidualConfig):
        super().__init__()
        self.trunk = mlp(feature_dim + ACTION_DIM, config.hidden_dim, config.layers)
        self.out = nn.Linear(config.hidden_dim, ACTION_DIM)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        mask = torch.ones(ACTION_DIM)
        if not config.gripper:
            mask[-1] = 0.0
        if not config.rotation:
            mask[3:6] = 0.0
        self.register_buffer("mask", mask * float(config.action_scale))

    def forward(self, features: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Residual actions (B, 7), each within +-action_scale (gripper 0 unless configured; rotation 0 without ``rotation``)."""
        return torch.tanh(self.out(self.trunk(torch.cat([features, base], dim=-1)))) * self.mask


class ResidualImageEncoder(nn.Module):
    """DrQ-v2's encoder: four 3x3 convolutions (the first with stride 2) on the stacked camera frames, then
    Linear -> LayerNorm -> tanh to ``feature_dim``. Input (B, 3 x cameras, H, W) in [0, 255] (uint8 or float)."""

    def __init__(self, cameras: int, image_size: int, channels: int, feature_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(3 * cameras if i == 0 else channels, channels, 3, stride=2 if i == 0 else 1), nn.ReLU()]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        side = (image_size - 3) // 2 + 1 - 6  # after the strided and the three plain 3x3 convolutions
        if side < 1:
            raise ValueError(f"camera images of {image_size} pixels are too small for the residual's image encoder (at least 15)")
        self.trunk = nn.Sequential(nn.Linear(channels * side * side, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, nn.init.calculate_gain("relu") if isinstance(m, nn.Conv2d) else 1.0)
                nn.init.zeros_(m.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.convs(frames.float() / 255.0 - 0.5))


class ImageResidualNet(nn.Module):
    """The residual of a camera agent's stage: its image encoder (``encoder``) and the bounded residual head (``head``)
    on [image features, normalised low-dimensional features] and the base action."""

    def __init__(self, lowdim_dim: int, cameras: int, image_size: int, config: ResidualConfig):
        super().__init__()
        self.encoder = ResidualImageEncoder(cameras, image_size, config.image_channels, config.feature_dim)
        self.head = ResidualNet(config.feature_dim + lowdim_dim, config)

    @property
    def mask(self) -> torch.Tensor:
        return self.head.mask

    def features(self, lowdim: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """What the head reads: image features then the low-dimensional features (B, feature_dim + D)."""
        return torch.cat([self.encoder(frames), lowdim], dim=-1)

    def forward(self, lowdim: torch.Tensor, base: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Residual actions (B, 7), bounded as :class:`ResidualNet`'s."""
        return self.head(self.features(lowdim, frames), base)


def stack_frames(images: dict, cameras: list[str]) -> np.ndarray:
    """Camera images {camera: (N, H, W, 3) uint8} as one array (N, 3 x cameras, H, W) uint8, cameras in ``cameras``' order."""
    return np.concatenate([np.asarray(images[cam]).transpose(0, 3, 1, 2) for cam in cameras], axis=1)


class SkillResidual(nn.Module):
    """The residuals of an agent's fine-tuned stages, with what they were made for."""

    def __init__(self, task: str, stage_names: list[str], spec: dict, norm_sha256: str, config: ResidualConfig, stages=()):
        super().__init__()
        self.task, self.stage_names, self.spec = task, list(stage_names), dict(spec)
        self.norm_sha256, self.config = norm_sha256, config
        self.feature_dim = int(spec_feature_dim(spec))
        self.nets = nn.ModuleDict()
        self.info: dict = {}  # fine-tuning summary per stage, saved in residual.json
        for k in stages:
            self.add_stage(int(k))
        self.eval()

    # ------------------------------------------------------------------ structure
    @classmethod
    def for_agent(cls, agent: "HybridSkillPolicy", config: ResidualConfig, stages=()) -> "SkillResidual":
        """A zero residual for ``stages`` of ``agent``; ``config.encoder`` must be 'image' exactly when the agent has cameras."""
        check_encoder(config.encoder, agent, "the residual")
        return cls(agent.task, agent.stage_names, agent.spec.to_dict(), norm_fingerprint(agent), config, stages)

    @property
    def stages(self) -> list[int]:
        return sorted(int(k) for k in self.nets)

    def add_stage(self, stage: int) -> ResidualNet:
        """The residual of ``stage`` (a new zero residual if it has none)."""
        if not 0 <= stage < len(self.stage_names):
            raise ValueError(f"stage {stage} out of range: task '{self.task}' has {len(self.stage_names)} stages")
        if str(stage) not in self.nets:
            c = self.config
            self.nets[str(stage)] = (ImageResidualNet(self.feature_dim, len(self.spec["cameras"]), int(self.spec["image_size"]), c)
                                     if c.encoder == "image" else ResidualNet(self.feature_dim, c))
        return self.nets[str(stage)]

    def net(self, stage: int) -> ResidualNet | ImageResidualNet | None:
        return self.nets[str(stage)] if str(stage) in self.nets else None

    def check_agent(self, agent: "HybridSkillPolicy", source: str = "residual") -> None:
        """ValueError (one line) unless this residual was made for ``agent``'s task, stages and observations."""
        if self.task != agent.task:
            raise ValueError(f"{source} was fine-tuned for task '{self.task}', not '{agent.task}'")
        if self.stage_names != list(agent.stage_names):
            raise ValueError(f"{source} was fine-tuned for stages {self.stage_names}, the agent has {list(agent.stage_names)}")
        check_encoder(self.config.encoder, agent, source)
        if self.spec != agent.spec.to_dict():
            raise ValueError(f"{source} reads another observation layout than the agent ({_spec_difference(self.spec, agent.spec.to_dict())})")
        if self.norm_sha256 != norm_fingerprint(agent):
            raise ValueError(f"{source} was fine-tuned on another input normalisation than the agent's (another base policy)")

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def correction(self, features: torch.Tensor, base: np.ndarray, stage: int, images: dict | None = None) -> np.ndarray:
        """Residual action (7,) of ``stage`` for one normalised feature row (1, D) and base action (7,).

        An image residual also reads ``images`` ({camera: (1, H, W, 3) uint8}, as ``HybridSkillPolicy`` passes them).
        """
        net = self.net(stage)
        if net is None:
            return np.zeros(ACTION_DIM)
        base_t = torch.as_tensor(np.asarray(base, dtype=np.float32)).reshape(1, ACTION_DIM)
        features = features.reshape(1, -1).float()
        if isinstance(net, ImageResidualNet):
            if images is None:
                raise ValueError("an image residual needs the agent's camera images")
            frames = stack_frames({cam: np.asarray(img) for cam, img in images.items()}, self.spec["cameras"])
            return net(features, base_t, torch.from_numpy(frames))[0].double().numpy()
        return net(features, base_t)[0].double().numpy()

    def apply(self, features: torch.Tensor, base: np.ndarray, stage: int, images: dict | None = None) -> np.ndarray:
        """pi_base + pi_res, clipped to the action range; the base action unchanged for stages without a residual."""
        if self.net(stage) is None:
            return base
        return np.clip(base + self.correction(features, base, stage, images), -1.0, 1.0)

    # ------------------------------------------------------------------ persistence
    def metadata(self, base_sha256: str) -> dict:
        return {
            "format": RESIDUAL_FORMAT,
            "format_version": RESIDUAL_VERSION if self.config.encoder == "image" else 1,
            "task": self.task,
            "stage_names": self.stage_names,
            "stages": self.stages,
            "spec": self.spec,
            "norm_sha256": self.norm_sha256,
            "base_weights_sha256": base_sha256,
            "config": self.config.to_dict(),
            "info": self.info,
        }

    def save(self, directory: str | Path, base_sha256: str) -> Path:
        """Write ``residual.safetensors`` then ``residual.json`` into the agent directory (each atomically)."""
        directory = Path(directory)
        weights = directory / RESIDUAL_WEIGHTS
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata={"format": RESIDUAL_FORMAT})
        atomic_write_json(directory / RESIDUAL_CONFIG, {**self.metadata(base_sha256), "weights_sha256": file_sha256(weights)})
        return directory


def check_encoder(encoder: str, agent: "HybridSkillPolicy", source: str) -> None:
    """ValueError (one line) unless ``encoder`` is 'image' exactly when ``agent`` observes cameras."""
    cameras = list(agent.spec.cameras)
    if cameras and encoder != "image":
        raise ValueError(f"{source} has a {encoder} encoder, but the agent observes cameras ({', '.join(cameras)}): use encoder 'image'")
    if not cameras and encoder == "image":
        raise ValueError(f"{source} has an image encoder, but the agent observes no cameras ({agent.obs_mode}): use encoder 'lowdim'")


def spec_feature_dim(spec: dict) -> int:
    """Feature size of an observation layout given as ``ObservationSpec.to_dict()``."""
    from reinforcegen_ros.policies.encoders import ObservationSpec

    return ObservationSpec.from_dict(spec).feature_dim


def norm_fingerprint(agent: "HybridSkillPolicy") -> str:
    """SHA-256 of the agent's input normalisation (mean and std of the features)."""
    h = hashlib.sha256()
    for t in (agent.obs_mean, agent.obs_std):
        h.update(t.detach().cpu().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def _spec_difference(ours: dict, theirs: dict) -> str:
    diff = [k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    return "differs in " + ", ".join(diff)


def has_residual(directory: str | Path) -> bool:
    """Whether an agent directory holds a residual."""
    return (Path(directory) / RESIDUAL_CONFIG).exists()


def remove_residual(directory: str | Path) -> None:
    """Delete an agent directory's residual files (when the agent saved there has none)."""
    for name in (RESIDUAL_CONFIG, RESIDUAL_WEIGHTS):
        path = Path(directory) / name
        if path.exists():
            path.unlink()


def read_residual(directory: str | Path, agent: "HybridSkillPolicy", base_sha256: str | None = None) -> SkillResidual | None:
    """The residual stored in agent directory ``directory`` for ``agent`` (None without one); one-line ValueError otherwise."""
    from reinforcegen_ros.policies.hsp import read_json, read_tensors

    directory = Path(directory)
    if not has_residual(directory):
        return None
    meta = read_json(directory / RESIDUAL_CONFIG, "residual")
    source = f"residual '{directory / RESIDUAL_CONFIG}'"
    if meta.get("format") != RESIDUAL_FORMAT or meta.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{source} is not a residual of format {RESIDUAL_FORMAT} v{'/v'.join(map(str, READABLE_VERSIONS))}")
    weights = directory / RESIDUAL_WEIGHTS
    if not weights.is_file() or file_sha256(weights) != meta.get("weights_sha256"):
        raise ValueError(f"'{weights}' is missing or does not match '{RESIDUAL_CONFIG}' (interrupted save?)")
    if base_sha256 is not None and meta.get("base_weights_sha256") != base_sha256:
        raise ValueError(f"{source} was fine-tuned on other base weights than '{directory}' holds")
    try:
        residual = SkillResidual(meta["task"], meta["stage_names"], meta["spec"], meta["norm_sha256"],
                                 ResidualConfig.from_dict(meta["config"]), meta["stages"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source} is not a valid residual config ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    residual.info = meta.get("info", {})
    residual.check_agent(agent, source)
    own, tensors = residual.state_dict(), read_tensors(weights)
    if set(own) != set(tensors) or any(tuple(own[k].shape) != tuple(tensors[k].shape) for k in own):
        raise ValueError(f"'{weights}' does not match the residual's config (stages {meta['stages']})")
    residual.load_state_dict(tensors)
    return residual


__all__ = ["ResidualConfig", "ResidualNet", "ResidualImageEncoder", "ImageResidualNet", "SkillResidual", "stack_frames", "check_encoder",
           "read_residual", "has_residual", "remove_residual",
           "norm_fingerprint", "RESIDUAL_WEIGHTS", "RESIDUAL_CONFIG"]
