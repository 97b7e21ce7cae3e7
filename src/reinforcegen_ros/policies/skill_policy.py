"""Skill policy pi_k: observation -> 7-D action (normalised delta pose 6 + gripper).

Behaviour cloning on the skill segments of stage k. Actions are regressed in
normalised units (training-set mean/std per dimension, kept as buffers).

Heads:
* ``mlp``: deterministic regression, MSE loss.
* ``gmm``: a mixture of diagonal Gaussians, negative log-likelihood loss. At
  run time the action is the mean of one mode: drawn from the mixture weights
  (``sample``, as robomimic's low-noise GMM evaluation does) or the most
  probable one (``mode``, deterministic). Picking the most probable mode can
  stall a skill for good where the data switch between modes, e.g. at the
  moment the gripper closes.

With ``recurrent`` the encoder features pass through a GRU before the head
(BC-RNN): training uses fixed-length sequences of consecutive skill steps; at
run time the caller keeps the hidden state between steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from reinforcegen_ros.policies.encoders import mlp

ACTION_DIM = 7


class SkillPolicy(nn.Module):
    """Encoder (+ optional GRU) + MLP or GMM head."""

    def __init__(
        self,
        encoder: nn.Module,
        hidden: int,
        layers: int,
        head: str = "mlp",
        modes: int = 5,
        min_std: float = 0.01,
        recurrent: bool = False,
        rnn_hidden: int = 256,
        action_dim: int = ACTION_DIM,
    ):
        super().__init__()
        self.encoder = encoder
        self.head_type = head
        self.modes = int(modes)
        self.min_std = float(min_std)
        self.action_dim = action_dim
        self.rnn = nn.GRU(encoder.out_dim, rnn_hidden, batch_first=True) if recurrent else None
        feat = rnn_hidden if recurrent else encoder.out_dim
        out = action_dim if head == "mlp" else self.modes * (2 * action_dim + 1)
        self.head = mlp(feat, hidden, layers, out)
        self.register_buffer("act_mean", torch.zeros(action_dim))
        self.register_buffer("act_std", torch.ones(action_dim))

    @property
    def recurrent(self) -> bool:
        return self.rnn is not None

    def set_stats(self, mean, std) -> None:
        """Action normalisation from the training labels."""
        self.act_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.act_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    # ------------------------------------------------------------------ forward
    def features(self, lowdim: torch.Tensor, images=None, hidden: torch.Tensor | None = None):
        """Head inputs: (B, F) for the feed-forward policy, (B, L, F) and the new hidden state for the GRU."""
        if self.rnn is None:
            return self.encoder(lowdim, images), None
        b, length = lowdim.shape[:2]
        flat_images = {k: v.flatten(0, 1) for k, v in images.items()} if images else None
        feats = self.encoder(lowdim.flatten(0, 1), flat_images).unflatten(0, (b, length))
        return self.rnn(feats, hidden)

    def _distribution(self, out: torch.Tensor) -> MixtureSameFamily:
        k, d = self.modes, self.action_dim
        logits = out[..., :k]
        means = out[..., k : k + k * d].unflatten(-1, (k, d))
        stds = nn.functional.softplus(out[..., k + k * d :].unflatten(-1, (k, d))) + self.min_std
        return MixtureSameFamily(Categorical(logits=logits), Independent(Normal(means, stds), 1))

    def loss(self, lowdim, images, target: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """BC loss against actions (B, [L,] 7); ``mask`` (B, L) marks real (not padded) sequence steps."""
        feats, _ = self.features(lowdim, images)
        out = self.head(feats)
        target_n = (target - self.act_mean) / self.act_std
        if self.head_type == "mlp":
            per_step = ((out - target_n) ** 2).mean(-1)
            mean_action = out
        else:
            dist = self._distribution(out)
            per_step = -dist.log_prob(target_n)
            mean_action = self._mode_mean(out)
        mse = ((mean_action - target_n) ** 2).mean(-1)
        if mask is None:
            return per_step.mean(), {"mse": mse.mean().item()}
        w = mask.float()
        return (per_step * w).sum() / w.sum(), {"mse": ((mse * w).sum() / w.sum()).item()}

    def _mode_mean(self, out: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
        """Mean of the most probable mixture component, or (``sample``) of one drawn from the mixture weights."""
        k, d = self.modes, self.action_dim
        logits = out[..., :k]
        if sample:
            probs = torch.softmax(logits, -1).reshape(-1, k)
            best = torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])
        else:
            best = logits.argmax(-1)
        means = out[..., k : k + k * d].unflatten(-1, (k, d))
        return torch.gather(means, -2, best[..., None, None].expand(*best.shape, 1, d)).squeeze(-2)

    @torch.no_grad()
    def action(
        self, lowdim, images=None, hidden: torch.Tensor | None = None, sample: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """De-normalised action (B, 7) for one step and the new hidden state (GRU) or None.

        ``sample`` (GMM head): the mean of a mode drawn with ``generator`` instead of the most probable one.
        """
        if self.rnn is not None:
            lowdim = lowdim[:, None]
            images = {k: v[:, None] for k, v in images.items()} if images else None
        feats, hidden = self.features(lowdim, images, hidden)
        if self.rnn is not None:
            feats = feats[:, -1]
        out = self.head(feats)
        act_n = out if self.head_type == "mlp" else self._mode_mean(out, generator, sample)
        return act_n * self.act_std + self.act_mean, hidden


__all__ = ["SkillPolicy", "ACTION_DIM"]
