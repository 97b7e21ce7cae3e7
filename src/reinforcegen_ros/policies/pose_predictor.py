"""Initiation pose predictor I_k: observation -> world pose where stage k's skill starts.

The position is regressed in normalised units (training-set mean/std, kept as
buffers so they travel with the weights); the rotation is predicted in the
continuous 6D representation (two matrix columns, orthonormalised by
Gram-Schmidt). Loss: MSE on the normalised position plus ``rot_weight`` times
the geodesic angle (radians) between predicted and labelled rotation.
"""

from __future__ import annotations

import torch
from torch import nn

from reinforcegen_ros.policies.encoders import mlp

GEODESIC_EPS = 1e-6  # keeps acos away from +-1, where its gradient is infinite


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from 6D features (..., 6) by Gram-Schmidt (columns b1, b2, b1 x b2)."""
    a1, a2 = x[..., :3], x[..., 3:6]
    b1 = nn.functional.normalize(a1, dim=-1)
    b2 = nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(rot: torch.Tensor) -> torch.Tensor:
    """6D features (..., 6) of rotation matrices (..., 3, 3)."""
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def geodesic_angle(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle (radians, (...)) of the relative rotation between two stacks of rotation matrices."""
    trace = (rot_a.transpose(-1, -2) @ rot_b).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.acos(torch.clamp((trace - 1.0) / 2.0, -1.0 + GEODESIC_EPS, 1.0 - GEODESIC_EPS))


class InitiationPosePredictor(nn.Module):
    """Encoder + MLP head -> (normalised position 3, 6D rotation)."""

    def __init__(self, encoder: nn.Module, hidden: int, layers: int):
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, hidden, layers, 3 + 6)
        self.register_buffer("pos_mean", torch.zeros(3))
        self.register_buffer("pos_std", torch.ones(3))

    def set_stats(self, mean, std) -> None:
        """Position normalisation from the training labels."""
        self.pos_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.pos_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised position (B, 3), rotation matrices (B, 3, 3))."""
        out = self.head(self.encoder(lowdim, images))
        return out[:, :3], rot6d_to_matrix(out[:, 3:])

    def loss(self, lowdim, images, target: torch.Tensor, rot_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Loss against target poses (B, 4, 4) and metrics (position error in m, rotation error in rad)."""
        pos_n, rot = self(lowdim, images)
        target_n = (target[:, :3, 3] - self.pos_mean) / self.pos_std
        pos_loss = ((pos_n - target_n) ** 2).sum(-1).mean()
        angle = geodesic_angle(rot, target[:, :3, :3])
        pos_err = ((pos_n - target_n) * self.pos_std).norm(dim=-1)
        total = pos_loss + rot_weight * angle.mean()
        return total, {"pos_err_m": pos_err.mean().item(), "rot_err_deg": torch.rad2deg(angle).mean().item()}

    @torch.no_grad()
    def predict(self, lowdim, images=None) -> torch.Tensor:
        """World poses (B, 4, 4)."""
        pos_n, rot = self(lowdim, images)
        pose = torch.eye(4).repeat(len(rot), 1, 1)
        pose[:, :3, :3] = rot
        pose[:, :3, 3] = pos_n * self.pos_std + self.pos_mean
        return pose


__all__ = ["InitiationPosePredictor", "rot6d_to_matrix", "matrix_to_rot6d", "geodesic_angle"]
