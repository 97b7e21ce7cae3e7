"""Bad input and OS faults through the real command line (issue 19).

Every case runs ``reinforcegen`` as a user would (``main()`` with captured output, or a
subprocess where a resource limit must not touch pytest) and checks three things: the exit
status, a single error line naming the file or option, and that no partial output is left.
The datasets are synthetic (no simulator) except where a command needs the scene, and the
only episodes played are the one of the misconfigured-agent case.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from reinforcegen_ros import cli
from reinforcegen_ros.cli import main
from reinforcegen_ros.demos.dataset import dataset_attrs, write_dataset
from reinforcegen_ros.tasks import stages

TASK = "coffee"
REINFORCEGEN = [sys.executable, "-m", "reinforcegen_ros.cli"]


def synthetic_episodes(count: int, length: int) -> list:
    """``test/conftest.py``'s synthetic episodes, for a module-scoped fixture (``make_episode`` is per test).

    Loaded by path: the bare name ``conftest`` may resolve to ``test/ros/conftest.py`` in a full run.
    """
    spec = importlib.util.spec_from_file_location("_test_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [module.synthetic_episode(length, seed=i) for i in range(count)]


# ---------------------------------------------------------------------- helpers
def run(capsys, *argv) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``reinforcegen argv`` (parse errors exit through SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(err: str) -> str:
    """The single error line of a failed command: the only line with 'error:', and the last one."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def fails(capsys, fragment: str, *argv) -> str:
    """Run a command that must fail with exit 2 and one error line containing ``fragment``."""
    code, _, err = run(capsys, *argv)
    line = one_error(err)
    assert code == 2 and fragment in line, (code, line)
    return line


def leftovers(directory: Path, before: set[str]) -> set[str]:
    return {p.name for p in directory.iterdir()} - before


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder with a small synthetic coffee dataset (two demos, stage and phase annotated) and its bag."""
    root = tmp_path_factory.mktemp("data")
    attrs = dataset_attrs({"env_name": "Coffee"}, TASK, stages(TASK))
    write_dataset(root / "source.hdf5", synthetic_episodes(2, 12), attrs)
    code = main(["demos2bag", str(root / "source.hdf5"), "--out", str(root / "bag")])
    assert code == 0 and (root / "bag" / "bag.mcap").is_file()
    return root


def edited(data: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of the synthetic dataset changed by ``edit(h5py.File)``."""
    path = tmp_path / name
    shutil.copy(data / "source.hdf5", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def replace(f: h5py.File, key: str, value) -> None:
    del f[key]
    f[key] = value


def set_value(key: str, index: tuple, value: float):
    """An ``edited`` step that puts ``value`` at ``index`` of the array ``key``."""
    def edit(f: h5py.File) -> None:
        array = f[key][()]
        array[index] = value
        f[key][...] = array

    return edit


# ---------------------------------------------------------------------- numeric options, at parse time
@pytest.mark.parametrize("argv, message", [
    (["generate", "--task", TASK, "--source", "s.hdf5", "--out", "o.hdf5", "--num", "-1"], "argument --num: must be at least 1, got -1"),
    (["generate", "--task", TASK, "--source", "s.hdf5", "--out", "o.hdf5", "--workers", "100000"], "argument --workers: 100000 local worker processes"),
    (["eval", "--task", TASK, "--agent", "a", "--episodes", "0"], "argument --episodes: must be at least 1, got 0"),
    (["eval", "--task", TASK, "--agent", "a", "--seed", "-3"], "argument --seed: must be between 0 and"),
    (["demos", "add-images", "d.hdf5", "--out", "o.hdf5", "--max-demos", "-1"], "argument --max-demos: must be at least 1"),
    (["demos", "add-images", "d.hdf5", "--out", "o.hdf5", "--size", "0"], "argument --size: must be between 1 and 4096, got 0"),
    (["demos", "video", "d.hdf5", "--out", "o.mp4", "--size", "-45"], "argument --size: must be between 1 and 4096, got -45"),
    (["demos", "compare", "a.hdf5", "b.hdf5", "--tol", "nan"], "argument --tol: must be a finite number, got nan"),
    (["demos", "annotate", "d.hdf5", "--task", TASK, "--skill-radius", "-1", "0.1"], "argument --skill-radius: must be greater than 0"),
    (["demos", "annotate", "d.hdf5", "--task", TASK, "--skill-radius", "nan", "0.1"], "argument --skill-radius: must be a finite number"),
    (["demos", "collect", "--task", TASK, "--out", "o.hdf5", "--num", "2.5"], "argument --num: expected an integer, got '2.5'"),
    (["train", "--task", TASK, "--dataset", "d.hdf5", "--out", "o", "--epochs", "0"], "argument --epochs: must be at least 1"),
    (["demos", "term-negatives", "d.hdf5", "--out", "o.hdf5", "--per-stage", "0"], "argument --per-stage: must be at least 1"),
])
def test_numeric_options_are_checked_when_parsed(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    line = fails(capsys, message, *argv)
    assert line.startswith("reinforcegen ") and "--help" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("setting, message", [
    ("epsilon=abc", "epsilon takes a finite number, got 'abc'"),
    ("epsilon=nan", "epsilon takes a finite number, got 'nan'"),
    ("replan=maybe", "replan takes true or false"),
    ("termination_confirm_ticks=1.5", "termination_confirm_ticks takes an integer"),
    ("termination_threshold=2", "termination_threshold must be between 0.0 and 1.0"),
    ("planner=bogus", "planner is one of straight_line, ompl"),
    ("epsilonn=0.1", "epsilonn: unknown executor setting"),
    ("epsilon", "expects KEY=VALUE"),
])
def test_set_is_typed_by_the_setting_before_any_episode(capsys, data, tmp_path, setting, message):
    fails(capsys, f"argument --set: {message}", "eval", "--task", TASK, "--agent", f"replay:{data / 'source.hdf5'}",
          "--episodes", "1", "--set", setting, "--out", tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


# ---------------------------------------------------------------------- OS errors on outputs (checked before work starts)
def test_output_in_a_file_or_too_long_or_unwritable(capsys, data, tmp_path):
    source = data / "source.hdf5"
    fails(capsys, f"'{source}' is a file, not a directory", "demos2bag", source, "--out", source / "bag")
    fails(capsys, "File name too long", "demos", "annotate", source, "--task", TASK, "--overwrite", "--out", tmp_path / ("x" * 300))
    unwritable = Path("/proc") if os.geteuid() == 0 else tmp_path / "read_only"
    if unwritable != Path("/proc"):
        unwritable.mkdir()
        unwritable.chmod(0o500)
    fails(capsys, f"cannot write in '{unwritable}'", "demos", "annotate", source, "--task", TASK, "--overwrite", "--out", unwritable / "o.hdf5")
    assert [p.name for p in tmp_path.iterdir()] in ([], ["read_only"])


def _with_file_size_limit(limit: int):
    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


@pytest.mark.parametrize("command", ["annotate", "demos2bag"])
def test_full_disk_is_one_line_and_leaves_no_temporary_file(data, tmp_path, command):
    """A file-size limit stands in for a full disk: the write fails with EFBIG as it would with ENOSPC."""
    out = tmp_path / ("out.hdf5" if command == "annotate" else "out_bag")
    argv = (["demos", "annotate", data / "source.hdf5", "--task", TASK, "--overwrite", "--out", out] if command == "annotate"
            else ["demos2bag", data / "source.hdf5", "--out", out])
    proc = subprocess.run([*REINFORCEGEN, *map(str, argv)], capture_output=True, text=True, timeout=120,
                          preexec_fn=_with_file_size_limit(8_000))
    line = one_error(proc.stderr)
    assert proc.returncode == 2 and "File too large" in line and ("out" in line), line
    assert not list(tmp_path.iterdir())  # no output, no <out>.tmp, no partial bag directory


# ---------------------------------------------------------------------- damaged bags
def _bag_copy(data: Path, tmp_path: Path, damage) -> Path:
    bag = tmp_path / "bag"
    shutil.copytree(data / "bag", bag)
    damage(bag)
    return bag


def _truncate(bag):
    raw = (bag / "bag.mcap").read_bytes()
    (bag / "bag.mcap").write_bytes(raw[: len(raw) // 2])


def _flip_bit(bag):
    raw = bytearray((bag / "bag.mcap").read_bytes())
    raw[len(raw) // 2] ^= 0x10  # inside a chunk of messages
    (bag / "bag.mcap").write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, message", [
    (_truncate, "is not a readable rosbag2 (ReaderError"),
    (lambda bag: (bag / "bag.mcap").write_bytes(np.random.default_rng(0).bytes(5000)), "is not a readable rosbag2 (ReaderError: File magic"),
    (lambda bag: (bag / "metadata.yaml").write_text(":::\x00 [["), "is not a readable rosbag2 (ReaderError: Could not load YAML"),
    (lambda bag: (bag / "metadata.yaml").write_text(""), "is not a readable rosbag2 (ReaderError: Invalid bag metadata"),
    (lambda bag: (bag / "bag.mcap").unlink(), "is not a readable rosbag2 (ReaderError: Some database files are missing"),
    (_flip_bit, "damaged bag data (ReaderError: Chunk checksum mismatch"),
])
def test_damaged_bag_is_one_line_naming_it(capsys, data, tmp_path, damage, message):
    bag = _bag_copy(data, tmp_path, damage)
    line = fails(capsys, message, "bag2demos", bag, "--task", TASK, "--out", tmp_path / "out.hdf5")
    assert f"'{bag}'" in line
    assert leftovers(tmp_path, {"bag"}) == set()


def test_bag_message_with_nan_is_named_by_topic_and_time(capsys, tmp_path):
    from rosbags.rosbag2 import Writer

    from reinforcegen_ros import messages as M
    from reinforcegen_ros.demos.rosbag import typestore

    store = typestore()
    m = M.MsgClasses.from_typestore(store)
    bag = tmp_path / "teleop"
    t0 = 1_000_000_000_000
    with Writer(bag, version=8) as writer:
        cmd = writer.add_connection(M.TOPIC_EEF_COMMAND, M.T_EEF_COMMAND, typestore=store)
        pose = writer.add_connection(M.TOPIC_EEF_POSE, M.T_POSE_STAMPED, typestore=store)
        for t in range(3):
            stamp = t0 + t * 50_000_000
            action = M.action_to_msg(np.zeros(7), stamp, m)
            if t == 2:
                action.gripper = float("nan")
            writer.write(cmd, stamp, store.serialize_cdr(action, M.T_EEF_COMMAND))
            writer.write(pose, stamp, store.serialize_cdr(M.pose_stamped_to_msg(np.eye(4), stamp, m), M.T_POSE_STAMPED))
    line = fails(capsys, "/eef_command message at t = 0.100 s", "bag2demos", bag, "--task", TASK, "--out", tmp_path / "out.hdf5")
    assert "gripper is nan" in line and f"'{bag}'" in line
    assert leftovers(tmp_path, {"teleop"}) == set()


# ---------------------------------------------------------------------- datasets: values and label shapes
def test_import_rejects_non_finite_states(capsys, data, tmp_path):
    bad = edited(data, tmp_path, "inf.hdf5", set_value("data/demo_1/states", (4, 2), np.inf))
    fails(capsys, f"'{bad}': data/demo_1 states hold NaN or infinite values (first at step 4)",
          "demos", "import", "--task", TASK, "--input", bad, "--out", tmp_path / "out.hdf5")
    assert leftovers(tmp_path, {"inf.hdf5"}) == set()


def test_wrong_label_shape_is_named(capsys, data, tmp_path):
    bad = edited(data, tmp_path, "eef.hdf5",
                 lambda f: replace(f, "data/demo_0/datagen_info/eef_pose", f["data/demo_0/datagen_info/eef_pose"][()][:, :3, :]))
    expected = f"'{bad}': data/demo_0 datagen_info/eef_pose has shape (12, 3, 4), expected (T, 4, 4)"
    fails(capsys, expected, "demos2bag", bad, "--out", tmp_path / "bag")
    # generate reads the labels before its first attempt, and leaves no shard directory behind
    fails(capsys, expected, "generate", "--task", TASK, "--source", bad, "--num", "1", "--out", tmp_path / "gen.hdf5")
    assert leftovers(tmp_path, {"eef.hdf5"}) == set()


def test_annotate_checks_the_task(capsys, data, tmp_path):
    source = data / "source.hdf5"
    fails(capsys, f"'{source}' holds task 'coffee', not 'threading'", "demos", "annotate", source, "--task", "threading", "--check")
    fails(capsys, f"'{source}' holds task 'coffee', not 'threading'", "demos", "annotate", source, "--task", "threading",
          "--out", tmp_path / "out.hdf5")
    fails(capsys, "--skill-radius needs 2 values", "demos", "annotate", source, "--task", TASK, "--skill-radius", "0.1",
          "--out", tmp_path / "out.hdf5")
    assert not list(tmp_path.iterdir())


def test_compare_sees_nan(capsys, data, tmp_path):
    nan_action = set_value("data/demo_0/actions", (3, 0), np.nan)
    a = edited(data, tmp_path, "a.hdf5", nan_action)
    b = edited(data, tmp_path, "b.hdf5", nan_action)
    code, out, _ = run(capsys, "demos", "compare", a, b)
    assert code == 0 and "| actions | 2 | 2 |" in out  # the same NaN in both files: equal
    code, out, _ = run(capsys, "demos", "compare", a, data / "source.hdf5")
    assert code == 1 and "NaN or infinite values in one file" in out


# ---------------------------------------------------------------------- evaluation directories and misconfigured runs
def _evaluation_dir(path: Path) -> dict[str, bytes]:
    path.mkdir()
    header = {"settings": {"task": TASK, "agent": "a", "seed": 0, "pose": "learned", "hybrid": {}}}
    (path / "episodes.jsonl").write_text(json.dumps(header) + "\n" + json.dumps({"index": 0}) + "\n")
    (path / "results.json").write_text(json.dumps({"episodes": 1}))
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_existing_evaluation_is_not_overwritten(capsys, data, tmp_path):
    out = tmp_path / "eval"
    before = _evaluation_dir(out)
    agent = f"replay:{data / 'source.hdf5'}"
    fails(capsys, f"'{out}' already holds an evaluation (episodes.jsonl); pass --resume to continue it, --overwrite to replace it",
          "eval", "--task", TASK, "--agent", agent, "--episodes", "1", "--out", out)
    fails(capsys, "choose one", "eval", "--task", TASK, "--agent", agent, "--episodes", "1", "--out", out, "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.fixture(scope="module")
def misfit_agent(tmp_path_factory) -> Path:
    """An untrained agent whose config.json expects one object where the coffee scene observes two."""
    from reinforcegen_ros.policies.configuration_hsp import HSPConfig
    from reinforcegen_ros.policies.encoders import ObservationSpec
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    config = HSPConfig.from_dict({"hidden_dim": 8})
    spec = ObservationSpec.for_mode("privileged", 7, config)
    path = tmp_path_factory.mktemp("agent") / "misfit"
    HybridSkillPolicy(TASK, "privileged", [s.name for s in stages(TASK)], spec, config).save(path)
    return path


def test_every_episode_failing_alike_is_an_error_and_an_overwritten_run_comes_back(capsys, misfit_agent, tmp_path):
    fresh = tmp_path / "fresh"
    line = fails(capsys, "every episode failed with the same error (1 of 1 played, none recorded)",
                 "eval", "--task", TASK, "--agent", misfit_agent, "--episodes", "1", "--set", "planner=straight_line", "--out", fresh)
    assert "observation 'object' has 14 numbers, expected 7" in line
    assert not fresh.exists()  # a failed run leaves no directory it created
    kept = tmp_path / "kept"
    before = _evaluation_dir(kept)
    fails(capsys, "every episode failed with the same error", "eval", "--task", TASK, "--agent", misfit_agent, "--episodes", "1",
          "--set", "planner=straight_line", "--out", kept, "--overwrite")
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before  # the evaluation it was to replace is back


def test_damaged_episode_log_is_named(capsys, tmp_path):
    run_dir = tmp_path / "run"
    _evaluation_dir(run_dir)
    (run_dir / "episodes.jsonl").write_bytes(b"\xff\xfe not text")
    fails(capsys, f"'{run_dir / 'episodes.jsonl'}' is not an episode log (not UTF-8 text)", "eval-table", run_dir)


# ---------------------------------------------------------------------- the central handler
def test_unexpected_exception_says_it_is_a_bug_then_shows_the_traceback(capsys, monkeypatch):
    def broken(args):
        raise IndexError("index 3 is out of bounds for axis 0 with size 3")

    monkeypatch.setattr(cli, "cmd_tasks", broken)
    code, _, err = run(capsys, "tasks")
    lines = err.strip().splitlines()
    assert code == cli.EXIT_BUG
    assert lines[0] == ("reinforcegen tasks: error: internal error, this is a bug (IndexError: index 3 is out of bounds "
                        "for axis 0 with size 3); please report it with the traceback below")
    assert lines[1] == "Traceback (most recent call last):" and lines[-1].startswith("IndexError")


def test_failed_or_interrupted_command_removes_the_outputs_it_created(capsys, monkeypatch, tmp_path):
    out = tmp_path / "out.hdf5"

    def half_written(exc):
        def command(args):
            Path(args.out).with_name(Path(args.out).name + ".tmp").write_bytes(b"partial")
            Path(args.out).write_bytes(b"partial")
            raise exc

        return command

    monkeypatch.setattr(cli, "cmd_demos_collect", half_written(OSError(28, "No space left on device", str(out) + ".tmp")))
    fails(capsys, f"'{out}.tmp': No space left on device", "demos", "collect", "--task", TASK, "--num", "1", "--out", out)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(cli, "cmd_demos_collect", half_written(KeyboardInterrupt()))
    code, _, err = run(capsys, "demos", "collect", "--task", TASK, "--num", "1", "--out", out)
    assert code == 130 and err.strip() == "reinforcegen demos collect: interrupted"
    assert not list(tmp_path.iterdir())
