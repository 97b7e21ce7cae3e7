"""Resumable, crash-safe training checkpoints keyed by ``(stage, component)``.

Every long training run (imitation, residual RL, pose and policy distillation)
keeps its state in one run directory as two files:

* ``checkpoint-eNNNN.safetensors``: every tensor of the run. The model's under
  ``model/<name>``; per key (a ``(stage, component)`` tuple such as
  ``(0, "pose")``) its optimizer's state under ``optim/<i>/<param>/<stat>`` and any
  other per-key tensors (e.g. the best weights so far) under ``<group>/<i>/<name>``,
  where ``i`` is the key's position in the JSON's ``keys`` list;
* ``checkpoint.json``: the keys, the optimizers' parameter groups, the
  caller's counters and settings, and the name and SHA-256 of the tensor file.

The tensor file is written first, the JSON last (each through
:func:`reinforcegen_ros.io.atomic_path`), and older tensor files are removed
only after that, so a run killed at any moment resumes from its last complete
checkpoint. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Hashable

if TYPE_CHECKING:
    import torch

Key = tuple[Hashable, ...]  # (stage, component), e.g. (0, "pose")
CHECKPOINT_JSON = "checkpoint.json"
WEIGHTS_GLOB = "checkpoint-e*.safetensors"


def key_label(key: Key) -> str:
    """``(0, "pose")`` -> ``"stage0.pose"``: the name of a key in logs and JSON reports (never parsed back)."""
    stage, component = key
    return f"stage{stage}.{component}"


def weights_file(epoch: int) -> str:
    return f"checkpoint-e{epoch:04d}.safetensors"


@dataclass
class Snapshot:
    """What :meth:`Checkpoint.load` read back."""

    meta: dict  # the caller's JSON metadata
    model: dict[str, torch.Tensor]
    optimizers: dict[Key, dict] = field(default_factory=dict)  # key -> optimizer state_dict
    groups: dict[str, dict[Key, dict[str, torch.Tensor]]] = field(default_factory=dict)  # group -> key -> tensors

    def restore_optimizers(self, optimizers: dict[Key, torch.optim.Optimizer]) -> None:
        """Load each key's optimizer state into ``optimizers``."""
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(self.optimizers[key])


class Checkpoint:
    """The checkpoint of one run directory; ``fmt`` names whose checkpoint it is."""

    def __init__(self, directory: str | Path, fmt: str, what: str = "training"):
        self.dir, self.format, self.what = Path(directory), fmt, what
        self.json = self.dir / CHECKPOINT_JSON

    def exists(self) -> bool:
        return self.json.exists()

    def owned(self) -> bool:
        """Whether ``checkpoint.json`` is absent or one of ours."""
        return not self.json.exists() or json_format(self.json) == self.format

    def save(self, epoch: int, model: dict[str, torch.Tensor], optimizers: dict[Key, torch.optim.Optimizer],
             meta: dict, groups: dict[str, dict[Key, dict[str, torch.Tensor]]] | None = None) -> None:
        """Write the tensors, then the JSON (``meta`` plus what :meth:`load` needs); drop older tensor files."""
        import torch
        from safetensors.torch import save_file

        from reinforcegen_ros.io import atomic_path, atomic_write_json, file_sha256

        groups = groups or {}
        keys = list(optimizers)
        for group in groups.values():
            keys += [k for k in group if k not in keys]
        index = {key: i for i, key in enumerate(keys)}
        tensors = {f"model/{name}": value.contiguous() for name, value in model.items()}
        param_groups = {}
        for key, optimizer in optimizers.items():
            sd = optimizer.state_dict()
            for pid, entries in sd["state"].items():
                for stat, value in entries.items():
                    tensors[f"optim/{index[key]}/{pid}/{stat}"] = torch.as_tensor(value).contiguous()
            param_groups[index[key]] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
        for group, per_key in groups.items():
            for key, named in per_key.items():
                tensors.update({f"{group}/{index[key]}/{name}": value.contiguous() for name, value in named.items()})
        name = weights_file(epoch)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": self.format})
        record = {
            "format": self.format,
            **meta,
            "keys": [list(k) for k in keys],
            "optimizer_keys": [index[k] for k in optimizers],
            "optimizer_groups": [param_groups[index[k]] for k in optimizers],
            "tensor_groups": {group: [index[k] for k in per_key] for group, per_key in groups.items()},
            "weights_file": name,
            "weights_sha256": file_sha256(self.dir / name),
        }
        atomic_write_json(self.json, record)
        for old in self.dir.glob(WEIGHTS_GLOB):
            if old.name != name:
                old.unlink()

    def load(self, hint: str = "") -> Snapshot:
        """Read the checkpoint back; ValueError when it is not ours or its tensor file does not match."""
        from reinforcegen_ros.io import file_sha256
        from reinforcegen_ros.policies.hsp import read_json, read_tensors

        meta = read_json(self.json, "training run")
        if meta.get("format") != self.format:
            raise ValueError(f"'{self.json}' is not a {self.what} checkpoint")
        weights = self.dir / meta["weights_file"]
        if not weights.is_file() or file_sha256(weights) != meta.get("weights_sha256"):
            raise ValueError(f"checkpoint weights '{weights}' are missing or do not match '{CHECKPOINT_JSON}'{'; ' + hint if hint else ''}")
        tensors = read_tensors(weights)
        keys = [tuple(k) for k in meta["keys"]]

        def under(prefix: str) -> dict:
            return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}

        snapshot = Snapshot(meta, under("model/"))
        for i, groups in zip(meta["optimizer_keys"], meta["optimizer_groups"]):
            state: dict[int, dict] = {}
            for name, value in under(f"optim/{i}/").items():
                pid, stat = name.split("/", 1)
                state.setdefault(int(pid), {})[stat] = value
            param_groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
            snapshot.optimizers[keys[i]] = {"state": state, "param_groups": param_groups}
        for group, indices in meta["tensor_groups"].items():
            snapshot.groups[group] = {keys[i]: under(f"{group}/{i}/") for i in indices}
        return snapshot

    def clear(self) -> None:
        """Remove this run's checkpoint files (``checkpoint.json`` only when it is ours)."""
        if self.json.exists() and json_format(self.json) == self.format:
            self.json.unlink()
        for path in self.dir.glob(WEIGHTS_GLOB + "*"):
            path.unlink()


def keyed_to_json(values: dict[Key, object]) -> list:
    """A dict keyed by tuples as JSON: ``[[key as list, value], ...]``."""
    return [[list(key), value] for key, value in values.items()]


def keyed_from_json(rows: list) -> dict[Key, object]:
    """The inverse of :func:`keyed_to_json`."""
    return {tuple(key): value for key, value in rows}


def json_format(path: Path) -> str | None:
    """The ``format`` field of a JSON file, or None."""
    try:
        return json.loads(path.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


__all__ = ["Checkpoint", "Snapshot", "Key", "key_label", "keyed_to_json", "keyed_from_json", "json_format", "CHECKPOINT_JSON"]
