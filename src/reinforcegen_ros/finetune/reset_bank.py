"""The reset distribution of stage k (paper Sec. IV-B): simulator states where stage k's skill begins.

The current agent runs through the hybrid executor with ground-truth
termination, as deployed: stages 0..k-1 run (connect motion and skill), then
the planner brings the arm to stage k's predicted initiation pose. The flattened
simulator state at the tick that hands control to stage k's skill is one reset
state of stage k's RL. Scene ``seed + i`` is attempt ``i``; an attempt whose
executor fails or ends before stage k's skill yields no state.

A bank is one HDF5 file (written through :func:`reinforcegen_ros.demos.dataset.hdf5_writer`,
so a killed collection leaves the previous complete file) holding the states, their
scene seeds, the object poses and gripper pose at capture, every attempt and its outcome,
and what the states are valid for: task, stage, stage names, the scene model's
fingerprint and the agent that reached them. Rerunning the collection resumes it;
a bank of another task, stage or scene model is refused when read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from reinforcegen_ros.hybrid import Phase

BANK_FORMAT = "reinforcegen_reset_bank"
BANK_VERSION = 1
ARRAYS = ("states", "seeds", "objects", "eef_pos", "gripper")


@dataclass
class ResetBank:
    """Reset states of one stage and what they are valid for."""

    task: str
    stage: int
    stage_names: list[str]
    scene_model: str  # fingerprint of the MuJoCo model (see scene_fingerprint)
    source: dict  # how the states were reached: agent, pose source, executor settings
    states: np.ndarray  # (N, S) flattened simulator states
    seeds: np.ndarray  # (N,) scene seed of each state
    objects: np.ndarray  # (N, O) the 'object' observation at capture
    eef_pos: np.ndarray  # (N, 3) gripper position at capture
    gripper: np.ndarray  # (N, 2) the gripper controller's command state (not part of a flattened state)
    attempts: list[dict] = field(default_factory=list)  # per scene seed: {"seed", "reached", "reason"}

    def __len__(self) -> int:
        return len(self.states)

    def restore(self, env, index: int) -> dict:
        """Put ``env`` into reset state ``index`` (scene seed, simulator and gripper controller) and observe it."""
        env.reset(seed=int(self.seeds[index]))
        env.set_state(self.states[index])
        set_gripper_command(env, self.gripper[index])
        env.env.sim.data.qacc_warmstart[:] = 0.0  # the solver starts alike whatever ran before
        return env.observe()

    def add(self, result: dict) -> int:
        """Record one :func:`attempt`'s result; the number of states it added (0 or 1)."""
        reached = "states" in result
        self.attempts.append({"seed": int(result["seed"]), "reached": reached, "reason": result["reason"]})
        if reached:
            for name in ARRAYS:
                value = result["seed"] if name == "seeds" else result[name]
                setattr(self, name, np.concatenate([getattr(self, name), np.asarray(value)[None]]))
        return int(reached)

    def check(self, task: str, stage: int, scene_model: str, source: str = "reset bank") -> None:
        """ValueError (one line) unless the bank holds states of ``task``'s ``stage`` in this scene model."""
        if self.task != task:
            raise ValueError(f"{source} holds states of task '{self.task}', not '{task}'")
        if self.stage != stage:
            raise ValueError(f"{source} holds states of stage {self.stage}, not {stage}")
        if self.scene_model != scene_model:
            raise ValueError(f"{source} was collected in another scene model of '{task}' (fingerprint {self.scene_model[:12]} vs {scene_model[:12]})")


def scene_fingerprint(env) -> str:
    """SHA-256 of what a flattened state depends on: the model's sizes, joint and body names, geometry and masses."""
    model = env.env.sim.model
    h = hashlib.sha256()
    h.update(json.dumps([int(model.nq), int(model.nv), int(model.na), list(model.joint_names), list(model.body_names)]).encode())
    for arr in (model.geom_size, model.body_mass, model.jnt_range):
        h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
    return h.hexdigest()


def gripper_command(env) -> np.ndarray:
    """The gripper model's ramped command (robosuite keeps it outside the simulator state)."""
    return np.array(env.env.robots[0].gripper["right"].current_action, dtype=float)


def set_gripper_command(env, value: np.ndarray) -> None:
    env.env.robots[0].gripper["right"].current_action = np.array(value, dtype=float)


# ---------------------------------------------------------------------- one attempt
def skill_start_state(env, executor, seed: int, stage: int, horizon: int) -> tuple[np.ndarray | None, dict, str]:
    """(state, observation, '') at the tick where ``stage``'s skill takes over in scene ``seed``; (None, {}, why) if never.

    The same loop as :func:`reinforcegen_ros.rollout.run_episode`, stopped when the
    executor issues stage ``stage``'s first skill command (before the world moves).
    """
    agent = executor.agent
    if hasattr(agent, "set_episode_seed"):
        agent.set_episode_seed(seed)
    obs = env.reset(seed=seed)
    executor.reset()
    for _ in range(horizon):
        command = executor.tick(obs)
        if executor.stage == stage and executor.phase == Phase.SKILL:
            return env.get_state(), obs, ""  # (the gripper command is read by the caller, before the next reset)
        if executor.finished or executor.stage > stage:
            st = executor.status
            return None, {}, st.failure_reason or f"executor {st.phase.value} before stage {stage}'s skill"
        obs = env.step(command.action)
    return None, {}, f"horizon of {horizon} steps before stage {stage}'s skill"


# ---------------------------------------------------------------------- files
def write_bank(path: str | Path, bank: ResetBank) -> Path:
    """Write ``bank`` to ``path`` (complete file or none)."""
    from reinforcegen_ros.demos.dataset import hdf5_writer

    path = Path(path)
    with hdf5_writer(path) as f:
        for name in ARRAYS:
            f.create_dataset(name, data=getattr(bank, name))
        f.attrs["meta"] = json.dumps({
            "format": BANK_FORMAT, "format_version": BANK_VERSION, "task": bank.task, "stage": bank.stage,
            "stage_names": bank.stage_names, "scene_model": bank.scene_model, "source": bank.source, "attempts": bank.attempts,
        })
    return path


def read_bank(path: str | Path) -> ResetBank:
    """A bank file; one-line ValueError when it is missing or not a reset bank."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reset bank '{path}' does not exist")
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs["meta"])
            arrays = {name: np.array(f[name]) for name in ARRAYS}
    except (OSError, KeyError, ValueError):
        raise ValueError(f"'{path}' is not a readable reset bank") from None
    if meta.get("format") != BANK_FORMAT or meta.get("format_version") != BANK_VERSION:
        raise ValueError(f"'{path}' is not a reset bank of format {BANK_FORMAT} v{BANK_VERSION}")
    if len(arrays["states"]) and not np.all(np.isfinite(arrays["states"])):
        raise ValueError(f"reset bank '{path}' holds non-finite states")
    return ResetBank(meta["task"], int(meta["stage"]), meta["stage_names"], meta["scene_model"], meta["source"],
                     *(arrays[name] for name in ARRAYS), meta["attempts"])


def load_bank(path: str | Path, task: str, stage: int, env) -> ResetBank:
    """A bank for ``task``'s ``stage`` in ``env``'s scene model with at least one state; ValueError otherwise."""
    bank = read_bank(path)
    bank.check(task, stage, scene_fingerprint(env), f"reset bank '{path}'")
    if not len(bank):
        raise ValueError(f"reset bank '{path}' holds no states ({len(bank.attempts)} attempts reached none)")
    return bank


# ---------------------------------------------------------------------- collection
def attempt(env, executor, seed: int, stage: int, horizon: int) -> dict:
    """One attempt at scene ``seed``: the reset state and what the bank keeps beside it, or the reason there is none."""
    state, obs, reason = skill_start_state(env, executor, seed, stage, horizon)
    if state is None:
        return {"seed": seed, "reason": reason}
    return {"seed": seed, "reason": "", "states": state, "objects": np.asarray(obs["object"], dtype=float),
            "eef_pos": np.asarray(obs["robot0_eef_pos"], dtype=float), "gripper": gripper_command(env)}


def collect_bank(path: str | Path, env, executor, task: str, stage: int, states: int, seed: int, source: dict,
                 max_attempts: int | None = None, horizon: int = 1000, progress: bool = False, pool=None) -> ResetBank:
    """Collect up to ``states`` reset states of ``stage`` into ``path``, resuming a bank already there.

    Attempt ``i`` plays scene ``seed + i``. In this process the file is rewritten
    (atomically) after every attempt; with a job ``pool`` (whose jobs are scene seeds)
    after every round of as many attempts as states are missing, so the bank holds
    the same states either way. ``source`` describes the agent and settings: a bank
    collected with other ones is refused (collect a new bank to refresh the distribution).
    """
    from tqdm import tqdm

    path = Path(path)
    bank = open_bank(path, env, task, stage, seed, source)
    if states < 1 or (max_attempts is not None and max_attempts < 1):
        raise ValueError(f"a reset bank needs at least 1 state and 1 attempt, got {states} and {max_attempts}")
    limit = max_attempts if max_attempts is not None else 20 * states
    bar = tqdm(total=states, initial=min(len(bank), states), desc=f"reset bank stage {stage}", disable=not progress)
    while len(bank) < states and len(bank.attempts) < limit:
        first = seed + len(bank.attempts)
        if pool is None:
            results = [attempt(env, executor, first, stage, horizon)]
        else:
            seeds = range(first, first + min(states - len(bank), limit - len(bank.attempts)))
            results = sorted(pool.map(seeds), key=lambda r: r["seed"])
        for result in results:
            bar.update(bank.add(result))
        write_bank(path, bank)
    bar.close()
    return bank


def open_bank(path: Path, env, task: str, stage: int, seed: int, source: dict) -> ResetBank:
    """The bank at ``path`` if it was collected the same way, else a new empty one; ValueError for another bank."""
    scene = scene_fingerprint(env)
    stage_names = [s.name for s in env.stages]
    if not 0 <= stage < len(stage_names):
        raise ValueError(f"stage {stage} out of range: task '{task}' has {len(stage_names)} stages")
    source = json.loads(json.dumps({**source, "seed": int(seed)}))  # as it reads back from the file
    if not path.exists():
        return ResetBank(task, stage, stage_names, scene, source, np.zeros((0, env.get_state().size)), np.zeros(0, np.int64),
                         np.zeros((0, len(env.objects) * 7)), np.zeros((0, 3)), np.zeros((0, 2)))
    bank = read_bank(path)
    bank.check(task, stage, scene, f"reset bank '{path}'")
    if bank.source != source:
        raise ValueError(f"reset bank '{path}' was collected with other settings ({_differences(bank.source, source)}); write a new bank")
    return bank


def _differences(ours: dict, theirs: dict) -> str:
    keys = [k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    return ", ".join(f"{k} {ours.get(k)!r} vs {theirs.get(k)!r}" for k in keys)


def build_bank(path: str | Path, task: str, stage: int, agent: str, states: int, seed: int = 300_000, pose: str = "learned",
               teacher_source: str | None = None, max_attempts: int | None = None, progress: bool = True, workers: int = 1,
               pool: str = "local", address: str | None = None, teacher: str = "generation") -> ResetBank:
    """Collect a bank with a saved agent, as evaluation builds it.

    ``pose='teacher'``: HSP-Priv's privileged initiation poses from ``teacher_source``, by ``teacher``
    (``generation``: data generation's procedure; ``transform``: the transformed source pose), as ``reinforcegen eval --teacher``.

    ``workers`` > 1 (or ``pool='ray'``) plays the attempts on a job pool; the bank is the same as in this process.
    """
    from reinforcegen_ros.io import file_sha256
    from reinforcegen_ros.jobs import make_pool

    settings = {"agent": str(agent), "task": task, "pose": pose, "teacher_source": teacher_source, "teacher": teacher, "gmm_action": None,
                "stage": int(stage)}
    env, executor, horizon = oracle_executor(settings)
    jobs = None
    try:
        weights, residual = Path(agent) / "model.safetensors", Path(agent) / "residual.safetensors"
        source = {"agent_sha256": file_sha256(weights) if weights.is_file() else str(agent), "pose": pose,
                  "residual_sha256": file_sha256(residual) if residual.is_file() else None,  # earlier stages' fine-tuning
                  "teacher_source": teacher_source, "teacher": teacher if pose == "teacher" else None, "hybrid": asdict(executor.config)}
        from reinforcegen_ros.policies.fine_tuned_termination import termination_ft_id

        if termination_ft_id(agent) is not None:  # the stages before k ended on the fine-tuned termination
            source["termination_ft"] = termination_ft_id(agent)
        if workers > 1 or pool != "local":
            jobs = make_pool(pool, workers, _init_worker, (settings,), _pool_attempt, address, finalizer=_close_worker)
        return collect_bank(path, env, executor, task, stage, states, seed, source, max_attempts, horizon, progress, jobs)
    finally:
        if jobs is not None:
            jobs.close()
        env.close()


def oracle_executor(settings: dict):
    """(environment, hybrid executor with ground-truth termination, episode horizon) of the agent ``settings`` name.

    Also the rollouts of termination fine-tuning (the ground truth gated by the agent's predictors, if any).
    """
    from reinforcegen_ros.evaluation.harness import build_agent
    from reinforcegen_ros.hybrid import HybridConfig
    from reinforcegen_ros.rollout import make_executor
    from reinforcegen_ros.tasks import task_config
    from reinforcegen_ros.tasks.environment import TaskEnv

    task = settings["task"]
    cfg = task_config(task)

    def env_factory(obs_mode, cameras, image_size):
        return TaskEnv(task, obs_mode=obs_mode, cameras=cameras, image_size=image_size, config=cfg)

    env, agent = build_agent(settings, env_factory)
    hybrid = HybridConfig.load(cfg, termination="oracle")
    return env, make_executor(env, agent, hybrid, cfg.get("planning")), int(hybrid.episode_horizon or cfg.get("horizon", 1000))


# ---------------------------------------------------------------------- states along the skill
def play_skill(env, agent, bank: ResetBank, index: int, episode_seed: int, terminated) -> Iterator[tuple[int, dict, bool]]:
    """The agent's skill (base + its residual) from bank state ``index``: (skill steps so far, observation, whether
    ``terminated(stage)`` holds), first for the restored state (0 steps, not checked), then after every control step,
    without end (the caller stops)."""
    obs = bank.restore(env, index)
    agent.reset()
    agent.set_episode_seed(episode_seed)
    steps = 0
    yield steps, obs, False
    while True:
        obs = env.step(agent.act(obs, bank.stage))
        steps += 1
        yield steps, obs, bool(terminated(bank.stage))


def along_skill(bank: ResetBank, env, agent, skill_steps: list[int], seed: int, progress: bool = False) -> ResetBank:
    """The states stage k's skill visits: from each state ``i`` of ``bank`` the agent's skill (base + its residual, episode
    seed ``seed + i``) plays for each of ``skill_steps`` control steps; a state is kept where the stage has not terminated.

    The states come grouped by ``skill_steps`` in its order, each group in ``bank``'s order, so with 0 first the first
    ``len(bank)`` states are ``bank``'s own and a run that evaluates its first states evaluates where the skill starts.
    Later states put RL episodes where the skill goes wrong mid-way (Coffee's lid closing) without a long run-up.
    """
    from tqdm import tqdm

    from reinforcegen_ros.policies.fine_tuned_termination import fine_tuned_oracle

    steps = sorted(set(int(t) for t in skill_steps))
    if not steps or steps[0] < 0 or len(steps) != len(skill_steps):
        raise ValueError(f"skill steps must be distinct and at least 0, got {list(skill_steps)}")
    terminated = fine_tuned_oracle(env, agent)
    groups: dict[int, list[dict]] = {t: [] for t in steps}
    for i in tqdm(range(len(bank)), desc=f"states along stage {bank.stage}'s skill", disable=not progress):
        play = play_skill(env, agent, bank, i, seed + i, terminated)
        t, obs, done = next(play)  # the state itself (skill step 0)
        for target in steps:
            while t < target and not done:
                t, obs, done = next(play)
            if done:
                groups[target].append({"seed": int(bank.seeds[i]), "reason": f"stage ended after {t} skill steps"})
                continue
            groups[target].append({"seed": int(bank.seeds[i]), "reason": "", "states": env.get_state(),
                                   "objects": np.asarray(obs["object"], dtype=float),
                                   "eef_pos": np.asarray(obs["robot0_eef_pos"], dtype=float), "gripper": gripper_command(env)})
    out = ResetBank(bank.task, bank.stage, bank.stage_names, bank.scene_model, {}, *(getattr(bank, name)[:0] for name in ARRAYS))
    for target in [int(t) for t in skill_steps]:
        for result in groups[target]:
            out.add(result)
    return out


def build_skill_bank(path: str | Path, task: str, stage: int, agent_dir: str, from_bank: str | Path, skill_steps: list[int],
                     seed: int, progress: bool = True) -> ResetBank:
    """:func:`along_skill` of the bank ``from_bank`` with the saved agent, written to ``path`` (a new file)."""
    from reinforcegen_ros.io import file_sha256
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy
    from reinforcegen_ros.tasks.environment import TaskEnv

    path = Path(path)
    if path.exists():
        raise ValueError(f"'{path}' exists; states along the skill go to a new bank file")
    agent = HybridSkillPolicy.load(agent_dir, task=task)
    agent._check_stage(stage)
    env = TaskEnv(task)
    try:
        bank = along_skill(load_bank(from_bank, task, stage, env), env, agent, skill_steps, seed, progress)
    finally:
        env.close()
    residual = Path(agent_dir) / "residual.safetensors"
    bank.source = {"from_bank": file_sha256(from_bank), "skill_steps": [int(t) for t in skill_steps], "seed": int(seed),
                   "agent_sha256": file_sha256(Path(agent_dir) / "model.safetensors"),
                   "residual_sha256": file_sha256(residual) if residual.is_file() else None}
    write_bank(path, bank)
    return bank


_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    """A pool worker's environment and executor (an error is raised by its first job, as evaluation's workers do)."""
    try:
        env, executor, horizon = oracle_executor(settings)
        _WORKER.update(env=env, executor=executor, horizon=horizon, stage=settings["stage"], error=None)
    except Exception as exc:  # a failing pool initializer would respawn forever
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _pool_attempt(seed: int) -> dict:
    if _WORKER.get("error"):
        raise RuntimeError(f"reset bank worker setup failed: {_WORKER['error']}")
    return attempt(_WORKER["env"], _WORKER["executor"], int(seed), _WORKER["stage"], _WORKER["horizon"])


def _close_worker() -> None:
    if _WORKER.get("env") is not None:
        _WORKER.pop("env").close()


__all__ = ["ResetBank", "scene_fingerprint", "skill_start_state", "attempt", "collect_bank", "open_bank", "build_bank", "read_bank",
           "write_bank", "load_bank", "play_skill", "along_skill", "build_skill_bank"]
