"""D4RL / robomimic / Minari import-export, re-rendering from states, and malformed inputs of each format."""
from __future__ import annotations

import json

import gymnasium as gym
import h5py
import numpy as np
import pytest

import pvr.data
import pvr.envs
from pvr.envs import registry
from pvr.errors import PvrError

from pvr_data_helpers import episodes, make_episode  # noqa: F401  (fixture)

KEYS = ("obs", "action", "done", "true_state", "reward")


# -- a fake suite with the re-rendering hook ---------------------------------------------
class FakeSim(gym.Env):
    """Frames are a pure function of qpos, so a re-rendered dataset can be checked exactly."""

    observation_space = gym.spaces.Box(0, 255, (6, 6, 3), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((6, 6, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((6, 6, 3), np.uint8), 0.0, False, False, {}

    def render_state(self, state):
        if "qpos" not in state:
            raise PvrError("state has no 'qpos'; FakeSim needs qpos")
        return frame_of(state["qpos"])


class FakeSimNoHook(FakeSim):
    render_state = None

    def __getattribute__(self, name):
        if name == "render_state":
            raise AttributeError(name)
        return super().__getattribute__(name)


def frame_of(qpos):
    v = int(abs(float(qpos[0])) * 40) % 256
    return np.full((6, 6, 3), v, np.uint8)


def _fake_factory(name, **kw):
    return FakeSimNoHook() if "NoHook" in name else FakeSim()


if "FakeSim" not in registry.suite_names():
    registry.register_suite("FakeSim", "FakeSim-*", _fake_factory, description="test double",
                            examples=["FakeSim-v0", "FakeSim-NoHook-v0"])


def _store(path, eps, env="E-v0"):
    with pvr.data.create(path, env=env, meta={"expert": "test"}) as ds:
        for ep in eps:
            ds.append_episode(**ep)
    return path


def _same(a, b):
    da, db = pvr.data.open(a), pvr.data.open(b)
    np.testing.assert_array_equal(da.episode_ends, db.episode_ends)
    for k in KEYS:
        np.testing.assert_array_equal(da[k][:], db[k][:])
        assert da[k].dtype == db[k].dtype, k


# -- round trips through each format ------------------------------------------------------
@pytest.mark.parametrize("fmt,name", [("d4rl", "x.hdf5"), ("robomimic", "x.hdf5"), ("minari", "xset")])
@pytest.mark.parametrize("continuous", [False, True])
def test_round_trip_each_format(tmp_path, fmt, name, continuous):
    eps = [make_episode(n, seed=i, continuous=continuous) for i, n in enumerate((5, 9, 3))]
    eps[1]["done"][-1] = False  # a time-limit end: kept through the round trip
    a = _store(tmp_path / "a.zarr", eps)
    out = pvr.data.convert(a, tmp_path / name, dst_format=fmt)
    b = pvr.data.convert(out, tmp_path / "b.zarr")
    _same(a, b)
    ds = pvr.data.open(b)
    assert ds.env == "E-v0" and ds.meta["expert"] == "test" and ds.meta["source_format"] == fmt


def test_minari_by_id_under_minari_datasets_path(tmp_path, monkeypatch, episodes):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "mroot"))
    a = _store(tmp_path / "a.zarr", episodes)
    written = pvr.data.convert(a, "minari:pvr/doorkey/expert-v0")
    assert written == tmp_path / "mroot" / "pvr" / "doorkey" / "expert-v0"
    md = json.loads((written / "data" / "metadata.json").read_text())
    assert md["total_episodes"] == 3 and md["total_steps"] == 78 and md["dataset_id"] == "pvr/doorkey/expert-v0"
    with h5py.File(written / "data" / "main_data.hdf5") as f:
        assert f["episode_1/observations"].shape == (71, 8, 8, 3)  # T + 1 observations
        assert f["episode_1/actions"].shape == (70,)
    _same(a, pvr.data.convert("minari:pvr/doorkey/expert-v0", tmp_path / "b.zarr"))
    _same(a, pvr.data.convert(written / "data" / "main_data.hdf5", tmp_path / "c.zarr"))


# -- files as the other tools write them ------------------------------------------------------
def test_native_d4rl_states_are_rerendered_by_the_env(tmp_path):
    n, rng = 12, np.random.default_rng(0)
    qpos = rng.standard_normal((n, 3))
    src = tmp_path / "door-human.hdf5"
    with h5py.File(src, "w") as f:
        f["observations"] = rng.standard_normal((n, 5))
        f["actions"] = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        f["rewards"] = np.arange(n, dtype=np.float64)
        f["terminals"] = np.zeros(n, bool)
        timeouts = np.zeros(n, bool)
        timeouts[[3, 8]] = True  # episodes 0-3, 4-8, and an unflagged last one 9-11
        f["timeouts"] = timeouts
        f["infos/qpos"] = qpos
        f["infos/qvel"] = rng.standard_normal((n, 3))
    ds = pvr.data.open(pvr.data.convert(src, tmp_path / "d.zarr", env="FakeSim-v0"))
    np.testing.assert_array_equal(ds.episode_ends, [4, 9, 12])
    np.testing.assert_array_equal(ds["obs"][:], np.stack([frame_of(q) for q in qpos]))
    with h5py.File(src) as f:
        np.testing.assert_allclose(ds["true_state"][:], f["observations"][()].astype(np.float32))
    assert ds.meta["rendered_from_states"] is True and ds.env == "FakeSim-v0"


def test_native_robomimic_picks_camera_and_states(tmp_path):
    src = tmp_path / "lift.hdf5"
    rng = np.random.default_rng(1)
    with h5py.File(src, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for i, t in [(0, 4), (1, 6), (10, 3)]:  # demo_10 comes after demo_1
            g = data.create_group(f"demo_{i}")
            g["actions"] = rng.uniform(-1, 1, (t, 2)).astype(np.float32)
            g["states"] = np.full((t, 7), i, np.float64)
            g["rewards"] = np.zeros(t)
            g["dones"] = np.r_[np.zeros(t - 1), 1].astype(np.int64)
            g["obs/agentview_image"] = np.full((t, 6, 6, 3), i, np.uint8)
            g["obs/robot0_eye_in_hand_image"] = np.full((t, 6, 6, 3), 200, np.uint8)
            g["obs/robot0_eef_pos"] = np.zeros((t, 3), np.float32)
    ds = pvr.data.open(pvr.data.convert(src, tmp_path / "a.zarr", check_env=False))
    assert ds.env == "Lift" and ds.meta["source_env_args"]["env_name"] == "Lift"
    np.testing.assert_array_equal(ds.episode_ends, [4, 10, 13])
    assert ds["obs"][12].max() == 10 and ds["true_state"][12].tolist() == [10.0] * 7
    ds2 = pvr.data.open(pvr.data.convert(src, tmp_path / "b.zarr", obs_key="robot0_eye_in_hand_image",
                                         state_key="obs/robot0_eef_pos", check_env=False))
    assert ds2["obs"][:].min() == 200 and ds2["true_state"].shape == (13, 3)


def test_native_minari_dict_observations_and_state_only(tmp_path):
    root = tmp_path / "pointmaze-v0"
    (root / "data").mkdir(parents=True)
    (root / "data" / "metadata.json").write_text(json.dumps({"dataset_id": "pointmaze-v0", "env_spec": json.dumps({"id": "FakeSim-v0"})}))
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for i, t in enumerate((4, 2)):
            g = f.create_group(f"episode_{i}")
            g["observations/pixels"] = np.full((t + 1, 6, 6, 3), 7 * i, np.uint8)
            g["observations/state"] = np.arange((t + 1) * 2, dtype=np.float64).reshape(t + 1, 2)
            g["actions"] = np.zeros((t, 2), np.float32)
            g["rewards"] = np.ones(t)
            g["terminations"] = np.zeros(t, bool)
            g["truncations"] = np.r_[np.zeros(t - 1), 1].astype(bool)
    ds = pvr.data.open(pvr.data.convert(root, tmp_path / "a.zarr"))
    assert ds.env == "FakeSim-v0"  # from the env spec
    np.testing.assert_array_equal(ds.episode_ends, [4, 6])
    assert ds["obs"][5].max() == 7 and ds["true_state"][1].tolist() == [2.0, 3.0]
    # vector observations + infos/qpos, no frames: re-rendered
    state_only = tmp_path / "s" / "data"
    state_only.mkdir(parents=True)
    with h5py.File(state_only / "main_data.hdf5", "w") as f:
        g = f.create_group("episode_0")
        g["observations"] = np.zeros((4, 3))
        g["actions"] = np.zeros((3, 2), np.float32)
        g["infos/qpos"] = np.array([[1.0], [2.0], [3.0], [4.0]])
    ds = pvr.data.open(pvr.data.convert(tmp_path / "s", tmp_path / "b.zarr", env="FakeSim-v0"))
    np.testing.assert_array_equal(ds["obs"][:], np.stack([frame_of([q]) for q in (1.0, 2.0, 3.0)]))


# -- malformed inputs: each names what is wrong, and nothing is written -----------------------------------
def _d4rl(path, n=10, **over):
    rng = np.random.default_rng(0)
    arrays = {"observations": np.zeros((n, 6, 6, 3), np.uint8), "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
              "rewards": np.zeros(n), "terminals": np.r_[np.zeros(4), 1, np.zeros(n - 5)].astype(bool),
              "infos/true_state": np.zeros((n, 4), np.float32)}
    arrays.update(over)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if v is not None:
                f[k] = v
    return path


def _robomimic(path, demos=((0, 5), (1, 4)), edit=None, env_args='{"env_name": "Lift"}'):
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        if env_args is not None:
            data.attrs["env_args"] = env_args
        for i, t in demos:
            g = data.create_group(f"demo_{i}")
            g["actions"] = np.zeros((t, 2), np.float32)
            g["states"] = np.zeros((t, 3))
            g["obs/agentview_image"] = np.zeros((t, 6, 6, 3), np.uint8)
            if edit:
                edit(i, g)
    return path


def _minari(path, t=5, edit=None, episodes=2):
    (path / "data").mkdir(parents=True)
    with h5py.File(path / "data" / "main_data.hdf5", "w") as f:
        for i in range(episodes):
            g = f.create_group(f"episode_{i}")
            g["observations"] = np.zeros((t + 1, 6, 6, 3), np.uint8)
            g["actions"] = np.zeros((t, 2), np.float32)
            g["infos/true_state"] = np.zeros((t + 1, 2))
            if edit:
                edit(i, g)
    return path


def _replace(g, key, value):
    del g[key]
    g[key] = value


def _write(path, data):
    path.write_bytes(data)
    return path


def _two_cameras(i, g):
    t = g["actions"].shape[0]
    del g["obs/agentview_image"]
    g["obs/front_image"] = np.zeros((t, 6, 6, 3), np.uint8)
    g["obs/wrist_image"] = np.zeros((t, 6, 6, 3), np.uint8)


def _nan_state(n=10):
    s = np.zeros((n, 4), np.float32)
    s[6, 1] = np.nan
    return s


# name -> (build(dir) -> src, convert kwargs, message regex)
MALFORMED = {
    "d4rl_no_actions": (lambda d: _d4rl(d / "x.hdf5", actions=None), {}, r"x\.hdf5: file: key 'actions' is missing"),
    "d4rl_no_observations": (lambda d: _d4rl(d / "x.hdf5", observations=None), {}, r"key 'observations' is missing"),
    "d4rl_short_rewards": (lambda d: _d4rl(d / "x.hdf5", rewards=np.zeros(9)), {},
                           r"key 'rewards' has 9 rows but 'actions' has 10"),
    "d4rl_text_actions": (lambda d: _d4rl(d / "x.hdf5", actions=np.array([b"up"] * 10)), {},
                          r"key 'actions' holds \|S2 values, not numbers"),
    "d4rl_nan_state": (lambda d: _d4rl(d / "x.hdf5", **{"infos/true_state": _nan_state()}), {},
                       r"trajectory 1: key 'true_state' contains NaN or inf \(first at step 1\).*steps 5-9"),
    "d4rl_float_discrete_actions": (lambda d: _d4rl(d / "x.hdf5", actions=np.zeros(10, np.float32)), {},
                                    r"trajectory 0: key 'action' has shape \(5,\) and dtype float32"),
    "d4rl_frames_without_state": (lambda d: _d4rl(d / "x.hdf5", **{"infos/true_state": None}), {},
                                  r"no low-dimensional state .*--state_key"),
    "d4rl_stacked_frames": (lambda d: _d4rl(d / "x.hdf5", observations=np.zeros((10, 6, 6, 9), np.uint8)),
                            {"obs_key": "observations"}, r"trajectory 0: key 'obs' .*stacked frames"),
    "d4rl_float_frames": (lambda d: _d4rl(d / "x.hdf5", pix=np.zeros((10, 6, 6, 3), np.float32)),
                          {"obs_key": "pix"}, r"trajectory 0: key 'obs' has dtype float32 but must be uint8"),
    "not_hdf5": (lambda d: _write(d / "x.hdf5", b"not an hdf5 file at all"), {},
                 r"cannot read .*x\.hdf5 as HDF5"),
    "truncated_hdf5": (lambda d: _write(d / "x.hdf5", _d4rl(d.parent / "t.hdf5").read_bytes()[:900]), {},
                       r"cannot read .*x\.hdf5 as HDF5"),
    "unknown_hdf5_layout": (lambda d: h5py.File(d / "x.hdf5", "w").close() or d / "x.hdf5", {},
                            r"neither D4RL .*robomimic .*Minari"),
    "states_only_no_hook": (lambda d: _d4rl(d / "x.hdf5", observations=np.zeros((10, 4)),
                                            **{"infos/qpos": np.zeros((10, 1))}),
                            {"env": "FakeSim-NoHook-v0"}, r"holds states but no frames.*provides no render_state"),
    "states_only_unknown_env": (lambda d: _d4rl(d / "x.hdf5", observations=np.zeros((10, 4))), {},
                                r"holds states but no frames; re-rendering them needs a registered environment"),
    "states_only_missing_sim_key": (lambda d: _d4rl(d / "x.hdf5", observations=np.zeros((10, 4))),
                                    {"env": "FakeSim-v0"}, r"trajectory 0: re-rendering step 0 failed: state has no 'qpos'"),
    "action_size_vs_env": (lambda d: _d4rl(d / "x.hdf5", actions=np.zeros((10, 3), np.float32)), {"env": "FakeSim-v0"},
                           r"trajectory 0: key 'action' has per-step shape \(3,\) .*FakeSim-v0's actions are floats of shape \(2,\)"),
    "discrete_action_vs_env": (lambda d: _d4rl(d / "x.hdf5", actions=np.full(10, 9, np.int64)),
                               {"env": "MiniGrid-DoorKey-5x5-v0"},
                               r"trajectory 0: key 'action' holds 9 but MiniGrid-DoorKey-5x5-v0 has 7 discrete actions"),
    "robomimic_no_data": (lambda d: _robomimic(d / "r.hdf5", demos=()), {},
                          r"r\.hdf5: file: key 'data' holds no demo_<i> groups"),
    "robomimic_demo_without_actions": (lambda d: _robomimic(d / "r.hdf5", edit=lambda i, g: i == 1 and g.__delitem__("actions")),
                                       {}, r"trajectory 1 \(data/demo_1\): key 'actions' is missing"),
    "robomimic_short_states": (lambda d: _robomimic(d / "r.hdf5", edit=lambda i, g: _replace(g, "states", np.zeros((4, 3)))),
                               {}, r"trajectory 0 \(data/demo_0\): key 'states' has 4 rows but 'actions' has 5"),
    "robomimic_two_cameras": (lambda d: _robomimic(d / "r.hdf5", edit=_two_cameras), {},
                              r"trajectory 0 \(data/demo_0\): key 'obs' holds several cameras \(front_image, wrist_image\)"),
    "robomimic_bad_env_args": (lambda d: _robomimic(d / "r.hdf5", env_args="{not json"), {},
                               r"attribute 'env_args' of /data is not valid JSON"),
    "robomimic_frame_size_change": (lambda d: _robomimic(d / "r.hdf5", edit=lambda i, g: i == 1 and _replace(
        g, "obs/agentview_image", np.zeros((4, 7, 7, 3), np.uint8))), {},
        r"trajectory 1: key 'obs' has frames of shape \(7, 7, 3\) but earlier trajectories have \(6, 6, 3\)"),
    "minari_observation_rows": (lambda d: _minari(d / "m", edit=lambda i, g: i == 1 and _replace(
        g, "observations", np.zeros((3, 6, 6, 3), np.uint8))), {},
        r"trajectory 1 \(episode_1\): key 'observations' has 3 rows but the episode has 5 actions"),
    "minari_no_episodes": (lambda d: _minari(d / "m", episodes=0), {}, r"key 'episode_0' is missing"),
    "minari_dict_actions": (lambda d: _minari(d / "m", edit=lambda i, g: _replace(g, "actions", np.zeros(5)) or (
        g.__delitem__("actions"), g.create_group("actions"))), {}, r"trajectory 0 \(episode_0\): key 'actions' is a group"),
    "minari_bad_terminations": (lambda d: _minari(d / "m", edit=lambda i, g: g.__setitem__("terminations", np.zeros(2, bool))),
                                {}, r"trajectory 0 \(episode_0\): key 'terminations' has shape \(2,\)"),
    "minari_unknown_id": (lambda d: "minari:nobody/nothing-v0", {}, r"no Minari dataset 'nobody/nothing-v0' under"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_is_refused_and_nothing_written(tmp_path, monkeypatch, name):
    build, kwargs, pattern = MALFORMED[name]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "in" / "mroot"))
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    src = build(tmp_path / "in")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    before = sorted(p.name for p in (tmp_path / "in").rglob("*"))
    (out / "keep.zarr").mkdir()  # an existing destination survives a failed overwrite
    for dst in (out / "new.zarr", out / "keep.zarr"):
        with pytest.raises(PvrError, match=pattern) as info:
            pvr.data.convert(src, dst, overwrite=True, **kwargs)
        assert "\n" not in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.zarr"]  # no new store, no temp dir
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == before


def test_at_least_fifteen_distinct_malformed_inputs():
    assert len(MALFORMED) >= 15


def test_export_refuses_existing_and_unknown_pairs(tmp_path, episodes):
    a = _store(tmp_path / "a.zarr", episodes)
    pvr.data.convert(a, tmp_path / "x.hdf5")
    with pytest.raises(PvrError, match="already exists"):
        pvr.data.convert(a, tmp_path / "x.hdf5", dst_format="robomimic")
    with pytest.raises(PvrError, match="convert other pairs through a .zarr"):
        pvr.data.convert(tmp_path / "x.hdf5", tmp_path / "y.pickle")
    with pytest.raises(PvrError, match="unknown format 'hdf'"):
        pvr.data.convert(a, tmp_path / "z.hdf5", dst_format="hdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "x.hdf5"]
