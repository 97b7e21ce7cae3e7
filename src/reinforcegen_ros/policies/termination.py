"""Termination classifier T_k: observation -> P(stage k's goal holds).

Binary cross-entropy on the ground-truth termination signal of stage k
(evaluated on simulator state when the data was recorded). Positives are rare
(a stage ends as soon as its goal holds), so the positive class is weighted,
by default by #negatives / #positives of the training data.
"""

from __future__ import annotations

import torch
from torch import nn

from reinforcegen_ros.policies.encoders import mlp


class TerminationClassifier(nn.Module):
    """Encoder + MLP head -> one logit."""

    def __init__(self, encoder: nn.Module, hidden: int, layers: int):
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, hidden, layers, 1)

    def forward(self, lowdim: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (B,)."""
        return self.head(self.encoder(lowdim, images)).squeeze(-1)

    def loss(self, lowdim, images, labels: torch.Tensor, pos_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Weighted BCE against 0/1 labels (B,) and the accuracy at threshold 0.5."""
        logits = self(lowdim, images)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=torch.tensor(float(pos_weight)))
        accuracy = ((logits > 0).float() == labels).float().mean().item()
        return loss, {"accuracy": accuracy}

    @torch.no_grad()
    def prob(self, lowdim, images=None) -> torch.Tensor:
        """P(goal holds) (B,)."""
        return torch.sigmoid(self(lowdim, images))


__all__ = ["TerminationClassifier"]
