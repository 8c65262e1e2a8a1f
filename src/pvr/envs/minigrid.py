"""MiniGrid suite: any ``MiniGrid-*`` Gymnasium id, seen through the agent's partial RGB view.

Observations are the original PVR's frames: ``RGBImgPartialObsWrapper`` +
``ImgObsWrapper``, i.e. the agent's egocentric ``agent_view_size`` × ``agent_view_size``
view rendered at ``tile_size`` px per cell (56×56×3 by default). No OpenGL is involved.

``true_state`` is ``concat(agent_pos (2), agent_dir (1), carried object encoding
(type, colour, state) or zeros (3), grid.encode().ravel())`` as float32. The carried
object is included because it is not on the grid: without it two different states
(key carried vs. key gone) would look the same, and the state would not be Markov.

``success`` is True on the step that terminates the episode with positive reward,
i.e. the goal was reached (lava also terminates, with reward 0: a failure).
"""
from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs.registry import register_suite
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "MiniGrid"


def _probe() -> str | None:
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)
    except Exception as exc:
        return f"cannot import minigrid ({exc}); install it with `pip install minigrid==3.2.0`"
    return None


def true_state(env: gym.Env) -> np.ndarray:
    """The Markov state of a MiniGridEnv as a flat float32 vector (see module docstring)."""
    u = env.unwrapped
    carried = u.carrying.encode() if u.carrying is not None else (0, 0, 0)
    return np.concatenate(
        [
            np.asarray(u.agent_pos, dtype=np.float32),
            np.asarray([u.agent_dir], dtype=np.float32),
            np.asarray(carried, dtype=np.float32),
            u.grid.encode().ravel().astype(np.float32),
        ]
    )


def success(env: gym.Env, reward, terminated: bool, truncated: bool, info: dict) -> bool:
    return bool(terminated and float(reward) > 0)


def make_minigrid(
    name: str,
    *,
    tile_size: int = 8,
    max_steps: int | None = None,
    agent_view_size: int | None = None,
    render_mode: str | None = "rgb_array",
    **kwargs: Any,
) -> gym.Env:
    """Build MiniGrid env ``name``: RGB partial view (H, W, 3) uint8, ``true_state``/``success`` in info.

    ``max_steps=None`` keeps the env's own horizon; ``agent_view_size`` (odd, >= 3)
    changes the view and thus the frame size (``agent_view_size * tile_size``).
    Other keyword arguments go to ``gymnasium.make``.
    """
    import minigrid  # noqa: F401
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    if name not in gym.registry:
        ids = sorted(k for k in gym.registry if k.startswith("MiniGrid-"))
        close = difflib.get_close_matches(name, ids, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PvrError(
            f"unknown MiniGrid environment {name!r}.{hint} MiniGrid has {len(ids)} ids "
            f"(e.g. {', '.join(ids[:4])}); list them with `pvr envs`."
        )
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if agent_view_size is not None:
        kwargs["agent_view_size"] = agent_view_size
    try:
        env = gym.make(name, render_mode=render_mode, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc}); supported: tile_size, max_steps, agent_view_size") from None
    env = ImgObsWrapper(RGBImgPartialObsWrapper(env, tile_size=tile_size))
    return InfoWrapper(env, true_state, success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "MiniGrid-*",
    make_minigrid,
    description="MiniGrid grid worlds (any MiniGrid-* id), partial egocentric RGB view",
    examples=[
        "MiniGrid-Empty-5x5-v0",
        "MiniGrid-DoorKey-5x5-v0",
        "MiniGrid-DoorKey-6x6-v0",
        "MiniGrid-DoorKey-8x8-v0",
        "MiniGrid-FourRooms-v0",
        "MiniGrid-LavaGapS5-v0",
    ],
    image_size="56x56 (agent_view_size 7 x tile_size 8)",
    spaces="obs (56, 56, 3) uint8; action Discrete(7) (left, right, forward, pickup, drop, toggle, done)",
    default_expert="bfs",
    probe=_probe,
)
