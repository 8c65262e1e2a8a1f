"""Franka Kitchen: ``Kitchen-<task>`` on gymnasium-robotics' ``FrankaKitchen-v1``.

Tasks are the env's sub-tasks, with spaces as underscores: ``Kitchen-microwave``,
``Kitchen-kettle``, ``Kitchen-light_switch``, ``Kitchen-slide_cabinet``,
``Kitchen-hinge_cabinet``, ``Kitchen-bottom_burner``, ``Kitchen-top_burner``; the
paper's (R3M-style) names are aliases: ``micro_open``, ``sdoor_open``, ``ldoor_open``,
``knob1_on``, ``light_on``. ``Kitchen-microwave+kettle`` asks for several.
Frames come from the env's default camera at ``image_size`` (default 224×224, the
size R3M's kitchen data uses; the original PVR code had no kitchen), with MuJoCo's
fast preset unless ``fast_render=False``. Horizon 280 steps (the env's default).
``true_state`` is the env's 59-d ``observation`` (robot joints and object state).
``success`` is True once every requested task is completed (the env then terminates).

The mujoco 3.17 fix
-------------------
gymnasium-robotics 1.4.2 asserts ``model.jnt_type[i] in (mjJNT_HINGE, mjJNT_SLIDE)``
in ``mujoco_utils.get_joint_qpos``/``get_joint_qvel``. Since mujoco 3.17 the
``mjtJoint`` enum members no longer compare equal to numpy integers
(``mjJNT_HINGE == np.int32(3)`` is False, ``== 3`` is True), so the test fails for
every joint and ``FrankaKitchen-v1`` cannot be built. :func:`patch_joint_type_compare`
replaces those two functions (module attributes, looked up at call time) with
equivalents that convert the joint type with ``int()`` first — only when the bug is
present, and only those two functions.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs.hms import import_robotics, probe_robotics
from pvr.envs.registry import register_suite
from pvr.envs.render import PixelObservation, apply_fast_preset, image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "Kitchen"
DEFAULT_IMAGE_SIZE = 224
TASKS = ["microwave", "kettle", "light switch", "slide cabinet", "hinge cabinet", "bottom burner", "top burner"]
ALIASES = {"micro_open": "microwave", "sdoor_open": "slide cabinet", "ldoor_open": "hinge cabinet",
           "knob1_on": "bottom burner", "light_on": "light switch"}


def joint_type_bug() -> bool:
    """True when mujoco's joint-type enum does not compare equal to numpy ints (mujoco >= 3.17)."""
    import mujoco

    return not (mujoco.mjtJoint.mjJNT_HINGE == np.int32(int(mujoco.mjtJoint.mjJNT_HINGE)))


def _joint_slice(model, name: str, free: int, ball: int) -> tuple[int, int, bool]:
    import mujoco

    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if joint_id == -1:
        raise ValueError(f"Joint with name '{name}' is not part of the model!")
    jtype = int(model.jnt_type[joint_id])
    ndim = {int(mujoco.mjtJoint.mjJNT_FREE): free, int(mujoco.mjtJoint.mjJNT_BALL): ball}.get(jtype, 1)
    return joint_id, ndim, jtype


def get_joint_qpos(model, data, name):
    """gymnasium_robotics.utils.mujoco_utils.get_joint_qpos with the joint type compared as int."""
    joint_id, ndim, _ = _joint_slice(model, name, 7, 4)
    start = model.jnt_qposadr[joint_id]
    return data.qpos[start:start + ndim].copy()


def get_joint_qvel(model, data, name):
    """gymnasium_robotics.utils.mujoco_utils.get_joint_qvel with the joint type compared as int."""
    joint_id, ndim, _ = _joint_slice(model, name, 6, 3)
    start = model.jnt_dofadr[joint_id]
    return data.qvel[start:start + ndim].copy()


def patch_joint_type_compare() -> bool:
    """Install the two fixed functions if mujoco has the enum bug; returns whether it patched."""
    from gymnasium_robotics.utils import mujoco_utils

    if not joint_type_bug():
        return False
    mujoco_utils.get_joint_qpos = get_joint_qpos
    mujoco_utils.get_joint_qvel = get_joint_qvel
    return True


def parse(name: str) -> list[str]:
    rest = name[len("Kitchen-"):]
    tasks = []
    for part in rest.split("+"):
        task = ALIASES.get(part, part.replace("_", " "))
        if task not in TASKS:
            raise PvrError(f"unknown Franka Kitchen task {part!r} in {name!r}; use "
                           f"{', '.join('Kitchen-' + t.replace(' ', '_') for t in TASKS)} "
                           f"or the aliases {', '.join(ALIASES)}")
        tasks.append(task)
    return tasks


_probe = probe_robotics


def true_state(env: gym.Env) -> np.ndarray:
    return env.get_wrapper_attr("kitchen_state")


class _KitchenState(PixelObservation):
    """PixelObservation that keeps only the dict observation's ``observation`` entry as state."""

    @property
    def kitchen_state(self) -> np.ndarray:
        return self.state_obs

    def _pixels(self, obs: Any) -> np.ndarray:
        frame = super()._pixels(obs["observation"])
        return frame


def make_kitchen(name: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE, fast_render: bool = True,
                 max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Build ``Kitchen-<task>`` (see module docstring); other keyword arguments go to ``gymnasium.make``."""
    tasks = parse(name)
    import_robotics()
    patch_joint_type_compare()
    hw = image_hw(image_size)
    try:
        env = gym.make("FrankaKitchen-v1", tasks_to_complete=tasks, render_mode="rgb_array", width=hw[1],
                       height=hw[0], max_episode_steps=max_episode_steps,
                       disable_env_checker=True, **kwargs)  # its dict obs share arrays; pvr's obs do not
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    if fast_render:
        apply_fast_preset(env)
    env = _KitchenState(env, hw)

    def success(env, reward, terminated, truncated, info) -> bool:
        return set(tasks) <= set(info.get("episode_task_completions", ()))

    return InfoWrapper(env, true_state, success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "Kitchen-*",
    make_kitchen,
    description="Franka Kitchen (gymnasium-robotics FrankaKitchen-v1; mujoco 3.17 joint-type fix applied)",
    examples=["Kitchen-microwave", "Kitchen-slide_cabinet", "Kitchen-hinge_cabinet", "Kitchen-light_switch",
              "Kitchen-bottom_burner", "Kitchen-kettle"],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (image_size=)",
    default_expert="mppi",
    probe=_probe,
    spaces="obs (224, 224, 3) uint8; action Box(-1, 1, (9,)) joint velocities",
)
