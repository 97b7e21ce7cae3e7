"""Demonstration episodes <-> rosbag2 (MCAP or sqlite3), without a ROS install.

:func:`episodes_to_bag` writes a list of :class:`~reinforcegen_ros.demos.episode.Episode`
as one rosbag2 with CDR-serialised messages (through `rosbags`). Every step ``t``
of an episode is one tick of a 20 Hz header clock; all messages of a step carry
the same header stamp (and bag timestamp). Topics:

===============================  =================================  ==========================================
topic                            type                               content per step
===============================  =================================  ==========================================
``/episode``                     reinforcegen_msgs/EpisodeMarker    START at the first step, END at the last
                                                                    (task, stage names, success, attrs JSON)
``/joint_states``                sensor_msgs/JointState             obs ``robot0_joint_pos`` (panda_joint1-7)
                                                                    and ``robot0_gripper_qpos``
                                                                    (panda_finger_joint1/2, ROS sign convention)
``/eef_pose``                    geometry_msgs/PoseStamped          end-effector pose (world frame)
``/object_poses``                reinforcegen_msgs/ObjectPoses      privileged object poses
``/eef_command``                 reinforcegen_msgs/EefCommand       the 7-D action applied after this state
``/stage_status``                reinforcegen_msgs/StageStatus      stage index/name, phase (connect/skill),
                                                                    initiation pose as target_pose,
                                                                    ground-truth termination of the stage
``/sim_state``                   reinforcegen_msgs/DemoStep         flattened MuJoCo state, stage, phase,
                                                                    termination signals, reward, initiation
                                                                    pose, low-dim obs
``/camera/<name>/image_raw``     sensor_msgs/Image (rgb8)           obs ``<name>_image`` (HxWx3 uint8)
===============================  =================================  ==========================================

Consecutive episodes are separated by :data:`EPISODE_GAP_STEPS` idle ticks.

:func:`bag_to_episodes` reads such a bag back. dataset -> bag -> dataset is
exact for actions, states, low-dim observations (as float64), images, stage,
phase, termination signals, rewards, success and JSON-representable attrs; 4x4
poses (eef, objects, initiation) go through a unit quaternion (error ~1e-15). A
missing ``initiation_pose`` is written as derived from the phases, as the HDF5
writer does. Bags recorded on a real robot
or by teleoperation need no ``/sim_state`` and no ``/episode`` markers (then the
whole bag is one episode): steps are the ``/eef_command`` messages and every
other topic is sampled at each command's stamp (latest message at or before it).
What such a bag lacks is left empty (states, termination signals, rewards) or
-1 (stage, phase; steps before the first ``/stage_status``) and listed in ``attrs["bag_missing"]``; a bag without
``/eef_command`` or ``/eef_pose`` is rejected because a source demo needs both.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import struct
import time
from binascii import crc32
from collections import defaultdict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from reinforcegen_ros import messages as M
from reinforcegen_ros.demos.episode import CONNECT, SKILL, Episode, initiation_poses_from_phases
from reinforcegen_ros.geometry import mat_to_quat, rotvec
from reinforcegen_ros.io import atomic_path

STORAGES = ("mcap", "sqlite3")
CONTROL_RATE_HZ = 20.0
#: Idle 20 Hz ticks between consecutive episodes of one bag.
EPISODE_GAP_STEPS = 20
IMAGE_SUFFIX = "_image"
PHASE_NAMES = {CONNECT: "connect", SKILL: "skill"}
#: StageStatus phase -> Episode phase (predict and plan precede the connect motion).
STATUS_TO_PHASE = {"predict": CONNECT, "plan": CONNECT, "connect": CONNECT, "skill": SKILL}

#: Topic -> message type of every fixed topic (camera topics are sensor_msgs/Image).
TOPIC_TYPES = {
    M.TOPIC_EPISODE: M.T_EPISODE_MARKER,
    M.TOPIC_JOINT_STATES: M.T_JOINT_STATE,
    M.TOPIC_EEF_POSE: M.T_POSE_STAMPED,
    M.TOPIC_OBJECT_POSES: M.T_OBJECT_POSES,
    M.TOPIC_EEF_COMMAND: M.T_EEF_COMMAND,
    M.TOPIC_STAGE_STATUS: M.T_STAGE_STATUS,
    M.TOPIC_SIM_STATE: M.T_DEMO_STEP,
}


class BagError(ValueError):
    """A bag that cannot be read, or holds a message that cannot be decoded or is not valid (one line, names the bag)."""


@functools.lru_cache(maxsize=1)
def typestore():
    """The shared rosbags typestore with the standard ROS 2 types and ours."""
    return M.make_typestore()


# ============================================================================= writing
def episodes_to_bag(
    episodes: Sequence[Episode],
    path: str | os.PathLike,
    task: str,
    stage_names: Sequence[str],
    *,
    storage: str = "mcap",
    rate_hz: float = CONTROL_RATE_HZ,
    start_ns: int | None = None,
    images: bool = True,
) -> Path:
    """Write ``episodes`` as one rosbag2 directory at ``path`` and return the path.

    ``storage`` is ``"mcap"`` or ``"sqlite3"``; ``start_ns`` is the stamp of the
    first step (default: now); ``images=False`` leaves out the camera topics.
    The bag is written under a temporary name and renamed when complete; an
    existing ``path`` raises ``FileExistsError``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if storage not in STORAGES:
        raise ValueError(f"unknown bag storage '{storage}'; choose one of {', '.join(STORAGES)}")
    if path.exists():
        raise FileExistsError(f"{path} already exists; remove it or choose another output path")
    if not episodes:
        raise ValueError("no episodes to write")
    stage_names = [str(s) for s in stage_names]
    for i, ep in enumerate(episodes):
        _check_episode(ep, stage_names, f"episode {i}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    dt_ns = int(round(1e9 / rate_hz))
    t0 = time.time_ns() // dt_ns * dt_ns if start_ns is None else int(start_ns)

    store = typestore()
    m = M.MsgClasses.from_typestore(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        # the bag directory keeps its name (rosbags names its files after it): written inside tmp_dir, then renamed
        with atomic_path(path, tmp=tmp_dir / path.name) as bag_dir:
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            writer = Writer(bag_dir, version=8, storage_plugin=plugin)
            writer.open()
            out = _BagOut(writer, store)
            for i, ep in enumerate(episodes):
                _write_episode(out, m, ep, i, task, stage_names, t0, dt_ns, images)
                t0 += (len(ep) + EPISODE_GAP_STEPS) * dt_ns
            writer.close()
            for mcap in bag_dir.glob("*.mcap"):
                add_chunk_crcs(mcap)
            if path.exists():
                raise FileExistsError(f"{path} appeared while the bag was being written; not overwriting it")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_CHUNK, _OP_DATA_END, _OP_FOOTER = 0x06, 0x0F, 0x02


def add_chunk_crcs(path: Path) -> int:
    """Fill in the CRC-32 of every uncompressed chunk of an MCAP file; returns how many chunks got one.

    rosbags writes 0 ("not checked"); with the checksum, ``rosbags``, ``ros2 bag`` and Foxglove
    reject a chunk whose bytes changed (a bit flip reads back as an error, not as wrong numbers).
    """
    done = 0
    with open(path, "r+b") as fh:
        if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise BagError(f"'{path}' is not an MCAP file")
        while True:
            head = fh.read(9)
            if len(head) < 9:
                break
            op, length = head[0], struct.unpack("<Q", head[1:])[0]
            start = fh.tell()
            if op in (_OP_DATA_END, _OP_FOOTER):
                break
            if op == _OP_CHUNK:
                fixed = fh.read(28)  # message start, message end, uncompressed size, crc
                (name_len,) = struct.unpack("<I", fh.read(4))
                compression = fh.read(name_len)
                (size,) = struct.unpack("<Q", fh.read(8))
                if compression == b"" and struct.unpack("<I", fixed[24:28])[0] == 0:
                    crc, left = 0, size
                    while left:
                        block = fh.read(min(left, 1 << 20))
                        if not block:
                            raise BagError(f"'{path}': chunk ends early")
                        crc, left = crc32(block, crc), left - len(block)
                    fh.seek(start + 24)
                    fh.write(struct.pack("<I", crc))
                    done += 1
            fh.seek(start + length)
    return done


class _BagOut:
    """Serialises messages into a rosbags writer, one connection per topic."""

    def __init__(self, writer, store):
        self.writer, self.store, self.conns = writer, store, {}

    def write(self, topic: str, msgtype: str, msg, stamp_ns: int) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.conns[topic], stamp_ns, self.store.serialize_cdr(msg, msgtype))


def _check_episode(ep: Episode, stage_names: list[str], what: str) -> None:
    """Raise a one-line ValueError if ``ep`` cannot be written losslessly."""
    n = len(ep)
    per_step = {"states": ep.states, "stage": ep.stage, "phase": ep.phase, "eef_pose": ep.eef_pose, "rewards": ep.rewards}
    per_step.update({f"obs '{k}'": v for k, v in ep.obs.items()})
    per_step.update({f"object pose '{k}'": v for k, v in ep.object_poses.items()})
    per_step.update({f"term signal '{k}'": v for k, v in ep.term_signals.items()})
    for name, arr in per_step.items():
        if len(arr) != n:
            raise ValueError(f"{what}: {name} has {len(arr)} steps but actions has {n}")
    if n == 0:
        raise ValueError(f"{what} has no steps")
    if ep.initiation_pose is not None and np.shape(ep.initiation_pose) != (n, 4, 4):
        raise ValueError(f"{what}: initiation_pose has shape {np.shape(ep.initiation_pose)}, expected {(n, 4, 4)}")
    if ep.term_signals and set(ep.term_signals) != set(stage_names):
        raise ValueError(f"{what}: term signals {sorted(ep.term_signals)} do not match the stage names {stage_names}")
    for k, v in ep.term_signals.items():
        if not np.isin(v, (0, 1)).all():
            raise ValueError(f"{what}: term signal '{k}' holds values other than 0 and 1")
    if not np.isin(ep.phase, (-1, CONNECT, SKILL)).all():
        raise ValueError(f"{what}: phase holds values other than -1, {CONNECT} (connect), {SKILL} (skill)")
    for k, v in ep.obs.items():
        if not k.endswith(IMAGE_SUFFIX) and np.ndim(v) != 2:
            raise ValueError(f"{what}: obs '{k}' has per-step shape {np.shape(v)[1:]}; bags carry 1-D low-dim observations")


def _initiation_poses(ep: Episode) -> np.ndarray:
    """The episode's per-step initiation poses; derived from its phases when absent (as the HDF5 writer does)."""
    if ep.initiation_pose is not None:
        return np.asarray(ep.initiation_pose, dtype=np.float64)
    return initiation_poses_from_phases(np.asarray(ep.stage), np.asarray(ep.phase), np.asarray(ep.eef_pose, dtype=np.float64))


def _jsonable(value):
    """JSON form of numpy values in episode attrs."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"episode attribute value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def _marker(m, event: int, stamp: int, index: int, task: str, stage_names: list[str], ep: Episode):
    """An EpisodeMarker message."""
    return m.EpisodeMarker(
        header=M.header_to_msg(stamp, m),
        event=event,
        episode_index=index,
        task=task,
        stage_names=M.strings(stage_names),
        num_steps=len(ep),
        success=bool(ep.success),
        attrs_json=json.dumps(ep.attrs, default=_jsonable),
    )


def _write_episode(out: _BagOut, m, ep: Episode, index: int, task: str, stage_names: list[str], t0: int, dt_ns: int, images: bool):
    """Write one episode's messages, step by step, starting at stamp ``t0``."""
    low_dim = [k for k in ep.obs if not k.endswith(IMAGE_SUFFIX)]
    cams = [k[: -len(IMAGE_SUFFIX)] for k in ep.obs if k.endswith(IMAGE_SUFFIX)] if images else []
    terms = [np.asarray(ep.term_signals[s]) for s in stage_names] if ep.term_signals else []
    sizes = [int(np.shape(ep.obs[k])[1]) for k in low_dim]
    init = _initiation_poses(ep)
    event_start, event_end = out.store.types[M.T_EPISODE_MARKER].START, out.store.types[M.T_EPISODE_MARKER].END
    out.write(M.TOPIC_EPISODE, M.T_EPISODE_MARKER, _marker(m, event_start, t0, index, task, stage_names, ep), t0)
    for t in range(len(ep)):
        stamp = t0 + t * dt_ns
        if "robot0_joint_pos" in ep.obs:
            grip = ep.obs["robot0_gripper_qpos"][t] if "robot0_gripper_qpos" in ep.obs else None
            out.write(M.TOPIC_JOINT_STATES, M.T_JOINT_STATE, M.joint_state_to_msg(ep.obs["robot0_joint_pos"][t], grip, stamp, m), stamp)
        out.write(M.TOPIC_EEF_POSE, M.T_POSE_STAMPED, M.pose_stamped_to_msg(ep.eef_pose[t], stamp, m), stamp)
        if ep.object_poses:
            poses = {k: v[t] for k, v in ep.object_poses.items()}
            out.write(M.TOPIC_OBJECT_POSES, M.T_OBJECT_POSES, M.object_poses_to_msg(poses, stamp, m), stamp)
        out.write(M.TOPIC_EEF_COMMAND, M.T_EEF_COMMAND, M.action_to_msg(ep.actions[t], stamp, m), stamp)
        stage, phase = int(ep.stage[t]), int(ep.phase[t])
        if phase in PHASE_NAMES:
            name = stage_names[stage] if 0 <= stage < len(stage_names) else ""
            term = float(terms[stage][t]) if terms and 0 <= stage < len(terms) else 0.0
            status = M.stage_status_to_msg(stamp, stage, name, PHASE_NAMES[phase], m, target_pose=init[t], termination_probability=term)
            out.write(M.TOPIC_STAGE_STATUS, M.T_STAGE_STATUS, status, stamp)
        step = m.DemoStep(
            header=M.header_to_msg(stamp, m),
            episode_index=index,
            step=t,
            stage_index=stage,
            phase=phase,
            state=m.float64s(ep.states[t]),
            stage_done=m.bools([v[t] for v in terms]),
            reward=float(ep.rewards[t]),
            initiation_pose=M.pose_to_msg(init[t], m, "initiation pose"),
            obs_names=M.strings(low_dim),
            obs_sizes=m.uint32s(sizes),
            obs=m.float64s(np.concatenate([np.asarray(ep.obs[k][t], dtype=np.float64) for k in low_dim]) if low_dim else []),
        )
        out.write(M.TOPIC_SIM_STATE, M.T_DEMO_STEP, step, stamp)
        for cam in cams:
            img = M.image_to_msg(ep.obs[cam + IMAGE_SUFFIX][t], stamp, m, frame_id=cam)
            out.write(M.camera_topic(cam), M.T_IMAGE, img, stamp)
    end = t0 + (len(ep) - 1) * dt_ns
    out.write(M.TOPIC_EPISODE, M.T_EPISODE_MARKER, _marker(m, event_end, end, index, task, stage_names, ep), end)


# ============================================================================= reading
class _Series:
    """Messages of one topic sorted by stamp (header stamp, else bag time)."""

    def __init__(self, items: list[tuple[int, object]]):
        items = sorted(items, key=lambda x: x[0])
        self.stamps = [s for s, _ in items]
        self.msgs = [msg for _, msg in items]

    def window(self, lo: float, hi: float) -> "_Series":
        """The messages stamped within [lo, hi]."""
        a, b = bisect.bisect_left(self.stamps, lo), bisect.bisect_right(self.stamps, hi)
        return _Series(list(zip(self.stamps[a:b], self.msgs[a:b])))

    def hold(self, query: np.ndarray) -> list:
        """For every query stamp the latest message at or before it (the first one before any)."""
        idx = np.searchsorted(np.asarray(self.stamps, dtype=np.int64), query, side="right") - 1
        return [self.msgs[i] for i in np.clip(idx, 0, len(self.msgs) - 1)]

    def __len__(self) -> int:
        return len(self.msgs)


@contextlib.contextmanager
def open_bag(path: Path) -> Iterator:
    """A rosbags ``Reader`` of ``path``; a missing, damaged or unreadable bag raises :class:`BagError` (one line)."""
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise BagError(f"bag '{path}' does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags, yaml and sqlite errors: a damaged bag, never a crash
        raise BagError(f"'{path}' is not a readable rosbag2 ({_reason(exc)})") from None
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_series(path: Path, topics: set[str] | None = None) -> dict[str, _Series]:
    """Deserialise and check the known topics of the bag at ``path`` (only ``topics`` if given).

    A message that cannot be decoded, or whose numbers are not finite or not what its
    type requires, raises :class:`BagError` naming its topic and time in the bag.
    """
    store = typestore()
    series: dict[str, list] = defaultdict(list)
    with open_bag(path) as reader:
        conns = []
        for c in reader.connections:
            expected = TOPIC_TYPES.get(c.topic, M.T_IMAGE if M.IMAGE_TOPIC_RE.match(c.topic) else None)
            if expected is None or (topics is not None and c.topic not in topics):
                continue
            if c.msgtype != expected:
                raise BagError(f"{path}: topic {c.topic} has type {c.msgtype}; expected {expected}")
            conns.append(c)
        if not conns:
            return {}
        start, last = reader.start_time, None
        messages = reader.messages(connections=conns)
        while True:
            try:
                item = next(messages, None)
            except Exception as exc:
                after = f" after the {last[0]} message at {_at(last[1], start)}" if last else ""
                raise BagError(f"'{path}': damaged bag data{after} ({_reason(exc)})") from None
            if item is None:
                break
            conn, log_ns, raw = item
            last = (conn.topic, log_ns)
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
                check_message(conn.topic, msg)
            except Exception as exc:
                raise BagError(f"'{path}': {conn.topic} message at {_at(log_ns, start)} is not valid ({_reason(exc)})") from None
            series[conn.topic].append((M.stamp_from_msg(msg.header.stamp) or log_ns, msg))
    return {k: _Series(v) for k, v in series.items()}


def _at(log_ns: int, start_ns: int) -> str:
    """A message's time: seconds into the bag and the bag timestamp."""
    return f"t = {(log_ns - start_ns) / 1e9:.3f} s (bag time {log_ns} ns)"


#: Fields whose numbers may be NaN in a valid message (JointState velocity and effort are often unknown).
_MAY_BE_NAN = {("sensor_msgs/msg/JointState", "velocity"), ("sensor_msgs/msg/JointState", "effort")}


def check_message(topic: str, msg) -> None:
    """Raise ValueError if a message of a known topic has non-finite numbers or does not convert."""
    _check_finite(msg, msg.__msgtype__)
    if topic == M.TOPIC_EEF_COMMAND:
        M.action_from_msg(msg)
    elif topic == M.TOPIC_EEF_POSE:
        M.pose_from_msg(msg.pose)
    elif topic == M.TOPIC_OBJECT_POSES:
        M.object_poses_from_msg(msg)
    elif topic == M.TOPIC_JOINT_STATES:
        M.joint_state_from_msg(msg)
    elif topic == M.TOPIC_SIM_STATE:
        M.pose_from_msg(msg.initiation_pose)
        if len(msg.obs_names) != len(msg.obs_sizes) or len(msg.obs) != sum(int(v) for v in msg.obs_sizes):
            raise ValueError(f"{len(msg.obs_names)} obs names, {len(msg.obs_sizes)} sizes and {len(msg.obs)} values do not fit")
    elif M.IMAGE_TOPIC_RE.match(topic):
        M.image_from_msg(msg)


def _check_finite(msg, msgtype: str, field_path: str = "") -> None:
    """Raise ValueError naming the first field (``pose.position.x``) that holds NaN or an infinity."""
    for f in dataclasses.fields(msg):
        if f.name == "__msgtype__" or (msgtype, f.name) in _MAY_BE_NAN:
            continue
        value, name = getattr(msg, f.name), field_path + f.name
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{name} is {value}")
        elif isinstance(value, np.ndarray):
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"{name}[{int(np.argmin(np.isfinite(value)))}] is {value[~np.isfinite(value)][0]}")
        elif dataclasses.is_dataclass(value):
            _check_finite(value, getattr(value, "__msgtype__", ""), name + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _check_finite(item, getattr(item, "__msgtype__", ""), f"{name}[{i}].")
                elif isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(f"{name}[{i}] is {item}")


def _windows(path: Path, markers: _Series | None) -> list[tuple[int, int, object, object]]:
    """(first stamp, last stamp, START marker, END marker) of every episode in the bag."""
    if markers is None or not len(markers):
        return [(-(2**62), 2**62, None, None)]
    starts: dict[int, object] = {}
    ends: dict[int, object] = {}
    for msg in markers.msgs:
        (starts if msg.event == msg.START else ends)[int(msg.episode_index)] = msg
    if not starts:
        raise ValueError(f"{path}: /episode has END markers but no START marker")
    order = sorted(starts, key=lambda i: M.stamp_from_msg(starts[i].header.stamp))
    out = []
    for j, i in enumerate(order):
        lo = M.stamp_from_msg(starts[i].header.stamp)
        if i in ends:
            hi = M.stamp_from_msg(ends[i].header.stamp)
        elif j + 1 < len(order):
            hi = M.stamp_from_msg(starts[order[j + 1]].header.stamp) - 1
        else:
            hi = 2**62
        out.append((lo, hi, starts[i], ends.get(i)))
    return out


def bag_to_episodes(
    path: str | os.PathLike,
    stage_names: Sequence[str] | None = None,
    task: str | None = None,
) -> list[Episode]:
    """Read the episodes of the rosbag2 directory (or ``.mcap``/``.db3`` file) at ``path``.

    ``stage_names`` (the task's stages) and ``task``, when given, are checked
    against the bag's episode markers; ``stage_names`` also names the
    termination signals of bags without markers.
    """
    path = Path(path)
    series = _read_series(path)
    for topic, need in ((M.TOPIC_EEF_COMMAND, "actions"), (M.TOPIC_EEF_POSE, "end-effector poses")):
        if topic not in series:
            raise ValueError(f"{path}: no {topic} ({TOPIC_TYPES[topic]}) messages; a source demo needs the {need}")
    episodes = []
    for k, (lo, hi, start, end) in enumerate(_windows(path, series.get(M.TOPIC_EPISODE))):
        names = _check_marker(path, start, stage_names, task)
        window = {topic: s.window(lo, hi) for topic, s in series.items()}
        episodes.append(_read_episode(path, f"episode {k}", window, names, start, end))
    return episodes


def _check_marker(path: Path, start, stage_names: Sequence[str] | None, task: str | None) -> list[str] | None:
    """Stage names of an episode, checked against the expected task and stages."""
    if start is None:
        return None if stage_names is None else list(stage_names)
    names = [str(s) for s in start.stage_names]
    if task is not None and start.task != task:
        raise ValueError(f"{path}: episode {start.episode_index} is of task '{start.task}', not '{task}'")
    if stage_names is not None and names != list(stage_names):
        raise ValueError(f"{path}: episode {start.episode_index} has stages {names}, expected {list(stage_names)}")
    return names


def _read_episode(path: Path, what: str, topics: dict[str, _Series], names: list[str] | None, start, end) -> Episode:
    """Assemble one episode from the messages within its window."""
    cmds = topics[M.TOPIC_EEF_COMMAND]
    if not len(cmds):
        raise ValueError(f"{path}: {what} has no {M.TOPIC_EEF_COMMAND} messages (actions)")
    if not len(topics[M.TOPIC_EEF_POSE]):
        raise ValueError(f"{path}: {what} has no {M.TOPIC_EEF_POSE} messages (end-effector poses)")
    q = np.asarray(cmds.stamps, dtype=np.int64)
    n = len(q)
    present = {t for t, s in topics.items() if len(s)}
    missing = [t for t in (M.TOPIC_SIM_STATE, M.TOPIC_OBJECT_POSES, M.TOPIC_STAGE_STATUS, M.TOPIC_JOINT_STATES) if t not in present]

    actions = np.stack([M.action_from_msg(c) for c in cmds.msgs])
    eef_pose = np.stack([M.pose_from_msg(p.pose) for p in topics[M.TOPIC_EEF_POSE].hold(q)])
    object_poses = _object_poses(topics.get(M.TOPIC_OBJECT_POSES), q)
    obs: dict[str, np.ndarray] = {}
    sim = topics.get(M.TOPIC_SIM_STATE)
    if sim is not None and len(sim):
        steps = sim.hold(q)
        obs.update(_sim_obs(path, what, steps))
        stage = np.array([s.stage_index for s in steps], dtype=np.int64)
        phase = np.array([s.phase for s in steps], dtype=np.int64)
        states = np.stack([np.asarray(s.state, dtype=np.float64) for s in steps])
        initiation = np.stack([M.pose_from_msg(s.initiation_pose) for s in steps])
        rewards = np.array([s.reward for s in steps], dtype=np.float64)
        done = np.array([np.asarray(s.stage_done, dtype=bool) for s in steps]).reshape(n, -1).astype(np.int64)
        if done.shape[1] and names is not None and len(names) != done.shape[1]:
            raise ValueError(f"{path}: {what} has {done.shape[1]} termination signals for {len(names)} stages")
        names = names if names is not None else [f"stage_{i}" for i in range(done.shape[1])]
        term_signals = {name: done[:, i] for i, name in enumerate(names)} if done.shape[1] else {}
    else:
        obs.update(_topic_obs(topics, q, eef_pose, object_poses))
        stage, phase = _status_labels(topics.get(M.TOPIC_STAGE_STATUS), q)
        initiation = _status_targets(topics.get(M.TOPIC_STAGE_STATUS), q, stage, phase, eef_pose)
        states, rewards, term_signals = np.zeros((n, 0)), np.zeros(n), {}
    for topic, s in topics.items():
        cam = M.IMAGE_TOPIC_RE.match(topic)
        if cam and len(s):
            obs[cam.group(1) + IMAGE_SUFFIX] = np.stack([M.image_from_msg(img) for img in s.hold(q)])

    attrs = json.loads(start.attrs_json) if start is not None and start.attrs_json else {}
    if missing:
        attrs["bag_missing"] = missing
    if end is not None:
        success = bool(end.success)
    else:
        status = topics.get(M.TOPIC_STAGE_STATUS)
        success = bool(status is not None and len(status) and status.msgs[-1].phase == "done")
    return Episode(
        actions=actions,
        states=states,
        obs=obs,
        stage=stage,
        phase=phase,
        eef_pose=eef_pose,
        object_poses=object_poses,
        term_signals=term_signals,
        rewards=rewards,
        success=success,
        attrs=attrs,
        initiation_pose=initiation,
    )


def _sim_obs(path: Path, what: str, steps: list) -> dict[str, np.ndarray]:
    """Low-dim observations carried by DemoStep messages."""
    names = [str(k) for k in steps[0].obs_names]
    sizes = [int(v) for v in steps[0].obs_sizes]
    if len(names) != len(sizes):
        raise ValueError(f"{path}: {what}: DemoStep has {len(names)} obs names but {len(sizes)} sizes")
    flat = []
    for s in steps:
        if [str(k) for k in s.obs_names] != names or len(s.obs) != sum(sizes):
            raise ValueError(f"{path}: {what}: DemoStep observation layout changes within the episode")
        flat.append(np.asarray(s.obs, dtype=np.float64))
    flat_arr = np.stack(flat) if flat else np.zeros((0, sum(sizes)))
    bounds = np.cumsum([0] + sizes)
    return {k: flat_arr[:, bounds[i] : bounds[i + 1]].copy() for i, k in enumerate(names)}


def _object_poses(series: _Series | None, q: np.ndarray) -> dict[str, np.ndarray]:
    """Per-object 4x4 poses at the stamps ``q``, each object held from its own latest message."""
    if series is None or not len(series):
        return {}
    per_obj: dict[str, list] = defaultdict(list)
    for stamp, msg in zip(series.stamps, series.msgs):
        for name, pose in M.object_poses_from_msg(msg).items():
            per_obj[name].append((stamp, pose))
    return {name: np.stack(_Series(items).hold(q)) for name, items in per_obj.items()}


def _topic_obs(topics: dict[str, _Series], q: np.ndarray, eef_pose: np.ndarray, object_poses: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Low-dim observations rebuilt from the standard topics (keys as TaskEnv.observe)."""
    obs = {
        "robot0_eef_pos": eef_pose[:, :3, 3].copy(),
        "robot0_eef_quat": np.stack([mat_to_quat(p[:3, :3]) for p in eef_pose]),
        "robot0_eef_axis_angle": np.stack([rotvec(p[:3, :3]) for p in eef_pose]),
    }
    joints = topics.get(M.TOPIC_JOINT_STATES)
    if joints is not None and len(joints):
        parsed = [M.joint_state_from_msg(j) for j in joints.hold(q)]
        if all(arm is not None for arm, _ in parsed):
            obs["robot0_joint_pos"] = np.stack([arm for arm, _ in parsed])
        if all(grip is not None for _, grip in parsed):
            obs["robot0_gripper_qpos"] = np.stack([grip for _, grip in parsed])
    if object_poses:
        obs["object"] = np.concatenate(
            [np.concatenate([p[:, :3, 3], np.stack([mat_to_quat(r[:3, :3]) for r in p])], axis=1) for p in object_poses.values()],
            axis=1,
        )
    return obs


def _status_labels(series: _Series | None, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage index and phase per step from StageStatus messages (-1 where unknown)."""
    n = len(q)
    if series is None or not len(series):
        return np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    held = series.hold(q)
    before = q < series.stamps[0]
    stage = np.array([s.stage_index for s in held], dtype=np.int64)
    phase = np.array([STATUS_TO_PHASE.get(s.phase, -1) for s in held], dtype=np.int64)
    stage[before], phase[before] = -1, -1
    return stage, phase


def _status_targets(series: _Series | None, q: np.ndarray, stage: np.ndarray, phase: np.ndarray, eef_pose: np.ndarray) -> np.ndarray:
    """Initiation poses per step: StageStatus target poses, or derived from the phases without them."""
    if series is None or not len(series):
        return initiation_poses_from_phases(stage, phase, eef_pose)
    return np.stack([M.pose_from_msg(s.target_pose) for s in series.hold(q)])


# ============================================================================= summary
def bag_info(path: str | os.PathLike) -> dict:
    """Task, stage names, episode count and topics (type, message count) of a bag."""
    path = Path(path)
    with open_bag(path) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        duration_s = reader.duration / 1e9
    markers = _read_series(path, {M.TOPIC_EPISODE}).get(M.TOPIC_EPISODE)
    starts = [msg for msg in (markers.msgs if markers else []) if msg.event == msg.START]
    return {
        "task": starts[0].task if starts else None,
        "stage_names": [str(s) for s in starts[0].stage_names] if starts else None,
        "episodes": len(starts) if starts else (1 if M.TOPIC_EEF_COMMAND in topics else 0),
        "successes": sum(bool(msg.success) for msg in (markers.msgs if markers else []) if msg.event == msg.END),
        "duration_s": duration_s if math.isfinite(duration_s) else 0.0,
        "topics": topics,
    }
