"""Atari suite: ``Atari-<id>`` with ROMs from ale-py.

Names: the original's ``Atari-BreakoutDeterministic-v4`` (and ``...NoFrameskip-v4``,
``Breakout-v4``), current ALE ids ``Atari-ALE/Breakout-v5`` or ``Atari-Breakout-v5``,
and a bare game ``Atari-Breakout`` (= ``ALE/Breakout-v5``). ale-py 0.12 no longer
registers the ``*Deterministic-v*`` ids; they are rebuilt exactly from their old
definition: ``<Game>-v4`` (or ``-v0``) with a fixed ``frameskip=4``.

Episode starts and lost lives follow the original's ``AtariWrapper`` (``starts="original"``,
the default): ``reset`` returns the emulator's reset frame as is. The agent's *first*
``step`` first presses FIRE (when the game's action 1 is FIRE), then NOOP a random number
of times in [0, ``noop_max``] (30), dropping their rewards and done flags, then the
agent's action, whose frame, reward and done it returns. When the lives count changes,
the *next* step starts with one FIRE (its reward dropped); a lost life never ends the
episode. The no-op count is drawn at reset from a generator of this wrapper seeded by
``reset(seed=...)`` (so one seed gives one episode), where the original drew it from
numpy's global generator. ``starts="reset"`` keeps pvr's former starts: the no-ops and
FIRE happen inside ``reset`` and FIRE is pressed in the same step that loses a life (its
reward added). Observations are the native 210×160 RGB screen (the original's), or
resized to ``image_size``. ``true_state`` is the 128-byte console RAM. Atari games define
no success: ``success`` is always False.
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


STARTS = ("original", "reset")


class AtariStarts(gym.Wrapper):
    """FIRE and 0..``noop_max`` no-ops to start an episode, FIRE after a change of lives.

    ``starts="original"``: they run at the start of the first ``step`` (and of the step
    after the lives change), as the original did; ``pending_fire`` / ``pending_noops`` say
    what the next ``step`` will press before the agent's action (the lookahead expert
    plans with them). ``starts="reset"``: pvr's former way (inside ``reset``; FIRE in the
    step that loses the life, reward added).
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, starts: str = "original"):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if meanings[0] != "NOOP":
            raise PvrError(f"{env} has no NOOP action 0; cannot do no-op starts")
        if starts not in STARTS:
            raise PvrError(f"unknown Atari starts={starts!r}; use 'original' (FIRE and no-ops at the first step, "
                           "the original's) or 'reset' (inside reset)")
        if int(noop_max) < 0:
            raise PvrError(f"noop_max must be >= 0, got {noop_max}")
        self.noop_max = int(noop_max)
        self.starts = starts
        self.fire = len(meanings) > 1 and meanings[1] == "FIRE"
        self.pending_fire = False
        self.pending_noops = 0
        self.lives = 0  # the count a change is measured against (the original's ``_lives``)
        self._rng: np.random.Generator | None = None

    def reset(self, **kwargs: Any):
        if self.starts == "reset":
            return self._reset_inside(**kwargs)
        obs, info = self.env.reset(**kwargs)
        seed = kwargs.get("seed")
        if seed is not None or self._rng is None:
            # One generator per seeded reset: the episode's no-op count depends on its seed only.
            self._rng = np.random.default_rng(seed)
        self.pending_fire = self.fire
        self.pending_noops = int(self._rng.integers(0, self.noop_max + 1)) if self.noop_max else 0
        self.lives = self.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        if self.starts == "reset":
            return self._step_inside(action)
        if self.pending_fire:
            self.pending_fire = False
            self.env.step(1)  # reward and done dropped, as the original did
        while self.pending_noops > 0:
            self.pending_noops -= 1
            self.env.step(0)
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        if lives != self.lives:
            self.lives = lives
            self.pending_fire = self.fire
        return obs, reward, terminated, truncated, info

    # -- starts="reset": pvr's former starts, kept so older datasets can be reproduced
    def _reset_inside(self, **kwargs: Any):
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
        self.lives = self.unwrapped.ale.lives()
        return obs, info

    def _step_inside(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        if self.fire and lives < self.lives and not (terminated or truncated):
            obs, r2, terminated, truncated, info = self.env.step(1)
            reward = float(reward) + float(r2)
        self.lives = lives
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
               starts: str = "original", max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Build ``Atari-<id>`` (see module docstring). ``image_size=None`` keeps 210×160.

    ``starts``: ``"original"`` (FIRE + no-ops at the first step, FIRE at the step after a
    change of lives) or ``"reset"`` (pvr's former starts inside ``reset``).

    Other keyword arguments (``frameskip``, ``repeat_action_probability``, ...) go to ``gymnasium.make``.
    """
    gym_id, extra = resolve(name)
    kwargs = {**extra, **kwargs}
    try:
        env = gym.make(gym_id, obs_type="rgb", max_episode_steps=max_episode_steps, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    env = AtariStarts(env, noop_max=noop_max, starts=starts)
    if image_size is not None:
        env = Resize(env, image_hw(image_size))
    return InfoWrapper(env, true_state, no_success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "Atari-*",
    make_atari,
    description="Atari 2600 (ale-py ROMs): FIRE + 0..30 no-ops at the first step, FIRE after a lost life",
    examples=["Atari-BreakoutDeterministic-v4", "Atari-PongDeterministic-v4", "Atari-ALE/Breakout-v5",
              "Atari-Pong"],
    image_size="210x160 native (image_size= resizes)",
    probe=_probe,
    default_expert="lookahead",
    spaces="obs (210, 160, 3) uint8; action Discrete(game's minimal set)",
)
