"""Evaluate an agent over many seeded episodes, in parallel, and report it (paper Tables I-III).

Episode ``i`` always plays the scene of seed ``seed + i``, so two agents
evaluated with the same ``seed`` meet exactly the same scenes. Episodes run on
a local spawn process pool or on Ray actors; each worker builds its own
environment, agent, planner and executor once. The report gives the success
rate with a 95% Wilson score interval, per-stage success, mean/median steps
per stage and failure reasons, written as ``results.json``, ``results.md``, a
bar plot ``results.png`` and ``K`` videos with stage and phase overlaid.

Agents: a trained policy directory (``HybridSkillPolicy.load``), or
``replay:<source.hdf5>`` for the :class:`~reinforcegen_ros.policies.replay.SourceReplayAgent`
(needs no trained model). Variants of the paper's ablations: ``termination``
``oracle`` (Table III), ``replan=False`` (the "HSP" row) and ``pose="teacher"``
(HSP-Priv: initiation poses from the privileged teacher).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
import typing
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from reinforcegen_ros.rollout import EpisodeResult
from reinforcegen_ros.jobs import POOL_KINDS, make_pool
from reinforcegen_ros.io import atomic_save_figure, atomic_write_text

EVAL_SEED = 200_000  # scene seed of episode 0: away from source demos (0..) and generated demos (100000..)
REPLAY_PREFIX = "replay:"
POSE_SOURCES = ("learned", "teacher")
# HSP-Priv's teacher: "generation" re-enacts data generation (SkillAdapter: reachable source, held-object grasp
# correction, the better-reaching turn of a symmetric grasp, the skill's gripper held while connecting), so the skill
# starts where its training data started; "transform" only transforms the source initiation pose (the earlier teacher)
TEACHERS = ("generation", "transform")
Z_95 = 1.959963984540054  # standard normal quantile of 0.975


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding must not exclude p itself


# ---------------------------------------------------------------------- worker side
_WORKER: dict = {}


def build_agent(settings: dict, env_factory):
    """(env, agent) for ``settings['agent']``: ``replay:<hdf5>`` or a policy directory."""
    spec = settings["agent"]
    if spec.startswith(REPLAY_PREFIX):
        from reinforcegen_ros.policies.replay import SourceReplayAgent

        env = env_factory("privileged", None, 84)
        return env, SourceReplayAgent.from_dataset(spec[len(REPLAY_PREFIX) :], env)
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    agent = HybridSkillPolicy.load(spec, task=settings["task"])
    if settings.get("gmm_action"):
        agent.set_gmm_action(settings["gmm_action"])
    cameras, size = agent_cameras(agent)
    env = env_factory(agent.obs_mode, cameras, size)
    if settings["pose"] == "teacher":
        from reinforcegen_ros.policies.replay import SourceReplayAgent
        from reinforcegen_ros.policies.teacher import PrivilegedTeacher, TeacherPoseAgent

        if settings.get("teacher", "transform") == "generation":  # generation's own choice and adaptation of the source
            teacher = SourceReplayAgent.from_dataset(settings["teacher_source"], env)
        else:  # the source initiation pose transformed by the reference pose, nothing more
            teacher = PrivilegedTeacher.from_dataset(settings["teacher_source"], settings["task"])
        agent = TeacherPoseAgent(agent, teacher)
    return env, agent


def agent_cameras(agent) -> tuple[list[str] | None, int]:
    """Cameras and image size an agent observes (its ``cameras``/``image_size`` or its observation spec's)."""
    spec = getattr(agent, "spec", None)
    cameras = getattr(agent, "cameras", None) or list(getattr(spec, "cameras", None) or []) or None
    size = getattr(agent, "image_size", None) or getattr(spec, "image_size", None) or 84
    return cameras, int(size)


def init_worker(settings: dict) -> None:
    """Build this worker's environment, agent and executor (errors are raised by the first job)."""
    try:
        from reinforcegen_ros.rollout import make_executor
        from reinforcegen_ros.hybrid import HybridConfig
        from reinforcegen_ros.tasks import task_config
        from reinforcegen_ros.tasks.environment import TaskEnv

        cfg = task_config(settings["task"])
        render = True if settings["video"] > 0 else None

        def env_factory(obs_mode, cameras, image_size):
            return TaskEnv(settings["task"], obs_mode=obs_mode, cameras=cameras, image_size=image_size, config=cfg, render=render,
                           step_path=settings.get("step_path"))

        env, agent = build_agent(settings, env_factory)
        hybrid = HybridConfig.from_dict(settings["hybrid"])
        _WORKER.update(env=env, executor=make_executor(env, agent, hybrid, cfg.get("planning")), settings=settings, error=None)
    except Exception as exc:  # reported by run_job: a failing pool initializer would respawn forever
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def run_job(job: tuple[int, int, bool]) -> EpisodeResult:
    """Episode ``index`` in the scene of ``seed`` (after :func:`init_worker`), optionally filmed."""
    from reinforcegen_ros.rollout import run_episode

    if _WORKER.get("error"):
        raise RuntimeError(f"evaluation worker setup failed: {_WORKER['error']}")
    index, seed, film = job
    env, executor, settings = _WORKER["env"], _WORKER["executor"], _WORKER["settings"]
    frames: list = []
    hook = _frame_hook(frames, settings, seed) if film else None
    result = run_episode(env, executor, seed, settings["horizon"], index=index, on_frame=hook, action_noise=settings.get("action_noise", 0.0))
    if film:
        from reinforcegen_ros.evaluation.video import write_video

        path = Path(settings["out_dir"]) / "videos" / f"episode_{index:04d}_seed_{seed}.mp4"
        result.video = str(write_video(frames, path))
    return result


def _frame_hook(frames: list, settings: dict, seed: int):
    """Render a frame per control step with task, seed, stage, phase, termination probability and re-plans."""
    from reinforcegen_ros.evaluation.video import overlay

    def hook(env, executor, step: int) -> None:
        st = executor.status
        lines = [
            f"{settings['task']}  seed {seed}  t={step}",
            f"stage {st.stage} {env.stages[st.stage].name}",
            f"{st.phase.value}  p_term {st.termination_prob:.2f}  replans {st.replans}",
        ]
        frames.append(overlay(env.render(settings["video_camera"], settings["video_size"]), lines))

    return hook


def close_worker() -> None:
    """Release the in-process worker's environment (``workers=1``)."""
    if _WORKER.get("env") is not None:
        _WORKER.pop("env").close()
        _WORKER.pop("executor", None)


# ---------------------------------------------------------------------- the evaluation
def evaluate(
    task: str,
    agent_spec: str,
    episodes: int = 50,
    workers: int = 1,
    pool: str = "local",
    seed: int = EVAL_SEED,
    termination: str = "learned",
    replan: bool = True,
    pose: str = "learned",
    video: int = 0,
    out_dir: str | Path | None = None,
    teacher_source: str | Path | None = None,
    address: str | None = None,
    hybrid: dict | None = None,
    video_camera: str = "agentview",
    video_size: int = 256,
    progress: bool = True,
    command: str | None = None,
    resume: bool = False,
    gmm_action: str | None = None,
    overwrite: bool = False,
    teacher: str = "generation",
    step_path: str | None = None,
    action_noise: float = 0.0,
) -> dict:
    """Evaluate ``agent_spec`` on ``episodes`` scenes (seeds ``seed``..) and write the report to ``out_dir``.

    Returns the summary that is also written as ``results.json``. ``hybrid``
    overrides executor settings of ``config/hybrid.yaml``; ``command`` is
    quoted in the report (default: this call). Every finished episode is
    appended to ``episodes.jsonl``; with ``resume`` the episodes already there
    (from a run with the same settings) are kept and only the rest are played;
    a directory that already holds episodes is refused unless ``resume`` or
    ``overwrite`` is given. A run whose episodes all fail with the same error (a
    setting the agent or scene cannot work with) raises :class:`EvaluationError`
    after :data:`ERROR_ABORT_AFTER` of them instead of reporting 0%, and a failed
    run removes the directory it created while it holds no finished episode.
    ``gmm_action`` overrides how GMM skill policies pick actions (``sample``/``mode``);
    ``step_path`` (``lean``/``stock``) overrides the simulation config's step path.
    ``action_noise`` is the std of zero-mean Gaussian noise on the skill actions' 6 arm dims
    (paper Fig. 8; :class:`~reinforcegen_ros.rollout.SkillActionNoise`).
    """
    from tqdm import tqdm

    from reinforcegen_ros.hybrid import HybridConfig
    from reinforcegen_ros.tasks import stages, task_config

    settings = _settings(task, agent_spec, episodes, pool, termination, replan, pose, video, out_dir, teacher_source, video_camera, video_size,
                         teacher, step_path, action_noise)
    hybrid = dict(hybrid_override(f"{key}={json.dumps(value)}") for key, value in (hybrid or {}).items())  # typed as --set
    hybrid_cfg = HybridConfig.load(task_config(task), **{**(hybrid or {}), "termination": termination, "replan": replan})
    settings["hybrid"] = asdict(hybrid_cfg)
    settings["horizon"] = int(hybrid_cfg.episode_horizon or task_config(task).get("horizon", 1000))
    settings["gmm_action"] = skill_action(agent_spec, gmm_action)
    identity = {"task": task, "agent": agent_spec, "seed": seed, "pose": pose, "hybrid": settings["hybrid"], "horizon": settings["horizon"],
                "gmm_action": settings["gmm_action"], "step_path": settings["step_path"], "action_noise": settings["action_noise"]}
    if "teacher" in settings:
        identity["teacher"] = settings["teacher"]
    from reinforcegen_ros.policies.fine_tuned_termination import termination_ft_id

    term_ft = termination_ft_id(agent_spec) if termination == "oracle" else None
    if term_ft is not None:  # the ground truth gated by the agent's termination predictors (paper Sec. IV-C)
        identity["termination_ft"] = term_ft
    if resume and overwrite:
        raise ValueError("--resume keeps the episodes in --out and --overwrite replaces them; choose one")
    out = Path(settings["out_dir"])
    created = not out.exists()
    log = EpisodeLog(out, identity, resume, overwrite)
    results: list[EpisodeResult] = [r for r in log.done if r.index < episodes]
    finished = {r.index for r in results}
    jobs = [(i, seed + i, i < video) for i in range(episodes) if i not in finished]
    start = time.perf_counter()
    bar = tqdm(total=episodes, initial=len(results), desc=f"eval {task}", unit="ep", disable=not progress)
    played: list[EpisodeResult] = []
    try:
        if jobs:
            job_pool = make_pool(pool, workers, init_worker, (settings,), run_job, address, finalizer=close_worker)
            try:
                for result in job_pool.map(jobs):
                    results.append(result)
                    played.append(result)
                    log.append(result)
                    bar.update(1)
                    bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
                    check_systematic_error(played, len(jobs))
            finally:
                job_pool.close()
    except BaseException as exc:
        if isinstance(exc, EvaluationError):
            log.rollback()  # episodes that only repeat a configuration error are not results
        log.finish(failed=True)
        if created and not log.holds_episodes():
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        bar.close()
    log.finish(failed=False)
    results.sort(key=lambda r: r.index)
    summary = summarize(results, [s.name for s in stages(task)])
    summary.update(
        task=task, agent=agent_spec, seeds=[seed, seed + episodes - 1], workers=workers, executor=pool,
        settings={"termination": termination, "replan": replan, "pose": pose, "horizon": settings["horizon"], "hybrid": settings["hybrid"],
                  "gmm_action": settings["gmm_action"], "step_path": settings["step_path"], "teacher": settings.get("teacher"),
                  "termination_ft": term_ft, "action_noise": settings["action_noise"]},
        wall_seconds=round(time.perf_counter() - start, 2),
        command=command or f"evaluate({task!r}, {agent_spec!r}, episodes={episodes}, seed={seed}, termination={termination!r}, replan={replan}, pose={pose!r})",
        episodes_detail=[r.to_dict() for r in results],
    )
    write_report(summary, settings["out_dir"])
    return summary


#: Episodes of one run that must all fail with the same error before the run stops as misconfigured.
ERROR_ABORT_AFTER = 5
#: Files of an evaluation directory that ``--overwrite`` replaces (and whose presence needs it).
RESULT_FILES = ("episodes.jsonl", "results.json", "results.md", "results.png")


class EvaluationError(RuntimeError):
    """An evaluation that cannot give results: every episode fails with the same error."""


def check_systematic_error(played: list[EpisodeResult], planned: int) -> None:
    """Raise :class:`EvaluationError` once the first ``min(planned, ERROR_ABORT_AFTER)`` episodes all failed with one error."""
    if not played or len(played) < min(planned, ERROR_ABORT_AFTER):
        return
    reasons = {r.failure_reason for r in played}
    if len(reasons) == 1 and all(r.failure_kind == "error" for r in played):
        raise EvaluationError(f"every episode failed with the same error ({len(played)} of {planned} played, none recorded): "
                              f"{reasons.pop()}")


class EpisodeLog:
    """``episodes.jsonl`` of an evaluation directory: one finished episode per line, after a header line.

    The header holds the settings that decide an episode's outcome; resuming
    with other settings is an error rather than a report that mixes two agents.
    A directory with results is never replaced silently: that takes ``resume`` or ``overwrite``.
    """

    def __init__(self, out_dir: Path, identity: dict, resume: bool, overwrite: bool = False):
        self.path = out_dir / "episodes.jsonl"
        self.identity = json.loads(json.dumps(identity))
        self.done: list[EpisodeResult] = []
        self.appended = 0
        self.replaced: Path | None = None  # an overwritten evaluation, kept until this one has an episode
        if resume and self.path.exists():
            self.done = self._read()
            self.rollback()  # drops a line cut by a kill before appending
            return
        existing = [name for name in RESULT_FILES if (out_dir / name).exists()]
        if existing and not overwrite:
            raise FileExistsError(f"'{out_dir}' already holds an evaluation ({existing[0]}); pass --resume to continue it, "
                                  "--overwrite to replace it, or choose another --out")
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(f"--out '{out_dir}' is a file, not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        if existing:
            self.replaced = out_dir / ".replaced"
            shutil.rmtree(self.replaced, ignore_errors=True)
            (self.replaced / "videos").mkdir(parents=True)
            for name in existing:
                os.replace(out_dir / name, self.replaced / name)
            for video in (out_dir / "videos").glob("episode_*.mp4"):
                os.replace(video, self.replaced / "videos" / video.name)
        atomic_write_text(self.path, json.dumps({"settings": self.identity}) + "\n")

    def finish(self, failed: bool) -> None:
        """Drop an overwritten evaluation once this run is done; put it back if this run failed without an episode."""
        if self.replaced is None or not self.replaced.is_dir():
            return
        if failed and not self.holds_episodes():
            out_dir = self.replaced.parent
            for path in self.replaced.iterdir():
                if path.is_file():
                    os.replace(path, out_dir / path.name)
            for video in (self.replaced / "videos").iterdir():
                (out_dir / "videos").mkdir(exist_ok=True)
                os.replace(video, out_dir / "videos" / video.name)
        shutil.rmtree(self.replaced, ignore_errors=True)

    def rollback(self) -> None:
        """Rewrite the log with the header and the episodes it held when opened (this run's are dropped)."""
        kept = [json.dumps({"settings": self.identity})] + [json.dumps(r.to_dict()) for r in self.done]
        atomic_write_text(self.path, "\n".join(kept) + "\n")
        self.appended = 0

    def holds_episodes(self) -> bool:
        return bool(self.done) or self.appended > 0

    def _read(self) -> list[EpisodeResult]:
        header, done = read_episode_log(self.path)
        if not same_settings(header, self.identity):
            raise ValueError(f"cannot resume: '{self.path}' was written with other settings; use another --out or drop --resume")
        return done

    def append(self, result: EpisodeResult) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(result.to_dict()) + "\n")
        self.appended += 1


def read_episode_log(path: Path) -> tuple[dict | None, list[EpisodeResult]]:
    """Settings header (None if unreadable) and finished episodes, by index, of an ``episodes.jsonl``.

    A last line cut by a kill is skipped (that episode is played again); any other line that is
    not an episode record is a ValueError naming the file and line.
    """
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"'{path}' is not an episode log (not UTF-8 text)") from None
    try:
        header = json.loads(lines[0])["settings"] if lines else None
    except (json.JSONDecodeError, KeyError, TypeError):
        header = None
    done: dict[int, EpisodeResult] = {}
    names = {f.name for f in dataclasses.fields(EpisodeResult)}
    for number, line in enumerate(lines[1:], start=2):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a line cut by a kill: that episode is played again
                continue
            raise ValueError(f"'{path}' line {number} is not JSON; the log is damaged") from None
        try:
            if not isinstance(row, dict) or not set(row) <= names:
                raise TypeError
            result = EpisodeResult(**row)
            done[int(result.index)] = result
        except (TypeError, ValueError):
            raise ValueError(f"'{path}' line {number} is not an episode record") from None
    return header, [done[i] for i in sorted(done)]


#: Executor settings a log may lack, at the value that the executor behaved with before they
#: existed (others count at their default): before ``termination_confirm_ticks`` a stage ended
#: on the first tick its termination was predicted.
SETTINGS_BEFORE_THEY_EXISTED = {"termination_confirm_ticks": 1}


def same_settings(old: dict | None, new: dict) -> bool:
    """Whether a log header matches ``new``.

    Executor settings added since the log was written count at their defaults;
    a log without ``gmm_action`` was written when GMM skill policies always
    took their most probable mode.
    """
    from reinforcegen_ros.hybrid import HybridConfig

    if not isinstance(old, dict) or not isinstance(old.get("hybrid"), dict):
        return False
    defaults = json.loads(json.dumps({**asdict(HybridConfig()), **SETTINGS_BEFORE_THEY_EXISTED}))
    old = {"gmm_action": None if new.get("gmm_action") is None else "mode", **old}
    if "teacher" in new:
        old = {"teacher": "transform", **old}
    if "step_path" in new:
        old = {"step_path": "lean", **old}  # logs without it were played on the lean path (the default before --step-path)
    if "action_noise" in new:
        old = {"action_noise": 0.0, **old}  # logs without it were played without action noise
    return {**old, "hybrid": {**defaults, **old["hybrid"]}} == new


def skill_action(agent_spec: str, override: str | None) -> str | None:
    """How the agent's GMM skill policies pick actions in this run (None for other agents); ValueError if misapplied."""
    from reinforcegen_ros.policies.configuration_hsp import GMM_ACTIONS, HSPConfig
    from reinforcegen_ros.policies.hsp import read_agent_config

    if override is not None and override not in GMM_ACTIONS:
        raise ValueError(f"unknown GMM action '{override}'; choose one of {', '.join(GMM_ACTIONS)}")
    config = None if agent_spec.startswith(REPLAY_PREFIX) else HSPConfig.from_dict(read_agent_config(Path(agent_spec)).get("config", {}))
    if config is None or config.policy_head != "gmm":
        if override is not None:
            raise ValueError(f"--gmm-action applies to GMM skill policies; '{agent_spec}' has none")
        return None
    return override or config.gmm_action


def _settings(task, agent_spec, episodes, pool, termination, replan, pose, video, out_dir, teacher_source, video_camera, video_size,
              teacher: str = "generation", step_path: str | None = None, action_noise: float = 0.0) -> dict:
    """Validate the arguments (before any worker starts) and collect what every worker needs."""
    from reinforcegen_ros.tasks import task_config, task_info
    from reinforcegen_ros.tasks.environment import STEP_PATHS, simulation_settings

    task_info(task)
    step_path = step_path or simulation_settings(task_config(task))["step_path"]
    if step_path not in STEP_PATHS:
        raise ValueError(f"unknown step path '{step_path}'; choose one of {', '.join(STEP_PATHS)}")
    if episodes < 1:
        raise ValueError("--episodes must be at least 1")
    if not (isinstance(action_noise, (int, float)) and math.isfinite(action_noise) and action_noise >= 0):
        raise ValueError(f"--action-noise must be a finite number >= 0, got {action_noise}")
    if pool not in POOL_KINDS:
        raise ValueError(f"unknown job pool '{pool}'; choose local or ray")
    if pose not in POSE_SOURCES:
        raise ValueError(f"unknown pose source '{pose}'; choose one of {', '.join(POSE_SOURCES)}")
    if agent_spec.startswith(REPLAY_PREFIX):
        source = Path(agent_spec[len(REPLAY_PREFIX) :])
        if not source.is_file():
            raise FileNotFoundError(f"replay source '{source}' does not exist")
    elif not Path(agent_spec).is_dir():
        raise FileNotFoundError(f"agent directory '{agent_spec}' does not exist (or use replay:<source.hdf5>)")
    if pose == "teacher" and not agent_spec.startswith(REPLAY_PREFIX):
        if teacher_source is None:
            raise ValueError("the teacher pose needs the source demos: pass --teacher-source <source.hdf5>")
        if not Path(teacher_source).is_file():
            raise FileNotFoundError(f"teacher source '{teacher_source}' does not exist")
        if teacher not in TEACHERS:
            raise ValueError(f"unknown teacher '{teacher}'; choose one of {', '.join(TEACHERS)}")
    out = Path(out_dir) if out_dir is not None else default_out_dir(task, agent_spec, termination, replan, pose)
    settings = {
        "task": task, "agent": agent_spec, "pose": pose, "video": int(video), "out_dir": str(out),
        "teacher_source": str(teacher_source) if teacher_source else None,
        "video_camera": video_camera, "video_size": int(video_size), "step_path": step_path, "action_noise": float(action_noise),
    }
    if pose == "teacher" and not agent_spec.startswith(REPLAY_PREFIX):
        settings["teacher"] = teacher  # logs without it were played with the "transform" teacher
    return settings


def default_out_dir(task: str, agent_spec: str, termination: str, replan: bool, pose: str) -> Path:
    """``runs/<task>/eval/<agent>[-oracle][-noreplan][-teacher]``."""
    if agent_spec.startswith(REPLAY_PREFIX):
        label = "replay-" + Path(agent_spec[len(REPLAY_PREFIX) :]).stem
    else:
        label = Path(agent_spec).resolve().name
    label += "-oracle" * (termination == "oracle") + "-noreplan" * (not replan) + "-teacher" * (pose == "teacher")
    return Path("runs") / task / "eval" / label


# ---------------------------------------------------------------------- the report
def summarize(results: list[EpisodeResult], stage_names: list[str]) -> dict:
    """Success rate with its Wilson interval, per-stage success and steps, failure reasons."""
    n = len(results)
    successes = sum(r.success for r in results)
    low, high = wilson_interval(successes, n)
    stage_rows = []
    for k, name in enumerate(stage_names):
        reached = sum(1 for r in results if _entered(r) > k)
        done = [r for r in results if r.stage_success[k]]
        steps = [r.stage_steps[k] for r in done]
        stage_rows.append({
            "index": k, "name": name, "reached": reached, "successes": len(done),
            "success_rate": len(done) / n if n else 0.0,
            "wilson95": list(wilson_interval(len(done), n)),
            "success_given_reached": len(done) / reached if reached else 0.0,
            "mean_steps": statistics.fmean(steps) if steps else None,
            "median_steps": statistics.median(steps) if steps else None,
            **_skill_summary(results, k),
        })
    failed = [r for r in results if not r.success]
    by_kind = Counter(r.failure_kind for r in failed)
    by_stage: dict[str, Counter] = {}
    examples: dict[str, str] = {}
    stage_examples: dict[str, dict[str, str]] = {}  # per stage and kind: the first reason, for the report's table
    for r in failed:
        stage = stage_names[r.failure_stage] if r.failure_stage is not None and 0 <= r.failure_stage < len(stage_names) else "?"
        by_stage.setdefault(stage, Counter())[r.failure_kind] += 1
        examples.setdefault(r.failure_kind, r.failure_reason)
        stage_examples.setdefault(stage, {}).setdefault(r.failure_kind, r.failure_reason)
    ok_steps = [r.steps for r in results if r.success]
    # a stage that timed out although its goal held: the termination classifier missed it
    missed = Counter(r.failure_kind for r in failed if r.goal_held_at_failure and r.failure_kind != "not_successful")
    return {
        "episodes": n, "successes": successes, "success_rate": successes / n if n else 0.0, "wilson95": [low, high],
        "stages": stage_rows,
        "mean_steps": statistics.fmean(ok_steps) if ok_steps else None,
        "median_steps": statistics.median(ok_steps) if ok_steps else None,
        "mean_replans": statistics.fmean(r.replans for r in results) if results else 0.0,
        "failures": dict(by_kind), "failures_by_stage": {k: dict(v) for k, v in by_stage.items()}, "failure_examples": examples,
        "failure_examples_by_stage": stage_examples, "failures_with_goal_held": dict(missed),
    }


def _skill_summary(results: list[EpisodeResult], k: int) -> dict:
    """Stage ``k``'s skill (the paper's Table II): episodes whose skill started, its success among them, steps of its successes.

    All None when some episode predates the recording of skill steps.
    """
    if any(r.skill_steps is None for r in results):
        return {"skill_started": None, "skill_success": None, "mean_skill_steps": None}
    started = [r for r in results if r.skill_steps[k] > 0]
    steps = [r.skill_steps[k] for r in started if r.stage_success[k]]
    return {"skill_started": len(started), "skill_success": len(steps) / len(started) if started else None,
            "mean_skill_steps": statistics.fmean(steps) if steps else None}


def _entered(r: EpisodeResult) -> int:
    """Stages the executor entered in episode ``r``."""
    if r.success or r.failure_kind == "not_successful":
        return len(r.stage_success)
    return (r.failure_stage + 1) if r.failure_stage is not None else len(r.stage_success)


def markdown_report(summary: dict) -> str:
    """The report as markdown tables."""
    s = summary
    lo, hi = s["wilson95"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [
        f"# Evaluation: {s['task']} — `{s['agent']}`", "",
        f"Made by `{s['command']}`. {s['episodes']} episodes, scene seeds {s['seeds'][0]}..{s['seeds'][1]}; "
        f"termination {s['settings']['termination']}, replanning {'on' if s['settings']['replan'] else 'off'}, "
        f"initiation pose {s['settings']['pose']}, horizon {s['settings']['horizon']} steps.", "",
        "| episodes | successes | success rate | 95% CI (Wilson) | mean steps | median steps | re-plans / episode |",
        "|---|---|---|---|---|---|---|",
        f"| {s['episodes']} | {s['successes']} | {100 * s['success_rate']:.1f}% | {100 * lo:.1f}–{100 * hi:.1f}% "
        f"| {fmt(s['mean_steps'])} | {fmt(s['median_steps'])} | {s['mean_replans']:.2f} |", "",
        "| stage | reached | succeeded | success rate | given reached | mean steps | median steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in s["stages"]:
        lines.append(
            f"| {row['index']} {row['name']} | {row['reached']} | {row['successes']} | {100 * row['success_rate']:.1f}% "
            f"| {100 * row['success_given_reached']:.1f}% | {fmt(row['mean_steps'])} | {fmt(row['median_steps'])} |"
        )
    lines += ["", "| stage | failure | episodes | example |", "|---|---|---|---|"]
    for stage, kinds in s["failures_by_stage"].items():
        for kind, count in sorted(kinds.items(), key=lambda x: -x[1]):
            example = s.get("failure_examples_by_stage", {}).get(stage, {}).get(kind) or s["failure_examples"].get(kind, "")
            lines.append(f"| {stage} | {kind} | {count} | {example.replace('|', '/')} |")
    if not s["failures_by_stage"]:
        lines.append("| - | none | 0 | - |")
    missed = s.get("failures_with_goal_held") or {}
    if missed:
        held = ", ".join(f"{kind} {count}" for kind, count in sorted(missed.items()))
        lines += ["", f"Failures whose stage goal held when the episode ended (termination missed it): {held}."]
    return "\n".join(lines) + "\n"


def plot_report(summary: dict, path: str | Path) -> Path:
    """Bar plot: per-stage success rate and task success with its Wilson interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = summary["stages"] + [{"index": "", "name": "task", **summary}]
    names = [f"{r['index']} {r['name']}".strip() for r in rows]
    rates = [r["success_rate"] for r in rows]
    err = [[100 * (r["success_rate"] - r["wilson95"][0]) for r in rows], [100 * (r["wilson95"][1] - r["success_rate"]) for r in rows]]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    bars = ax.bar(names, [100 * r for r in rates], yerr=err, capsize=6, color=["#6a9fd4"] * (len(rows) - 1) + ["#2f6b3a"])
    for bar, rate in zip(bars, rates):
        ax.text(bar.get_x() + bar.get_width() / 2, 2, f"{100 * rate:.0f}%", ha="center", va="bottom", color="white", fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"{summary['task']}: {summary['successes']}/{summary['episodes']} episodes successful (bars: 95% Wilson CI)", fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def write_report(summary: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": atomic_write_text(out / "results.json", json.dumps(summary, indent=1)),
        "markdown": atomic_write_text(out / "results.md", markdown_report(summary)),
        "plot": plot_report(summary, out / "results.png"),
    }
    return paths


# ---------------------------------------------------------------------- command line
def cmd_eval(args: argparse.Namespace) -> None:
    """Evaluate an agent over seeded episodes and write the report."""
    hybrid = parse_overrides(args.set)
    # --set replan / termination are --no-replan / --termination by another name; they must not contradict them
    if args.no_replan and hybrid.get("replan") is True:
        raise ValueError("--no-replan contradicts --set replan=true")
    args.no_replan = not hybrid.pop("replan", not args.no_replan)
    args.termination = hybrid.pop("termination", args.termination)
    summary = evaluate(
        args.task, args.agent, episodes=args.episodes, workers=args.workers, pool=args.pool, seed=args.seed,
        termination=args.termination, replan=not args.no_replan, pose="teacher" if args.teacher_pose else "learned",
        video=args.video, out_dir=args.out, teacher_source=args.teacher_source, address=args.address,
        video_camera=args.video_camera, video_size=args.video_size, command=" ".join(["reinforcegen", *sys.argv[1:]]),
        hybrid=hybrid, resume=args.resume, gmm_action=args.gmm_action, overwrite=args.overwrite, teacher=args.teacher,
        step_path=args.step_path, action_noise=args.action_noise,
    )
    lo, hi = summary["wilson95"]
    print(f"{summary['task']} {summary['agent']}: {summary['successes']}/{summary['episodes']} successful "
          f"({100 * summary['success_rate']:.1f}%, 95% CI {100 * lo:.1f}-{100 * hi:.1f}%), seeds {summary['seeds'][0]}..{summary['seeds'][1]}")
    for row in summary["stages"]:
        print(f"  stage {row['index']} {row['name']:<24} {row['successes']}/{summary['episodes']}  median steps {row['median_steps']}")
    for kind, count in summary["failures"].items():
        print(f"  failures: {kind} ({count}), e.g. {summary['failure_examples'][kind]}")
    out = args.out or default_out_dir(args.task, args.agent, args.termination, not args.no_replan, "teacher" if args.teacher_pose else "learned")
    videos = sum(1 for r in summary["episodes_detail"] if r["video"])
    print(f"wrote {out}/results.json, results.md, results.png" + (f" and {videos} videos in {out}/videos" if videos else ""))


def parse_overrides(items: list) -> dict:
    """``["key=value", ...]`` (or parsed ``(key, value)`` pairs) -> dict, each value checked by :func:`hybrid_override`."""
    return dict(item if isinstance(item, tuple) else hybrid_override(item) for item in items)


#: Ranges of numeric executor settings (inclusive; None: unbounded).
SETTING_RANGES = {
    "epsilon": (0.0, None), "termination_threshold": (0.0, 1.0), "termination_confirm_ticks": (1, None),
    "min_skill_steps": (0, None), "follow_gain": (0.0, None), "follow_lookahead": (1, None),
    "connect_max_steps": (1, None), "skill_max_steps": (1, None), "initial_gripper": (-1.0, 1.0), "episode_horizon": (1, None),
}


def hybrid_override(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)`` typed by the :class:`~reinforcegen_ros.hybrid.HybridConfig` field it overrides.

    The value is read as YAML and must have the field's type (an int where an int is
    expected, a finite number for a float, true/false for a bool, one of the choices for the
    planner) and lie in :data:`SETTING_RANGES`; ValueError, naming ``--set KEY``, otherwise.
    """
    import yaml

    from reinforcegen_ros.hybrid import TERMINATION_MODES, HybridConfig
    from reinforcegen_ros.planning import PLANNERS

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set expects KEY=VALUE, got '{item}'")
    hints = typing.get_type_hints(HybridConfig)
    if key not in hints:
        raise ValueError(f"--set {key}: unknown executor setting; known: {', '.join(sorted(hints))}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"--set {key}: cannot read '{text}' as a value") from None
    kinds = typing.get_args(hints[key]) or (hints[key],)
    problem = None
    if value is None:
        problem = None if type(None) in kinds else "needs a value"
    elif bool in kinds:
        problem = None if isinstance(value, bool) else "takes true or false"
    elif int in kinds:
        problem = None if isinstance(value, int) and not isinstance(value, bool) else "takes an integer"
    elif float in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            value = float(value)
        else:
            problem = "takes a finite number"
    elif str in kinds and not isinstance(value, str):
        problem = "takes a name"
    choices = {"planner": PLANNERS, "termination": TERMINATION_MODES}.get(key)
    if problem is None and choices and value not in choices:
        problem = f"is one of {', '.join(choices)}"
    low, high = SETTING_RANGES.get(key, (None, None))
    if problem is None and value is not None and ((low is not None and value < low) or (high is not None and value > high)):
        problem = f"must be {'at least ' + str(low) if high is None else f'between {low} and {high}'}"
    if problem:
        raise ValueError(f"--set {key} {problem}, got '{text}'")
    return key, value


def _override_option(text: str) -> tuple[str, object]:
    """``--set`` as parsed: a typed ``(key, value)`` or an argparse error naming the setting."""
    try:
        return hybrid_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--set ")) from None


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``reinforcegen eval`` to the command's subparsers."""
    p = subparsers.add_parser("eval", help="evaluate a hybrid skill policy over seeded episodes")
    p.add_argument("--task", required=True)
    p.add_argument("--agent", required=True, help="trained policy directory, or replay:<source.hdf5> (source-skill replay oracle)")
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pool", "--executor", dest="pool", choices=POOL_KINDS, default="local",
                   help="job pool of the episodes: local processes or Ray actors (--executor: the old name)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --pool ray)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="scene seed of episode 0 (episode i plays seed + i)")
    p.add_argument("--termination", choices=("learned", "oracle"), default="learned", help="oracle: ground-truth stage termination")
    p.add_argument("--no-replan", action="store_true", help="follow the first connect plan even if the predicted pose moves")
    p.add_argument("--teacher-pose", action="store_true", help="initiation poses from the privileged teacher (HSP-Priv)")
    p.add_argument("--teacher-source", default=None, help="source demos (HDF5) of the teacher (with --teacher-pose)")
    p.add_argument("--teacher", choices=TEACHERS, default="generation",
                   help="generation: the teacher chooses and adapts the source skill as data generation does (reachable source, "
                        "held-object grasp correction, symmetric-grasp turn); transform: the source initiation pose transformed only")
    p.add_argument("--video", type=int, default=0, metavar="K", help="film the first K episodes")
    p.add_argument("--video-camera", default="agentview")
    p.add_argument("--video-size", type=int, default=256, help="video frame size in pixels (square)")
    p.add_argument("--out", default=None, help="report directory (default runs/<task>/eval/<agent>[-variant])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override_option,
                   help="override a config/hybrid.yaml setting (repeatable; typed and checked as the setting)")
    p.add_argument("--gmm-action", choices=("sample", "mode"), default=None,
                   help="how GMM skill policies pick actions (default: the agent's gmm_action, see config/hsp.yaml)")
    p.add_argument("--resume", action="store_true", help="keep the episodes already in --out/episodes.jsonl and play the rest")
    p.add_argument("--overwrite", action="store_true", help="replace an evaluation already in --out (without it, that is an error)")
    from reinforcegen_ros.tasks.environment import STEP_PATHS

    p.add_argument("--step-path", choices=STEP_PATHS, default=None,
                   help="how TaskEnv steps the simulator (default: config/simulation.yaml's step_path)")
    p.add_argument("--action-noise", type=float, default=0.0, metavar="SIGMA",
                   help="add zero-mean Gaussian noise of std SIGMA (normalised action units, actions in [-1, 1]) to the 6 arm "
                        "delta-pose dims of every skill-policy action, seeded by the episode seed; the gripper and the connect "
                        "segment's planner-following commands are untouched (paper Fig. 8; default 0: none)")
    p.set_defaults(func=cmd_eval)
    return p
