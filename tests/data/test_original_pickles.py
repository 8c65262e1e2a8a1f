"""The original's own pickle layouts: Habitat (6-channel frames + reward), embedded features, exact round trips.

Each file is built here in the layout the original's generators write
(``data_generator/save_habitat_trajectories.py``, ``save_embedded_obs.py``),
independently of pvr's writer.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import pvr.data
from pvr.errors import PvrError

HABITAT_KEYS = ["obs", "action", "reward", "done", "true_state"]


def _habitat_file(path, lengths=(5, 7), seed=0):
    rng = np.random.default_rng(seed)
    data = {k: [] for k in HABITAT_KEYS}
    for n in lengths:
        current = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        goal = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        data["obs"].append(np.concatenate([current, goal], axis=-1))  # current view on 0-2, goal on 3-5
        data["action"].append(rng.integers(0, 3, n).astype(np.int64))
        data["reward"].append(rng.normal(size=n).astype(np.float64))
        data["done"].append(np.arange(n) == n - 1)
        data["true_state"].append(rng.normal(size=(n, 12)).astype(np.float64) * np.pi)
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return data


def test_habitat_pickle_imports_as_two_views_and_exports_identically(tmp_path):
    src = tmp_path / "ImageNav-apartment_0.pickle"
    original = _habitat_file(src)
    store = pvr.data.convert(src, tmp_path / "nav.zarr", check_env=False)
    with pvr.data.open(store) as ds:
        assert int(ds.meta["views"]) == 2
        ends = list(ds.episode_ends)
        assert ends == [5, 12]
        obs = np.asarray(ds["obs"][:])
        frames = np.concatenate(original["obs"])
        assert obs.shape == (12, 64, 64, 6) and obs.dtype == np.uint8  # pvr's 2-view layout: views on channels
        assert np.array_equal(obs[..., :3], frames[..., :3])  # current view
        assert np.array_equal(obs[..., 3:], frames[..., 3:])  # goal view
        assert np.array_equal(np.asarray(ds["reward"][:]), np.concatenate(original["reward"]).astype(np.float32))
    back = tmp_path / "back.pickle"
    pvr.data.convert(store, back)
    with open(back, "rb") as f:
        again = pickle.load(f)  # written by pvr itself: plain dict of lists of arrays
    assert list(again) == HABITAT_KEYS
    for k in HABITAT_KEYS:
        assert len(again[k]) == len(original[k])
        for a, b in zip(again[k], original[k]):
            assert a.dtype == b.dtype, k
            assert np.array_equal(a, b), k


def test_float64_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    data = {"obs": [], "action": [], "done": [], "true_state": []}
    for n in (4, 6):
        data["obs"].append(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8))
        data["action"].append(rng.normal(size=(n, 2)).astype(np.float64))
        data["done"].append(np.arange(n) == n - 1)
        data["true_state"].append(rng.normal(size=(n, 5)) * 1e-9 + 1.0)  # float64 values float32 would round
    src = tmp_path / "Pendulum-v1.pickle"
    src.write_bytes(pickle.dumps(data, protocol=4))
    store = pvr.data.convert(src, tmp_path / "p.zarr", check_env=False)
    back = tmp_path / "back.pickle"
    pvr.data.convert(store, back)
    with open(back, "rb") as f:
        again = pickle.load(f)
    assert list(again) == list(data)
    for k in data:
        for a, b in zip(again[k], data[k]):
            assert a.dtype == b.dtype and np.array_equal(a, b), k


def test_embedded_pickle_refuses_frames_and_keeps_features(tmp_path):
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(n, 128)).astype(np.float32) for n in (6, 9)]
    data = {"obs": feats, "action": [rng.integers(0, 7, len(f)).astype(np.int64) for f in feats],
            "done": [np.arange(len(f)) == len(f) - 1 for f in feats],
            "true_state": [rng.normal(size=(len(f), 4)) for f in feats]}
    src = tmp_path / "MiniGrid-DoorKey-5x5-v0_random.pickle"
    src.write_bytes(pickle.dumps(data, protocol=4))
    store = pvr.data.convert(src, tmp_path / "MiniGrid-DoorKey-5x5-v0.zarr", check_env=False)
    from pvr.embed import load_features, make_encoder

    with pvr.data.open(store) as ds:
        assert not ds.has_frames
        got = np.asarray(load_features(ds, make_encoder("random", seed=1).fit_frames((56, 56, 3))))
        assert np.array_equal(got, np.concatenate(feats))
        with pytest.raises(PvrError):
            ds["obs"]


def test_a_policy_trains_and_evaluates_from_an_embedded_pickle(tmp_path):
    """The original's flow: `<env>_<embedding>.pickle` in, a trained policy evaluated on live frames out."""
    import json

    from pvr.bc import trainer
    from pvr.bc.config import TrainConfig

    env = "MiniGrid-DoorKey-5x5-v0"  # 56x56 frames: random (= random5) gives 32 * 2 * 2 = 128 values
    rng = np.random.default_rng(2)
    feats = [rng.normal(size=(n, 128)).astype(np.float32) for n in (8, 10, 12)]
    data = {"obs": feats, "action": [rng.integers(0, 7, len(f)).astype(np.int64) for f in feats],
            "done": [np.arange(len(f)) == len(f) - 1 for f in feats],
            "true_state": [rng.normal(size=(len(f), 81)) for f in feats]}
    src = tmp_path / f"{env}_random.pickle"
    src.write_bytes(pickle.dumps(data, protocol=4))
    data_path = tmp_path / "data"
    pvr.data.convert(src, data_path / f"{env}.zarr", check_env=False)
    cfg = TrainConfig(env=env, embedding_name="random", data_path=str(data_path), save_path=str(tmp_path / "runs"),
                      xpid="run", epochs=2, num_episodes_test=2, num_envs_test=2, hidden_size=16, batch_size=2,
                      unroll_length=8, learning_rate=1e-3, seed=1, disable_tensorboard=True,
                      env_kwargs='{"max_steps": 16}')
    run = trainer.train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(r["training_loss"] > 0 for r in rows[1:])
    assert env in rows[-1]["test"] and rows[-1]["test"][env]["success"] is not None  # evaluated on live frames
    assert (run / "done").exists()
