"""Observation encoders of the hybrid skill policy.

* :class:`ObservationSpec` turns observation dicts (one step or stacked steps)
  into a low-dimensional feature vector and camera images. Rotations given as
  axis-angle (``robot0_eef_axis_angle``) or quaternions (object poses in
  ``object``) become the first two columns of their rotation matrix (the
  continuous 6D representation), so that a gripper pointing down, where
  axis-angle flips sign, does not produce jumps in the input.
* :class:`LowDimEncoder`: MLP on normalised proprioception + object poses.
* :class:`VisuomotorEncoder`: a small CNN per 84x84 camera with random-shift
  augmentation (pad, then crop back at a random offset; DrQ-v2) during
  training only, plus an MLP on proprioception.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from reinforcegen_ros.policies.configuration_hsp import OBJECT_KEY, HSPConfig

POSE_DIM = 7  # position 3 + quaternion (x, y, z, w) per object in the "object" key
ROT6D = 6


# ---------------------------------------------------------------------- rotation features
def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of (x, y, z, w) quaternions (..., 4); normalises them."""
    q = quat / np.maximum(np.linalg.norm(quat, axis=-1, keepdims=True), 1e-12)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def rotvec_to_matrix(vec: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of axis-angle vectors (..., 3) (Rodrigues' formula)."""
    angle = np.linalg.norm(vec, axis=-1, keepdims=True)
    axis = vec / np.maximum(angle, 1e-12)
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([np.stack(r, axis=-1) for r in ([zero, -z, y], [z, zero, -x], [-y, x, zero])], axis=-2)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def matrix_to_rot6d(rot: np.ndarray) -> np.ndarray:
    """6D rotation features (..., 6): the first two columns of the matrix."""
    return np.concatenate([rot[..., :, 0], rot[..., :, 1]], axis=-1)


# ---------------------------------------------------------------------- observation layout
@dataclass
class ObservationSpec:
    """Which observation keys a policy reads and how they become network inputs."""

    lowdim_keys: list[str]
    lowdim_dims: list[int]  # raw size of each key
    cameras: list[str]
    image_size: int = 84
    rotation_features: bool = True
    relative_objects: bool = False  # append object position - gripper position (world frame) per object

    @classmethod
    def for_mode(cls, obs_mode: str, object_dim: int, config: HSPConfig, cameras: list[str] | None = None) -> "ObservationSpec":
        """Proprio (+ ``object`` in privileged mode, + cameras in rgb mode)."""
        keys, dims = list(config.proprio_keys), [_PROPRIO_DIMS.get(k, 0) for k in config.proprio_keys]
        if 0 in dims:
            unknown = [k for k, d in zip(keys, dims) if d == 0]
            raise ValueError(f"unknown proprio key(s) {', '.join(unknown)}; known: {', '.join(_PROPRIO_DIMS)}")
        if obs_mode == "privileged":
            if object_dim % POSE_DIM:
                raise ValueError(f"'{OBJECT_KEY}' observation has {object_dim} numbers, not a multiple of {POSE_DIM} (pos + quat)")
            keys.append(OBJECT_KEY)
            dims.append(object_dim)
            cams: list[str] = []
        else:
            cams = list(cameras or [])
            if not cams:
                raise ValueError("rgb observation mode needs at least one camera")
        relative = obs_mode == "privileged" and config.relative_objects
        if relative and "robot0_eef_pos" not in keys:
            raise ValueError("relative_objects needs 'robot0_eef_pos' among the proprio keys")
        return cls(keys, dims, cams, config.image_size, config.rotation_features, relative)

    @classmethod
    def from_dict(cls, values: dict) -> "ObservationSpec":
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def image_keys(self) -> list[str]:
        return [f"{cam}_image" for cam in self.cameras]

    @property
    def feature_dim(self) -> int:
        """Size of the low-dimensional feature vector."""
        size = sum(self._feature_size(k, d) for k, d in zip(self.lowdim_keys, self.lowdim_dims))
        return size + self._num_objects() * 3 if self.relative_objects else size

    def object_columns(self) -> list[int]:
        """Columns of the feature vector that describe the objects alone (not the gripper's pose relative to them)."""
        start = 0
        for key, dim in zip(self.lowdim_keys, self.lowdim_dims):
            size = self._feature_size(key, dim)
            if key == OBJECT_KEY:
                return list(range(start, start + size))
            start += size
        return []

    def _num_objects(self) -> int:
        dims = dict(zip(self.lowdim_keys, self.lowdim_dims))
        return dims.get(OBJECT_KEY, 0) // POSE_DIM

    def _feature_size(self, key: str, dim: int) -> int:
        if not self.rotation_features:
            return dim
        if key == "robot0_eef_axis_angle":
            return ROT6D
        if key == OBJECT_KEY:
            return dim // POSE_DIM * (3 + ROT6D)
        return dim

    def lowdim(self, obs: dict, batched: bool = False) -> np.ndarray:
        """Feature matrix (N, D) float32 (N = 1 unless ``batched``); ValueError on missing or non-finite input."""
        parts = []
        for key, dim in zip(self.lowdim_keys, self.lowdim_dims):
            if key not in obs:
                raise ValueError(f"observation lacks '{key}'")
            value = np.asarray(obs[key], dtype=np.float64)
            value = value.reshape(-1, dim) if batched else value.reshape(1, -1)
            if value.shape[1] != dim:
                raise ValueError(f"observation '{key}' has {value.shape[1]} numbers, expected {dim}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"observation '{key}' contains NaN or infinite values")
            parts.append(self._featurize(key, value))
        if self.relative_objects:
            parts.append(self._relative_positions(obs, batched))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _relative_positions(self, obs: dict, batched: bool) -> np.ndarray:
        """Each object's position minus the gripper's (N, 3 * objects): where to move, in the action's frame."""
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).reshape(-1, 3)
        objects = np.asarray(obs[OBJECT_KEY], dtype=np.float64).reshape(len(eef), -1, POSE_DIM)
        return (objects[..., :3] - eef[:, None, :]).reshape(len(eef), -1)

    def _featurize(self, key: str, value: np.ndarray) -> np.ndarray:
        if not self.rotation_features:
            return value
        if key == "robot0_eef_axis_angle":
            return matrix_to_rot6d(rotvec_to_matrix(value))
        if key == OBJECT_KEY:
            poses = value.reshape(len(value), -1, POSE_DIM)
            feats = np.concatenate([poses[..., :3], matrix_to_rot6d(quat_to_matrix(poses[..., 3:]))], axis=-1)
            return feats.reshape(len(value), -1)
        return value

    def images(self, obs: dict, batched: bool = False) -> dict[str, np.ndarray]:
        """Camera images (N, H, W, 3) uint8 by camera; ValueError on missing or malformed images."""
        out = {}
        size = (self.image_size, self.image_size, 3)
        for cam, key in zip(self.cameras, self.image_keys):
            if key not in obs:
                raise ValueError(f"observation lacks '{key}' (camera {cam})")
            img = np.asarray(obs[key])
            shape = img.shape[1:] if batched else img.shape
            if shape != size:
                raise ValueError(f"observation '{key}' has shape {shape}, expected {size}")
            if img.dtype != np.uint8:
                if not np.all(np.isfinite(img)):
                    raise ValueError(f"observation '{key}' contains NaN or infinite values")
                raise ValueError(f"observation '{key}' must be uint8 RGB, got {img.dtype}")
            out[cam] = img if batched else img[None]
        return out


_PROPRIO_DIMS = {
    "robot0_eef_pos": 3,
    "robot0_eef_axis_angle": 3,
    "robot0_eef_quat": 4,
    "robot0_gripper_qpos": 2,
    "robot0_joint_pos": 7,
}


# ---------------------------------------------------------------------- networks
def mlp(in_dim: int, hidden: int, layers: int, out_dim: int | None = None) -> nn.Sequential:
    """``layers`` Linear+ReLU blocks of width ``hidden``, then an optional linear output layer."""
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        mods += [nn.Linear(dim, hidden), nn.ReLU()]
        dim = hidden
    if out_dim is not None:
        mods.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*mods)


class LowDimEncoder(nn.Module):
    """MLP on normalised low-dimensional features (privileged observations)."""

    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(in_dim, hidden, layers)
        self.out_dim = hidden if layers else in_dim

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.net(lowdim)


class RandomShift(nn.Module):
    """Shift each image by up to ``pad`` pixels (replicate padding, random crop); identity in eval mode."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.pad <= 0:
            return x
        n, _, h, w = x.shape
        padded = nn.functional.pad(x, (self.pad,) * 4, mode="replicate")
        dy = torch.randint(0, 2 * self.pad + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, chans, rows, cols]


class ConvEncoder(nn.Module):
    """Small CNN for one camera: 3x3 convolutions (strides 2, 2, 2, 1, ...) then Linear + LayerNorm."""

    def __init__(self, image_size: int, channels: list[int], out_dim: int, pad: int):
        super().__init__()
        self.shift = RandomShift(pad)
        convs: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(channels):
            convs += [nn.Conv2d(c_in, c_out, 3, stride=2 if i < 3 else 1), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 3, image_size, image_size)).shape[1]
        self.proj = nn.Sequential(nn.Linear(flat, out_dim), nn.LayerNorm(out_dim), nn.Tanh())
        self.out_dim = out_dim

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: (B, H, W, 3) uint8."""
        x = image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.proj(self.convs(self.shift(x)))


class VisuomotorEncoder(nn.Module):
    """One CNN per camera plus (unless ``proprio`` is false) an MLP on proprioception; features concatenated."""

    def __init__(self, spec: ObservationSpec, config: HSPConfig, proprio: bool = True):
        super().__init__()
        self.cameras = list(spec.cameras)
        self.cnns = nn.ModuleDict(
            {cam: ConvEncoder(spec.image_size, list(config.cnn_channels), config.image_feature_dim, config.shift_pad) for cam in self.cameras}
        )
        self.proprio = mlp(spec.feature_dim, config.proprio_feature_dim, 1) if proprio else None
        self.out_dim = len(self.cameras) * config.image_feature_dim + (config.proprio_feature_dim if proprio else 0)

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if images is None:
            raise ValueError("the visuomotor encoder needs camera images")
        feats = [self.cnns[cam](images[cam]) for cam in self.cameras]
        if self.proprio is not None:
            feats.append(self.proprio(lowdim))
        return torch.cat(feats, dim=-1)


class ObjectInputs(nn.Module):
    """A low-dim encoder that reads only the object columns of the feature vector (no proprioception)."""

    def __init__(self, columns: list[int], hidden: int, layers: int):
        super().__init__()
        if not columns:
            raise ValueError("an encoder without proprioception needs object features or cameras")
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long), persistent=False)
        self.net = LowDimEncoder(len(columns), hidden, layers)
        self.out_dim = self.net.out_dim

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.net(lowdim.index_select(-1, self.columns))


def make_encoder(spec: ObservationSpec, config: HSPConfig, proprio: bool = True) -> nn.Module:
    """The encoder of one component: visuomotor when the spec has cameras, low-dim otherwise.

    Without ``proprio`` it sees the scene only: the cameras, or the object poses.
    """
    if spec.cameras:
        return VisuomotorEncoder(spec, config, proprio)
    if not proprio:
        return ObjectInputs(spec.object_columns(), config.hidden_dim, config.encoder_layers)
    return LowDimEncoder(spec.feature_dim, config.hidden_dim, config.encoder_layers)


__all__ = [
    "ObservationSpec",
    "LowDimEncoder",
    "VisuomotorEncoder",
    "ObjectInputs",
    "ConvEncoder",
    "RandomShift",
    "make_encoder",
    "mlp",
    "quat_to_matrix",
    "rotvec_to_matrix",
    "matrix_to_rot6d",
]
