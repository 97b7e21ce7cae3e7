"""The reinforcegen command: task listing, collection, import, and one-line errors on bad input."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from reinforcegen_ros.cli import main
from reinforcegen_ros.demos.dataset import iter_episodes
from reinforcegen_ros.tasks import TASKS, stages


@pytest.fixture(scope="module")
def coffee_source(tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "coffee_source.hdf5"
    assert main(["demos", "collect", "--task", "coffee", "--num", "1", "--out", str(out)]) == 0
    return out


def error_line(capsys) -> str:
    """The single error line on stderr (progress bars may precede it)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_tasks_lists_five_tasks_with_stages(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert len(TASKS) == 5
    for name in TASKS:
        assert name in out
        for stage in stages(name):
            assert stage.name in out and stage.reference_object in out


def test_unknown_task_is_one_line(tmp_path, capsys):
    assert main(["demos", "collect", "--task", "laundry", "--num", "1", "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "unknown task 'laundry'" in error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_collect_writes_annotated_robomimic_file(coffee_source, capsys):
    with h5py.File(coffee_source) as f:
        demo = f["data/demo_0"]
        assert demo["actions"].shape[1] == 7 and demo["states"].shape[0] == demo["actions"].shape[0]
        for key in ("robot0_eef_pos", "robot0_eef_axis_angle", "robot0_gripper_qpos", "robot0_joint_pos", "object"):
            assert key in demo["obs"]
        assert set(demo["datagen_info/subtask_term_signals"]) == {s.name for s in stages("coffee")}
    (ep,) = iter_episodes(coffee_source)
    assert ep.stage[0] == 0 and ep.stage[-1] == 1 and np.all(np.diff(ep.stage) >= 0)
    assert ep.term_signals["insert_pod_close_lid"][0] == 0
    assert main(["demos", "info", str(coffee_source)]) == 0
    assert "demos        1" in capsys.readouterr().out


def test_existing_output_is_refused(coffee_source, capsys):
    before = coffee_source.read_bytes()
    assert main(["demos", "collect", "--task", "coffee", "--num", "1", "--out", str(coffee_source)]) == 2
    assert "already exists" in error_line(capsys)
    assert coffee_source.read_bytes() == before


def test_corrupt_and_wrong_schema_files(tmp_path, capsys):
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"\x89HDF\r\n garbage")
    assert main(["demos", "info", str(bad)]) == 2
    assert "not a readable HDF5" in error_line(capsys)
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f.create_dataset("images", data=np.zeros(3))
    assert main(["demos", "import", "--task", "coffee", "--input", str(tmp_path / "other.hdf5"), "--out", str(tmp_path / "o.hdf5")]) == 2
    assert "no 'data' group" in error_line(capsys)
    assert not (tmp_path / "o.hdf5").exists()


def test_import_recomputes_labels_from_states(coffee_source, tmp_path):
    plain = tmp_path / "plain.hdf5"
    with h5py.File(coffee_source) as src, h5py.File(plain, "w") as dst:
        src.copy("data", dst)
        del dst["data/demo_0/datagen_info"]
    out = tmp_path / "imported.hdf5"
    assert main(["demos", "import", "--task", "coffee", "--input", str(plain), "--out", str(out)]) == 0
    (orig,) = iter_episodes(coffee_source)
    (imp,) = iter_episodes(out)
    assert np.allclose(imp.eef_pose, orig.eef_pose, atol=1e-6)
    for name in orig.term_signals:
        assert np.array_equal(imp.term_signals[name], orig.term_signals[name])
    # without stage annotations a stage ends where its termination signal first fires,
    # no later than the scripted program's boundary (which may finish its motion first)
    fired = int(np.argmax(orig.term_signals["grasp_pod"] > 0))
    assert int(np.argmax(imp.stage == 1)) == fired <= int(np.argmax(orig.stage == 1))
    assert np.all(imp.phase == -1)  # phases are not recoverable from states alone


def test_import_rejects_states_of_another_scene(coffee_source, tmp_path, capsys):
    other = tmp_path / "other.hdf5"
    with h5py.File(coffee_source) as src, h5py.File(other, "w") as dst:
        src.copy("data", dst)
        states = dst["data/demo_0/states"][()]
        del dst["data/demo_0/states"]
        dst["data/demo_0/states"] = states[:, :-3]
    assert main(["demos", "import", "--task", "coffee", "--input", str(other), "--out", str(tmp_path / "o.hdf5")]) == 2
    assert "different scene model" in error_line(capsys)


def test_video_has_one_frame_per_step(coffee_source, tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg not installed")

    out = tmp_path / "demo.mp4"
    try:
        assert main(["demos", "video", str(coffee_source), "--demo", "0", "--out", str(out), "--size", "64"]) == 0
    except Exception as exc:  # no OpenGL backend
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    (ep,) = iter_episodes(coffee_source)
    reader = ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = list(reader)
    assert len(frames) == len(ep) and tuple(meta["size"]) == (64, 64)
    assert main(["demos", "video", str(coffee_source), "--demo", "7", "--out", str(tmp_path / "x.mp4")]) == 2


def test_annotate_and_check_phases(coffee_source, tmp_path, capsys):
    stripped = tmp_path / "stripped.hdf5"
    with h5py.File(coffee_source) as src, h5py.File(stripped, "w") as dst:
        src.copy("data", dst)
        dst["data/demo_0/datagen_info/phase"][...] = -1
    assert main(["demos", "annotate", str(stripped), "--task", "coffee", "--check"]) == 2
    assert "phases are not annotated" in capsys.readouterr().out
    out = tmp_path / "annotated.hdf5"
    assert main(["demos", "annotate", str(stripped), "--task", "coffee", "--out", str(out)]) == 0
    assert main(["demos", "annotate", str(out), "--task", "coffee", "--check"]) == 0
    (ep,) = iter_episodes(out)
    assert set(np.unique(ep.phase)) == {0, 1}


def test_demos2bag_and_back_is_lossless(coffee_source, tmp_path):
    bag, back = tmp_path / "demo_bag", tmp_path / "back.hdf5"
    assert main(["demos2bag", str(coffee_source), "--out", str(bag)]) == 0
    assert main(["bag2demos", str(bag), "--task", "coffee", "--out", str(back)]) == 0
    (a,) = iter_episodes(coffee_source)
    (b,) = iter_episodes(back)
    for field in ("actions", "states", "stage", "phase", "rewards"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    for key in a.obs:
        assert np.array_equal(a.obs[key], b.obs[key]), key
    for key in a.term_signals:
        assert np.array_equal(a.term_signals[key], b.term_signals[key])
    assert np.allclose(a.eef_pose, b.eef_pose, atol=1e-12)
    for key in a.object_poses:
        assert np.allclose(a.object_poses[key], b.object_poses[key], atol=1e-12)
    # the same check as a command: every field of the dataset, within 1e-12 (poses pass through quaternions)
    assert main(["demos", "compare", str(coffee_source), str(back), "--tol", "1e-12"]) == 0
    changed = tmp_path / "changed.hdf5"
    changed.write_bytes(back.read_bytes())
    with h5py.File(changed, "r+") as f:
        f["data/demo_0/actions"][3, 0] += 0.5
        del f["data/demo_0/rewards"]
    with pytest.raises(SystemExit) as exc:
        main(["demos", "compare", str(coffee_source), str(changed)])
    assert exc.value.code == 1


def test_add_images_renders_from_saved_states(coffee_source, tmp_path):
    out = tmp_path / "rgb.hdf5"
    try:
        assert main(["demos", "add-images", str(coffee_source), "--out", str(out), "--size", "32", "--max-demos", "1"]) == 0
    except Exception as exc:  # no OpenGL backend
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    (ep,) = iter_episodes(out)
    assert ep.obs["agentview_image"].shape == (len(ep), 32, 32, 3)
    assert ep.obs["robot0_eye_in_hand_image"].dtype == np.uint8
    with h5py.File(out) as f:
        assert '"obs_mode": "rgb"' in f["data"].attrs["reinforcegen"]


def test_demo_fine_tunes_the_shipped_agent_and_writes_an_agent_with_its_residual(tmp_path, capsys):
    """`make demo`'s fine-tuning part: residual RL of the recipe's first skill stage of models/coffee, briefly."""
    from reinforcegen_ros.cli import demo_fine_tuning
    from reinforcegen_ros.policies.hsp import HybridSkillPolicy

    demo_fine_tuning("coffee", Path(__file__).parents[1] / "models" / "coffee", 120, tmp_path)
    text = capsys.readouterr().out
    assert "residual RL of stage 1's skill, 120 env steps" in text and "/3 after" in text
    assert re.search(r"finetune evaluate` of the written agent on the same states \(executor's 400-step skill limit\): [0-3]/3", text)
    assert HybridSkillPolicy.load(tmp_path / "finetune" / "agent", task="coffee").residual.stages == [1]
    demo_fine_tuning("coffee", Path(__file__).parents[1] / "models" / "coffee", 0, tmp_path / "skipped")  # 0 steps: the part is skipped
    assert not (tmp_path / "skipped").exists()
