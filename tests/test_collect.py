import numpy as np
import pytest

import pvr.data
from pvr.collect import collect, store_path
from pvr.errors import PvrError

ENV = "MiniGrid-DoorKey-5x5-v0"


def _episodes(path):
    ds = pvr.data.open(path)
    try:
        return [ds.episode(i) for i in range(ds.num_episodes)], dict(ds.meta)
    finally:
        ds.close()


def test_collect_resume_and_noop(tmp_path, capsys):
    path = collect(ENV, 3, tmp_path, progress=False)
    assert path == store_path(tmp_path, ENV) == tmp_path / f"{ENV}.zarr"
    eps, meta = _episodes(path)
    assert len(eps) == 3
    for ep in eps:
        n = len(ep["action"])
        assert ep["obs"].shape == (n, 56, 56, 3) and ep["obs"].dtype == np.uint8
        assert ep["done"][-1] and not ep["done"][:-1].any()
        assert ep["true_state"].shape == (n, 81) and ep["true_state"].dtype == np.float32
        assert ep["reward"][-1] > 0 and (ep["reward"][:-1] == 0).all()
        assert ep["action"].dtype == np.int64
    assert meta["expert"]["name"] == "bfs" and meta["env"] == ENV and meta["seed"] == 0
    assert meta["action_space"] == "Discrete(7)" and list(meta["obs_shape"]) == [56, 56, 3]

    path2 = collect(ENV, 5, tmp_path, progress=False)
    assert path2 == path
    eps5, _ = _episodes(path)
    assert len(eps5) == 5  # appended 2, not 5
    for a, b in zip(eps, eps5[:3]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    capsys.readouterr()
    collect(ENV, 5, tmp_path, progress=False)
    assert "already holds 5" in capsys.readouterr().out
    assert len(_episodes(path)[0]) == 5

    # resumed == uninterrupted: same seeds, same episodes
    fresh = collect(ENV, 5, tmp_path / "fresh", progress=False)
    for a, b in zip(eps5, _episodes(fresh)[0]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_obs_is_the_frame_acted_on(tmp_path):
    import pvr.envs

    path = collect("MiniGrid-Empty-5x5-v0", 1, tmp_path, seed=4, progress=False)
    (ep,), _ = _episodes(path)
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    obs, info = env.reset(seed=4)
    for t, action in enumerate(ep["action"]):
        np.testing.assert_array_equal(ep["obs"][t], obs)
        np.testing.assert_array_equal(ep["true_state"][t], info["true_state"])
        obs, r, *_, info = env.step(int(action))
        assert ep["reward"][t] == np.float32(r)


def test_failures_dropped_or_kept(tmp_path):
    # 3 steps are too few to open the door: every episode fails
    with pytest.raises(PvrError, match="keep_failures"):
        collect(ENV, 1, tmp_path / "a", env_kwargs={"max_steps": 3}, progress=False)
    path = collect(ENV, 2, tmp_path / "b", env_kwargs={"max_steps": 3}, keep_failures=True, progress=False)
    eps, meta = _episodes(path)
    assert len(eps) == 2 and meta["env_kwargs"] == {"max_steps": 3}
    # the expert sees no plan within the horizon, gives up, and the episode ends there
    assert all(1 <= len(ep["action"]) <= 3 and ep["done"][-1] and ep["reward"].sum() == 0 for ep in eps)


def test_resume_with_other_settings_refused(tmp_path):
    collect("MiniGrid-Empty-5x5-v0", 1, tmp_path, progress=False)
    with pytest.raises(PvrError, match="seed"):
        collect("MiniGrid-Empty-5x5-v0", 2, tmp_path, seed=1, progress=False)


def test_unknown_env_or_expert(tmp_path):
    with pytest.raises(PvrError):
        collect("NoSuchEnv-v0", 1, tmp_path, progress=False)
    with pytest.raises(PvrError, match="bfs"):
        collect("MiniGrid-Empty-5x5-v0", 1, tmp_path, expert="nope", progress=False)
    assert not any(tmp_path.iterdir())  # nothing created for a bad request
