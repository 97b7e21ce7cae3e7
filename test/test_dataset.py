"""robomimic-compatible HDF5 datasets: round trip, schema errors, atomic writes, robomimic's loader."""

import json

import h5py
import numpy as np
import pytest

from reinforcegen_ros.demos.dataset import (
    DatasetError,
    dataset_meta,
    iter_episodes,
    open_dataset,
    write_dataset,
)
from reinforcegen_ros.tasks.base import Stage

STAGES = (Stage("grasp_pod", "pod", ""), Stage("insert_pod_close_lid", "coffee_machine", ""))


def attrs():
    from reinforcegen_ros.demos.dataset import dataset_attrs

    return dataset_attrs({"env_name": "Coffee", "type": 1, "env_kwargs": {}}, "coffee", STAGES)


def test_round_trip(tmp_path, make_episode):
    eps = [make_episode(10, seed=0), make_episode(7, seed=1, images=True)]
    eps[1].obs = {k: v for k, v in eps[1].obs.items()}
    out = write_dataset(tmp_path / "d.hdf5", eps, attrs())
    back = list(iter_episodes(out))
    assert len(back) == 2
    for a, b in zip(eps, back):
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.states, b.states)
        assert np.array_equal(a.stage, b.stage) and np.array_equal(a.phase, b.phase)
        assert np.array_equal(a.eef_pose, b.eef_pose)
        for k in a.obs:
            assert np.array_equal(a.obs[k], b.obs[k])
        for k in a.term_signals:
            assert np.array_equal(a.term_signals[k], b.term_signals[k])
    with open_dataset(out) as f:
        assert f["data"].attrs["total"] == 17
        assert dataset_meta(f)["stages"][1]["reference_object"] == "coffee_machine"
        assert f["data/demo_1"].attrs["num_samples"] == 7
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "Coffee"


def test_existing_output_is_refused_and_kept(tmp_path, make_episode):
    path = tmp_path / "d.hdf5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_dataset(path, [make_episode()], attrs())
    assert path.read_bytes() == b"precious"


def test_failed_write_leaves_nothing(tmp_path, make_episode):
    bad = make_episode()
    bad.obs["robot0_eef_pos"] = np.array([object()] * len(bad), dtype=object)  # h5py cannot store this
    with pytest.raises(TypeError):
        write_dataset(tmp_path / "d.hdf5", [make_episode(), bad], attrs())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "builder, message",
    [
        (lambda p: p.write_bytes(b"not hdf5 at all"), "not a readable HDF5"),
        (lambda p: h5py.File(p, "w").close(), "no 'data' group"),
        (lambda p: h5py.File(p, "w").create_group("data").file.close(), "env_args"),
    ],
)
def test_schema_errors(tmp_path, builder, message):
    path = tmp_path / "bad.hdf5"
    builder(path)
    with pytest.raises(DatasetError, match=message):
        open_dataset(path)


def test_missing_file_and_demo_keys(tmp_path, make_episode):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope.hdf5")
    path = write_dataset(tmp_path / "d.hdf5", [make_episode()], attrs())
    with h5py.File(path, "a") as f:
        del f["data/demo_0/states"]
    with pytest.raises(DatasetError, match="lacks states"):
        open_dataset(path)


def test_robomimic_sequence_dataset_reads_our_file(tmp_path, make_episode):
    dataset_mod = pytest.importorskip("robomimic.utils.dataset", reason="robomimic not installed (make installs it)")
    import robomimic.utils.obs_utils as obs_utils

    path = write_dataset(tmp_path / "d.hdf5", [make_episode(10), make_episode(9, seed=3)], attrs())
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["robot0_eef_pos", "object"], "rgb": []}})
    ds = dataset_mod.SequenceDataset(
        hdf5_path=str(path),
        obs_keys=("robot0_eef_pos", "object"),
        dataset_keys=("actions", "rewards", "dones"),
        seq_length=3,
        hdf5_cache_mode="all",
        hdf5_use_swmr=False,
        load_next_obs=False,  # we do not store next_obs (robomimic: config.train.hdf5_load_next_obs = False)
    )
    assert len(ds) == 19
    item = ds[4]
    assert item["actions"].shape == (3, 7) and item["obs"]["object"].shape == (3, 14)
