"""Object-centric generation: transforms, a real generation run, and kill -9 resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from reinforcegen_ros.datagen.object_centric import SkillSource, choose_source, commanded_targets, skill_source
from reinforcegen_ros.datagen.segmentation import SegmentationError, annotate_phases, segment_episode
from reinforcegen_ros.tasks.base import Stage
from reinforcegen_ros.demos.dataset import iter_episodes, open_dataset
from reinforcegen_ros.geometry import make_pose, pose_inv, rot_z

TASK = "coffee"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from reinforcegen_ros.demos.collect import collect

    out = tmp_path_factory.mktemp("gen") / "source.hdf5"
    collect(TASK, 3, out, seed=0, progress=False)
    return out


def test_segments_cover_each_stage(source):
    for ep in iter_episodes(source):
        segs = segment_episode(ep, 2)
        assert segs[0].start == 0 and segs[-1].end == len(ep)
        for seg in segs:
            assert seg.start < seg.skill_start < seg.end
            assert np.all(ep.phase[seg.start : seg.skill_start] == 0) and np.all(ep.phase[seg.skill] == 1)


def test_unannotated_phases_are_rejected_then_annotated(source):
    ep = next(iter_episodes(source))
    ep.phase[:] = -1
    with pytest.raises(SegmentationError, match="not annotated"):
        segment_episode(ep, 2)
    annotate_phases(ep, ["pod", "coffee_machine"], [0.08, 0.15])
    segs = segment_episode(ep, 2)
    dist = np.linalg.norm(ep.eef_pose[segs[0].skill_start, :3, 3] - ep.object_poses["pod"][segs[0].skill_start, :3, 3])
    assert dist < 0.08


def test_skill_targets_follow_the_reference_object(source):
    ep = next(iter_episodes(source))
    seg = segment_episode(ep, 2)[0]
    src = skill_source(ep, 0, seg, Stage("grasp_pod", "pod", ""))
    # commanded targets lie ahead of the eef in the direction it then moves (OSC tracks them with lag)
    targets = commanded_targets(ep.eef_pose[seg.skill], ep.actions[seg.skill])
    ahead = targets[:-1, :3, 3] - ep.eef_pose[seg.skill_start : seg.end - 1, :3, 3]
    moved = ep.eef_pose[seg.skill_start + 1 : seg.end, :3, 3] - ep.eef_pose[seg.skill_start : seg.end - 1, :3, 3]
    big = np.linalg.norm(moved, axis=1) > 2e-3
    cos = np.sum(ahead[big] * moved[big], axis=1) / np.linalg.norm(ahead[big], axis=1) / np.linalg.norm(moved[big], axis=1)
    assert big.sum() > 5 and np.median(cos) > 0.8
    moved = make_pose(src.reference_pose[:3, 3] + [0.1, -0.05, 0], rot_z(0.4) @ src.reference_pose[:3, :3])
    init, tgts = src.transformed(moved)
    assert np.allclose(pose_inv(moved) @ init, pose_inv(src.reference_pose) @ src.initiation_pose)
    assert np.allclose(pose_inv(moved) @ tgts[5], pose_inv(src.reference_pose) @ src.targets[5])
    rng = np.random.default_rng(0)
    assert choose_source([src], moved, "nearest", rng) is src
    with pytest.raises(ValueError, match="unknown source selection"):
        choose_source([src], moved, "best", rng)


def test_grasp_correction_applies_while_the_object_is_held():
    """The held object follows the source until the gripper opens; then the source's own targets are kept."""
    targets = np.stack([make_pose(np.array([0.1 * i, 0.0, 1.0]), np.eye(3)) for i in range(6)])
    gripper = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])  # carry, then release and sweep
    src = SkillSource(0, 1, np.eye(4), targets[0], targets, gripper, held_in_hand=make_pose(np.array([0, 0, 0.02]), np.eye(3)))
    now = make_pose(np.array([0.0, 0.0, 0.03]), rot_z(0.5))  # held 1 cm lower in the hand and turned
    init, corrected = src.grasp_corrected(targets[0], targets, now, position_only=True)
    shift = make_pose(np.array([0.0, 0.0, -0.01]), np.eye(3))
    assert np.allclose(init, targets[0] @ shift) and np.allclose(corrected[:3], targets[:3] @ shift)
    assert np.allclose(corrected[3:], targets[3:])
    _, full = src.grasp_corrected(targets[0], targets, now)
    assert np.allclose(full[:3] @ now, targets[:3] @ src.held_in_hand)  # the object where the source had it
    assert np.allclose(full[3:], targets[3:])


def _generate_cmd(source, out, num):
    return [sys.executable, "-m", "reinforcegen_ros.cli", "generate", "--task", TASK, "--source", str(source),
            "--num", str(num), "--out", str(out), "--workers", "1"]


def test_killed_run_resumes_without_losing_committed_demos(source, tmp_path):
    out = tmp_path / "gen.hdf5"
    parts = tmp_path / "gen.hdf5.parts"
    proc = subprocess.Popen(_generate_cmd(source, out, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(parts.glob("demo_*.hdf5"))) < 2:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    shards = sorted(parts.glob("demo_*.hdf5"))
    assert len(shards) >= 2 and not out.exists()
    committed = {}
    for shard in shards:  # every visible shard is a whole, valid HDF5 dataset
        with open_dataset(shard) as f:
            committed[f["data/demo_0"].attrs["attempt"]] = f["data/demo_0/actions"][()]
    subprocess.run(_generate_cmd(source, out, 4), check=True, capture_output=True)
    assert out.exists() and not parts.exists()
    with open_dataset(out) as f:
        demos = {f[f"data/{n}"].attrs["attempt"]: f[f"data/{n}/actions"][()] for n in f["data"] if n.startswith("demo_")}
        gen = json.loads(f["data"].attrs["generation"])
    assert len(demos) == 4 and gen["successes"] >= 4
    assert gen["worker_cpu_seconds"] > 0  # CPU time of the workers, the killed run's attempts included (demos per core-hour)
    for attempt, actions in committed.items():
        assert attempt in demos and np.array_equal(demos[attempt], actions)
    for ep in iter_episodes(out):
        assert ep.success and ep.initiation_pose.shape == ep.eef_pose.shape
        assert set(np.unique(ep.phase)) == {0, 1}


def test_ray_executor_against_a_local_ray(source, tmp_path):
    ray = pytest.importorskip("ray", reason="ray not installed (make installs it with the test extras)")
    from reinforcegen_ros.datagen.runner import generate

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = generate(TASK, source, 2, tmp_path / "ray.hdf5", workers=2, pool="ray", progress=False)
    finally:
        ray.shutdown()
    assert report.successes >= 2
    with open_dataset(tmp_path / "ray.hdf5") as f:
        assert json.loads(f["data"].attrs["generation"])["executor"] == "ray"
        assert len([n for n in f["data"] if n.startswith("demo_")]) == 2


def test_grasp_correction_makes_the_held_object_follow_the_source():
    from reinforcegen_ros.datagen.object_centric import SkillSource

    rng = np.random.default_rng(2)
    targets = np.stack([make_pose(rng.normal(size=3), rot_z(rng.normal())) for _ in range(4)])
    in_hand_src = make_pose([0.0, 0.01, 0.02], np.eye(3))
    in_hand_now = make_pose([0.0, -0.004, 0.035], rot_z(1.0))  # another grasp (and yaw) of a round object
    src = SkillSource(0, 1, np.eye(4), targets[0], targets, np.ones(4), held_in_hand=in_hand_src)
    init, corrected = src.grasp_corrected(targets[0], targets, in_hand_now, position_only=True)
    # the held object's position in the corrected targets equals its position in the source targets
    for t in range(4):
        assert np.allclose((corrected[t] @ in_hand_now)[:3, 3], (targets[t] @ in_hand_src)[:3, 3])
    assert np.allclose(corrected[:, :3, :3], targets[:, :3, :3])  # orientation left to the source

    # a full correction reproduces the held object's whole pose (asymmetric objects: a nut, a needle)
    init, full = src.grasp_corrected(targets[0], targets, in_hand_now)
    for t in range(4):
        assert np.allclose(full[t] @ in_hand_now, targets[t] @ in_hand_src)


def test_step_path_flag_is_used_recorded_and_not_mixed_on_resume(source, tmp_path):
    """--step-path stock reaches the workers' TaskEnv, the dataset's generation stats and the run's meta.json."""
    from reinforcegen_ros.cli import build_parser
    from reinforcegen_ros.datagen import runner
    from reinforcegen_ros.demos.dataset import DatasetError

    out = tmp_path / "stock.hdf5"
    args = build_parser().parse_args(["generate", "--task", TASK, "--source", str(source), "--num", "1", "--out", str(out),
                                      "--step-path", "stock", "--max-attempts", "5"])
    args.func(args)
    with open_dataset(out) as f:
        assert json.loads(f["data"].attrs["generation"])["step_path"] == "stock"
    assert runner._WORKER["generator"].env.step_path == "stock"  # one local worker runs in this process
    meta = {"task": TASK, "source": str(source), "seed": 0, "datagen": {}}
    runner.PartsDir(tmp_path / "old.hdf5", meta)  # a run begun before the step path was recorded: lean
    runner.PartsDir(tmp_path / "old.hdf5", {**meta, "step_path": "lean"})
    with pytest.raises(DatasetError, match="step_path: lean vs stock"):
        runner.PartsDir(tmp_path / "old.hdf5", {**meta, "step_path": "stock"})
    with pytest.raises(ValueError, match="unknown step path 'fast'"):
        runner.generate(TASK, source, 1, tmp_path / "bad.hdf5", config={"simulation": {"step_path": "fast"}})
    assert not (tmp_path / "bad.hdf5.parts").exists()


def test_cpu_time_is_reported_only_when_every_attempt_has_it():
    from reinforcegen_ros.datagen.runner import AttemptResult, GenerationReport

    report = GenerationReport()
    report.add(AttemptResult(0, 1, None, 0, "failed", seconds=2.0, cpu_seconds=1.5))
    assert report.to_dict()["worker_cpu_seconds"] == 1.5
    report.add(AttemptResult(1, 2, None, 0, "failed", seconds=2.0))  # logged by a version that did not record it
    assert report.to_dict()["worker_cpu_seconds"] is None and report.to_dict()["worker_seconds"] == 4.0
