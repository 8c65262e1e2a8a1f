import gymnasium as gym
import numpy as np
import pytest

import pvr.data
from pvr.collect import collect
from pvr.experts.classic import CONTROLLERS


def _run(gym_id, seed, steps=500):
    law = CONTROLLERS[gym_id.rsplit("-v", 1)[0]]
    env = gym.make(gym_id)
    env.reset(seed=seed)
    total, t = 0.0, 0
    while True:
        _, r, term, trunc, _ = env.step(law(np.asarray(env.unwrapped.state)))
        total, t = total + r, t + 1
        if term or trunc or t >= steps:
            return total, t, term


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_controllers_solve_their_tasks(seed):
    assert _run("CartPole-v1", seed)[0] == 500
    assert _run("Pendulum-v1", seed)[0] > -400  # swung up and held (random: about -1200)
    assert _run("MountainCar-v0", seed)[2]
    assert _run("MountainCarContinuous-v0", seed)[2]
    assert _run("Acrobot-v1", seed)[2]


def test_collect_classic_into_store(tmp_path):
    path = collect("MountainCar-v0", 2, tmp_path, env_kwargs={"image_size": 16}, progress=False)
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 2 and ds.meta["expert"] == {"name": "classic", "task": "MountainCar"}
        ep = ds.episode(0)
        assert ep["obs"].shape[1:] == (16, 16, 3) and ep["action"].dtype == np.int64
        assert len(ep["action"]) < 200  # reached the flag before the time limit
    finally:
        ds.close()
    # no success notion for CartPole: keep_failures stores the (full-length) episodes
    path = collect("CartPole-v1", 1, tmp_path, env_kwargs={"image_size": 16, "max_episode_steps": 20},
                   keep_failures=True, progress=False)
    ds = pvr.data.open(path)
    try:
        assert len(ds.episode(0)["action"]) == 20
    finally:
        ds.close()


def test_mujoco_id_without_planning_reward_is_a_clear_error(tmp_path):
    pytest.importorskip("mujoco")
    from pvr.errors import PvrError

    with pytest.raises(PvrError, match="policy:"):
        collect("Pusher-v5", 1, tmp_path, env_kwargs={"image_size": 16}, progress=False)
