"""Collect source demonstrations with a task's scripted demonstrator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reinforcegen_ros.demos.dataset import dataset_attrs, write_dataset
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.demos.scripted import DemoFailed
from reinforcegen_ros.tasks import load_object, task_config, task_info
from reinforcegen_ros.tasks.environment import TaskEnv


@dataclass
class CollectReport:
    """Outcome of a collection run: successes, attempts and per-seed failure reasons."""

    task: str
    attempts: int = 0
    successes: int = 0
    lengths: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def make_demonstrator(task: str, config: dict):
    """The task's scripted demonstrator, configured from the task YAML."""
    return load_object(task_info(task).demonstrator)(config.get("demonstrator", {}))


def render_images(env: TaskEnv, ep: Episode, cameras: tuple[str, ...]) -> None:
    """Add ``<camera>_image`` observations to ``ep`` by rendering its saved states."""
    frames = {cam: [] for cam in cameras}
    for state in ep.states:
        env.reset_to(state)
        for cam in cameras:
            frames[cam].append(env.render(cam))
    for cam in cameras:
        ep.obs[f"{cam}_image"] = np.stack(frames[cam])


def add_images(src: str | Path, out: str | Path, cameras=None, size: int = 84, max_demos: int | None = None, progress: bool = True):
    """Write a copy of dataset ``src`` whose demos carry ``<camera>_image`` observations rendered from states."""
    from reinforcegen_ros.demos.dataset import DatasetError, dataset_meta, demo_names, open_dataset, read_episode

    with open_dataset(src) as f:
        meta = dataset_meta(f)
        attrs = {k: v for k, v in f["data"].attrs.items() if k != "total"}
        names = demo_names(f["data"])[:max_demos]
        episodes = [read_episode(f["data"][n]) for n in names]
    if "task" not in meta:
        raise DatasetError(f"'{src}' does not name its task; import it with 'reinforcegen demos import' first")
    env = TaskEnv(meta["task"], render=True, image_size=size)
    cameras = tuple(cameras or env.cameras)
    for ep in tqdm(episodes, desc="render", unit="demo", disable=not progress):
        render_images(env, ep, cameras)
    env.close()
    meta_json = json.loads(attrs["reinforcegen"])
    attrs["reinforcegen"] = json.dumps({**meta_json, "obs_mode": "rgb", "cameras": list(cameras), "image_size": size})
    write_dataset(out, episodes, attrs)
    return len(episodes), cameras


def scripted_attempts(env: TaskEnv, demo, seeds, report: CollectReport):
    """Run the demonstrator on each seed, updating ``report``; yield successful episodes."""
    for seed in seeds:
        report.attempts += 1
        try:
            ep = demo.run(env, seed)
        except DemoFailed as exc:
            report.failures[seed] = str(exc)
            continue
        report.successes += 1
        report.lengths.append(len(ep))
        yield ep


def collect(
    task: str,
    num: int,
    out: str | Path,
    seed: int = 0,
    max_attempts: int | None = None,
    obs_mode: str = "privileged",
    progress: bool = True,
) -> CollectReport:
    """Collect ``num`` successful scripted demos (seeds ``seed``, ``seed+1``, ...) into ``out``.

    Failed attempts are skipped with their reason; if ``num`` successes are not
    reached within ``max_attempts`` nothing is written.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output '{out}' already exists; choose another path or remove it")
    config = task_config(task)
    max_attempts = max_attempts or 3 * num
    env = TaskEnv(task, config=config)
    demo = make_demonstrator(task, config)
    report, episodes = CollectReport(task), []
    bar = tqdm(total=num, desc=f"collect {task}", unit="demo", disable=not progress)
    for ep in scripted_attempts(env, demo, range(seed, seed + max_attempts), report):
        episodes.append(ep)
        bar.update(1)
        bar.set_postfix(attempts=report.attempts)
        if report.successes >= num:
            break
    bar.close()
    for failed_seed, reason in report.failures.items():
        tqdm.write(f"seed {failed_seed}: {reason}; skipped")
    if report.successes < num:
        raise RuntimeError(
            f"only {report.successes} of {num} demos succeeded in {report.attempts} attempts; nothing was written"
        )
    if obs_mode == "rgb":
        render_env = TaskEnv(task, config=config, render=True)
        for ep in tqdm(episodes, desc="render", unit="demo", disable=not progress):
            render_images(render_env, ep, render_env.cameras)
        render_env.close()
    attrs = dataset_attrs(env.env_args(), task, env.stages, obs_mode=obs_mode, source="scripted")
    write_dataset(out, episodes, attrs)
    env.close()
    return report
