import numpy as np
import pytest

import pvr.envs
from pvr.envs.gymnasium_envs import resolve
from pvr.errors import PvrError

from envtest_util import checked, roll


@pytest.mark.parametrize("name,state", [("Pendulum-v1", 3), ("CartPole-v1", 4)])
def test_classic_control(name, state):
    env = pvr.envs.make(name, image_size=32)
    *_, info = roll(env, (32, 32, 3))
    assert info["true_state"].shape == (state,)
    assert pvr.envs.suite_of(env) == "Gymnasium"
    checked(env)
    env.close()


def test_classic_control_default_size_and_state_is_the_env_observation():
    env = pvr.envs.make("CartPole-v1")
    obs, info = env.reset(seed=3)
    assert obs.shape == (84, 84, 3)
    np.testing.assert_allclose(info["true_state"], env.unwrapped.state, rtol=1e-6)
    env.close()


def test_mountain_car_success_is_reaching_the_goal():
    env = pvr.envs.make("MountainCarContinuous-v0", image_size=16)
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.44, 0.07])  # just below the flag, moving right
    *_, term, _, info = env.step(np.array([1.0], np.float32))
    assert term and info["success"] is True
    env.close()


def test_mujoco_renders_at_requested_size_and_passes_check_env():
    env = pvr.envs.make("HalfCheetah-v5", image_size=(48, 64))
    *_, info = roll(env, (48, 64, 3))
    assert info["true_state"].shape == (17,) and info["success"] is False
    checked(env)
    env.close()


def test_legacy_ids_map_to_current_with_a_note():
    assert resolve("HalfCheetah-v3") == ("HalfCheetah-v5", resolve("HalfCheetah-v3")[1])
    assert "HalfCheetah-v5" in resolve("HalfCheetah-v3")[1]
    assert resolve("Hopper-v2")[0] == "Hopper-v5"
    assert resolve("Pendulum-v1") == ("Pendulum-v1", None)
    with pytest.warns(UserWarning, match="built as HalfCheetah-v5"):
        env = pvr.envs.make("HalfCheetah-v3", image_size=16)
    assert env.pvr_note and env.unwrapped.spec.id == "HalfCheetah-v5"
    env.close()


def test_unknown_ids_are_not_claimed():
    assert pvr.envs.suite_for("Walker2d-v4").name == "Gymnasium"
    with pytest.raises(PvrError, match="MiniGrid"):
        pvr.envs.make("Pendulum-v9")
