"""`pvr collect` with each suite's default expert: a few short episodes, and what lands in the store.

MiniGrid, classic control, DMC, ImageNav, Adroit and Atari have theirs beside their experts' tests
(test_collect.py, test_classic.py, test_mppi.py, test_shortest_path.py, test_rewards_adroit.py,
test_atari_expert.py); HabitatImageNav needs habitat-sim (its expert is the same follower, tested on ImageNav).
"""
import numpy as np
import pytest

import pvr.data
from pvr.collect import collect

CASES = [
    # env, env kwargs, expert kwargs, steps, action shape, true_state dim
    ("Hopper-v5", {"image_size": 16, "max_episode_steps": 6}, {"samples": 16, "horizon": 8}, 6, (3,), 11),
    ("Kitchen-microwave", {"image_size": 16, "max_episode_steps": 3}, {"samples": 8, "horizon": 3, "threads": 1},
     3, (9,), 59),
]


@pytest.mark.parametrize("env,env_kwargs,expert_kwargs,steps,action_shape,state_dim", CASES,
                         ids=[c[0] for c in CASES])
def test_collect_short_episodes(tmp_path, env, env_kwargs, expert_kwargs, steps, action_shape, state_dim):
    pytest.importorskip("mujoco")
    if env.startswith("Kitchen"):
        pytest.importorskip("gymnasium_robotics")
    path = collect(env, 2, tmp_path, env_kwargs=env_kwargs, expert_kwargs=expert_kwargs, keep_failures=True,
                   progress=False)
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 2 and ds.meta["expert"]["name"] == "mppi"
        assert ds.meta["collect_attempts"] == 2 and "collect_successes" in ds.meta
        for i in range(2):
            ep = ds.episode(i)
            assert ep["obs"].shape == (steps, 16, 16, 3) and ep["obs"].dtype == np.uint8
            assert ep["obs"].std() > 0  # a rendered scene, not a blank frame
            assert ep["action"].shape == (steps, *action_shape) and ep["action"].dtype == np.float32
            assert np.abs(ep["action"]).max() <= 1 + 1e-6
            assert ep["true_state"].shape == (steps, state_dim) and ep["done"][-1] and not ep["done"][:-1].any()
        # episodes use different seeds: different starts
        assert not np.array_equal(ds.episode(0)["true_state"][0], ds.episode(1)["true_state"][0])
    finally:
        ds.close()
