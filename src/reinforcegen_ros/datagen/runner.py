"""Run generation at scale, crash-safely, on a local process pool or a Ray cluster.

Every finished attempt is committed before the next is counted: a successful
episode goes to its own small HDF5 shard ``<out>.parts/demo_<attempt>.hdf5``
(written under a temporary name, then renamed) and every outcome is appended to
``<out>.parts/attempts.jsonl``. A run killed at any moment (even ``kill -9``)
loses only the attempts in flight; running the same command again resumes from
the committed attempts. When ``num`` successes exist they are merged into
``<out>`` (again temporary name, then rename) and the shards are removed.
Attempt ``i`` always uses scene seed ``seed + i``, so a resumed run generates
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from reinforcegen_ros.demos.dataset import (
    DatasetError,
    dataset_attrs,
    dataset_meta,
    demo_names,
    hdf5_writer,
    iter_episodes,
    open_dataset,
    write_episode,
)
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.jobs import make_pool
from reinforcegen_ros.io import atomic_write_text

DEFAULT_SEED = 100_000  # scene seeds of generated demos, away from the source demos' seeds
MAX_WORKERS_PER_CORE = 4  # local worker processes per CPU core (each builds a simulator and a planner)
STEP_PATH_BEFORE_RECORDED = "lean"  # the step path of runs whose meta.json predates its "step_path" key


def local_worker_limit() -> int:
    """The most local worker processes a run may start: :data:`MAX_WORKERS_PER_CORE` per CPU core."""
    return MAX_WORKERS_PER_CORE * max(1, os.cpu_count() or 1)


def check_workers(workers: int, pool: str) -> None:
    """ValueError naming --workers unless it is at least 1 and, on the local pool, at most :func:`local_worker_limit`."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if pool == "local" and workers > local_worker_limit():
        raise ValueError(f"--workers: {workers} local worker processes for {os.cpu_count()} CPU cores; use at most "
                         f"{local_worker_limit()} ({MAX_WORKERS_PER_CORE} per core), or --pool ray for a cluster")


@dataclass
class AttemptResult:
    """The outcome of one generation attempt."""

    attempt: int
    seed: int
    episode: Episode | None
    stage: int | None = None
    reason: str = ""
    seconds: float = 0.0  # wall time of the attempt
    cpu_seconds: float = 0.0  # CPU time of the worker process during the attempt


@dataclass
class GenerationReport:
    """Running totals of a generation run (also stored in the dataset's attributes)."""

    attempts: int = 0
    successes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_attempts: int = 0  # attempts whose CPU time was recorded (not those logged by versions before it was)
    failures: dict[str, Counter] = field(default_factory=dict)  # stage index (str) -> reason -> count

    def add(self, result: AttemptResult) -> None:
        self.attempts += 1
        self.seconds += result.seconds
        self.cpu_seconds += result.cpu_seconds
        self.cpu_attempts += result.cpu_seconds > 0
        if result.episode is not None or result.stage is None:
            self.successes += 1
        else:
            self.failures.setdefault(str(result.stage), Counter())[result.reason] += 1

    def to_dict(self) -> dict:
        return {
            "attempts": self.attempts,
            "successes": self.successes,
            "worker_seconds": round(self.seconds, 3),
            # None unless every attempt's CPU time is known (a run resumed from an older version's log)
            "worker_cpu_seconds": round(self.cpu_seconds, 3) if self.cpu_attempts == self.attempts else None,
            "failures": {k: dict(v) for k, v in self.failures.items()},
        }


# ---------------------------------------------------------------------- worker side
_WORKER: dict = {}


def init_worker(task: str, source: str, config: dict) -> None:
    """Build the environment and generator once per worker process."""
    from reinforcegen_ros.datagen.generator import GenerationConfig, ObjectCentricGenerator
    from reinforcegen_ros.tasks.environment import TaskEnv

    env = TaskEnv(task, config=config)
    sources = list(iter_episodes(source))
    gen_cfg = GenerationConfig.from_dict(config.get("datagen"))
    _WORKER["generator"] = ObjectCentricGenerator(env, sources, gen_cfg, config.get("planning"))


def run_attempt(attempt: int, seed: int) -> AttemptResult:
    """One attempt in this worker (after :func:`init_worker`)."""
    from reinforcegen_ros.datagen.generator import GenerationFailed

    start, cpu = time.perf_counter(), time.process_time()

    def result(episode, stage=None, reason=""):
        return AttemptResult(attempt, seed, episode, stage, reason, time.perf_counter() - start, time.process_time() - cpu)

    try:
        ep = _WORKER["generator"].generate(seed)
    except GenerationFailed as exc:
        return result(None, exc.stage, exc.reason)
    except Exception as exc:  # a simulator blow-up is a failed attempt, not a crashed run
        return result(None, -1, f"error: {exc.__class__.__name__}: {exc}")
    ep.attrs["attempt"] = attempt
    return result(ep)


# ---------------------------------------------------------------------- committed progress
class PartsDir:
    """The shard directory of a run in progress: committed demos and the attempt log."""

    def __init__(self, out: Path, meta: dict):
        self.path = Path(str(out) + ".parts")
        self.log = self.path / "attempts.jsonl"
        self.path.mkdir(parents=True, exist_ok=True)
        meta = json.loads(json.dumps(meta))  # compare as stored (JSON turns int keys into strings)
        meta_file = self.path / "meta.json"
        if meta_file.exists():
            old = json.loads(meta_file.read_text())
            if "step_path" in meta:
                old = {"step_path": STEP_PATH_BEFORE_RECORDED, **old}
            if old != meta:
                raise DatasetError(
                    f"'{self.path}' holds a run with other settings ({_diff(old, meta)}); remove it or use those settings"
                )
        else:
            atomic_write_text(meta_file, json.dumps(meta, indent=1))

    def shard(self, attempt: int) -> Path:
        return self.path / f"demo_{attempt:07d}.hdf5"

    def commit(self, result: AttemptResult, attrs: dict) -> None:
        """Persist one finished attempt (shard first, then its log line)."""
        if result.episode is not None:
            with hdf5_writer(self.shard(result.attempt)) as f:
                data = f.create_group("data")
                for key, value in attrs.items():
                    data.attrs[key] = value
                write_episode(data, "demo_0", result.episode)
        line = {"attempt": result.attempt, "seed": result.seed, "ok": result.episode is not None,
                "stage": result.stage, "reason": result.reason, "seconds": round(result.seconds, 4),
                "cpu_seconds": round(result.cpu_seconds, 4)}
        with open(self.log, "a") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def committed(self) -> dict[int, AttemptResult]:
        """Attempts already finished: from the log, plus shards whose log line was lost."""
        done: dict[int, AttemptResult] = {}
        if self.log.exists():
            for raw in self.log.read_text().splitlines():
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                shard_ok = self.shard(row["attempt"]).exists()
                if row["ok"] and not shard_ok:
                    continue
                done[row["attempt"]] = AttemptResult(row["attempt"], row["seed"], None, None if row["ok"] else row["stage"], row["reason"],
                                                     row["seconds"], row.get("cpu_seconds", 0.0))
        for shard in self.path.glob("demo_*.hdf5"):
            attempt = int(shard.stem.split("_")[1])
            done.setdefault(attempt, AttemptResult(attempt, -1, None, None))
        for stale in self.path.glob("*.tmp"):
            stale.unlink()
        return done

    def successful(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.path.glob("demo_*.hdf5"))


def _diff(old: dict, new: dict) -> str:
    return ", ".join(f"{k}: {old.get(k)} vs {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


def _run_job(job: tuple[int, int]) -> AttemptResult:
    return run_attempt(*job)


# ---------------------------------------------------------------------- the run
def generate(
    task: str,
    source: str | Path,
    num: int,
    out: str | Path,
    workers: int = 1,
    pool: str = "local",
    address: str | None = None,
    seed: int = DEFAULT_SEED,
    max_attempts: int | None = None,
    config: dict | None = None,
    progress: bool = True,
    keep_partial: bool = False,
) -> GenerationReport:
    """Generate ``num`` demos of ``task`` from ``source`` into ``out`` (resuming a killed run).

    With ``keep_partial`` a run that reaches ``max_attempts`` first still writes
    the demos it has (the way to measure success over a fixed attempt budget).
    """
    from tqdm import tqdm

    from reinforcegen_ros.tasks import task_config

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output '{out}' already exists; choose another path or remove it")
    check_workers(workers, pool)
    config = config if config is not None else task_config(task)
    step_path = run_step_path(config)
    with open_dataset(source) as f:
        src_meta, src_env_args = dataset_meta(f), json.loads(f["data"].attrs["env_args"])
        n_sources = len(demo_names(f["data"]))
    if src_meta.get("task", task) != task:
        raise DatasetError(f"source '{source}' holds task '{src_meta['task']}', not '{task}'")
    max_attempts = max_attempts or 20 * num
    parts = PartsDir(out, {"task": task, "source": str(Path(source).resolve()), "seed": seed,
                           "datagen": config.get("datagen", {}), "step_path": step_path})
    done = parts.committed()
    report = GenerationReport()
    for result in done.values():
        report.add(result)
    from reinforcegen_ros.tasks.environment import TaskEnv

    stages = TaskEnv(task, config=config).stages
    attrs = dataset_attrs(src_env_args, task, stages, source=f"generated:{Path(source).name}")
    bar = tqdm(total=num, initial=min(report.successes, num), desc=f"generate {task}", unit="demo", disable=not progress)
    start = time.perf_counter()
    job_pool = None
    try:
        next_attempt = 0
        while report.successes < num and report.attempts < max_attempts:
            if job_pool is None:
                job_pool = make_pool(pool, workers, init_worker, (task, str(source), config), _run_job, address)
            batch = []
            while len(batch) < max(1, 2 * workers) and next_attempt < max_attempts:
                if next_attempt not in done:
                    batch.append((next_attempt, seed + next_attempt))
                next_attempt += 1
            if not batch:
                break
            for result in job_pool.map(batch):
                parts.commit(result, attrs)
                report.add(result)
                bar.update(int(result.episode is not None and report.successes <= num))
                bar.set_postfix(attempts=report.attempts, rate=f"{report.successes / max(1, report.attempts):.0%}")
    finally:
        bar.close()
        if job_pool is not None:
            job_pool.close()
    if report.successes < num and not (keep_partial and report.successes > 0):
        raise RuntimeError(
            f"{report.successes} of {num} demos after {report.attempts} attempts; committed demos are kept in "
            f"'{parts.path}' and the same command resumes"
        )
    merge(parts, out, num, attrs, report, {"workers": workers, "executor": pool, "wall_seconds": round(time.perf_counter() - start, 2), "source_demos": n_sources,
                                          "step_path": step_path})
    return report


def run_step_path(config: dict) -> str:
    """The step path a run with task ``config`` uses (its ``simulation:`` section over ``config/simulation.yaml``)."""
    from reinforcegen_ros.tasks.environment import STEP_PATHS, simulation_settings

    step_path = simulation_settings(config)["step_path"]
    if step_path not in STEP_PATHS:
        raise ValueError(f"unknown step path '{step_path}'; choose one of {', '.join(STEP_PATHS)}")
    return step_path


def merge(parts: PartsDir, out: Path, num: int, attrs: dict, report: GenerationReport, run_info: dict) -> None:
    """Merge the first ``num`` committed demos (by attempt) into ``out`` atomically; remove the shards."""
    total = 0
    with hdf5_writer(out) as f:
        data = f.create_group("data")
        for key, value in attrs.items():
            data.attrs[key] = value
        for i, attempt in enumerate(parts.successful()[:num]):  # fewer when a partial run is kept
            with h5py.File(parts.shard(attempt), "r") as shard:
                shard.copy(shard["data/demo_0"], data, name=f"demo_{i}")
            total += data[f"demo_{i}"].attrs["num_samples"]
        data.attrs["total"] = int(total)
        data.attrs["generation"] = json.dumps({**report.to_dict(), **run_info})
    shutil.rmtree(parts.path)
