"""Atari suite: ``Atari-<id>`` with ROMs from ale-py.

Names: the original's ``Atari-BreakoutDeterministic-v4`` (and ``...NoFrameskip-v4``,
``Breakout-v4``), current ALE ids ``Atari-ALE/Breakout-v5`` or ``Atari-Breakout-v5``,
and a bare game ``Atari-Breakout`` (= ``ALE/Breakout-v5``). ale-py 0.12 no longer
registers the ``*Deterministic-v*`` ids; they are rebuilt exactly from their old
definition: ``<Game>-v4`` (or ``-v0``) with a fixed ``frameskip=4``.

Episode starts follow the original's wrapper: after reset, a random number of
no-ops in [0, ``noop_max``] (30), then FIRE when the game's action 1 is FIRE; FIRE
is also pressed right after a life is lost (the frame returned is the one after
FIRE; its reward is added). Observations are the native 210×160 RGB screen (the
original's), or resized to ``image_size``. ``true_state`` is the 128-byte console
RAM. Atari games define no success: ``success`` is always False.
"""
from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pvr.envs.registry import register_suite
from pvr.envs.render import image_hw, resize
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "Atari"
PREFIX = "Atari-"


def _probe() -> str | None:
    try:
        import ale_py  # noqa: F401
    except Exception as exc:
        return f"cannot import ale_py ({exc}); install it with `pip install ale-py==0.12.1`"
    return None


def resolve(name: str) -> tuple[str, dict]:
    """``Atari-...`` → (registered ALE/Gymnasium id, extra make kwargs)."""
    import ale_py

    gym.register_envs(ale_py)
    rest = name[len(PREFIX):]
    if rest in gym.registry:
        return rest, {}
    m = re.fullmatch(r"(?P<game>\w+)Deterministic-v(?P<v>[04])", rest)
    if m and f"{m['game']}-v{m['v']}" in gym.registry:
        return f"{m['game']}-v{m['v']}", {"frameskip": 4}
    for candidate in (f"ALE/{rest}", f"ALE/{rest}-v5"):
        if candidate in gym.registry:
            return candidate, {}
    games = sorted(k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))
    import difflib

    close = difflib.get_close_matches(re.sub(r"(Deterministic|NoFrameskip)?-v\d+$", "", rest), games, n=3)
    hint = f" Did you mean {', '.join('Atari-' + g for g in close)}?" if close else ""
    raise PvrError(f"unknown Atari game {name!r}.{hint} Use Atari-<Game>, Atari-<Game>Deterministic-v4 "
                   f"or Atari-ALE/<Game>-v5 ({len(games)} games in ale-py).")


class AtariStarts(gym.Wrapper):
    """No-op starts (0..``noop_max``) and FIRE after reset and after each lost life, where needed."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if meanings[0] != "NOOP":
            raise PvrError(f"{env} has no NOOP action 0; cannot do no-op starts")
        self.noop_max = int(noop_max)
        self.fire = len(meanings) > 1 and meanings[1] == "FIRE"
        self._lives = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        noops = int(self.unwrapped.np_random.integers(0, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(noops):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        if self.fire:
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset()
        self._lives = self.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        if self.fire and lives < self._lives and not (terminated or truncated):
            obs, r2, terminated, truncated, info = self.env.step(1)
            reward = float(reward) + float(r2)
        self._lives = lives
        return obs, reward, terminated, truncated, info


class Resize(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, hw: tuple[int, int]):
        super().__init__(env)
        self.hw = hw
        self.observation_space = spaces.Box(0, 255, (*hw, 3), np.uint8)

    def observation(self, observation):
        return resize(observation, self.hw)


def true_state(env: gym.Env) -> np.ndarray:
    return env.unwrapped.ale.getRAM().astype(np.float32)


def no_success(env, reward, terminated, truncated, info) -> bool:
    return False


def make_atari(name: str, *, image_size: int | tuple[int, int] | None = None, noop_max: int = 30,
               max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Build ``Atari-<id>`` (see module docstring). ``image_size=None`` keeps 210×160.

    Other keyword arguments (``frameskip``, ``repeat_action_probability``, ...) go to ``gymnasium.make``.
    """
    gym_id, extra = resolve(name)
    kwargs = {**extra, **kwargs}
    try:
        env = gym.make(gym_id, obs_type="rgb", max_episode_steps=max_episode_steps, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    env = AtariStarts(env, noop_max=noop_max)
    if image_size is not None:
        env = Resize(env, image_hw(image_size))
    return InfoWrapper(env, true_state, no_success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "Atari-*",
    make_atari,
    description="Atari 2600 (ale-py ROMs): no-op starts, FIRE on reset / life loss",
    examples=["Atari-BreakoutDeterministic-v4", "Atari-PongDeterministic-v4", "Atari-ALE/Breakout-v5",
              "Atari-Pong"],
    image_size="210x160 native (image_size= resizes)",
    probe=_probe,
    default_expert="lookahead",
    spaces="obs (210, 160, 3) uint8; action Discrete(game's minimal set)",
)
