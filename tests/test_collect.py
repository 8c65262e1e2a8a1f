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


# -- parallel collection, kill and resume -------------------------------------------------------
def _assert_same(eps_a, eps_b):
    assert len(eps_a) == len(eps_b)
    for a, b in zip(eps_a, eps_b):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_workers_give_the_same_dataset(tmp_path):
    # 12 steps: some DoorKey episodes fail, so dropped attempts are part of the order too
    kw = {"max_steps": 12}
    one = collect(ENV, 5, tmp_path / "one", env_kwargs=kw, progress=False)
    three = collect(ENV, 5, tmp_path / "three", env_kwargs=kw, workers=3, progress=False)
    (eps1, meta1), (eps3, meta3) = _episodes(one), _episodes(three)
    _assert_same(eps1, eps3)
    assert meta1["collect_attempts"] == meta3["collect_attempts"] > 5  # failures were skipped, in the same order


def test_bad_expert_option(tmp_path):
    with pytest.raises(PvrError, match="bad option"):
        collect(ENV, 2, tmp_path, expert_kwargs={"no_such_option": 1}, workers=2, progress=False)


class _CrashOnSeed3:
    """A test expert (registered below, loaded by workers as a plugin) that fails on seed 3."""

    def __init__(self, env):
        from pvr.experts.minigrid_bfs import MiniGridBFS

        self.inner, self.name = MiniGridBFS(env), "crash3"

    def seed(self, seed):
        if seed == 3:
            raise RuntimeError("boom on seed 3")

    def reset(self, obs, info):
        self.inner.reset(obs, info)

    def act(self, obs, info):
        return self.inner.act(obs, info)

    def describe(self):
        return {"name": self.name}


def _register_crash():
    import pvr.experts

    if "crash3" not in pvr.experts.available():
        pvr.experts.register_expert("crash3", suites=("MiniGrid",), description="test only")(_CrashOnSeed3)


_register_crash()


def test_worker_error_is_reported_and_episodes_kept(tmp_path):
    import pvr.plugins

    pvr.plugins.load([__name__], entry_points=False)  # so spawned workers register crash3 too
    with pytest.raises(PvrError, match="attempt 3 .*boom on seed 3"):
        collect("MiniGrid-Empty-5x5-v0", 6, tmp_path, expert="crash3", workers=2, progress=False)
    eps, meta = _episodes(store_path(tmp_path, "MiniGrid-Empty-5x5-v0"))
    assert len(eps) == 3 and meta["collect_attempts"] == 3  # attempts 0-2 were appended before the failure


def _children(pid: int) -> list[int]:
    import pathlib

    out = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_sigkill_then_rerun_finishes_exactly(tmp_path):
    """SIGKILL `pvr collect --workers 2` mid-run; the rerun ends with exactly N episodes,
    identical to an uninterrupted collection (no duplicate, no torn episode), no orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env, n = "MiniGrid-DoorKey-8x8-v0", 24
    cmd = [sys.executable, "-m", "pvr", "collect", "--env", env, "--episodes", str(n), "--data_path",
           str(tmp_path / "killed"), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = store_path(tmp_path / "killed", env)
    kids: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            kids = _children(proc.pid) or kids
            if path.exists():
                try:
                    ds = pvr.data.open(path)
                    got = ds.num_episodes
                    ds.close()
                except Exception:
                    got = 0
                if got >= 3:
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = _episodes(path)[0]
    assert 3 <= len(killed_at) < n, "the kill should land mid-collection"
    time.sleep(1.0)
    assert kids and not [k for k in kids if os.path.exists(f"/proc/{k}") and
                         open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"], "workers outlived the parent"

    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    resumed = _episodes(path)[0]
    reference = _episodes(collect(env, n, tmp_path / "ref", progress=False))[0]
    _assert_same(resumed, reference)
    _assert_same(killed_at, reference[: len(killed_at)])
