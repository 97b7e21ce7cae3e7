"""The privileged teacher: initiation poses from source demos (the "HSP-Priv" pose predictor).

For each stage the teacher picks one source demo's skill segment, as data
generation does (:func:`~reinforcegen_ros.datagen.object_centric.choose_source`,
once per stage and episode), and predicts that segment's initiation pose
re-expressed relative to the reference object's CURRENT pose, read from the
privileged ``object`` observation. :class:`TeacherPoseAgent` puts it in place
of a learned agent's pose predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from reinforcegen_ros.datagen.object_centric import SkillSource, choose_source, skill_sources
from reinforcegen_ros.demos.episode import Episode
from reinforcegen_ros.geometry import pose_from_pos_quat
from reinforcegen_ros.tasks.base import Stage

OBJECT_POSE_SIZE = 7  # position 3 + quaternion (x, y, z, w) 4 per object in the ``object`` observation


def object_pose_from_obs(obs: dict, objects: Sequence[str], name: str) -> np.ndarray:
    """World pose of object ``name`` from the flattened ``object`` observation (objects in ``objects`` order)."""
    i = list(objects).index(name)
    flat = np.asarray(obs["object"], dtype=float)
    if flat.size != OBJECT_POSE_SIZE * len(objects):
        raise ValueError(f"'object' observation has {flat.size} values, expected {OBJECT_POSE_SIZE * len(objects)}")
    chunk = flat[OBJECT_POSE_SIZE * i : OBJECT_POSE_SIZE * (i + 1)]
    return pose_from_pos_quat(chunk[:3], chunk[3:])


def reference_frame_from_obs(obs: dict, objects: Sequence[str], stage: Stage) -> np.ndarray:
    """The stage's reference frame (:meth:`Stage.reference_frame`) from the privileged ``object`` observation."""
    return stage.reference_frame({name: object_pose_from_obs(obs, objects, name) for name in stage.frame_objects})


class PrivilegedTeacher:
    """Predicts each stage's initiation pose from a source skill segment and the live reference pose."""

    def __init__(
        self,
        sources: list[list[SkillSource]],
        stages: Sequence[Stage],
        objects: Sequence[str],
        strategy: str = "nearest",
        nearest_k: int = 3,
        seed: int = 0,
    ):
        if len(sources) != len(stages) or any(not s for s in sources):
            raise ValueError("the teacher needs at least one source skill segment for every stage")
        self.sources = sources
        self.stages = tuple(stages)
        self.objects = tuple(objects)
        self.strategy, self.nearest_k = strategy, nearest_k
        self.rng = np.random.default_rng(seed)
        self._chosen: dict[int, SkillSource] = {}

    @classmethod
    def from_episodes(cls, episodes: Iterable[Episode], task: str, strategy: str | None = None, nearest_k: int | None = None, seed: int = 0) -> "PrivilegedTeacher":
        """Teacher over annotated source episodes of ``task``; strategy defaults to the task YAML's ``datagen``."""
        from reinforcegen_ros.datagen.generator import GenerationConfig
        from reinforcegen_ros.tasks import env_class, task_config

        cls_ = env_class(task)
        gen = GenerationConfig.from_dict(task_config(task).get("datagen"))
        sources = skill_sources(episodes, cls_.STAGES, gen.held_objects)
        return cls(
            sources,
            cls_.STAGES,
            cls_.OBJECTS,
            strategy or gen.source_strategy,
            gen.nearest_k if nearest_k is None else nearest_k,
            seed,
        )

    @classmethod
    def from_dataset(cls, path: str | Path, task: str | None = None, **kwargs) -> "PrivilegedTeacher":
        """Teacher over the source demos in an HDF5 dataset (its task read from the dataset if not given)."""
        from reinforcegen_ros.demos.dataset import DatasetError, dataset_meta, iter_episodes, open_dataset

        with open_dataset(path) as f:
            meta_task = dataset_meta(f).get("task")
        if task is not None and meta_task is not None and meta_task != task:
            raise DatasetError(f"'{path}' holds task '{meta_task}', not '{task}'")
        task = task or meta_task
        if task is None:
            raise DatasetError(f"'{path}' does not name its task; import it with 'reinforcegen demos import' first")
        return cls.from_episodes(iter_episodes(path, obs_keys=[]), task, **kwargs)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: forget the chosen segments; ``seed`` restarts the selection RNG."""
        self._chosen.clear()
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def set_episode_seed(self, seed: int) -> None:
        """Restart the selection RNG for a seeded episode."""
        self.reset(seed)

    def reference_pose(self, obs: dict, stage: int) -> np.ndarray:
        """Current world pose of ``stage``'s reference object."""
        return reference_frame_from_obs(obs, self.objects, self.stages[stage])

    def source(self, obs: dict, stage: int) -> SkillSource:
        """The skill segment used for ``stage`` in this episode (chosen on first use)."""
        if stage not in self._chosen:
            ref = self.reference_pose(obs, stage)
            self._chosen[stage] = choose_source(self.sources[stage], ref, self.strategy, self.rng, self.nearest_k)
        return self._chosen[stage]

    def predict_pose(self, obs: dict, stage: int) -> np.ndarray:
        """The chosen segment's initiation pose relative to the reference object's current pose."""
        init, _ = self.source(obs, stage).transformed(self.reference_pose(obs, stage))
        return init


class TeacherPoseAgent:
    """An agent whose initiation poses come from a privileged teacher (paper's HSP-Priv).

    The teacher is a :class:`PrivilegedTeacher` or anything with its interface
    (``predict_pose``, ``set_episode_seed``, ``reset``), such as the
    source-replay agent, which chooses and adapts the source skill exactly as
    data generation does; a teacher's ``connect_gripper`` (the chosen skill's
    first gripper command) is held while connecting.
    """

    def __init__(self, agent, teacher: PrivilegedTeacher):
        if teacher.num_stages != agent.num_stages:
            raise ValueError(f"teacher has {teacher.num_stages} stages, the agent {agent.num_stages}")
        self.agent, self.teacher = agent, teacher
        self.task, self.obs_mode, self.num_stages = agent.task, agent.obs_mode, agent.num_stages

    def __getattr__(self, name):  # cameras, image size, ... of the wrapped agent
        if name.startswith("__") or name == "agent":
            raise AttributeError(name)
        return getattr(self.agent, name)

    def set_episode_seed(self, seed: int) -> None:
        """Restart the teacher's (and the wrapped agent's, if any) selection RNG for a seeded episode."""
        self.teacher.set_episode_seed(seed)
        if hasattr(self.agent, "set_episode_seed"):
            self.agent.set_episode_seed(seed)

    def reset(self) -> None:
        self.agent.reset()
        self.teacher.reset()

    def predict_pose(self, obs: dict, stage: int) -> np.ndarray:
        return self.teacher.predict_pose(obs, stage)

    def connect_gripper(self, stage: int) -> float | None:
        choose = getattr(self.teacher, "connect_gripper", None)
        return None if choose is None else choose(stage)

    def act(self, obs: dict, stage: int) -> np.ndarray:
        return self.agent.act(obs, stage)

    def termination_prob(self, obs: dict, stage: int) -> float:
        return self.agent.termination_prob(obs, stage)
