import gymnasium as gym
import numpy as np
import pytest

import pvr.envs
from pvr.envs.atari import AtariStarts, resolve
from pvr.errors import PvrError

from envtest_util import checked, roll


def test_original_and_current_ids_resolve():
    assert resolve("Atari-BreakoutDeterministic-v4") == ("Breakout-v4", {"frameskip": 4})
    assert resolve("Atari-ALE/Pong-v5") == ("ALE/Pong-v5", {})
    assert resolve("Atari-Pong-v5") == ("ALE/Pong-v5", {})
    assert resolve("Atari-Pong") == ("ALE/Pong-v5", {})
    assert resolve("Atari-PongNoFrameskip-v4") == ("PongNoFrameskip-v4", {})
    with pytest.raises(PvrError, match="Atari-Breakout"):
        resolve("Atari-Breakoutt")


def test_breakout_native_frames_ram_state_and_check_env():
    env = pvr.envs.make("Atari-BreakoutDeterministic-v4")
    *_, info = roll(env, (210, 160, 3))
    assert info["true_state"].shape == (128,) and info["success"] is False
    assert env.unwrapped.spec.kwargs["frameskip"] == 4
    checked(env)
    env.close()


def test_resized_frames():
    env = pvr.envs.make("Atari-Pong", image_size=64)
    roll(env, (64, 64, 3))
    env.close()


def test_noop_starts_then_fire_after_reset():
    env = pvr.envs.make("Atari-BreakoutDeterministic-v4", noop_max=30)
    counts = set()
    for seed in range(4):
        env.reset(seed=seed)
        frames = env.unwrapped.ale.getEpisodeFrameNumber()
        counts.add(frames)
        assert frames % 4 == 0 and 4 <= frames <= 4 * 31  # noops (0..30) + FIRE, 4 frames each
    assert len(counts) > 1  # the number of no-ops varies with the seed
    env.close()


class FakeAtari(gym.Env):
    """Scripted lives; records the actions that reach the game."""

    observation_space = gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, lives):
        self.lives_script, self.actions = list(lives), []
        self.ale = self

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def lives(self):
        return self.lives_script[min(len(self.actions), len(self.lives_script) - 1)]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.actions = []
        return np.zeros((2, 2, 3), np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        return np.zeros((2, 2, 3), np.uint8), 1.0, False, False, {}


def test_fire_after_a_lost_life_and_noops_exact():
    fake = FakeAtari(lives=[5] * 6 + [4] * 10)
    env = AtariStarts(fake, noop_max=3)
    env.reset(seed=0)
    n = len(fake.actions) - 1
    assert 0 <= n <= 3 and fake.actions == [0] * n + [1]
    while len(fake.actions) < 5:
        env.step(2)
    _, r, *_ = env.step(3)  # this step loses the life (lives read after it: 4)
    assert fake.actions[-2:] == [3, 1] and r == 2.0  # FIRE pressed at once, its reward added
    env.step(2)
    assert fake.actions[-1] == 2  # no second FIRE
