"""Gymnasium suite: classic control and MuJoCo ids (``Pendulum-v1``, ``CartPole-v1``, ``HalfCheetah-v5``).

Observations are the env's ``rgb_array`` rendering at ``image_size`` (default
84×84, the DMC convention; the original rendered Gym envs at their native window
size, 500×500 / 600×400, which no encoder uses unresized). MuJoCo envs render
directly at that size with the fast preset (see :mod:`pvr.envs.render`); classic
control envs draw at their fixed size and are resized (bilinear).

``true_state`` is the env's own observation vector (what a state-based agent sees).
``success`` is defined where reaching a goal ends the episode (MountainCar,
MountainCarContinuous, Acrobot): the step that terminates it; otherwise always False.

Old Gym ids of the original (``HalfCheetah-v3``, ``Hopper-v2``, ...) need
mujoco-py, which is gone: they are built as the newest registered version
(``HalfCheetah-v5``) with a warning, since dynamics details and observation
layouts of versions differ slightly.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs.registry import register_suite
from pvr.envs.render import PixelObservation, apply_fast_preset, image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "Gymnasium"
DEFAULT_IMAGE_SIZE = 84
_PACKAGES = ("gymnasium.envs.classic_control", "gymnasium.envs.mujoco")
_GOAL_TASKS = ("MountainCar", "MountainCarContinuous", "Acrobot")


def _entry(spec) -> str:
    ep = spec.entry_point
    return ep if isinstance(ep, str) else f"{getattr(ep, '__module__', '')}:{getattr(ep, '__name__', '')}"


def _ours(gym_id: str) -> bool:
    spec = gym.registry.get(gym_id)
    return spec is not None and _entry(spec).startswith(_PACKAGES)


def _is_mujoco(gym_id: str) -> bool:
    return _entry(gym.registry[gym_id]).startswith("gymnasium.envs.mujoco")


def resolve(name: str) -> tuple[str, str | None]:
    """The Gymnasium id that builds ``name`` and a note when it is a legacy id, or PvrError."""
    if _ours(name):
        return name, None
    m = re.fullmatch(r"(?P<base>[A-Za-z0-9]+)-v(?P<v>\d+)", name)
    if m:
        versions = [int(k.rsplit("-v", 1)[1]) for k in gym.registry
                    if k.startswith(m["base"] + "-v") and k.rsplit("-v", 1)[1].isdigit() and _ours(k)]
        if versions and int(m["v"]) < max(versions):
            current = f"{m['base']}-v{max(versions)}"
            if _is_mujoco(current):
                return current, (f"{name} (mujoco-py era) is built as {current}: same task, but "
                                 "observation layout and model details may differ slightly")
    raise PvrError(f"unknown Gymnasium classic-control/MuJoCo id {name!r}; e.g. Pendulum-v1, CartPole-v1, "
                   "HalfCheetah-v5 (list: `pvr envs`)")


def match(name: str) -> bool:
    try:
        resolve(name)
    except PvrError:
        return False
    return True


def true_state(env: PixelObservation) -> np.ndarray:
    return env.state_obs


def _success_fn(gym_id: str):
    base = gym_id.rsplit("-v", 1)[0]
    if base in _GOAL_TASKS:
        return lambda env, reward, terminated, truncated, info: bool(terminated)
    return lambda env, reward, terminated, truncated, info: False


def make_gymnasium(
    name: str,
    *,
    image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
    fast_render: bool = True,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Build Gymnasium id ``name`` with RGB observations (see module docstring).

    ``fast_render`` applies to MuJoCo envs only. Other keyword arguments go to ``gymnasium.make``.
    """
    gym_id, note = resolve(name)
    if note:
        warnings.warn(note, stacklevel=3)
    hw = image_hw(image_size)
    if _is_mujoco(gym_id):
        kwargs.setdefault("width", hw[1])
        kwargs.setdefault("height", hw[0])
    try:
        env = gym.make(gym_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    if _is_mujoco(gym_id) and fast_render:
        apply_fast_preset(env)
    env = PixelObservation(env, hw)
    env = InfoWrapper(env, true_state, _success_fn(gym_id), suite=SUITE, env_name=name)
    env.pvr_note = note
    return env


def _probe() -> str | None:
    try:
        import mujoco  # noqa: F401
    except Exception as exc:
        return f"classic control works, MuJoCo ids do not: cannot import mujoco ({exc})"
    return None


register_suite(
    SUITE,
    "<Gymnasium id>",
    make_gymnasium,
    description="Gymnasium classic control and MuJoCo ids; old Gym ids (HalfCheetah-v3) map to current ones",
    examples=["Pendulum-v1", "CartPole-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5",
              "Walker2d-v5", "Ant-v5"],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (image_size=)",
    default_expert="control",
    probe=_probe,
    match=match,
    spaces="obs (H, W, 3) uint8; action: the Gymnasium env's own (Box or Discrete)",
)
