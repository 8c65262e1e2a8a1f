"""Small wrappers shared by all suites, one job each (Gymnasium style).

- :class:`InfoWrapper` puts ``true_state`` and ``success`` into ``info`` at reset
  and at every step; each suite supplies the two functions.
- :class:`FrameStack` stacks the last ``k`` RGB frames on the channel axis.
- :class:`FrameSkip` repeats an action ``k`` times and merges the frames (last/avg/max).
- :class:`EncoderObservation` replaces frames by a frozen encoder's features.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from pvr.errors import PvrError

TrueStateFn = Callable[[gym.Env], np.ndarray]
SuccessFn = Callable[[gym.Env, SupportsFloat, bool, bool, dict], bool]


class InfoWrapper(gym.Wrapper):
    """Adds ``info["true_state"]`` (1-D float32) and ``info["success"]`` (bool).

    ``true_state(env)`` reads the simulator state from the wrapped env (usually its
    ``unwrapped``); ``success(env, reward, terminated, truncated, info)`` decides
    success for one step; it is False at reset. ``suite``/``env_name`` are kept as
    ``pvr_suite``/``pvr_env_name`` so experts can find the suite of an env.
    """

    def __init__(self, env: gym.Env, true_state: TrueStateFn, success: SuccessFn, *, suite: str, env_name: str):
        super().__init__(env)
        self._true_state = true_state
        self._success = success
        self.pvr_suite = suite
        self.pvr_env_name = env_name
        self.pvr_spec: EnvSpec | None = None  # set by pvr.envs.make so env.spec.make() rebuilds this env

    @property
    def spec(self) -> EnvSpec | None:
        return self.pvr_spec if self.pvr_spec is not None else super().spec

    def _state(self) -> np.ndarray:
        return np.asarray(self._true_state(self.env), dtype=np.float32).ravel()

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        info = dict(info)
        info["true_state"] = self._state()
        info["success"] = False
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["true_state"] = self._state()
        info["success"] = bool(self._success(self.env, reward, terminated, truncated, info))
        return obs, reward, terminated, truncated, info


class FrameStack(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Stack the last ``k`` RGB frames on the channel axis: (H, W, 3) → (H, W, 3k).

    ``mode="cat"``: frames oldest → newest, uint8.
    ``mode="diff"``: the ``k-1`` consecutive differences ``f[t-k+i+1] - f[t-k+i]``
    (oldest first) followed by the newest frame itself, as **int16** (differences lie
    in [-255, 255]; the last 3 channels in [0, 255]). int16 keeps them exact at half
    the size of float32.
    At reset the history is padded with copies of the first frame (so in ``diff``
    mode the differences start at zero).
    """

    def __init__(self, env: gym.Env, k: int, mode: str = "cat"):
        gym.utils.RecordConstructorArgs.__init__(self, k=k, mode=mode)
        gym.ObservationWrapper.__init__(self, env)
        if mode not in ("cat", "diff"):
            raise PvrError(f"unknown frame-stack mode {mode!r}; use 'cat' or 'diff'")
        if k < 1:
            raise PvrError(f"frame stack size must be >= 1, got {k}")
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3):
            raise PvrError(f"FrameStack needs (H, W, 3) image observations, got {space}; stack pixels, not embeddings")
        self.k, self.mode = k, mode
        h, w, _ = space.shape
        if mode == "cat":
            self.observation_space = spaces.Box(0, 255, (h, w, 3 * k), np.uint8)
        else:
            low = np.full((h, w, 3 * k), -255, np.int16)
            low[..., -3:] = 0
            self.observation_space = spaces.Box(low, np.full_like(low, 255), dtype=np.int16)
        self._frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._frames.clear()
        for _ in range(self.k):
            self._frames.append(obs)
        return self._stack(), info

    def observation(self, observation):
        self._frames.append(observation)
        return self._stack()

    def _stack(self) -> np.ndarray:
        return stack_frames(list(self._frames), self.mode)


def stack_frames(frames: list[np.ndarray], mode: str = "cat") -> np.ndarray:
    """Stack frames (oldest first) as :class:`FrameStack` does; usable on datasets too."""
    if mode == "cat":
        return np.concatenate(frames, axis=-1)
    f = [np.asarray(x, dtype=np.int16) for x in frames]
    parts = [f[i + 1] - f[i] for i in range(len(f) - 1)] + [f[-1]]
    return np.concatenate(parts, axis=-1)


SKIP_MODES = ("last", "avg", "max")


class FrameSkip(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat each action ``k`` times; rewards are summed, frames merged by ``mode``.

    ``mode="last"``: the last frame; ``"avg"``: the per-pixel mean of the frames seen
    during the ``k`` steps, rounded half up (same dtype); ``"max"``: their per-pixel
    maximum (removes Atari flicker). The repetition stops early when the episode ends,
    and then only the frames seen are merged. ``info`` is the last step's, except
    ``info["success"]``, which is True if any repeated step succeeded.
    """

    def __init__(self, env: gym.Env, k: int, mode: str = "last"):
        gym.utils.RecordConstructorArgs.__init__(self, k=k, mode=mode)
        gym.Wrapper.__init__(self, env)
        if mode not in SKIP_MODES:
            raise PvrError(f"unknown frame-skip mode {mode!r}; use one of {', '.join(SKIP_MODES)}")
        if k < 1:
            raise PvrError(f"frame skip must be >= 1, got {k}")
        self.k, self.mode = int(k), mode

    def step(self, action):
        frames, total, success = [], 0.0, False
        for _ in range(self.k):
            obs, reward, terminated, truncated, info = self.env.step(action)
            frames.append(obs)
            total += float(reward)
            success = success or bool(info.get("success", False))
            if terminated or truncated:
                break
        if "success" in info:
            info = dict(info)
            info["success"] = success
        return merge_frames(frames, self.mode), total, terminated, truncated, info


def merge_frames(frames: list[np.ndarray], mode: str) -> np.ndarray:
    """Merge the frames of one skipped step as :class:`FrameSkip` does."""
    if mode == "last" or len(frames) == 1:
        return frames[-1]
    stack = np.stack(frames)
    if mode == "max":
        return stack.max(axis=0)
    dtype = frames[-1].dtype
    if np.issubdtype(dtype, np.integer):
        n = len(frames)
        total = stack.astype(np.int64).sum(axis=0)
        return ((total * 2 + n) // (2 * n)).astype(dtype)  # round half up, exactly
    return stack.mean(axis=0).astype(dtype)


class EncoderObservation(gym.ObservationWrapper):
    """Observations become a frozen encoder's features: (H, W, 3) uint8 → (dim,) float32.

    ``encoder`` is a :class:`pvr.encoders.Encoder` (uint8 torch (B, H, W, 3) → (B, dim)).
    When ``encoder.input_key == "true_state"`` it is fed ``info["true_state"]``
    instead of the frame (if its ``dim`` is unknown, 0, the env is reset once here to
    read the state's length). Frames with ``3k`` channels — ImageNav's current + goal
    views, (H, W, 6) — are ``k`` RGB views: each is embedded and the features are
    concatenated in channel order (``k * dim``). Put it *outside* :class:`FrameSkip`
    and *inside* any stacking of embeddings. One env, batch 1: for many envs, batch them yourself as
    ``pvr.evaluation`` does.
    """

    def __init__(self, env: gym.Env, encoder, device: str | None = None):
        super().__init__(env)
        self.encoder = encoder
        self.device = device or "cpu"
        self.use_state = getattr(encoder, "input_key", "obs") == "true_state"
        dim = int(getattr(encoder, "dim", 0) or 0)
        if self.use_state and dim == 0:
            _, info = env.reset()
            dim = int(np.asarray(info["true_state"]).size)
        if dim <= 0:
            raise PvrError(f"encoder {getattr(encoder, 'name', encoder)!r} has no known output size (dim)")
        self.views = 1
        if not self.use_state:
            space = env.observation_space
            if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
                    and space.shape[-1] % 3 == 0):
                raise PvrError(f"EncoderObservation needs (H, W, 3k) uint8 frames, got {space}")
            self.views = space.shape[-1] // 3
            if hasattr(encoder, "dim_for"):  # native-size encoders (random<N>): dim follows the frame size
                dim = int(encoder.dim_for(space.shape))
            dim *= self.views
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._info: dict = {}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._info = info
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._info = info
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation):
        import torch

        from pvr.encoders.base import encode

        if self.use_state:
            x = torch.as_tensor(np.asarray(self._info["true_state"], np.float32))[None]
        else:
            x = torch.from_numpy(np.ascontiguousarray(observation))[None]
        with torch.inference_mode():
            out = encode(self.encoder, x.to(self.device))
        return out.reshape(-1).detach().float().cpu().numpy().astype(np.float32, copy=False)
