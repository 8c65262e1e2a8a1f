from __future__ import annotations

import pickle

import numpy as np
import pytest

import pvr.data
from pvr.errors import PvrError

from pvr_data_helpers import episodes, make_episode  # noqa: F401  (fixture)

KEYS = ("obs", "action", "done", "true_state", "reward")
LEGACY = ("obs", "action", "done", "true_state")


def _n(ep):
    return ep["obs"].shape[0]


def _nan_state(ep):
    s = ep["true_state"].copy()
    s[2, 1] = np.nan
    return s


def _inf_action(_):
    a = make_episode(70, continuous=True)["action"]
    a[0, 0] = np.inf
    return a


# (name, key corrupted in trajectory 1, new value as a function of the good episode, message fragment)
MALFORMED = [
    ("stacked_frames", "obs", lambda e: np.concatenate([e["obs"]] * 3, axis=-1), "single frames"),
    ("float_obs", "obs", lambda e: e["obs"].astype(np.float32) / 255, "uint8"),
    ("grey_obs", "obs", lambda e: e["obs"][..., 0], "(n, H, W, 3)"),
    ("obs_list", "obs", lambda e: list(e["obs"]), "not a numpy array"),
    ("other_frame_size", "obs", lambda e: make_episode(_n(e), hw=10)["obs"], "earlier trajectories"),
    ("float_discrete_action", "action", lambda e: e["action"].astype(np.float64), "(n,) integers"),
    ("int_2d_action", "action", lambda e: np.stack([e["action"]] * 2, 1), "(n, A) floats"),
    ("continuous_after_discrete", "action", lambda e: make_episode(_n(e), continuous=True)["action"], "continuous"),
    ("inf_action", "action", _inf_action, "NaN or inf"),
    ("short_action", "action", lambda e: e["action"][:-1], "steps but 'obs' has"),
    ("nan_state", "true_state", _nan_state, "NaN or inf"),
    ("flat_state", "true_state", lambda e: e["true_state"][:, 0], "(n, S)"),
    ("state_dim_change", "true_state", lambda e: e["true_state"][:, :3], "earlier trajectories"),
    ("short_done", "done", lambda e: e["done"][:-1], "steps but 'obs' has"),
    ("done_values", "done", lambda e: np.full(_n(e), 2), "0/1"),
    ("empty", "obs", lambda e: e["obs"][:0], "0 steps"),
]


@pytest.mark.parametrize("name,key,corrupt,fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_trajectory_names_index_and_key(tmp_path, episodes, name, key, corrupt, fragment):
    data = {k: [e[k] for e in episodes] for k in LEGACY}
    data[key][1] = corrupt(episodes[1])
    src = tmp_path / "bad.pickle"
    src.write_bytes(pickle.dumps(data, protocol=4))
    expect = rf"trajectory 1: key '{key}' .*{__import__('re').escape(fragment)}"
    with pytest.raises(PvrError, match=expect):
        pvr.data.load_pickle(src)
    dst = tmp_path / "out.zarr"
    with pytest.raises(PvrError, match=expect) as info:
        pvr.data.convert(src, dst)
    assert "\n" not in str(info.value)  # one line for the CLI
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pickle"]  # no temp dir left either
    # the same check guards appends to a store
    store = pvr.data.create(tmp_path / "s.zarr", env="E")
    store.append_episode(**episodes[0])
    bad = {k: data[k][1] for k in LEGACY}
    with pytest.raises(PvrError, match=rf"trajectory 1: key '{key}'"):
        store.append_episode(**bad)
    assert store.num_episodes == 1


def test_validate_episode_direct(episodes):
    ep = pvr.data.validate_episode(dict(episodes[0]), 0)
    assert set(ep) == set(KEYS)
    with pytest.raises(PvrError, match="trajectory 4: key 'true_state' is missing"):
        pvr.data.validate_episode({"obs": episodes[0]["obs"], "action": episodes[0]["action"]}, 4)
    with pytest.raises(PvrError, match="trajectory 2: .*not a dict"):
        pvr.data.validate_episode([1, 2], 2)
    bad = dict(episodes[0], reward=np.array([1, 2, np.nan, 0, 0], np.float32))
    with pytest.raises(PvrError, match="trajectory 0: key 'reward' contains NaN"):
        pvr.data.validate_episode(bad, 0)


def test_legacy_dict_level_errors(tmp_path, episodes):
    data = {k: [e[k] for e in episodes] for k in LEGACY}
    cases = {
        "missing": ({k: v for k, v in data.items() if k != "done"}, "key 'done' is missing"),
        "uneven": ({**data, "action": data["action"][:2]}, "key 'action' has 2 trajectories but 'obs' has 3"),
        "not_list": ({**data, "true_state": np.zeros(3)}, "key 'true_state' is a ndarray, not a list"),
    }
    for name, (bad, fragment) in cases.items():
        src = tmp_path / f"{name}.pickle"
        src.write_bytes(pickle.dumps(bad))
        with pytest.raises(PvrError, match=fragment):
            pvr.data.convert(src, tmp_path / f"{name}.zarr")
        assert not (tmp_path / f"{name}.zarr").exists()


def test_roundtrip_store_pickle_store(tmp_path, episodes):
    a = tmp_path / "a.zarr"
    with pvr.data.create(a, env="MiniGrid-DoorKey-5x5-v0") as ds:
        for ep in episodes:
            ds.append_episode(**ep)
    p = pvr.data.convert(a, tmp_path / "MiniGrid-DoorKey-5x5-v0.pickle")
    assert p == tmp_path / "MiniGrid-DoorKey-5x5-v0.pickle" and p.is_file()
    b = pvr.data.convert(p, tmp_path / "b.zarr")
    da, db = pvr.data.open(a), pvr.data.open(b)
    assert db.env == "MiniGrid-DoorKey-5x5-v0"  # from the pickle's stem
    np.testing.assert_array_equal(da.episode_ends, db.episode_ends)
    for k in KEYS:
        np.testing.assert_array_equal(da[k][:], db[k][:])
        assert da[k].dtype == db[k].dtype
    c = pvr.data.convert(p, tmp_path / "c.zarr", env="Other-v0")
    assert pvr.data.open(c).env == "Other-v0"


def test_convert_refuses_existing_dst_and_unknown_types(tmp_path, episodes):
    src = tmp_path / "d.pickle"
    pvr.data.save_pickle(src, {k: [e[k] for e in episodes] for k in LEGACY})
    dst = tmp_path / "d.zarr"
    pvr.data.convert(src, dst)
    with pytest.raises(PvrError, match="already exists.*overwrite"):
        pvr.data.convert(src, dst)
    pvr.data.save_pickle(src, {k: [e[k] for e in episodes[:1]] for k in LEGACY}, overwrite=True)
    pvr.data.convert(src, dst, overwrite=True)
    assert pvr.data.open(dst).num_episodes == 1
    with pytest.raises(PvrError, match=r"supported conversions are .*\.pickle/\.pkl -> \.zarr"):
        pvr.data.convert(src, tmp_path / "d.h5")
    with pytest.raises(PvrError, match="supported conversions"):
        pvr.data.convert(tmp_path / "d.csv", tmp_path / "e.zarr")
    with pytest.raises(PvrError, match="no such file"):
        pvr.data.convert(tmp_path / "missing.pkl", tmp_path / "e.zarr")
