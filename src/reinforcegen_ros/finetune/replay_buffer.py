"""A ring buffer of stage-episode transitions with n-step returns computed when sampled.

Each row holds one control step: normalised features, base action and residual
action, reward, whether the stage terminated (``terminal``: no bootstrap) or the
episode ended otherwise (``last``: time limit, bootstrap), and the next features
and base action. A sampled n-step transition sums up to ``n`` rewards of the same
episode, stops at its end or at the newest row, and bootstraps from the next
features of the row where it stopped. The buffer is plain arrays, so a checkpoint
stores it as tensors (never pickled) and checks it on the way back.

:class:`ImageReplayBuffer` (the image encoder's) also keeps each row's camera
frames and next frames as uint8 (3 x cameras, H, W) arrays, stacked as
:func:`~reinforcegen_ros.policies.residual.stack_frames` does.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "base", "res", "reward", "terminal", "last", "next_obs", "next_base")


class ReplayBuffer:
    """Transitions of one stage's residual RL (``capacity`` rows, the oldest overwritten)."""

    fields = FIELDS

    def __init__(self, capacity: int, obs_dim: int, act_dim: int = 7):
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        self.arrays = {
            "obs": np.zeros((capacity, obs_dim), np.float32), "base": np.zeros((capacity, act_dim), np.float32),
            "res": np.zeros((capacity, act_dim), np.float32), "reward": np.zeros(capacity, np.float32),
            "terminal": np.zeros(capacity, bool), "last": np.zeros(capacity, bool),
            "next_obs": np.zeros((capacity, obs_dim), np.float32), "next_base": np.zeros((capacity, act_dim), np.float32),
        }
        self.ptr = self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, base, res, reward: float, terminal: bool, last: bool, next_obs, next_base) -> None:
        """Append one transition; ValueError (and nothing stored) if any number is not finite."""
        row = {"obs": obs, "base": base, "res": res, "reward": reward, "next_obs": next_obs, "next_base": next_base}
        for name, value in row.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"replay buffer: transition '{name}' contains NaN or inf")
        for name, value in {**row, "terminal": terminal, "last": last or terminal}.items():
            self.arrays[name][self.ptr] = value
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, nstep: int, discount: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch`` n-step transitions: obs, base, res, ret (discounted reward sum), disc (bootstrap factor), next_obs, next_base."""
        return self._rows(*self._nstep(batch, nstep, discount, rng))

    def _rows(self, idx: np.ndarray, end: np.ndarray, ret: np.ndarray, disc: np.ndarray) -> dict[str, np.ndarray]:
        """The batch of transitions starting at rows ``idx`` and bootstrapping from rows ``end``."""
        a = self.arrays
        return {"obs": a["obs"][idx], "base": a["base"][idx], "res": a["res"][idx], "ret": ret, "disc": disc,
                "next_obs": a["next_obs"][end], "next_base": a["next_base"][end]}

    def _nstep(self, batch: int, nstep: int, discount: float, rng: np.random.Generator):
        """(start rows, rows bootstrapped from, discounted reward sums, bootstrap factors) of ``batch`` sampled transitions."""
        if self.size == 0:
            raise ValueError("replay buffer is empty")
        a = self.arrays
        first = (self.ptr - self.size) % self.capacity  # oldest row
        idx = (first + rng.integers(0, self.size, batch)) % self.capacity
        after = (self.ptr - idx - 1) % self.capacity  # rows written after idx (the newest row has none)
        ret, disc = np.zeros(batch, np.float32), np.ones(batch, np.float32)
        end, alive = idx.copy(), np.ones(batch, bool)
        for j in range(nstep):
            t = (idx + j) % self.capacity
            step = alive & (j <= after)
            ret[step] += discount**j * a["reward"][t[step]]
            end[step], disc[step] = t[step], discount ** (j + 1)
            alive = step & ~a["last"][t]
        disc[a["terminal"][end]] = 0.0
        return idx, end, ret, disc

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(the filled rows as arrays, counters); the rows in insertion order, oldest first."""
        order = (self.ptr - self.size + np.arange(self.size)) % self.capacity
        return {name: arr[order] for name, arr in self.arrays.items()}, {"size": self.size}

    def load_state(self, arrays: dict[str, np.ndarray], counters: dict) -> None:
        """Restore :meth:`state`'s output; ValueError on missing fields, wrong shapes, too many rows or NaN."""
        size = int(counters["size"])
        if size > self.capacity:
            raise ValueError(f"replay buffer checkpoint holds {size} transitions, more than buffer_size {self.capacity}")
        for name in self.fields:
            value = np.asarray(arrays.get(name, np.zeros(0)))
            if value.shape != (size,) + self.arrays[name].shape[1:]:
                raise ValueError(f"replay buffer checkpoint: '{name}' has shape {value.shape}, expected {(size,) + self.arrays[name].shape[1:]}")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"replay buffer checkpoint: '{name}' contains NaN or inf")
            if self.arrays[name].dtype == np.uint8 and value.dtype != np.uint8:
                raise ValueError(f"replay buffer checkpoint: '{name}' is {value.dtype}, expected uint8 frames")
        for name in self.fields:
            self.arrays[name][:size] = arrays[name]
        self.size, self.ptr = size, size % self.capacity


class ImageReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` whose observations are {"obs": low-dim features (D,), "frames": uint8 (C, H, W)}.

    Memory per transition: 2 x C x H x W bytes of frames (this step's and the next's) plus
    4 x (2 D + 22) + 2 bytes of the rest; e.g. two 84x84 cameras (C = 6) and D = 18:
    84,672 + 234 = 84,906 bytes, so 100,000 transitions take 8.5 GB (checkpoints as much).
    """

    fields = FIELDS + ("frames", "next_frames")

    def __init__(self, capacity: int, obs_dim: int, frame_shape: tuple[int, int, int], act_dim: int = 7):
        super().__init__(capacity, obs_dim, act_dim)
        self.frame_shape = tuple(int(n) for n in frame_shape)
        for name in ("frames", "next_frames"):
            self.arrays[name] = np.zeros((self.capacity,) + self.frame_shape, np.uint8)

    @property
    def bytes_per_transition(self) -> int:
        return sum(arr[0].nbytes for arr in self.arrays.values())

    def add(self, obs: dict, base, res, reward: float, terminal: bool, last: bool, next_obs: dict, next_base) -> None:
        """Append one transition; ValueError (and nothing stored) on non-finite numbers or frames not uint8 of the buffer's shape."""
        for name, frames in (("frames", obs["frames"]), ("next_frames", next_obs["frames"])):
            if frames.dtype != np.uint8 or frames.shape != self.frame_shape:
                raise ValueError(f"replay buffer: '{name}' must be uint8 {self.frame_shape}, got {frames.dtype} {frames.shape}")
        row = self.ptr
        super().add(obs["obs"], base, res, reward, terminal, last, next_obs["obs"], next_base)
        self.arrays["frames"][row], self.arrays["next_frames"][row] = obs["frames"], next_obs["frames"]

    def _rows(self, idx: np.ndarray, end: np.ndarray, ret: np.ndarray, disc: np.ndarray) -> dict[str, np.ndarray]:
        """As :meth:`ReplayBuffer._rows`, plus ``frames`` of the start rows and ``next_frames`` of the rows bootstrapped from."""
        return {**super()._rows(idx, end, ret, disc), "frames": self.arrays["frames"][idx], "next_frames": self.arrays["next_frames"][end]}


__all__ = ["ReplayBuffer", "ImageReplayBuffer", "FIELDS"]
