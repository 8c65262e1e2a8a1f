import numpy as np
import pytest

import pvr.envs
from pvr.errors import PvrError

from envtest_util import checked, roll


def test_cartpole_frames_state_and_check_env():
    env = pvr.envs.make("DMC-cartpole-swingup", image_size=32)
    *_, info = roll(env, (32, 32, 3))
    assert info["true_state"].shape == (5,) and info["success"] is False  # position (3) + velocity (2)
    assert env.action_space.shape == (1,) and env.action_space.dtype == np.float32
    checked(env)
    env.close()


def test_default_size_is_84_and_state_is_the_flattened_observation():
    env = pvr.envs.make("DMC-reacher-easy")
    obs, info = env.reset(seed=1)
    assert obs.shape == (84, 84, 3)
    ts = env.unwrapped.dm_env.task.get_observation(env.unwrapped.physics)
    np.testing.assert_allclose(info["true_state"], np.concatenate([np.ravel(v) for v in ts.values()]), rtol=1e-6)
    env.close()


def test_actions_are_clipped_to_the_spec():
    a = pvr.envs.make("DMC-cartpole-swingup", image_size=16)
    b = pvr.envs.make("DMC-cartpole-swingup", image_size=16)
    a.reset(seed=4), b.reset(seed=4)
    for _ in range(3):
        sa = a.step(np.array([7.5], np.float32))[-1]["true_state"]
        sb = b.step(np.array([1.0], np.float32))[-1]["true_state"]
    np.testing.assert_array_equal(sa, sb)
    a.close(), b.close()


def test_time_limit_is_truncation():
    env = pvr.envs.make("DMC-cartpole-balance", image_size=16, task_kwargs={"time_limit": 0.03})
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(3)]
    assert flags[-1] == (False, True) and flags[0] == (False, False)
    env.close()


def test_bad_names():
    with pytest.raises(PvrError, match="DMC-cartpole-swingup"):
        pvr.envs.make("DMC-cartpole-swingupp")
    with pytest.raises(PvrError, match="DMC-<domain>-<task>"):
        pvr.envs.make("DMC-cartpole")
