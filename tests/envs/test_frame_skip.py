import gymnasium as gym
import numpy as np
import pytest

import pvr.envs
from pvr.envs import FrameSkip
from pvr.envs.wrappers import merge_frames
from pvr.errors import PvrError


class Script(gym.Env):
    """Constant frames with scripted values and rewards; records actions; ends after the script."""

    VALUES = [0, 10, 21, 200, 7, 8, 9]
    REWARDS = [0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]

    def __init__(self, success_at=None):
        self.observation_space = gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.success_at, self.t, self.actions = success_at, 0, []

    def _frame(self):
        return np.full((2, 2, 3), self.VALUES[self.t], np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.actions = 0, []
        return self._frame(), {"success": False}

    def step(self, action):
        self.t += 1
        self.actions.append(action)
        info = {"success": self.t == self.success_at, "t": self.t}
        return self._frame(), self.REWARDS[self.t], self.t == len(self.VALUES) - 1, False, info


def v(obs):
    return int(obs[0, 0, 0])


def test_last_repeats_action_and_sums_rewards():
    env = FrameSkip(Script(), 3, mode="last")
    env.reset()
    obs, r, term, trunc, info = env.step(2)
    assert env.unwrapped.actions == [2, 2, 2] and v(obs) == 200 and r == 7.0 and not term
    assert info["t"] == 3


def test_avg_rounds_half_up_exactly():
    env = FrameSkip(Script(), 2, mode="avg")
    env.reset()
    obs, r, *_ = env.step(0)  # frames 10, 21 -> 15.5 -> 16
    assert v(obs) == 16 and obs.dtype == np.uint8 and r == 3.0
    obs, r, *_ = env.step(0)  # frames 200, 7 -> 103.5 -> 104
    assert v(obs) == 104 and r == 12.0


def test_max_and_early_stop_at_episode_end():
    env = FrameSkip(Script(), 4, mode="max")
    env.reset()
    obs, r, term, *_ = env.step(1)  # 10, 21, 200, 7
    assert v(obs) == 200 and r == 15.0 and not term
    obs, r, term, *_ = env.step(1)  # 8, 9 then the episode ends: only 2 frames
    assert term and v(obs) == 9 and r == 48.0 and len(env.unwrapped.actions) == 6


def test_success_kept_if_any_repeated_step_succeeded():
    env = FrameSkip(Script(success_at=2), 3)
    env.reset()
    *_, info = env.step(0)
    assert info["success"] is True and info["t"] == 3


def test_merge_frames_float_and_bad_args():
    f = [np.array([1.0, 2.0]), np.array([2.0, 5.0])]
    np.testing.assert_array_equal(merge_frames(f, "avg"), [1.5, 3.5])
    np.testing.assert_array_equal(merge_frames(f, "max"), [2.0, 5.0])
    with pytest.raises(PvrError, match="mode"):
        FrameSkip(Script(), 2, mode="min")
    with pytest.raises(PvrError):
        FrameSkip(Script(), 0)


def test_on_a_real_env_keeps_spaces_and_info():
    env = FrameSkip(pvr.envs.make("DMC-cartpole-swingup", image_size=16), 4, mode="max")
    obs, info = env.reset(seed=0)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8 and "true_state" in info
    assert env.unwrapped.physics.data.time == pytest.approx(4 * env.unwrapped.dm_env.control_timestep())
    env.close()
