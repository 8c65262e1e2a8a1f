import numpy as np
import pytest

pytest.importorskip("dm_control")

import pvr.data  # noqa: E402
import pvr.envs  # noqa: E402
import pvr.experts  # noqa: E402
from pvr.collect import collect  # noqa: E402
from pvr.experts.mppi import REWARDS  # noqa: E402


@pytest.mark.parametrize("domain,task", [("cartpole", "swingup"), ("reacher", "easy")])
def test_numpy_rewards_equal_dm_control(domain, task):
    from dm_control import suite

    env = suite.load(domain, task, task_kwargs={"random": 0})
    env.reset()
    p, fn = env.physics, REWARDS[(domain, task)][0]
    rng = np.random.default_rng(0)
    spec = env.action_spec()
    for _ in range(15):
        a = rng.uniform(spec.minimum, spec.maximum)
        ts = env.step(a)
        mine = fn(p, p.data.qpos[None, None], p.data.qvel[None, None], a[None, None])[0, 0]
        assert abs(mine - ts.reward) < 1e-9


def test_planner_leaves_physics_alone_and_is_seeded():
    env = pvr.envs.make("DMC-reacher-easy", image_size=16)
    try:
        obs, info = env.reset(seed=1)
        expert = pvr.experts.create(None, env, samples=16, horizon=10)
        before = env.unwrapped.physics.get_state().copy()
        expert.seed(1)
        expert.reset(obs, info)
        a1 = expert.act(obs, info)
        np.testing.assert_array_equal(env.unwrapped.physics.get_state(), before)
        expert.seed(1)
        expert.reset(obs, info)
        np.testing.assert_array_equal(expert.act(obs, info), a1)
    finally:
        env.close()


def test_collect_dmc_short_episodes(tmp_path):
    kw = {"image_size": 16, "task_kwargs": {"time_limit": 0.5}}  # reacher: 25 control steps of 0.02 s
    path = collect("DMC-reacher-easy", 2, tmp_path, env_kwargs=kw, expert_kwargs={"samples": 32, "horizon": 15},
                   keep_failures=True, progress=False)  # DMC has no success notion: keep every episode
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 2 and ds.meta["expert"]["name"] == "mppi"
        ep = ds.episode(0)
        assert ep["obs"].shape == (25, 16, 16, 3) and ep["action"].shape == (25, 2)
        assert ep["action"].dtype == np.float32 and np.abs(ep["action"]).max() <= 1
        assert ep["done"][-1] and ep["true_state"].shape[0] == 25
    finally:
        ds.close()
