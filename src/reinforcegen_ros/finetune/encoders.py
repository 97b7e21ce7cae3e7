"""What residual RL reads of a stage: the encoder behind :meth:`ResidualTD3.update` (the one place where the choice lives).

* :class:`LowDimEncoder` (``encoder: lowdim``, the CPU default): the agent's
  normalised low-dimensional features as they are (privileged state); nothing to
  learn, no augmentation.
* :class:`ImageEncoder` (``encoder: image``, DrQ-v2's settings, paper Table V): a
  camera agent's frames (uint8 in the replay buffer) through the stage residual's
  own conv encoder (:class:`~reinforcegen_ros.policies.residual.ImageResidualNet`:
  4 convolutions, Linear + LayerNorm + tanh to ``feature_dim``), concatenated with
  the proprio features. Replay batches are randomly shifted by up to ``shift_pad``
  pixels; the critic's gradient trains the encoder (Adam, ``lr_encoder``), the
  actor reads detached features. The encoder is part of the residual saved with
  the agent, so deployment runs it.

An encoder turns one environment observation into what the buffer stores
(``observe``), makes the buffer, augments and encodes replay batches (``augment``,
``encode``) and one observation for acting (``encode_one``), and names the
modules, optimizer and RNG state a checkpoint must keep.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from reinforcegen_ros.finetune.config import FinetuneConfig
from reinforcegen_ros.finetune.replay_buffer import ImageReplayBuffer, ReplayBuffer
from reinforcegen_ros.policies.residual import ImageResidualNet, stack_frames


def lowdim_features(agent, obs: dict) -> np.ndarray:
    """The agent's normalised low-dimensional features of ``obs`` (D,) float32: what its base policy and residual read."""
    return agent.normalise(torch.from_numpy(agent.spec.lowdim(obs)))[0].numpy().astype(np.float32)


class Encoder(Protocol):
    """How the learner sees observations (see the module docstring)."""

    kind: str
    out_dim: int  # size of the features actor and critics read

    def observe(self, agent, obs: dict): ...
    def make_buffer(self, capacity: int) -> ReplayBuffer: ...
    def to(self, device: torch.device) -> None: ...
    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...
    def encode(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor: ...
    def encode_one(self, obs, device: torch.device) -> torch.Tensor: ...
    def policy(self, actor: nn.Module) -> nn.Module: ...
    def zero_grad(self) -> None: ...
    def step(self) -> None: ...
    def modules(self) -> dict[str, nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def rng_state(self) -> dict[str, torch.Tensor]: ...
    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None: ...


class LowDimEncoder:
    """The agent's normalised low-dimensional features, unchanged (an observation is a float32 vector)."""

    kind = "lowdim"

    def __init__(self, feature_dim: int):
        self.out_dim = int(feature_dim)

    def observe(self, agent, obs: dict) -> np.ndarray:
        return lowdim_features(agent, obs)

    def make_buffer(self, capacity: int) -> ReplayBuffer:
        return ReplayBuffer(capacity, self.out_dim)

    def to(self, device: torch.device) -> None:
        pass

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch

    def encode(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        return batch[prefix + "obs"]

    def encode_one(self, obs: np.ndarray, device: torch.device) -> torch.Tensor:
        return torch.as_tensor(obs)[None].to(device)

    def policy(self, actor: nn.Module) -> nn.Module:
        return actor

    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        pass


class ImageEncoder:
    """DrQ-v2's image path: the stage residual's conv encoder on uint8 frames + the proprio features (an observation is
    ``{"obs": features (D,), "frames": uint8 (3 x cameras, H, W)}``)."""

    kind = "image"

    def __init__(self, net: ImageResidualNet, lowdim_dim: int, cameras: list[str], image_size: int, config: FinetuneConfig):
        self.net, self.cameras, self.lowdim_dim = net, list(cameras), int(lowdim_dim)
        self.frame_shape = (3 * len(self.cameras), int(image_size), int(image_size))
        self.out_dim = config.feature_dim + self.lowdim_dim
        self.pad = int(config.shift_pad)
        self.generator = torch.Generator().manual_seed(config.seed + 2)  # shift offsets
        self.optimizer = torch.optim.Adam(net.encoder.parameters(), lr=config.lr_encoder)

    def observe(self, agent, obs: dict) -> dict[str, np.ndarray]:
        return {"obs": lowdim_features(agent, obs), "frames": stack_frames(agent.spec.images(obs), self.cameras)[0]}

    def make_buffer(self, capacity: int) -> ImageReplayBuffer:
        return ImageReplayBuffer(capacity, self.lowdim_dim, self.frame_shape)

    def to(self, device: torch.device) -> None:
        self.net.to(device)

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Both frame sets of a replay batch shifted by up to ``shift_pad`` pixels (each row its own offset; float)."""
        return {**batch, "frames": self.random_shift(batch["frames"]), "next_frames": self.random_shift(batch["next_frames"])}

    def random_shift(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) frames, replicate-padded by ``shift_pad`` and cropped back at a random offset per row."""
        pad = self.pad
        if pad <= 0:
            return frames.float()
        n, _, h, w = frames.shape
        offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=self.generator).to(frames.device)
        padded = nn.functional.pad(frames.float(), (pad,) * 4, mode="replicate")
        rows = (offsets[0][:, None] + torch.arange(h, device=frames.device))[:, None, :, None]
        cols = (offsets[1][:, None] + torch.arange(w, device=frames.device))[:, None, None, :]
        batch = torch.arange(n, device=frames.device)[:, None, None, None]
        chans = torch.arange(frames.shape[1], device=frames.device)[None, :, None, None]
        return padded[batch, chans, rows, cols]

    def encode(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        return self.net.features(batch[prefix + "obs"], batch[prefix + "frames"])

    def encode_one(self, obs: dict[str, np.ndarray], device: torch.device) -> torch.Tensor:
        return self.net.features(torch.as_tensor(obs["obs"])[None].to(device), torch.as_tensor(obs["frames"])[None].to(device))

    def policy(self, actor: nn.Module) -> nn.Module:
        return self.net  # encoder + head (the actor): what the residual saves and deployment runs

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.net.encoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": self.optimizer}

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"shift": self.generator.get_state()}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["shift"])


def make_encoder(stage_net: nn.Module, lowdim_dim: int, spec: dict, config: FinetuneConfig) -> tuple[Encoder, nn.Module]:
    """(encoder, actor) of a stage residual: an :class:`ImageResidualNet` learns through an :class:`ImageEncoder` (its head
    is the actor), a plain :class:`ResidualNet` on the low-dimensional features."""
    if isinstance(stage_net, ImageResidualNet):
        return ImageEncoder(stage_net, lowdim_dim, spec["cameras"], spec["image_size"], config), stage_net.head
    return LowDimEncoder(lowdim_dim), stage_net


__all__ = ["Encoder", "LowDimEncoder", "ImageEncoder", "make_encoder", "lowdim_features"]
