"""Initiation pose predictor I_k: observation -> world pose where stage k's skill starts.

The position is regressed in normalised units (training-set mean/std, kept as
buffers so they travel with the weights); the rotation is predicted in the
continuous 6D representation (two matrix columns, orthonormalised by
Gram-Schmidt). Loss: MSE on the normalised position plus ``rot_weight`` times
the geodesic angle (radians) between predicted and labelled rotation.

Generated initiation poses can be multimodal: each is a source demo's pose
carried along with the reference object, and when that object is symmetric the
source demos grasp or place it in several ways (Three Piece Assembly's pieces
at four yaws 90 degrees apart, Threading's needle at two). One regressed pose
averages the modes into a pose that belongs to none. With ``modes`` K > 1 the
head predicts K pose hypotheses and a score for each; training is
winner-takes-all (the hypothesis nearest the label gets the loss, the others a
small ``others_weight`` share, and the scores learn, by cross-entropy, which
hypothesis won); the prediction is the best-scored hypothesis, or a given one.
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
    """Encoder + MLP head -> K hypotheses of (normalised position 3, 6D rotation), plus K scores when K > 1."""

    def __init__(self, encoder: nn.Module, hidden: int, layers: int, modes: int = 1, others_weight: float = 0.05):
        super().__init__()
        self.encoder = encoder
        self.modes, self.others_weight = int(modes), float(others_weight)
        self.head = mlp(encoder.out_dim, hidden, layers, self.modes * 9 + (self.modes if self.modes > 1 else 0))
        self.register_buffer("pos_mean", torch.zeros(3))
        self.register_buffer("pos_std", torch.ones(3))

    def set_stats(self, mean, std) -> None:
        """Position normalisation from the training labels."""
        self.pos_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.pos_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None):
        """(normalised positions (B, K, 3), rotation matrices (B, K, 3, 3), scores (B, K))."""
        out = self.head(self.encoder(lowdim, images))
        poses = out[:, : self.modes * 9].reshape(len(out), self.modes, 9)
        scores = out[:, self.modes * 9 :] if self.modes > 1 else torch.zeros(len(out), 1)
        return poses[..., :3], rot6d_to_matrix(poses[..., 3:]), scores

    def loss(self, lowdim, images, target: torch.Tensor, rot_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Loss against target poses (B, 4, 4) and metrics of the best-scored hypothesis (m, degrees)."""
        pos_n, rot, scores = self(lowdim, images)
        target_n = ((target[:, :3, 3] - self.pos_mean) / self.pos_std)[:, None]
        angle = geodesic_angle(rot, target[:, None, :3, :3])  # (B, K)
        errors = ((pos_n - target_n) ** 2).sum(-1) + rot_weight * angle
        winner = errors.detach().argmin(-1)
        rows = torch.arange(len(errors))
        total = errors[rows, winner].mean()
        if self.modes > 1:
            others = (errors.sum(-1) - errors[rows, winner]) / (self.modes - 1)
            total = (1 - self.others_weight) * total + self.others_weight * others.mean()
            total = total + nn.functional.cross_entropy(scores, winner)
        chosen = scores.argmax(-1)
        pos_err = ((pos_n[rows, chosen] - target_n[:, 0]) * self.pos_std).norm(dim=-1)
        metrics = {"pos_err_m": pos_err.mean().item(), "rot_err_deg": torch.rad2deg(angle[rows, chosen]).mean().item()}
        if self.modes > 1:
            metrics["best_rot_err_deg"] = torch.rad2deg(angle[rows, winner]).mean().item()
        return total, metrics

    @torch.no_grad()
    def hypotheses(self, lowdim, images=None) -> tuple[torch.Tensor, torch.Tensor]:
        """World poses (B, K, 4, 4) of every hypothesis and their scores (B, K)."""
        pos_n, rot, scores = self(lowdim, images)
        pose = torch.eye(4).repeat(*rot.shape[:2], 1, 1)
        pose[..., :3, :3] = rot
        pose[..., :3, 3] = pos_n * self.pos_std + self.pos_mean
        return pose, scores

    @torch.no_grad()
    def predict(self, lowdim, images=None, mode: int | None = None) -> torch.Tensor:
        """World poses (B, 4, 4): the best-scored hypothesis, or hypothesis ``mode``."""
        pose, scores = self.hypotheses(lowdim, images)
        chosen = scores.argmax(-1) if mode is None else torch.full((len(pose),), int(mode))
        return pose[torch.arange(len(pose)), chosen]


__all__ = ["InitiationPosePredictor", "rot6d_to_matrix", "matrix_to_rot6d", "geodesic_angle"]
