import gymnasium as gym
import numpy as np
import pytest

import pvr.envs
from pvr.envs import FrameStack
from pvr.errors import PvrError


class Counter(gym.Env):
    """Frames whose every pixel equals a scripted value: easy to check stacks by hand."""

    VALUES = [10, 30, 20, 200, 0]

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (2, 3, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(1)
        self.t = 0

    def _frame(self):
        return np.full((2, 3, 3), self.VALUES[self.t], np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 0.0, self.t == len(self.VALUES) - 1, False, {}


def _vals(obs):
    """One value per stacked frame (each frame is constant)."""
    return [int(obs[0, 0, 3 * i]) for i in range(obs.shape[-1] // 3)]


def test_cat_pads_then_slides():
    env = FrameStack(Counter(), 3, mode="cat")
    assert env.observation_space.shape == (2, 3, 9) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 9) and obs.dtype == np.uint8
    assert _vals(obs) == [10, 10, 10]
    obs = env.step(0)[0]
    assert _vals(obs) == [10, 10, 30]
    obs = env.step(0)[0]
    assert _vals(obs) == [10, 30, 20]
    obs = env.step(0)[0]
    assert _vals(obs) == [30, 20, 200]
    assert env.observation_space.contains(obs)
    # a new episode starts from a fresh pad
    obs, _ = env.reset()
    assert _vals(obs) == [10, 10, 10]


def test_diff_differences_then_last_frame():
    env = FrameStack(Counter(), 3, mode="diff")
    space = env.observation_space
    assert space.shape == (2, 3, 9) and space.dtype == np.int16
    assert space.low[0, 0, 0] == -255 and space.low[0, 0, -1] == 0
    obs, _ = env.reset()
    assert obs.dtype == np.int16 and _vals(obs) == [0, 0, 10]
    obs = env.step(0)[0]
    assert _vals(obs) == [0, 20, 30]
    obs = env.step(0)[0]
    assert _vals(obs) == [20, -10, 20]  # negative differences survive (no uint8 wrap-around)
    obs = env.step(0)[0]
    assert _vals(obs) == [-10, 180, 200]
    obs = env.step(0)[0]
    assert _vals(obs) == [180, -200, 0]
    assert space.contains(obs)


def test_k1_is_identity_and_bad_args():
    env = FrameStack(Counter(), 1, mode="cat")
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 3) and _vals(obs) == [10]
    with pytest.raises(PvrError, match="mode"):
        FrameStack(Counter(), 2, mode="sum")
    with pytest.raises(PvrError):
        FrameStack(Counter(), 0)


def test_on_minigrid_keeps_info():
    env = FrameStack(pvr.envs.make("MiniGrid-Empty-5x5-v0"), 4, mode="diff")
    obs, info = env.reset(seed=0)
    assert obs.shape == (56, 56, 12) and "true_state" in info
    assert not obs[..., :9].any()  # padded with copies: zero differences
    obs, *_, info = env.step(2)
    assert obs[..., 6:9].any() and "success" in info
    assert env.spec.make().observation_space == env.observation_space
