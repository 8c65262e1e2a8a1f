import gymnasium as gym
import numpy as np
import pytest

import pvr.envs
from pvr.envs.atari import AtariStarts, resolve
from pvr.errors import PvrError

from envtest_util import checked, roll

ale_py = pytest.importorskip("ale_py")
gym.register_envs(ale_py)

BREAKOUT = "Atari-BreakoutDeterministic-v4"


def test_original_and_current_ids_resolve():
    assert resolve("Atari-BreakoutDeterministic-v4") == ("Breakout-v4", {"frameskip": 4})
    assert resolve("Atari-ALE/Pong-v5") == ("ALE/Pong-v5", {})
    assert resolve("Atari-Pong-v5") == ("ALE/Pong-v5", {})
    assert resolve("Atari-Pong") == ("ALE/Pong-v5", {})
    assert resolve("Atari-PongNoFrameskip-v4") == ("PongNoFrameskip-v4", {})
    with pytest.raises(PvrError, match="Atari-Breakout"):
        resolve("Atari-Breakoutt")


def test_breakout_native_frames_ram_state_and_check_env():
    env = pvr.envs.make(BREAKOUT)
    *_, info = roll(env, (210, 160, 3))
    assert info["true_state"].shape == (128,) and info["success"] is False
    assert env.unwrapped.spec.kwargs["frameskip"] == 4
    checked(env)
    env.close()


def test_resized_frames():
    env = pvr.envs.make("Atari-Pong", image_size=64)
    roll(env, (64, 64, 3))
    env.close()


# -- the original's starts, re-stated by hand on a raw ale-py env ---------------------------------------
# The original (sparisi/pvr_habitat, src/gym_wrappers.py AtariWrapper): reset returns env.reset()'s frame;
# the first step presses FIRE (action 1 is FIRE in Breakout), then n no-ops, n in [0, 30], dropping their
# rewards and done flags, then the agent's action; when the lives count changes, the next step starts with
# FIRE. pvr draws n from a generator seeded by the reset seed: default_rng(seed).integers(0, 31).

def _noops(seed, noop_max=30):
    return int(np.random.default_rng(seed).integers(0, noop_max + 1))


class ByHand:
    """A raw ``Breakout-v4`` (frameskip 4, = BreakoutDeterministic-v4) driven the original's way."""

    def __init__(self, seed):
        self.env = gym.make("Breakout-v4", frameskip=4, obs_type="rgb")
        self.obs, _ = self.env.reset(seed=seed)
        self.first, self.noops = True, _noops(seed)
        self.ale = self.env.unwrapped.ale
        self.lives, self.fire_next = self.ale.lives(), False

    def step(self, action):
        if self.first or self.fire_next:
            self.env.step(1)
        if self.first:
            for _ in range(self.noops):
                self.env.step(0)
        self.first = self.fire_next = False
        obs, r, term, trunc, info = self.env.step(action)
        if self.ale.lives() != self.lives:
            self.lives, self.fire_next = self.ale.lives(), True
        return obs, r, term, trunc, info


@pytest.mark.parametrize("seed", [0, 3])
def test_breakout_plays_like_the_original_step_by_step(seed):
    env = pvr.envs.make(BREAKOUT)
    ref = ByHand(seed)
    try:
        obs, info = env.reset(seed=seed)
        np.testing.assert_array_equal(obs, ref.obs)  # the reset frame, as is
        assert env.unwrapped.ale.getEpisodeFrameNumber() == 0  # nothing pressed at reset
        assert info["true_state"].shape == (128,)
        rng = np.random.default_rng(seed + 100)
        lives_seen, t = [], 0
        for t in range(400):
            a = int(rng.choice([0, 2, 3]))  # never FIRE: only the env's FIRE relaunches the ball
            obs, r, term, trunc, info = env.step(a)
            obs2, r2, term2, trunc2, info2 = ref.step(a)
            np.testing.assert_array_equal(obs, obs2)
            assert (r, term, trunc) == (r2, term2, trunc2)
            assert info["lives"] == info2["lives"] == ref.ale.lives()
            assert info["episode_frame_number"] == info2["episode_frame_number"]
            if t == 0:
                assert info["episode_frame_number"] == 4 * (1 + _noops(seed) + 1)
            lives_seen.append(info["lives"])
            if term or trunc:
                break
        # lives were lost and the game went on after each (FIRE relaunched the ball)
        # (with many no-ops the ball FIRE served can already be lost inside the first step)
        assert min(lives_seen) <= 3 and len(set(lives_seen)) >= 3
    finally:
        env.close()
        ref.env.close()


def test_noop_count_follows_the_reset_seed():
    env = pvr.envs.make(BREAKOUT)
    try:
        counts = []
        for seed in range(6):
            env.reset(seed=seed)
            starts = env.get_wrapper_attr("pending_noops")
            assert starts == _noops(seed) and env.get_wrapper_attr("pending_fire") is True
            env.step(0)
            counts.append(env.unwrapped.ale.getEpisodeFrameNumber() // 4 - 2)
            assert env.get_wrapper_attr("pending_noops") == 0
        assert counts == [_noops(s) for s in range(6)] and len(set(counts)) > 1
        # an unseeded reset continues the last seed's generator: the next draw of default_rng(5)
        env.reset()
        rng = np.random.default_rng(5)
        rng.integers(0, 31)
        assert env.get_wrapper_attr("pending_noops") == int(rng.integers(0, 31))
    finally:
        env.close()


def test_former_starts_inside_reset_are_an_option():
    env = pvr.envs.make(BREAKOUT, starts="reset", noop_max=30)
    try:
        counts = set()
        for seed in range(4):
            env.reset(seed=seed)
            frames = env.unwrapped.ale.getEpisodeFrameNumber()
            counts.add(frames)
            assert frames % 4 == 0 and 4 <= frames <= 4 * 31  # noops (0..30) + FIRE, 4 frames each
        assert len(counts) > 1
    finally:
        env.close()
    with pytest.raises(PvrError, match="starts"):
        pvr.envs.make(BREAKOUT, starts="first")
    with pytest.raises(PvrError, match="noop_max"):
        pvr.envs.make(BREAKOUT, noop_max=-1)


class FakeAtari(gym.Env):
    """Scripted lives (a function of how many actions reached the game) and reward 1 per step."""

    observation_space = gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, lives):
        self.lives_of, self.actions = lives, []
        self.ale = self

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def lives(self):
        return self.lives_of(len(self.actions))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.actions = []
        return np.zeros((2, 2, 3), np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        return np.zeros((2, 2, 3), np.uint8), 1.0, False, False, {}


def test_fire_and_noops_exact_on_a_scripted_game():
    k = _noops(7, noop_max=3)
    first = k + 2  # FIRE, k no-ops, the action
    fake = FakeAtari(lives=lambda n: 5 if n < first + 2 else (4 if n < first + 6 else 5))
    env = AtariStarts(fake, noop_max=3)
    env.reset(seed=7)
    assert fake.actions == []  # nothing pressed at reset
    _, r, *_ = env.step(2)
    assert fake.actions == [1] + [0] * k + [2] and r == 1.0  # FIRE and no-ops' rewards dropped
    env.step(2)
    env.step(3)  # lives read after it: 4
    assert fake.actions[-1] == 3  # no FIRE in the step that lost the life
    _, r, *_ = env.step(2)
    assert fake.actions[-2:] == [1, 2] and r == 1.0  # FIRE first in the next step, its reward dropped
    env.step(2)
    assert fake.actions[-2:] == [2, 2]  # once
    env.step(3)  # lives back to 5 after this one: a change, as in the original, so FIRE next
    env.step(0)
    assert fake.actions[-3:] == [3, 1, 0]


def test_fire_after_a_lost_life_in_the_same_step_with_former_starts():
    fake = FakeAtari(lives=lambda n: 5 if n < 6 else 4)
    env = AtariStarts(fake, noop_max=3, starts="reset")
    env.reset(seed=0)
    n = len(fake.actions) - 1
    assert 0 <= n <= 3 and fake.actions == [0] * n + [1]
    while len(fake.actions) < 5:
        env.step(2)
    _, r, *_ = env.step(3)  # this step loses the life (lives read after it: 4)
    assert fake.actions[-2:] == [3, 1] and r == 2.0  # FIRE pressed at once, its reward added
    env.step(2)
    assert fake.actions[-1] == 2  # no second FIRE
