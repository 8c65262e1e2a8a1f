"""Frames from simulator states, for files that hold states but no images (D4RL, robomimic, Minari).

The environment does the rendering, through one optional hook that a suite
provides on the env returned by ``pvr.envs.make(name)`` (on the env itself or on
any wrapper; it is looked up with ``env.get_wrapper_attr``)::

    def render_state(self, state: dict[str, np.ndarray]) -> np.ndarray:
        '''Restore the simulator to ``state`` (one step) and return the frame the
        env's observations would show there: (H, W, 3) uint8, same camera, size
        and render settings as ``reset``/``step``.'''

``state`` holds every per-step array the file has for that step, under the
file's own names: D4RL ``infos/*`` without the prefix (``qpos``, ``qvel``,
``door_body_pos``, ``obj_pos``, ...) and ``observations``; robomimic ``states``
(MuJoCo's flattened state); Minari ``infos`` keys; and always ``true_state`` (the
state pvr stores). The hook picks what its simulator needs and raises
:class:`pvr.errors.PvrError` naming a missing key. ``env.reset(seed=i)`` is
called before the first step of trajectory ``i`` (model-level randomisation,
e.g. a target position that is not part of the state, should come from the
state dict where the file has it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pvr.errors import PvrError

HOOK = "render_state"


class Renderer:
    """One environment that turns per-step state dicts into frames."""

    def __init__(self, env_name: str | None, env_kwargs: dict | None, source: Path) -> None:
        self.source = source
        if not env_name:
            raise PvrError(f"{source.name} holds states but no frames; re-rendering them needs the environment: "
                           "pass --env NAME (an environment whose suite provides render_state)")
        import pvr.envs

        self.env_name = env_name
        try:
            self.env = pvr.envs.make(env_name, **(env_kwargs or {}))
        except PvrError as e:
            raise PvrError(f"{source.name} holds states but no frames; re-rendering them needs a registered "
                           f"environment whose suite provides render_state, passed with --env: {e}") from None
        try:
            self.fn = self.env.get_wrapper_attr(HOOK)
        except AttributeError:
            self.close()
            raise PvrError(f"{source.name} holds states but no frames, and environment {env_name!r} cannot re-render "
                           f"states: its suite provides no {HOOK}(state) -> frame; convert a file with frames, "
                           "or add the hook to the suite") from None

    def frames(self, ep: dict, index: int) -> np.ndarray:
        sim: dict[str, np.ndarray] = ep.get("sim_state") or {}
        n = len(ep["action"])
        self.env.reset(seed=index)
        out = []
        for t in range(n):
            state = {k: v[t] for k, v in sim.items() if len(v) > t}
            try:
                frame = np.asarray(self.fn(state))
            except PvrError as e:
                raise PvrError(f"{self.source.name}: trajectory {index}: re-rendering step {t} failed: {e}") from None
            except Exception as e:  # a simulator error: say where, keep one line
                raise PvrError(f"{self.source.name}: trajectory {index}: re-rendering step {t} with {self.env_name} "
                               f"failed ({type(e).__name__}: {e}); check that the file's states belong to this "
                               "environment") from None
            if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                raise PvrError(f"{self.env_name}.{HOOK} returned an array of shape {frame.shape} and dtype "
                               f"{frame.dtype}; it must return one (H, W, 3) uint8 frame")
            out.append(frame)
        return np.stack(out)

    def close(self) -> None:
        try:
            self.env.close()
        except Exception:
            pass


def action_check(env_name: str | None, env_kwargs: dict | None) -> Any:
    """A function ``check(ep, index)`` comparing actions with the env's action space, or None.

    None when the name is not a registered environment or its suite cannot run
    here (datasets may name environments this machine does not have)."""
    if not env_name:
        return None
    try:
        import pvr.envs

        pvr.envs.suite_for(env_name)
        env = pvr.envs.make(env_name, **(env_kwargs or {}))
    except PvrError:
        return None
    try:
        space = env.action_space
    finally:
        env.close()
    import gymnasium as gym

    def check(ep: dict, index: int) -> None:
        a = ep["action"]
        if isinstance(space, gym.spaces.Discrete):
            lo, hi = int(space.start), int(space.start + space.n - 1)
            if a.ndim != 1 or a.dtype.kind not in "iu":
                raise PvrError(f"trajectory {index}: key 'action' has shape {tuple(a.shape)} and dtype {a.dtype} but "
                               f"{env_name} has {space.n} discrete actions; store them as (n,) integers")
            if a.min() < lo or a.max() > hi:
                bad = int(a[(a < lo) | (a > hi)][0])
                raise PvrError(f"trajectory {index}: key 'action' holds {bad} but {env_name} has {space.n} discrete "
                               f"actions ({lo}..{hi}); was the data recorded on another environment? pass the right --env")
        elif isinstance(space, gym.spaces.Box):
            if a.ndim != 1 + len(space.shape) or tuple(a.shape[1:]) != tuple(space.shape) or a.dtype.kind != "f":
                raise PvrError(f"trajectory {index}: key 'action' has per-step shape {tuple(a.shape[1:])} "
                               f"({a.dtype}) but {env_name}'s actions are floats of shape {tuple(space.shape)}; "
                               "was the data recorded on another environment? pass the right --env")

    return check
