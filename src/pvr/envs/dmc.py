"""DeepMind Control suite: ``DMC-<domain>-<task>`` (``DMC-cartpole-swingup``, ``DMC-walker-walk``).

A small Gymnasium env around ``dm_control.suite.load``: actions are clipped to the
action spec (a Box of the spec's bounds), observations are frames from camera
``camera_id`` (0, as dmc2gym) at ``image_size`` (84×84 by default, the usual
DMC-from-pixels size) rendered with the fast preset unless ``fast_render=False``.
``true_state`` is the task's observation dict (positions, velocities, ...)
flattened in its own key order. DMC tasks have no success notion: ``success`` is
always False. The episode ends when dm_control says so: a final step with
discount 0 is ``terminated``, the time limit (1000 steps for most tasks) is
``truncated``. Action repeat is :class:`pvr.envs.FrameSkip`'s job.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pvr.envs.registry import register_suite
from pvr.envs.render import MjFrameRenderer, flatten_obs, image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "DMC"
PREFIX = "DMC-"
DEFAULT_IMAGE_SIZE = 84


def _probe() -> str | None:
    try:
        from dm_control import suite  # noqa: F401
    except Exception as exc:
        return f"cannot import dm_control ({exc}); install dm_control==1.0.50 with mujoco==3.17.0"
    return None


def parse(name: str) -> tuple[str, str]:
    from dm_control import suite

    parts = name[len(PREFIX):].split("-")
    tasks = sorted(f"DMC-{d}-{t}" for d, t in suite.ALL_TASKS)
    if len(parts) != 2 or tuple(parts) not in suite.ALL_TASKS:
        import difflib

        close = difflib.get_close_matches(name, tasks, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PvrError(f"unknown DeepMind Control task {name!r}.{hint} Use DMC-<domain>-<task>, "
                       f"e.g. {', '.join(tasks[:4])} ({len(tasks)} tasks)")
    return parts[0], parts[1]


class DMCEnv(gym.Env):
    """One dm_control task as a Gymnasium env with pixel observations."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
                 camera_id: int | str = 0, fast_render: bool = True, task_kwargs: dict | None = None,
                 environment_kwargs: dict | None = None):
        from dm_control import suite

        self.domain, self.task = domain, task
        self._env = suite.load(domain, task, task_kwargs=dict(task_kwargs or {}),
                               environment_kwargs=environment_kwargs)
        spec = self._env.action_spec()
        self._low = spec.minimum.astype(np.float32)
        self._high = spec.maximum.astype(np.float32)
        self.action_space = spaces.Box(self._low, self._high, dtype=np.float32)
        self.hw = image_hw(image_size)
        self.observation_space = spaces.Box(0, 255, (*self.hw, 3), np.uint8)
        self.render_mode = "rgb_array"
        self._renderer = MjFrameRenderer(self.physics.model.ptr, self.hw, camera=camera_id, fast=fast_render)
        self.state = np.zeros(0, np.float32)
        self._frame: np.ndarray | None = None

    @property
    def physics(self):
        return self._env.physics

    @property
    def dm_env(self):
        """The wrapped ``dm_control.rl.control.Environment`` (for planners and experts)."""
        return self._env

    def _observe(self, time_step) -> np.ndarray:
        self.state = flatten_obs(time_step.observation)
        self._frame = self._renderer.render(self.physics.data.ptr)
        return self._frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # dm_control draws initial states from the task's RandomState.
            self._env.task._random = np.random.RandomState(seed)
        return self._observe(self._env.reset()), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self._low.shape), self._low, self._high)
        ts = self._env.step(action)
        reward = float(ts.reward or 0.0)
        last = ts.last()
        terminated = bool(last and ts.discount == 0)
        truncated = bool(last and not terminated)
        return self._observe(ts), reward, terminated, truncated, {}

    def render(self):
        return self._frame

    def close(self):
        self._renderer.close()
        self._env.close()


def true_state(env: gym.Env) -> np.ndarray:
    return env.unwrapped.state


def no_success(env, reward, terminated, truncated, info) -> bool:
    return False


def make_dmc(name: str, **kwargs: Any) -> gym.Env:
    """Build ``DMC-<domain>-<task>``; keyword arguments: image_size, camera_id, fast_render, task_kwargs,
    environment_kwargs (e.g. ``task_kwargs={"time_limit": 5, "random": 0}``)."""
    domain, task = parse(name)
    try:
        env = DMCEnv(domain, task, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc}); supported: image_size, camera_id, "
                       "fast_render, task_kwargs, environment_kwargs") from None
    return InfoWrapper(env, true_state, no_success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "DMC-*",
    make_dmc,
    description="DeepMind Control suite (dm_control) from pixels, actions clipped to the spec",
    examples=["DMC-cartpole-swingup", "DMC-walker-walk", "DMC-walker-stand", "DMC-cheetah-run",
              "DMC-finger-spin", "DMC-reacher-easy"],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (image_size=)",
    default_expert="mppi",
    probe=_probe,
    spaces="obs (84, 84, 3) uint8; action Box(spec min, spec max, (a,), float32)",
)
