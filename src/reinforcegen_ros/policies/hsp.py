"""The Hybrid Skill Policy: per stage, an initiation pose predictor, a skill policy and a termination classifier.

:class:`HybridSkillPolicy` implements the agent interface the hybrid executor
calls (``reset``, ``predict_pose``, ``act``, ``termination_prob``) on single,
unbatched observation dicts as produced by ``TaskEnv.observe()``.

On disk an agent is a directory with two files: ``model.safetensors`` (all
weights and normalisation statistics) and ``config.json`` (task, observation
mode and layout, stage names, network settings, training summary and the
SHA-256 of the weights file). Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from reinforcegen_ros.io import atomic_path, atomic_write_json, file_sha256
from reinforcegen_ros.policies.configuration_hsp import COMPONENTS, HSPConfig
from reinforcegen_ros.policies.encoders import ObservationSpec, make_encoder
from reinforcegen_ros.policies.pose_predictor import InitiationPosePredictor
from reinforcegen_ros.policies.residual import read_residual, remove_residual
from reinforcegen_ros.policies.skill_policy import SkillPolicy
from reinforcegen_ros.policies.termination import TerminationClassifier

FORMAT = "reinforcegen_hsp"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def limit_threads(num_threads: int) -> None:
    """Run torch on the CPU with ``num_threads`` intra-op threads (process-wide)."""
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


class StageComponents(nn.Module):
    """The three learned components of one stage, each with its own encoder."""

    def __init__(self, spec: ObservationSpec, config: HSPConfig):
        super().__init__()
        c = config
        self.pose = InitiationPosePredictor(make_encoder(spec, c, c.pose_proprio), c.hidden_dim, c.head_layers, c.pose_modes)
        self.policy = SkillPolicy(
            make_encoder(spec, c), c.hidden_dim, c.head_layers, head=c.policy_head, modes=c.gmm_modes,
            min_std=c.gmm_min_std, recurrent=c.recurrent, rnn_hidden=c.rnn_hidden,
        )
        self.term = TerminationClassifier(make_encoder(spec, c), c.hidden_dim, c.head_layers)


class HybridSkillPolicy(nn.Module):
    """Per-stage pose predictor, skill policy and termination classifier behind the agent interface."""

    def __init__(self, task: str, obs_mode: str, stage_names: list[str], spec: ObservationSpec, config: HSPConfig):
        super().__init__()
        if obs_mode != config.obs_mode:
            config = config.replace(obs_mode=obs_mode)
        self.task = task
        self.obs_mode = obs_mode
        self.stage_names = list(stage_names)
        self.spec = spec
        self.config = config
        self.info: dict = {}  # training summary, saved in config.json
        self.stage_modules = nn.ModuleList([StageComponents(spec, config) for _ in self.stage_names])
        self.register_buffer("obs_mean", torch.zeros(spec.feature_dim))
        self.register_buffer("obs_std", torch.ones(spec.feature_dim))
        self._hidden: dict[int, torch.Tensor | None] = {}
        self._rnn_steps: dict[int, int] = {}
        self._pose_mode: dict[int, int] = {}  # per stage: the hypothesis chosen at the stage's first prediction
        self._generator = torch.Generator().manual_seed(int(config.seed))  # GMM mode draws
        self.residual = None  # fine-tuned residual skill policies (policies/residual.py), kept out of state_dict
        self.termination_ft = None  # termination fine-tuning's success predictors (finetune/termination_ft.py), out of state_dict
        self.eval()

    # ------------------------------------------------------------------ structure
    @property
    def num_stages(self) -> int:
        return len(self.stage_names)

    def component(self, stage: int, name: str) -> nn.Module:
        """``pose``, ``policy`` or ``term`` of ``stage``."""
        self._check_stage(stage)
        return getattr(self.stage_modules[stage], name)

    def set_obs_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Input normalisation (low-dimensional features)."""
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def normalise(self, lowdim: torch.Tensor) -> torch.Tensor:
        return (lowdim - self.obs_mean) / self.obs_std

    def _check_stage(self, stage: int) -> None:
        if not 0 <= int(stage) < self.num_stages:
            raise ValueError(f"stage {stage} out of range: task '{self.task}' has {self.num_stages} stages")

    def _inputs(self, obs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Network inputs of one observation (batch of 1); ValueError on missing or non-finite values."""
        lowdim = self.normalise(torch.from_numpy(self.spec.lowdim(obs)))
        if not self.spec.cameras:
            return lowdim, None
        images = {}
        for cam, img in self.spec.images(obs).items():
            img = np.ascontiguousarray(img)
            images[cam] = torch.from_numpy(img if img.flags.writeable else img.copy())
        return lowdim, images

    def attach_residual(self, residual) -> None:
        """pi = pi_base + pi_res: ``act`` adds ``residual``'s correction on its stages (None: the base alone)."""
        if residual is not None:
            residual.check_agent(self)
        object.__setattr__(self, "residual", residual)  # a plain attribute: the base's weights stay as they are

    def attach_termination_ft(self, predictors) -> None:
        """Success predictors that gate ground-truth terminations (paper Sec. IV-C; None: the ground truth alone)."""
        if predictors is not None:
            predictors.check_agent(self)
        object.__setattr__(self, "termination_ft", predictors)

    def set_gmm_action(self, how: str) -> None:
        """Run-time choice of a GMM skill policy's action: ``sample`` or ``mode`` (see ``config/hsp.yaml``)."""
        self.config = self.config.replace(gmm_action=how)

    # ------------------------------------------------------------------ agent interface
    def set_episode_seed(self, seed: int) -> None:
        """Restart the GMM mode draws, so that a seeded episode plays the same way again."""
        self._generator.manual_seed(int(seed))

    def reset(self) -> None:
        """Start an episode: clear the skill policies' recurrent state and the chosen pose hypotheses."""
        self._hidden.clear()
        self._rnn_steps.clear()
        self._pose_mode.clear()

    @torch.inference_mode()
    def predict_pose(self, obs: dict, stage: int) -> np.ndarray:
        """Initiation pose (4x4, world frame) of ``stage``'s skill.

        With several pose hypotheses the first prediction of a stage takes the
        best-scored one and later predictions (re-planning) refine that same
        hypothesis, so that a change of scores does not send the arm to
        another grasp halfway through the approach.
        """
        lowdim, images = self._inputs(obs)
        poses, scores = self.component(stage, "pose").hypotheses(lowdim, images)
        mode = self._pose_mode.setdefault(stage, int(scores[0].argmax()))
        return poses[0, mode].double().numpy()

    @torch.inference_mode()
    def act(self, obs: dict, stage: int, residual: bool = True) -> np.ndarray:
        """7-D action in [-1, 1] of ``stage``'s skill policy (keeps the GRU state between calls).

        With a residual attached the action is base + residual (``residual=False``: the base alone).
        """
        policy = self.component(stage, "policy")
        lowdim, images = self._inputs(obs)
        hidden = None
        if policy.recurrent:
            steps = self._rnn_steps.get(stage, 0)
            hidden = None if steps % self.config.rnn_seq_len == 0 else self._hidden.get(stage)
            self._rnn_steps[stage] = steps + 1
        action, hidden = policy.action(lowdim, images, hidden, sample=self.config.gmm_action == "sample", generator=self._generator)
        if policy.recurrent:
            self._hidden[stage] = hidden
        base = np.clip(action[0].double().numpy(), -1.0, 1.0)
        return self.residual.apply(lowdim, base, stage, images) if residual and self.residual is not None else base

    @torch.inference_mode()
    def termination_prob(self, obs: dict, stage: int) -> float:
        """P(``stage``'s goal holds) from the termination classifier."""
        lowdim, images = self._inputs(obs)
        return float(self.component(stage, "term").prob(lowdim, images)[0])

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict:
        """What ``config.json`` holds besides the weights' checksum."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "obs_mode": self.obs_mode,
            "stages": self.stage_names,
            "spec": self.spec.to_dict(),
            "config": self.config.to_dict(),
            "info": self.info,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """All weights and buffers, contiguous, by name."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into directory ``path`` (each via temp file + rename)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights = path / WEIGHTS_FILE
        with atomic_path(weights) as tmp:
            save_file(self.tensors(), str(tmp), metadata={"format": FORMAT})
        meta = {**self.metadata(), "weights_sha256": file_sha256(weights)}
        atomic_write_json(path / CONFIG_FILE, meta)
        if self.residual is not None:
            self.residual.save(path, meta["weights_sha256"])
        else:
            remove_residual(path)
        from reinforcegen_ros.policies.fine_tuned_termination import remove_termination_ft

        if self.termination_ft is not None:
            self.termination_ft.save(path)
        else:
            remove_termination_ft(path)
        return path

    @classmethod
    def from_metadata(cls, meta: dict) -> "HybridSkillPolicy":
        """An untrained policy with the structure described by ``config.json``'s contents."""
        config = HSPConfig.from_dict(meta["config"])
        policy = cls(meta["task"], meta["obs_mode"], meta["stages"], ObservationSpec.from_dict(meta["spec"]), config)
        policy.info = meta.get("info", {})
        return policy

    @classmethod
    def load(cls, path: str | Path, task: str | None = None, obs_mode: str | None = None) -> "HybridSkillPolicy":
        """Load an agent directory; with ``task``/``obs_mode`` given, refuse a policy made for others."""
        path = Path(path)
        meta = read_agent_config(path)
        if task is not None and meta["task"] != task:
            raise ValueError(f"'{path}' holds a policy for task '{meta['task']}', not '{task}'")
        if obs_mode is not None and meta["obs_mode"] != obs_mode:
            raise ValueError(f"'{path}' holds a policy for observation mode '{meta['obs_mode']}', not '{obs_mode}'")
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ValueError(f"'{path}' lacks {WEIGHTS_FILE}; not a complete hybrid skill policy directory")
        if meta.get("weights_sha256") not in (None, file_sha256(weights)):
            raise ValueError(f"'{weights}' does not match '{path / CONFIG_FILE}' (interrupted save?)")
        try:
            policy = cls.from_metadata(meta)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"'{path / CONFIG_FILE}' is not a valid hybrid skill policy config ({exc})") from None
        policy.load_tensors(read_tensors(weights), str(weights))
        policy.attach_residual(read_residual(path, policy, file_sha256(weights)))
        from reinforcegen_ros.policies.fine_tuned_termination import read_termination_ft

        policy.attach_termination_ft(read_termination_ft(path, policy))
        limit_threads(policy.config.inference_threads)
        return policy

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Copy weights in, refusing missing, unexpected or mis-shaped tensors."""
        own = self.state_dict()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        shapes = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
        if missing or unexpected or shapes:
            detail = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} of another shape"
            first = (missing or unexpected or shapes)[0]
            raise ValueError(f"{source} does not match the policy's config ({detail}; e.g. '{first}')")
        self.load_state_dict(tensors)


# ---------------------------------------------------------------------- files
def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; one-line ValueError otherwise."""
    if not path.is_file():
        raise ValueError(f"'{path.parent}' is not a {what} directory (no {path.name})")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"'{path}' is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"'{path}' does not hold a JSON object")
    return data


def read_agent_config(path: Path) -> dict:
    """``config.json`` of an agent directory, checked to be ours."""
    if not path.is_dir():
        raise ValueError(f"hybrid skill policy directory '{path}' does not exist")
    meta = read_json(path / CONFIG_FILE, "hybrid skill policy")
    if meta.get("format") != FORMAT:
        raise ValueError(f"'{path / CONFIG_FILE}' is not a hybrid skill policy config (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"'{path}' uses hybrid skill policy format {meta.get('format_version')}, this code reads {FORMAT_VERSION}")
    return meta


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; one-line ValueError when it is unreadable."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"'{path}' is not a readable safetensors file ({exc.__class__.__name__})") from None


__all__ = ["HybridSkillPolicy", "StageComponents", "COMPONENTS", "WEIGHTS_FILE", "CONFIG_FILE", "limit_threads"]
