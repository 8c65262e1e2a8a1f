from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import pvr
import pvr.data
from pvr.data.store import FrameArray
from pvr.errors import PvrError

from pvr_data_helpers import episodes, make_episode  # noqa: F401  (fixture)

KEYS = ("obs", "action", "done", "true_state", "reward")


def _fill(path: Path, episodes: list[dict], **meta) -> None:
    ds = pvr.data.create(path, env="MiniGrid-DoorKey-5x5-v0", meta={"expert": "bfs", **meta})
    with ds:
        for ep in episodes:
            ds.append_episode(**ep)


def _listing(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_create_append_reopen_roundtrip(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes)
    ds = pvr.data.open(path, mode="r")
    assert isinstance(ds, pvr.data.Dataset)
    assert ds.path == path
    assert ds.num_episodes == 3
    assert ds.num_frames == 78
    np.testing.assert_array_equal(ds.episode_ends, [5, 75, 78])
    assert ds.episode_ends.dtype == np.int64
    np.testing.assert_array_equal(ds.episode_lengths, [5, 70, 3])
    assert ds.env == "MiniGrid-DoorKey-5x5-v0"
    assert ds.meta["expert"] == "bfs"
    assert ds.meta["pvr_version"] == pvr.__version__
    assert ds.meta["format_version"] == 1
    assert {"created", "command"} <= set(ds.meta)
    assert ds.is_discrete is True
    assert ds.obs_shape == (8, 8, 3)
    assert set(ds.keys()) == set(KEYS)
    for i, ep in enumerate(episodes):
        got = ds.episode(i)
        for k in KEYS:
            np.testing.assert_array_equal(got[k], ep[k])
        assert got["obs"].dtype == np.uint8 and got["action"].dtype == np.int64
        assert got["done"].dtype == np.bool_ and got["true_state"].dtype == np.float32
    np.testing.assert_array_equal(ds.episode(-1)["obs"], episodes[-1]["obs"])
    assert ds.group["obs"].chunks[0] == 64


def test_defaults_for_done_and_reward_and_continuous(tmp_path):
    ep = make_episode(6, continuous=True)
    path = tmp_path / "c.zarr"
    with pvr.data.create(path, env="E") as ds:
        ds.append_episode(obs=ep["obs"], action=ep["action"], true_state=ep["true_state"])
    ds = pvr.data.open(path)
    got = ds.episode(0)
    np.testing.assert_array_equal(got["done"], [False] * 5 + [True])
    np.testing.assert_array_equal(got["reward"], np.zeros(6, np.float32))
    assert ds.is_discrete is False
    assert got["action"].dtype == np.float32 and got["action"].shape == (6, 2)


def test_lazy_slicing(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes)
    ds = pvr.data.open(path)
    allobs = np.concatenate([e["obs"] for e in episodes])
    obs = ds["obs"]
    assert isinstance(obs, FrameArray)
    assert obs.shape == (78, 8, 8, 3) and len(obs) == 78 and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[3:9], allobs[3:9])
    np.testing.assert_array_equal(obs[-2:], allobs[-2:])
    np.testing.assert_array_equal(obs[10], allobs[10])
    np.testing.assert_array_equal(obs[::-5], allobs[::-5])
    idx = np.array([[77, 0], [3, 3]])
    np.testing.assert_array_equal(obs[idx], allobs[idx])
    np.testing.assert_array_equal(obs[5:7, 1, 2], allobs[5:7, 1, 2])
    np.testing.assert_array_equal(np.asarray(ds["action"]), np.concatenate([e["action"] for e in episodes]))
    with pytest.raises(PvrError, match="out of range"):
        obs[78]
    with pytest.raises(PvrError, match="unknown key"):
        ds["pixels"]


def test_slicing_reads_only_the_chunks_it_needs(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes)
    chunk0 = [p for p in (path / "obs").rglob("*") if p.is_file() and p.name != "zarr.json"
              and p.relative_to(path / "obs").parts[1:] == ("0", "0", "0", "0")]
    assert len(chunk0) == 1
    chunk0[0].write_bytes(b"garbage, not zstd")  # frames 0..63 are now unreadable
    ds = pvr.data.open(path)
    allobs = np.concatenate([e["obs"] for e in episodes])
    np.testing.assert_array_equal(ds["obs"][64:78], allobs[64:78])  # never touches chunk 0
    np.testing.assert_array_equal(ds.episode(2)["obs"], episodes[2]["obs"])
    with pytest.raises(Exception):
        ds["obs"][0:2]


def test_append_to_existing_store(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes[:2])
    with pvr.data.open(path, mode="r") as ro:
        with pytest.raises(PvrError, match="mode='a'"):
            ro.append_episode(**episodes[2])
    with pvr.data.open(path, mode="a") as ds:
        assert ds.append_episode(**episodes[2]) == 2
    ds = pvr.data.open(path)
    assert ds.num_episodes == 3
    np.testing.assert_array_equal(ds.episode(2)["true_state"], episodes[2]["true_state"])
    np.testing.assert_array_equal(ds.episode(0)["obs"], episodes[0]["obs"])


def _tear(path: Path, extra: int, torn_commit: bool) -> None:
    """Simulate a kill mid-append: frames written past episode_ends, commit missing or half done."""
    import zarr

    g = zarr.open_group(store=zarr.storage.LocalStore(path), mode="r+")
    for k in KEYS:
        a = g[k]
        n = a.shape[0]
        a.resize((n + extra,) + a.shape[1:])
        a[n:] = np.full((extra,) + a.shape[1:], 1, dtype=a.dtype)
    if torn_commit:  # resized but the new end never written: a trailing fill value (0)
        e = g["episode_ends"]
        e.resize((e.shape[0] + 1,))


@pytest.mark.parametrize("torn_commit", [False, True])
def test_torn_append_is_invisible_and_overwritten(tmp_path, episodes, torn_commit):
    path = tmp_path / "d.zarr"
    _fill(path, episodes[:2])
    _tear(path, extra=9, torn_commit=torn_commit)
    before = _listing(path)
    ds = pvr.data.open(path, mode="r")
    assert ds.num_episodes == 2 and ds.num_frames == 75
    assert ds["obs"].shape[0] == 75 and len(ds["reward"]) == 75
    with pytest.raises(PvrError):
        ds.episode(2)
    assert _listing(path) == before  # a reader never repairs
    with pvr.data.open(path, mode="a") as w:
        assert w.num_episodes == 2
        w.append_episode(**episodes[2])
    ds = pvr.data.open(path)
    np.testing.assert_array_equal(ds.episode_ends, [5, 75, 78])
    for k in KEYS:
        np.testing.assert_array_equal(ds.episode(2)[k], episodes[2][k])
        assert ds.group[k].shape[0] == 78  # the torn tail was cut, not kept
    assert ds.group["episode_ends"].shape == (3,)


def test_torn_first_episode_does_not_bind_shapes(tmp_path):
    import zarr

    path = tmp_path / "d.zarr"
    pvr.data.create(path, env="E").close()
    g = zarr.open_group(store=zarr.storage.LocalStore(path), mode="r+")
    g.create_array("obs", shape=(4, 16, 16, 3), chunks=(64, 16, 16, 3), dtype=np.uint8)
    assert pvr.data.open(path).num_frames == 0
    ep = make_episode(3, hw=8)
    with pvr.data.open(path, mode="a") as ds:
        ds.append_episode(**ep)
    ds = pvr.data.open(path)
    assert ds.obs_shape == (8, 8, 3)
    np.testing.assert_array_equal(ds.episode(0)["obs"], ep["obs"])


def test_read_only_open_does_not_modify(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes)
    before = _listing(path)
    with pvr.data.open(path, mode="r") as ds:
        for i in range(ds.num_episodes):
            ds.episode(i)
        ds["obs"][:]
        _ = ds.meta, ds.obs_shape, ds.is_discrete
    assert _listing(path) == before


def test_mismatched_append_names_episode_and_key(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes)
    with pvr.data.open(path, mode="a") as ds:
        with pytest.raises(PvrError, match=r"trajectory 3: key 'obs'.*earlier trajectories"):
            ds.append_episode(**make_episode(4, hw=10))
        with pytest.raises(PvrError, match=r"trajectory 3: key 'action'.*continuous"):
            ds.append_episode(**make_episode(4, continuous=True))
        with pytest.raises(PvrError, match=r"trajectory 3: key 'true_state'"):
            ds.append_episode(**make_episode(4, state_dim=5))
        assert ds.num_episodes == 3
    ds = pvr.data.open(path)
    assert ds.num_frames == 78 and ds.group["obs"].shape[0] == 78  # rejected before anything was written


def test_create_refuses_existing_path(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes[:1])
    before = _listing(path)
    with pytest.raises(PvrError, match=r"already exists.*mode='a'"):
        pvr.data.create(path, env="E")
    assert _listing(path) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "d.zarr"]  # no temp dirs left behind


def test_open_errors(tmp_path, episodes):
    with pytest.raises(PvrError, match="no dataset"):
        pvr.data.open(tmp_path / "missing.zarr")
    path = tmp_path / "d.zarr"
    _fill(path, episodes[:1])
    with pytest.raises(PvrError, match="unknown mode"):
        pvr.data.open(path, mode="w")
    with pytest.raises(PvrError, match="out of range.*1 episodes"):
        pvr.data.open(path).episode(1)
    (tmp_path / "plain").mkdir()
    with pytest.raises(PvrError, match="not a pvr dataset"):
        pvr.data.open(tmp_path / "plain")


def test_features_subgroup_left_alone(tmp_path, episodes):
    path = tmp_path / "d.zarr"
    _fill(path, episodes[:2])
    with pvr.data.open(path, mode="a") as ds:
        feats = ds.group.require_group("features")
        feats.create_array("resnet50", shape=(75, 16), chunks=(64, 16), dtype=np.float32)
        feats["resnet50"][:] = np.ones((75, 16), np.float32)
    with pvr.data.open(path, mode="a") as ds:
        ds.append_episode(**episodes[2])
        assert "features" not in ds.keys()
    ds = pvr.data.open(path)
    np.testing.assert_array_equal(ds.group["features"]["resnet50"][:], np.ones((75, 16), np.float32))


def test_open_legacy_pickle_has_same_read_api(tmp_path, episodes):
    src = tmp_path / "MiniGrid-Empty-5x5-v0.pickle"
    pvr.data.save_pickle(src, {k: [e[k] for e in episodes] for k in KEYS})
    ds = pvr.data.open(src)
    assert isinstance(ds, pvr.data.Dataset)
    assert ds.env == "MiniGrid-Empty-5x5-v0"
    assert ds.num_episodes == 3 and ds.num_frames == 78
    np.testing.assert_array_equal(ds.episode_ends, [5, 75, 78])
    assert ds.obs_shape == (8, 8, 3) and ds.is_discrete
    np.testing.assert_array_equal(ds["obs"][70:76], np.concatenate([e["obs"] for e in episodes])[70:76])
    np.testing.assert_array_equal(ds.episode(1)["action"], episodes[1]["action"])
    with pytest.raises(PvrError, match="read-only"):
        pvr.data.open(src, mode="a")
