"""The fine-tuned termination (paper Sec. IV-C): ground-truth stage terminations gated by success predictors.

p_i(s) ~ P(task success | stage i terminated at s) is one small MLP per fine-tuned
stage on the privileged state s (:func:`termination_state`). The fine-tuned
termination is T_i(s) = T_i^r(s) * [p_i(s) > threshold]: ``env.stage_done`` where
the predictor accepts, a rejection otherwise.

The predictors ride in the agent directory (``termination_ft.safetensors`` +
``termination_ft.json``: task, stage names, fine-tuned stages, threshold, state
layout, normalisation inside the weights, training summary) and
:meth:`HybridSkillPolicy.load` attaches them. :func:`fine_tuned_oracle` is the one
place that turns an agent and an environment into the termination that replaces
the ground truth: the hybrid executor's oracle (``eval --termination oracle``,
reset banks) and the reward of residual RL. They are trained by
:mod:`reinforcegen_ros.finetune.termination_ft` (``reinforcegen finetune term``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from reinforcegen_ros.io import atomic_path, atomic_write_json, file_sha256

TERM_FORMAT = "reinforcegen_termination_ft"
TERM_VERSION = 1
TERM_WEIGHTS = "termination_ft.safetensors"
TERM_CONFIG = "termination_ft.json"
LAYOUT_VERSION = 1


# ---------------------------------------------------------------------- the privileged state s
def state_layout(objects: Sequence[str]) -> dict:
    """What :func:`termination_state` returns for a scene with ``objects`` (the predictors are bound to it)."""
    objects = [str(o) for o in objects]
    return {"version": LAYOUT_VERSION, "objects": objects, "dim": 11 + 12 * len(objects),
            "features": "eef_pos 3, eef_rot6d 6, gripper_qpos 2; per object: pos 3, rot6d 6, pos - eef_pos 3"}


def task_state_layout(task: str) -> dict:
    """The state layout of ``task``'s scene (from its environment class, no simulator built)."""
    from reinforcegen_ros.tasks import env_class

    return state_layout(env_class(task).OBJECTS)


def _rot6d(poses: np.ndarray) -> np.ndarray:
    """(T, 4, 4) -> (T, 6): the rotation's first two columns."""
    return np.swapaxes(poses[:, :3, :2], 1, 2).reshape(len(poses), 6)


def states_from_arrays(eef: np.ndarray, poses: dict[str, np.ndarray], gripper: np.ndarray, objects: Sequence[str]) -> np.ndarray:
    """(T, D) states (:func:`state_layout`) from grip-site poses (T, 4, 4), object poses by name (T, 4, 4) and finger joints (T, 2)."""
    parts = [eef[:, :3, 3], _rot6d(eef), np.asarray(gripper, dtype=float).reshape(len(eef), -1)]
    for name in objects:
        pose = poses[name]
        parts += [pose[:, :3, 3], _rot6d(pose), pose[:, :3, 3] - eef[:, :3, 3]]
    return np.concatenate(parts, axis=1).astype(np.float32)


def termination_state(env) -> np.ndarray:
    """The privileged low-dimensional state of a TaskEnv now (float32, :func:`state_layout`); no rendering."""
    robot = env.env.robots[0]
    gripper = env.env.sim.data.qpos[robot._ref_gripper_joint_pos_indexes["right"]]
    poses = {name: pose[None] for name, pose in env.object_poses().items()}
    return states_from_arrays(env.eef_pose()[None], poses, np.asarray(gripper)[None], env.objects)[0]


# ---------------------------------------------------------------------- the predictors
# what a success predictor reads of a state: all of it; all of it and each object's position in the grip site's frame;
# only the finger joints and those grip-frame positions (where along the pads an object is held, which stays put while
# the arm lifts it, where the rest of the state moves on from the states the predictor was trained on); only the
# absolute values of those positions (how far off-centre, either way: with ``layers`` 0 a logistic fit that stays graded)
PREDICTOR_INPUTS = ("state", "state_grip", "grip", "grip_abs")


@dataclass(frozen=True)
class PredictorConfig:
    """Network of one stage's success predictor."""

    hidden_dim: int = 64
    layers: int = 2
    inputs: str = "state"  # what the network reads (PREDICTOR_INPUTS): the state, + grip-frame offsets, only finger joints and those, or |those|

    @classmethod
    def from_dict(cls, values: dict) -> "PredictorConfig":
        known = {f.name for f in fields(cls)}
        values = {"inputs": "state", **values}  # predictors saved before the setting existed read the state
        if set(values) != known:
            raise ValueError(f"success predictor settings must be exactly {', '.join(sorted(known))}; got {', '.join(sorted(values))}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.inputs not in PREDICTOR_INPUTS:
            raise ValueError(f"unknown success predictor inputs '{self.inputs}'; choose one of {', '.join(PREDICTOR_INPUTS)}")


def layout_objects(dim: int) -> int:
    """How many objects a state of :func:`state_layout` with ``dim`` values describes."""
    return (dim - 11) // 12


def grip_frame_offsets(states: torch.Tensor) -> torch.Tensor:
    """(B, 3 n): each object's position relative to the grip site in the grip site's frame, from states of
    :func:`state_layout` (its rot6d holds the first two columns of the grip site's rotation).

    Where along the finger pads an object is held (Coffee's pod 2 cm off-centre slips out during the next connect
    motion) is one coordinate here, and a product of rotation and world offset in the raw state.
    """
    c0, c1 = states[:, 3:6], states[:, 6:9]
    rot = torch.stack([c0, c1, torch.linalg.cross(c0, c1)], dim=-1)  # (B, 3, 3), columns
    n = layout_objects(states.shape[1])
    rel = torch.stack([states[:, 11 + 12 * i + 9 : 11 + 12 * i + 12] for i in range(n)], dim=1)  # (B, n, 3), world frame
    return torch.einsum("bji,bnj->bni", rot, rel).reshape(len(states), 3 * n)


class SuccessPredictor(nn.Module):
    """p(s): input normalisation (from the training data), ``layers`` Linear+ReLU blocks (0: logistic regression), one logit."""

    def __init__(self, dim: int, config: PredictorConfig):
        super().__init__()
        self.kind = config.inputs
        grip = 3 * layout_objects(dim)
        dim = {"state": dim, "state_grip": dim + grip, "grip": 2 + grip, "grip_abs": grip}[self.kind]
        mods: list[nn.Module] = []
        width = dim
        for _ in range(config.layers):
            mods += [nn.Linear(width, config.hidden_dim), nn.ReLU()]
            width = config.hidden_dim
        self.net = nn.Sequential(*mods, nn.Linear(width, 1))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def inputs(self, states: torch.Tensor) -> torch.Tensor:
        """What the network reads of raw states (B, D), before normalisation (``PredictorConfig.inputs``)."""
        if self.kind == "state":
            return states
        if self.kind == "state_grip":
            return torch.cat([states, grip_frame_offsets(states)], dim=1)
        if self.kind == "grip_abs":
            return grip_frame_offsets(states).abs()
        return torch.cat([states[:, 9:11], grip_frame_offsets(states)], dim=1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of P(task success) for raw states (B, D)."""
        return self.net((self.inputs(states) - self.mean) / self.std).squeeze(-1)

    @torch.inference_mode()
    def probs(self, states: np.ndarray) -> np.ndarray:
        """P(task success) for raw states (B, D)."""
        return torch.sigmoid(self(torch.as_tensor(np.asarray(states, dtype=np.float32)))).double().numpy()


class TerminationPredictors(nn.Module):
    """The success predictors of an agent's termination-fine-tuned stages, with what they were made for."""

    def __init__(self, task: str, stage_names: Sequence[str], layout: dict, threshold: float, config: PredictorConfig, stages=()):
        super().__init__()
        self.task, self.stage_names, self.layout = task, list(stage_names), dict(layout)
        self.threshold, self.config = float(threshold), config
        self.nets = nn.ModuleDict()
        self.info: dict = {}  # training summary per stage, saved in termination_ft.json
        for k in stages:
            self.add_stage(int(k))
        self.eval()

    @property
    def stages(self) -> list[int]:
        return sorted(int(k) for k in self.nets)

    def add_stage(self, stage: int) -> SuccessPredictor:
        """The predictor of ``stage`` (a new untrained one if it has none)."""
        if not 0 <= stage < len(self.stage_names):
            raise ValueError(f"stage {stage} out of range: task '{self.task}' has {len(self.stage_names)} stages")
        if str(stage) not in self.nets:
            self.nets[str(stage)] = SuccessPredictor(int(self.layout["dim"]), self.config)
        return self.nets[str(stage)]

    def prob(self, stage: int, state: np.ndarray) -> float | None:
        """p_stage(state), or None for a stage without a predictor."""
        net = self.nets[str(stage)] if str(stage) in self.nets else None
        return None if net is None else float(net.probs(np.asarray(state)[None])[0])

    def accepts(self, stage: int, state: np.ndarray) -> bool:
        """Whether a ground-truth termination of ``stage`` at ``state`` stands (always, for stages without a predictor)."""
        p = self.prob(stage, state)
        return p is None or p > self.threshold

    def check_agent(self, agent, source: str = "termination predictors") -> None:
        """ValueError (one line) unless made for ``agent``'s task, stages and its task's state layout."""
        if self.task != agent.task:
            raise ValueError(f"{source} were trained for task '{self.task}', not '{agent.task}'")
        if self.stage_names != list(agent.stage_names):
            raise ValueError(f"{source} were trained for stages {self.stage_names}, the agent has {list(agent.stage_names)}")
        self.check_layout(task_state_layout(agent.task), source)

    def check_layout(self, layout: dict, source: str = "termination predictors") -> None:
        """ValueError (one line) unless they read states of ``layout``."""
        if self.layout != layout:
            raise ValueError(f"{source} read another state layout (objects {self.layout.get('objects')}, dim {self.layout.get('dim')}, "
                             f"version {self.layout.get('version')}) than this scene's (objects {layout['objects']}, dim {layout['dim']}, "
                             f"version {layout['version']})")

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict:
        return {"format": TERM_FORMAT, "format_version": TERM_VERSION, "task": self.task, "stage_names": self.stage_names,
                "stages": self.stages, "threshold": self.threshold, "layout": self.layout, "config": asdict(self.config), "info": self.info}

    def save(self, directory: str | Path) -> Path:
        """Write ``termination_ft.safetensors`` then ``termination_ft.json`` into the agent directory (each atomically)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        weights = directory / TERM_WEIGHTS
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata={"format": TERM_FORMAT})
        atomic_write_json(directory / TERM_CONFIG, {**self.metadata(), "weights_sha256": file_sha256(weights)})
        return directory


def has_termination_ft(directory: str | Path) -> bool:
    """Whether an agent directory holds termination predictors."""
    return (Path(directory) / TERM_CONFIG).exists()


def remove_termination_ft(directory: str | Path) -> None:
    """Delete an agent directory's predictor files (when the agent saved there has none)."""
    for name in (TERM_CONFIG, TERM_WEIGHTS):
        path = Path(directory) / name
        if path.exists():
            path.unlink()


def read_termination_ft(directory: str | Path, agent) -> TerminationPredictors | None:
    """The predictors stored in agent directory ``directory`` for ``agent`` (None without); one-line ValueError otherwise."""
    from reinforcegen_ros.policies.hsp import read_json, read_tensors

    directory = Path(directory)
    if not has_termination_ft(directory):
        return None
    meta = read_json(directory / TERM_CONFIG, "termination predictor")
    source = f"termination predictors '{directory / TERM_CONFIG}'"
    if meta.get("format") != TERM_FORMAT or meta.get("format_version") != TERM_VERSION:
        raise ValueError(f"{source} are not of format {TERM_FORMAT} v{TERM_VERSION}")
    weights = directory / TERM_WEIGHTS
    if not weights.is_file() or file_sha256(weights) != meta.get("weights_sha256"):
        raise ValueError(f"'{weights}' is missing or does not match '{TERM_CONFIG}' (interrupted save?)")
    try:
        layout = meta["layout"]
        if not isinstance(layout, dict) or not isinstance(layout.get("dim"), int):
            raise TypeError("layout")
        predictors = TerminationPredictors(meta["task"], meta["stage_names"], layout, float(meta["threshold"]),
                                           PredictorConfig.from_dict(meta["config"]), meta["stages"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source} are not a valid predictor config ({exc})") from None
    predictors.info = meta.get("info", {})
    predictors.check_agent(agent, source)
    own, tensors = predictors.state_dict(), read_tensors(weights)
    if set(own) != set(tensors) or any(tuple(own[k].shape) != tuple(tensors[k].shape) for k in own):
        raise ValueError(f"'{weights}' does not match the predictors' config (stages {meta['stages']})")
    predictors.load_state_dict(tensors)
    return predictors


def termination_ft_id(agent_spec: str | Path) -> dict | None:
    """What identifies an agent directory's predictors (stages, threshold, weights checksum), None without; for run headers."""
    directory = Path(str(agent_spec))
    if str(agent_spec).startswith("replay:") or not has_termination_ft(directory):
        return None
    meta = json.loads((directory / TERM_CONFIG).read_text())
    return {"stages": meta.get("stages"), "threshold": meta.get("threshold"), "weights_sha256": meta.get("weights_sha256")}


# ---------------------------------------------------------------------- the fine-tuned termination
class FineTunedTermination:
    """T_i(s) = T_i^r(s) * [p_i(s) > threshold]: ``env.stage_done`` gated by the agent's success predictors.

    Counts, per stage, the ground-truth terminations it rejected since :meth:`reset_counts`.
    """

    def __init__(self, env, predictors: TerminationPredictors):
        predictors.check_layout(state_layout(env.objects), "the agent's termination predictors")
        self.env, self.predictors = env, predictors
        self.rejections = [0] * len(predictors.stage_names)

    def __call__(self, stage: int) -> bool:
        if not self.env.stage_done(stage):
            return False
        if self.predictors.accepts(stage, termination_state(self.env)):
            return True
        self.rejections[stage] += 1
        return False

    def reset_counts(self) -> None:
        self.rejections = [0] * len(self.rejections)


def fine_tuned_oracle(env, agent) -> Callable[[int], bool]:
    """The termination that stands in for the ground truth: ``env.stage_done``, gated where ``agent`` carries predictors."""
    predictors = getattr(agent, "termination_ft", None)
    if predictors is None or not predictors.stages:
        return env.stage_done
    return FineTunedTermination(env, predictors)


__all__ = ["state_layout", "task_state_layout", "termination_state", "states_from_arrays", "grip_frame_offsets", "PREDICTOR_INPUTS", "PredictorConfig", "SuccessPredictor",
           "TerminationPredictors", "read_termination_ft", "has_termination_ft", "remove_termination_ft", "termination_ft_id",
           "FineTunedTermination", "fine_tuned_oracle", "TERM_WEIGHTS", "TERM_CONFIG"]
