"""Hand Manipulation Suite: ``HMS-<task>-v0`` (pen, relocate, door, hammer) on gymnasium-robotics' Adroit.

``HMS-pen-v0`` → ``AdroitHandPen-v1`` (and so on; ``HMS-pen`` works too), rendered
from the hand's ``vil_camera`` (the camera the original's visual-imitation setups
used) at ``image_size`` (default 256×256, the original's), with MuJoCo's fast
preset unless ``fast_render=False``. Horizons are the original mj_envs ones:
pen 100 steps, relocate / door / hammer 200.

``true_state`` is Adroit's state observation (hand joints, object pose, goal).
``success`` follows the original's per-episode rules, made per-step: it becomes
True on the step at which the number of steps with the goal achieved (Adroit's
per-step ``info["success"]``, kept as ``info["goal_achieved"]``) exceeds the task's
threshold, and stays True for the rest of the episode — so the episode is a
success iff the last step's ``success`` is True. Thresholds: pen > 20, relocate
> 25 (the original's); door > 25 and hammer > 25: mj_envs' ``evaluate_success``
uses 25 for both, i.e. the door is held open / the nail driven in for more than
25 of the 200 steps, a rule that a grasp-and-release at the goal cannot satisfy
by luck. ``info["goal_achieved_steps"]`` is the running count.

Rewards are gymnasium-robotics' dense v1 rewards; those of relocate, hammer and door
changed in gymnasium-robotics 1.2.1 without a version bump (its import notice, which
pvr silences): compare returns only within one gymnasium-robotics version.
"""
from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs.registry import register_suite
from pvr.envs.render import PixelObservation, apply_fast_preset, image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "HMS"
DEFAULT_IMAGE_SIZE = 256
TASKS = {  # task: (gymnasium-robotics id, horizon, success threshold in goal-achieved steps)
    "pen": ("AdroitHandPen-v1", 100, 20),
    "relocate": ("AdroitHandRelocate-v1", 200, 25),
    "door": ("AdroitHandDoor-v1", 200, 25),
    "hammer": ("AdroitHandHammer-v1", 200, 25),
}


def import_robotics():
    """Import gymnasium-robotics and register its ids.

    Its import prints a notice to stderr that the *Dense-v1* rewards of relocate, hammer
    and door changed in gymnasium-robotics 1.2.1 (documented in this module and the
    README instead): rewards of those tasks are not comparable with 1.2.0's; success
    rules, which pvr scores, are unaffected.
    """
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)
    return gymnasium_robotics


def probe_robotics() -> str | None:
    """Whether mujoco and gymnasium-robotics are installed (found, not imported: cheap and quiet)."""
    import importlib.util

    missing = [m for m in ("mujoco", "gymnasium_robotics") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed; pip install gymnasium-robotics==1.4.2 mujoco==3.17.0"
    return None


_probe = probe_robotics


def parse(name: str) -> str:
    m = re.fullmatch(r"HMS-(?P<task>[a-z]+)(-v0)?", name)
    if not m or m["task"] not in TASKS:
        raise PvrError(f"unknown Hand Manipulation Suite task {name!r}; use one of "
                       f"{', '.join(f'HMS-{t}-v0' for t in TASKS)}")
    return m["task"]


class GoalCounter(gym.Wrapper):
    """Counts the steps of an episode with Adroit's per-step goal achieved (``info["goal_achieved_steps"]``)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.count = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.count = 0
        return obs, {**info, "goal_achieved": False, "goal_achieved_steps": 0}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        achieved = bool(info.get("success", False))
        self.count += achieved
        info = {**info, "goal_achieved": achieved, "goal_achieved_steps": self.count}
        return obs, reward, terminated, truncated, info


def true_state(env: gym.Env) -> np.ndarray:
    return env.get_wrapper_attr("state_obs")


def make_hms(name: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE, fast_render: bool = True,
             camera_name: str | None = "vil_camera", max_episode_steps: int | None = None,
             **kwargs: Any) -> gym.Env:
    """Build ``HMS-<task>-v0`` (see module docstring); other keyword arguments go to ``gymnasium.make``
    (e.g. ``reward_type="sparse"``). ``camera_name=None`` uses Adroit's default free camera."""
    task = parse(name)
    gym_id, horizon, threshold = TASKS[task]
    import_robotics()
    hw = image_hw(image_size)
    if camera_name is not None:
        kwargs["camera_name"] = camera_name
    try:
        env = gym.make(gym_id, render_mode="rgb_array", width=hw[1], height=hw[0],
                       max_episode_steps=max_episode_steps or horizon, **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    if fast_render:
        apply_fast_preset(env)
    env = GoalCounter(PixelObservation(env, hw))

    def success(env, reward, terminated, truncated, info) -> bool:
        return info["goal_achieved_steps"] > threshold

    return InfoWrapper(env, true_state, success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "HMS-*",
    make_hms,
    description="Hand Manipulation Suite (Adroit, gymnasium-robotics) with the original's success rules",
    examples=[f"HMS-{t}-v0" for t in TASKS],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (image_size=)",
    default_expert="mppi",
    probe=_probe,
    spaces="obs (256, 256, 3) uint8; action Box(-1, 1, (24|30|28|26,)) pen|relocate|door|hammer",
)
