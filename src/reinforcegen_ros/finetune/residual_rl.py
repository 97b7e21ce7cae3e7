"""Skill fine-tuning by residual RL (paper Sec. IV-B), one stage at a time.

The stage as an RL problem (:class:`StageEnv`): an episode starts from a state of
the stage's reset bank (the arm at the predicted initiation pose after stages
0..k-1 ran), each step applies pi_base(o) + pi_res(o, pi_base(o)), the reward is
1 when the stage's ground-truth termination holds (which ends the episode; with
``success_reward: predicted`` the stage's success predictor there instead of 1) and
0 otherwise, minus alpha * |a_res|^2 (unless ``penalty_in_reward`` is off: then the actor alone
pays it), and a time limit cuts episodes off (bootstrapped, or with
``time_limit_terminal`` a failure: with discount 1 the critic then estimates the chance of success). Where the
agent carries termination predictors (Sec. IV-C, :mod:`termination_ft`) the stage's
termination is the fine-tuned one, so skills can be fine-tuned again against it.

The learner (:class:`ResidualTD3`) is TD3 with the choices of ResFiT: the
residual is the agent's own :class:`~reinforcegen_ros.policies.residual.ResidualNet`
(zero-initialised output, bounded by ``action_scale``), the critic an ensemble of
LayerNorm MLPs on (features, base action, residual action), n-step returns,
several updates per environment step, target policy smoothing and delayed actor
updates. ``update()`` reads as the algorithm: augment and encode the batch, critic
step, then (every ``actor_delay`` updates) actor step and soft target update. What
"encode" means is the :mod:`~reinforcegen_ros.finetune.encoders` choice: the
agent's low-dimensional features (``encoder: lowdim``) or DrQ-v2's image encoder of
a camera agent's frames (``encoder: image``); networks and batches live on
``device`` (cpu or cuda).

:func:`finetune_skill` runs it with a progress bar, periodic stage success on a
fixed set of bank states, TensorBoard scalars and crash-safe checkpoints
(networks, optimizers, replay buffer, RNG states and counters, through
:class:`~reinforcegen_ros.training.checkpoint.Checkpoint`, always at an episode
end), resumes a killed run, and writes an agent directory (base + residual) that
``eval``, ``make demo`` and the ROS nodes load.
"""

from __future__ import annotations

import copy
import time
from functools import partial
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reinforcegen_ros.finetune.config import FinetuneConfig, resolve_device
from reinforcegen_ros.finetune.encoders import Encoder, LowDimEncoder, lowdim_features, make_encoder
from reinforcegen_ros.finetune.replay_buffer import ReplayBuffer
from reinforcegen_ros.policies.residual import ResidualNet
from reinforcegen_ros.policies.skill_policy import ACTION_DIM

CHECKPOINT_FORMAT = "reinforcegen_residual_rl"


# ---------------------------------------------------------------------- the stage as an RL environment
@dataclass
class StepResult:
    obs: np.ndarray | dict  # next observation as the encoder stores it (normalised features; with images also frames)
    base: np.ndarray  # base action at the next observation
    reward: float
    terminal: bool  # the stage's termination holds
    truncated: bool  # time limit


class StageEnv:
    """Stage ``stage`` of ``env`` from ``bank``'s states, stepped with base + residual actions."""

    def __init__(self, env, agent, stage: int, bank, alpha: float, time_limit: int, observe=None, success_reward: str = "termination"):
        """``observe(obs)``: what the learner reads of an observation (default: the agent's normalised features);
        ``success_reward``: what a termination earns, 1 or (``predicted``) the agent's success predictor of the stage there."""
        from reinforcegen_ros.policies.fine_tuned_termination import fine_tuned_oracle

        self.env, self.agent, self.stage, self.bank = env, agent, int(stage), bank
        self.terminated = fine_tuned_oracle(env, agent)  # ground truth, gated where the agent carries predictors
        self.success_value = self._success_value(success_reward)
        self.alpha, self.time_limit = float(alpha), int(time_limit)
        self.steps = 0
        self._base = np.zeros(7)
        self.observe = observe or partial(lowdim_features, agent)

    def _success_value(self, kind: str):
        """What a termination earns: None for 1, else a function of the environment's state now (the stage's p_k)."""
        if kind == "termination":
            return None
        from reinforcegen_ros.policies.fine_tuned_termination import termination_state

        predictors = getattr(self.agent, "termination_ft", None)
        if predictors is None or self.stage not in predictors.stages:
            raise ValueError(f"success_reward 'predicted' needs the agent's termination predictor of stage {self.stage} "
                             "(reinforcegen finetune term --stages ...); this agent has none")
        return lambda: float(predictors.prob(self.stage, termination_state(self.env)))

    def reset(self, index: int, episode_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Start from bank state ``index``; (features, base action)."""
        obs = self.bank.restore(self.env, index)
        self.agent.reset()
        self.agent.set_episode_seed(episode_seed)
        self.steps = 0
        return self._observe(obs)

    def _observe(self, obs: dict) -> tuple[np.ndarray, np.ndarray]:
        self._base = np.asarray(self.agent.act(obs, self.stage, residual=False), dtype=np.float64)
        return self.observe(obs), self._base.astype(np.float32)

    def step(self, residual: np.ndarray) -> StepResult:
        """Apply base + ``residual`` for one control step."""
        action = np.clip(self._base + residual, -1.0, 1.0)
        obs = self.env.step(action)
        self.steps += 1
        done = bool(self.terminated(self.stage))
        success = self.success_value() if done and self.success_value is not None else float(done)
        reward = success - self.alpha * float(np.sum(np.square(residual)))
        feats, base = self._observe(obs)
        return StepResult(feats, base, reward, done, not done and self.steps >= self.time_limit)


# ---------------------------------------------------------------------- networks
def layer_norm_mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` blocks of Linear + LayerNorm + ReLU, then a linear output."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
    return nn.Sequential(*mods, nn.Linear(hidden, out_dim))


class QEnsemble(nn.Module):
    """``num`` critics Q(features, base action, residual action)."""

    def __init__(self, feature_dim: int, hidden: int, layers: int, num: int, act_dim: int = 7):
        super().__init__()
        self.qs = nn.ModuleList([layer_norm_mlp(feature_dim + 2 * act_dim, hidden, layers, 1) for _ in range(num)])

    def forward(self, obs: torch.Tensor, base: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, base, res], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs])  # (num, B)


# ---------------------------------------------------------------------- the learner
class ResidualTD3:
    """TD3 on the residual: ``act`` (with exploration noise) and ``update`` (one gradient step).

    ``encoder`` (default: the low-dimensional features, ``feature_dim`` of them) is how observations become the
    features actor and critics read; networks and batches live on ``device``.
    """

    def __init__(self, actor: ResidualNet, feature_dim: int, config: FinetuneConfig, generator: torch.Generator,
                 encoder: Encoder | None = None, device: str | torch.device = "cpu"):
        c = self.config = config
        self.encoder = encoder or LowDimEncoder(feature_dim)
        self.device = torch.device(device)
        self.actor, self.actor_target = actor, copy.deepcopy(actor)
        self.critic = QEnsemble(self.encoder.out_dim, c.critic_width(), c.critic_layers, c.num_critics)
        self.critic_target = copy.deepcopy(self.critic)
        for net in (self.actor, self.actor_target, self.critic, self.critic_target):
            net.to(self.device)
        self.encoder.to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)
        self.generator = generator  # target-smoothing noise
        self.updates = 0
        for net in (self.actor_target, self.critic_target):
            net.requires_grad_(False)

    @property
    def bound(self) -> torch.Tensor:
        """Per-dimension residual bound (0 for dimensions the residual leaves alone)."""
        return self.actor.mask

    @property
    def policy(self) -> nn.Module:
        """The stage's residual as deployment runs it (the actor; with images also its encoder): what ``best`` keeps."""
        return self.encoder.policy(self.actor)

    @torch.no_grad()
    def act(self, obs: np.ndarray | dict, base: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Residual action (7,); with unit-variance exploration ``noise`` (7,) (:func:`exploration_noise`), that noise
        times explore_std x bound added, clipped to the bound."""
        features = self.encoder.encode_one(obs, self.device)
        res = self.actor(features, torch.as_tensor(base)[None].to(self.device))[0].double().cpu().numpy()
        if noise is None:
            return res
        bound = self.bound.double().cpu().numpy()
        return np.clip(res + noise * self.config.explore_std * bound, -bound, bound)

    def update(self, batch: dict[str, np.ndarray], actor_rows: int | None = None) -> dict[str, float]:
        """One critic step; every ``actor_delay``-th also an actor step (after ``critic_warmup`` updates) and a soft target update.

        ``actor_rows``: the actor learns on the batch's first rows only (the online ones, when demos fill the rest).
        """
        b = self.encoder.augment({k: torch.as_tensor(v).to(self.device) for k, v in batch.items()})  # images: random shift
        features = self.encoder.encode(b)  # images: the critic's gradient trains the encoder
        with torch.no_grad():
            next_features = self.encoder.encode(b, "next_")
        metrics = self.update_critic(b, features, next_features)
        self.updates += 1
        if self.updates % self.config.actor_delay == 0:
            if self.updates > self.config.critic_warmup:
                metrics.update(self.update_actor({k: v[:actor_rows] for k, v in b.items()}, features[:actor_rows].detach()))
            self.soft_update()
        return metrics

    def update_critic(self, b: dict[str, torch.Tensor], features: torch.Tensor, next_features: torch.Tensor) -> dict[str, float]:
        """One step of the critics (and the image encoder) toward the n-step TD target of the target networks."""
        c = self.config
        with torch.no_grad():
            bound = self.bound
            noise = torch.randn(b["next_base"].shape, generator=self.generator).to(self.device) * c.target_std
            noise = noise.clamp(-c.target_clip, c.target_clip) * bound
            next_res = torch.maximum(torch.minimum(self.actor_target(next_features, b["next_base"]) + noise, bound), -bound)
            target_q = self.critic_target(next_features, b["next_base"], next_res).min(0).values - self.reward_penalty(next_res)
            target = b["ret"] + self.reward_penalty(b["res"]) + b["disc"] * target_q
        q = self.critic(features, b["base"], b["res"])
        loss = ((q - target[None]) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        self.encoder.zero_grad()
        loss.backward()
        self.critic_opt.step()
        self.encoder.step()
        return {"critic_loss": loss.item() / len(q), "q": q.mean().item(), "target_q": target.mean().item()}

    def update_actor(self, b: dict[str, torch.Tensor], features: torch.Tensor) -> dict[str, float]:
        """One step of the actor on (detached) ``features``: maximise Q minus the residual penalty and the bias penalty."""
        res = self.actor(features, b["base"])
        loss = (self.penalty(res) - self.pessimistic_q(self.critic(features, b["base"], res))).mean() + self.bias_penalty(res)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return {"actor_loss": loss.item(), "residual_norm": res.detach().norm(dim=-1).mean().item(),
                "residual_bias": res.detach().mean(0).norm().item()}

    def pessimistic_q(self, q: torch.Tensor) -> torch.Tensor:
        """What the actor maximises of the critics' values ``q`` (num, B): their mean, less ``actor_pessimism`` times their
        standard deviation.

        Where the critics disagree (residuals unlike any the buffer holds, whose value the data do not fix) the actor
        then expects less, so a residual grows only where the ensemble agrees that it helps.
        """
        k = self.config.actor_pessimism
        return q.mean(0) - k * q.std(0) if k and len(q) > 1 else q.mean(0)

    def penalty(self, res: torch.Tensor) -> torch.Tensor | float:
        """alpha |a_res|^2 when the critic leaves the current action's penalty to the actor (``analytic_penalty``), else 0.

        The critic then learns Q'(s, a) = Q(s, a) + alpha |a|^2 (the same objective), and the actor
        maximises Q'(s, pi(s)) - alpha |pi(s)|^2: the penalty's gradient is exact from the first update,
        instead of whatever a young critic makes of it.
        """
        return self.config.alpha * (res**2).sum(-1) if self.config.analytic_penalty else 0.0

    def reward_penalty(self, res: torch.Tensor) -> torch.Tensor | float:
        """The part of the reward's penalty that the critic leaves to the actor: ``penalty`` while the reward holds it
        (``penalty_in_reward``), else 0 (the critic then learns the success return alone)."""
        return self.penalty(res) if self.config.penalty_in_reward else 0.0

    def bias_penalty(self, res: torch.Tensor) -> torch.Tensor | float:
        """``bias_penalty`` |mean of the batch's residuals|^2: what the residual adds to every state alike.

        Not part of the reward (the critic never sees it): it shapes only the policy, so that the residual
        corrects states differently rather than shifting every action by the same offset, which the imitation
        base does not pull back (a rotation offset of 0.01 costs Coffee's grasp 12 of 50 starts).
        """
        return self.config.bias_penalty * (res.mean(0) ** 2).sum() if self.config.bias_penalty else 0.0

    @torch.no_grad()
    def soft_update(self) -> None:
        tau = self.config.tau
        for net, target in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for p, tp in zip(net.parameters(), target.parameters()):
                tp.lerp_(p, tau)

    # ------------------------------------------------------------------ checkpoint contents
    def modules(self) -> dict[str, nn.Module]:
        """Checkpointed networks (the image encoder's too, as ``encoder``)."""
        return {"actor": self.actor, "actor_target": self.actor_target, "critic": self.critic, "critic_target": self.critic_target,
                **self.encoder.modules()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Checkpointed optimizers by name."""
        return {"actor": self.actor_opt, "critic": self.critic_opt, **self.encoder.optimizers()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{k}": v.detach().cpu().clone() for name, m in self.modules().items() for k, v in m.state_dict().items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + "/")})


# ---------------------------------------------------------------------- evaluation of the stage
def evaluate_stage(senv: StageEnv, learner: ResidualTD3, indices: list[int], seed: int) -> dict:
    """Stage success, mean steps to success (None without one) and the failed bank states of the deterministic residual
    on bank states ``indices``."""
    wins, steps, failed = 0, [], []
    for i, index in enumerate(indices):
        obs, base = senv.reset(index, seed + i)
        while True:
            out = senv.step(learner.act(obs, base))
            obs, base = out.obs, out.base
            if out.terminal or out.truncated:
                break
        wins += out.terminal
        if out.terminal:
            steps.append(senv.steps)
        else:
            failed.append(int(index))
    return {"success": wins / max(len(indices), 1), "steps": float(np.mean(steps)) if steps else None, "episodes": len(indices),
            "failed": failed}


def reset_weights(states: int, failed: list[int], weight: float) -> np.ndarray | None:
    """Probabilities of starting a training episode from each of ``states`` bank states: ``weight`` times as high for the
    ``failed`` ones as for the rest; None (uniform, drawn as before this setting existed) when ``weight`` is 1 or none failed."""
    if weight == 1.0 or not failed:
        return None
    w = np.ones(states)
    w[sorted(set(failed))] = weight
    return w / w.sum()


# ---------------------------------------------------------------------- the run
@dataclass
class RunState:
    """Counters of a run (checkpointed)."""

    env_steps: int = 0
    episodes: int = 0
    successes: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    seconds: float = 0.0
    best_success: float = -1.0  # the highest evaluated stage success so far ...
    best_env_steps: int = 0  # ... and when (the residual's weights then are kept as ``best``)


def _key(stage: int, name: str) -> tuple:
    return (stage, name)


def save_checkpoint(ckpt, stage: int, learner: ResidualTD3, buffer: ReplayBuffer, state: RunState, rng: np.random.Generator,
                    meta: dict, history: list[dict], best: dict[str, torch.Tensor]) -> None:
    """Networks, optimizers, replay buffer, RNG states, counters and the best residual, crash-safely (tensors first, JSON last)."""
    rows, counters = buffer.state()
    groups = {
        "replay": {_key(stage, "replay"): {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in rows.items()}},
        "rng": {_key(stage, "rng"): {"torch": learner.generator.get_state()}},
        "best": {_key(stage, "best"): best},
    }
    groups["rng"][_key(stage, "rng")].update(learner.encoder.rng_state())
    optimizers = {_key(stage, name): opt for name, opt in learner.optimizers().items()}
    record = {**meta, "run": state.__dict__, "updates": learner.updates, "replay": counters,
              "numpy_rng": rng.bit_generator.state, "history": history}
    ckpt.save(state.env_steps, learner.tensors(), optimizers, record, groups)


def restore_checkpoint(ckpt, stage: int, learner: ResidualTD3, buffer: ReplayBuffer, rng: np.random.Generator,
                       best: dict[str, torch.Tensor]) -> tuple[RunState, list[dict]]:
    """Put a checkpoint back into ``learner``, ``buffer``, ``rng`` and ``best``; the counters and the evaluation history."""
    snap = ckpt.load()
    learner.load_tensors(snap.model)
    snap.restore_optimizers({_key(stage, name): opt for name, opt in learner.optimizers().items()})
    rows = {name: t.numpy() for name, t in snap.groups["replay"][_key(stage, "replay")].items()}
    buffer.load_state(rows, snap.meta["replay"])
    learner.generator.set_state(snap.groups["rng"][_key(stage, "rng")]["torch"])
    learner.encoder.set_rng_state(snap.groups["rng"][_key(stage, "rng")])
    learner.updates = int(snap.meta["updates"])
    rng.bit_generator.state = snap.meta["numpy_rng"]
    best.update(snap.groups["best"][_key(stage, "best")])
    return RunState(**snap.meta["run"]), list(snap.meta.get("history", []))


def check_resumable(ckpt, meta: dict, config: FinetuneConfig) -> None:
    """ValueError (one line) unless the checkpoint in ``ckpt`` is this run's: same task, stage, agent, bank and settings."""
    from reinforcegen_ros.policies.hsp import read_json

    saved = read_json(ckpt.json, "residual RL run")
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"'{ckpt.json}' is not a residual RL checkpoint; choose another --out")
    differ = [f"{k} {saved.get(k)!r} vs {v!r}" for k, v in meta.items() if k != "config" and saved.get(k) != v]
    differ += config.mismatches(saved.get("config", {}))
    if differ:
        raise ValueError(f"'{ckpt.dir}' holds a run with other settings ({'; '.join(differ[:3])}); use another --out or --restart")


def finetune_skill(task: str, stage: int, agent_dir: str | Path, steps: int, out: str | Path, bank: str | Path | None = None,
                   config: FinetuneConfig | None = None, progress: bool = True, restart: bool = False, pose: str = "learned",
                   teacher_source: str | None = None, env=None, demos: str | Path | None = None, workers: int = 1,
                   pool: str = "local", address: str | None = None, teacher: str = "generation") -> dict:
    """Fine-tune ``stage``'s skill of the agent in ``agent_dir`` for ``steps`` env steps; write ``<out>/agent``; a summary.

    Without ``bank`` the reset states are collected into ``<out>/bank_stage<k>.hdf5``
    (resumable) with the agent itself (``pose='teacher'``: HSP-Priv's initiation poses), on ``workers``
    of a ``pool`` (local processes or Ray at ``address``).
    A checkpoint in ``out`` is resumed (it must be this run's) unless ``restart``.
    ``demos`` (generated HDF5): ``demo_fraction`` of each critic batch from its stage-``stage`` skill segments.
    """
    from reinforcegen_ros.finetune.reset_bank import build_bank
    from reinforcegen_ros.training.checkpoint import Checkpoint

    config = config or FinetuneConfig()
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    resolve_device(config.device)
    if demos is not None and config.encoder == "image":
        raise ValueError("--demos feeds the low-dimensional encoder only; the image encoder has no demo frames yet")
    out = Path(out)
    agent, residual = load_for_finetuning(agent_dir, task, stage, config)
    ckpt = Checkpoint(out, CHECKPOINT_FORMAT, "residual RL")
    if restart:
        ckpt.clear()
    foreign = sorted(p.name for p in out.iterdir() if not _run_file(p.name)) if out.is_dir() else []
    if foreign and not ckpt.exists():
        raise ValueError(f"--out '{out}' holds other files ({', '.join(foreign[:3])}); choose a new or empty run directory")
    if bank is None:
        bank = out / f"bank_stage{stage}.hdf5"
        build_bank(bank, task, stage, str(agent_dir), config.bank_states, config.bank_seed, pose, teacher_source, progress=progress,
                   workers=workers, pool=pool, address=address, teacher=teacher)
    own_env = env is None
    if own_env:
        from reinforcegen_ros.tasks.environment import TaskEnv

        cams = agent.spec.cameras  # a camera agent (encoder image) renders what it sees
        env = TaskEnv(task, obs_mode="rgb", cameras=tuple(cams), image_size=agent.spec.image_size) if cams else TaskEnv(task)
    try:
        run = Run.open(env, agent, residual, stage, Path(agent_dir), Path(bank), demos, ckpt, config)
        run.train(steps, out / "tb", progress)
    finally:
        if own_env:
            env.close()
    return run.write_agent(out)


def load_for_finetuning(agent_dir: str | Path, task: str, stage: int, config: FinetuneConfig):
    """(agent, its residual or a new zero one); ValueError for another task, a stage it lacks or other residual settings."""
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy, limit_threads
    from reinforcegen_ros.policies.residual import SkillResidual

    limit_threads(config.num_threads)
    agent = HybridSkillPolicy.load(agent_dir, task=task)
    agent._check_stage(stage)
    residual = agent.residual or SkillResidual.for_agent(agent, config.residual_config())
    if residual.config != config.residual_config():
        raise ValueError(f"'{agent_dir}' holds a residual with other network settings ({residual.config}) than the config's")
    return agent, residual


@dataclass
class Run:
    """One stage's residual RL run: environment, learner, buffers, counters, evaluation history and best residual."""

    senv: StageEnv
    residual: object  # the agent's SkillResidual
    learner: ResidualTD3
    buffer: ReplayBuffer
    demos: ReplayBuffer | None
    state: RunState
    history: list[dict]
    best: dict[str, torch.Tensor]
    rng: np.random.Generator
    ckpt: object  # training.checkpoint.Checkpoint
    meta: dict
    eval_states: list[int]

    @classmethod
    def open(cls, env, agent, residual, stage: int, agent_dir: Path, bank: Path, demos, ckpt, config: FinetuneConfig) -> "Run":
        """A new run, or the one checkpointed in ``ckpt`` (refused if it was made with another agent, bank, demos or settings)."""
        from reinforcegen_ros.finetune.reset_bank import load_bank
        from reinforcegen_ros.policies.fine_tuned_termination import termination_ft_id
        from reinforcegen_ros.io import file_sha256

        reset_bank = load_bank(bank, agent.task, stage, env)
        meta = {"task": agent.task, "stage": int(stage), "base_weights_sha256": file_sha256(agent_dir / "model.safetensors"),
                "bank_sha256": file_sha256(bank), "demos": file_id(demos), "config": config.to_dict(),
                "termination_ft": termination_ft_id(agent_dir)}  # the reward's termination (None, as in older runs: the ground truth)
        if ckpt.exists():
            check_resumable(ckpt, meta, config)
        torch.manual_seed(config.seed)
        encoder, actor = make_encoder(residual.add_stage(stage), residual.feature_dim, residual.spec, config)
        learner = ResidualTD3(actor, residual.feature_dim, config, torch.Generator().manual_seed(config.seed + 1), encoder,
                              resolve_device(config.device))
        demo_rows = None
        if demos is not None:
            from reinforcegen_ros.finetune.demos import demo_buffer

            if config.success_reward != "termination":
                raise ValueError("success_reward 'predicted' has no success predictor values for the demos' terminations; "
                                 "run without --demos")

            demo_rows = demo_buffer(demos, agent, stage, learner.bound.double().cpu().numpy(), config.reward_alpha)
        run = cls(StageEnv(env, agent, stage, reset_bank, config.reward_alpha, config.stage_time_limit, partial(encoder.observe, agent),
                           config.success_reward),
                  residual, learner,
                  encoder.make_buffer(config.buffer_size), demo_rows,
                  RunState(next_eval=config.eval_every, next_checkpoint=config.checkpoint_every), [], {},
                  np.random.default_rng(config.seed), ckpt, meta, [i % len(reset_bank) for i in range(config.eval_episodes)])
        if ckpt.exists():
            run.state, run.history = restore_checkpoint(ckpt, stage, learner, run.buffer, run.rng, run.best)
        return run

    @property
    def config(self) -> FinetuneConfig:
        return self.learner.config

    @property
    def reset_weights(self) -> np.ndarray | None:
        """Where training episodes start: ``reset_failed_weight`` times as often from the states the first evaluation failed."""
        first = self.history[0] if self.history else {}
        return reset_weights(len(self.senv.bank), first.get("failed", []), self.config.reset_failed_weight)

    def train(self, steps: int, logdir: Path, progress: bool = True) -> None:
        """Episodes until ``steps`` env steps, evaluating and checkpointing as configured (at episode ends)."""
        from tqdm import tqdm

        st, cfg, senv = self.state, self.config, self.senv
        writer = _tensorboard(logdir)
        bar = tqdm(total=steps, initial=min(st.env_steps, steps), desc=f"{senv.env.task} stage {senv.stage} residual RL", disable=not progress)
        if not self.history:  # the base policy alone (or the residual the agent came with)
            evaluate(senv, self.learner, self.eval_states, st, self.history, self.best)
        start = time.perf_counter() - st.seconds
        weights = self.reset_weights  # fixed by the first evaluation
        while st.env_steps < steps:
            before = st.env_steps
            won = run_episode(senv, self.learner, self.buffer, st, self.rng, cfg, writer, self.demos, weights)
            st.episodes, st.successes, st.seconds = st.episodes + 1, st.successes + int(won), time.perf_counter() - start
            bar.update(min(st.env_steps, steps) - min(before, steps))
            if st.env_steps >= st.next_eval or st.env_steps >= steps:
                evaluate(senv, self.learner, self.eval_states, st, self.history, self.best)
                st.next_eval = st.env_steps + cfg.eval_every
                _log(writer, "eval", self.history[-1], st.env_steps)
                bar.set_postfix(success=f"{self.history[-1]['success']:.2f}", train=f"{st.successes / st.episodes:.2f}")
            if st.env_steps >= st.next_checkpoint or st.env_steps >= steps:
                st.next_checkpoint = st.env_steps + cfg.checkpoint_every
                save_checkpoint(self.ckpt, senv.stage, self.learner, self.buffer, st, self.rng, self.meta, self.history, self.best)
        bar.close()
        if writer is not None:
            writer.close()

    def write_agent(self, out: Path) -> dict:
        """``<out>/agent`` (base + residual: the best-evaluated or the last, per ``agent_weights``) and ``summary.json``."""
        from reinforcegen_ros.io import atomic_write_json

        st, cfg, stage, actor = self.state, self.config, self.senv.stage, self.learner.policy
        written = st.env_steps
        if cfg.agent_weights == "best":
            actor.load_state_dict(self.best)
            written = st.best_env_steps
        before, after = self.history[0], self.history[-1]
        self.residual.info[str(stage)] = {"env_steps": st.env_steps, "episodes": st.episodes, "bank": self.meta["bank_sha256"],
                                          "weights_of_env_steps": written, "before": before, "after": after, "config": cfg.to_dict()}
        agent = self.senv.agent
        self.residual.to("cpu")  # where the agent acts
        agent.attach_residual(self.residual)
        agent.save(out / "agent")
        summary = {"task": agent.task, "stage": stage, "env_steps": st.env_steps, "episodes": st.episodes, "updates": self.learner.updates,
                   "seconds": st.seconds, "before": before, "after": after, "history": self.history, "agent": str(out / "agent"),
                   "agent_weights": cfg.agent_weights, "weights_of_env_steps": written}
        atomic_write_json(out / "summary.json", summary)
        plot_curve(summary, out / "curve.png")
        return summary


def plot_curve(summary: dict, path: Path) -> Path:
    """Stage success (and mean steps of the successes) on the evaluation states against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reinforcegen_ros.io import atomic_save_figure

    hist = summary["history"]
    x = [h["env_steps"] for h in hist]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(x, [100 * h["success"] for h in hist], "o-", color="#2f6b3a", label="stage success (%)")
    ax.set_ylim(-2, 102)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("stage success (%)")
    steps = ax.twinx()
    steps.plot(x, [np.nan if h["steps"] is None else h["steps"] for h in hist], "s--", color="#6a9fd4", label="steps per success")
    steps.set_ylabel("steps per success")
    ax.set_title(f"{summary['task']} stage {summary['stage']}: residual RL, {hist[-1]['episodes']} evaluation states", fontsize=10)
    fig.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def evaluate(senv: StageEnv, learner: ResidualTD3, indices: list[int], state: RunState, history: list[dict],
             best: dict[str, torch.Tensor]) -> None:
    """Evaluate the stage, append the result to ``history`` and keep the residual's weights if they beat the best so far."""
    history.append({"env_steps": state.env_steps, **evaluate_stage(senv, learner, indices, EVAL_SEED)})
    if history[-1]["success"] > state.best_success:  # ties keep the earlier weights (the base first)
        state.best_success, state.best_env_steps = history[-1]["success"], state.env_steps
        best.update({k: v.detach().cpu().clone() for k, v in learner.policy.state_dict().items()})


def _run_file(name: str) -> bool:
    """Whether ``name`` is something a run directory holds (also left behind by a killed run)."""
    return name in ("summary.json", "curve.png", "tb", "agent") or name.startswith(("checkpoint", "bank_stage")) or name.endswith(".tmp")


EVAL_SEED = 900_000  # episode seeds of the evaluations (base-policy GMM draws), away from the training episodes'


def sample_batch(buffer: ReplayBuffer, demos: ReplayBuffer | None, config: FinetuneConfig, rng: np.random.Generator) -> tuple[dict, int]:
    """A training batch and its number of online rows (first); ``demo_fraction`` of the rows from ``demos`` if given."""
    n_demo = int(round(config.demo_fraction * config.batch_size)) if demos is not None else 0
    online = buffer.sample(config.batch_size - n_demo, config.nstep, config.discount, rng)
    if not n_demo:
        return online, len(online["ret"])
    offline = demos.sample(n_demo, config.nstep, config.discount, rng)
    return {k: np.concatenate([online[k], offline[k]]) for k in online}, len(online["ret"])


def exploration_noise(rng: np.random.Generator, correlation: float, last: np.ndarray | None) -> np.ndarray:
    """This tick's unit-variance exploration noise (ACTION_DIM,): ``correlation`` x ``last`` (the episode's previous
    tick's; None at its first) + sqrt(1 - correlation^2) x fresh Gaussian noise, an AR(1) process of the same std.

    One fresh draw per tick, where ``act`` drew its noise before this existed, so uncorrelated runs replay as before.
    """
    fresh = rng.normal(0.0, 1.0, ACTION_DIM)
    return fresh if last is None else correlation * last + np.sqrt(1.0 - correlation**2) * fresh


def run_episode(senv: StageEnv, learner: ResidualTD3, buffer: ReplayBuffer, state: RunState, rng: np.random.Generator,
                config: FinetuneConfig, writer=None, demos: ReplayBuffer | None = None, weights: np.ndarray | None = None) -> bool:
    """One training episode from a random bank state (uniform, or drawn with ``weights``), with updates once ``seed_steps``
    are collected; whether it succeeded."""
    index = rng.integers(len(senv.bank)) if weights is None else rng.choice(len(senv.bank), p=weights)
    obs, base = senv.reset(int(index), config.seed * 1_000_003 + state.episodes)
    noise = None
    while True:
        noise = exploration_noise(rng, config.explore_correlation, noise)
        res = learner.act(obs, base, noise=noise)
        out = senv.step(res)
        ended = out.terminal or (out.truncated and config.time_limit_terminal)  # no bootstrap past either
        buffer.add(obs, base, res, out.reward, ended, out.truncated, out.obs, out.base)
        state.env_steps += 1
        if state.env_steps > config.seed_steps and len(buffer) >= config.batch_size:
            for _ in range(config.updates_per_step):
                metrics = learner.update(*sample_batch(buffer, demos, config, rng))
            if state.env_steps % 100 == 0:
                _log(writer, "train", metrics, state.env_steps)
        obs, base = out.obs, out.base
        if out.terminal or out.truncated:
            return out.terminal


def file_id(path: str | Path | None) -> str | None:
    """A file named by its path and size (a dataset may be too large to hash at every start)."""
    return None if path is None else f"{Path(path).resolve()} ({Path(path).stat().st_size} bytes)"


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: no curves, the run goes on
        return None
    return SummaryWriter(str(path))


def _log(writer, prefix: str, values: dict, step: int) -> None:
    if writer is None:
        return
    for name, value in values.items():
        if isinstance(value, (int, float)) and np.isfinite(value):
            writer.add_scalar(f"{prefix}/{name}", value, step)


__all__ = ["StageEnv", "QEnsemble", "ResidualTD3", "finetune_skill", "evaluate_stage", "reset_weights", "RunState", "CHECKPOINT_FORMAT"]
