"""MetaWorld: ``MetaWorld-<task>-v3`` (``MetaWorld-assembly-v3``) on the ``metaworld`` package (3.1.1).

Every task of ``metaworld.ALL_V3_ENVIRONMENTS`` resolves (50 tasks); CortexBench's
five are ``assembly``, ``bin-picking``, ``button-press-topdown``, ``drawer-open`` and
``hammer``. CortexBench's names are accepted too: ``MetaWorld-assembly-v2`` and
``MetaWorld-assembly-v2-goal-observable`` build the same v3 task (metaworld 3 only
ships v3; its tasks are the v2 ones ported to the current MuJoCo, see
docs/FIDELITY.md).

CortexBench's settings (``cortexbench/mujoco_vc`` in facebookresearch/eai-vc):

- goal-observable tasks (the goal position is part of the 39-d observation) with a
  new object/goal placement at every reset (``_freeze_rand_vec = False``);
- a 500-step horizon (the env reports ``truncated`` at step 500 and refuses to step
  further; ``max_episode_steps=`` changes it);
- 256×256 RGB frames from camera ``top_cap2``, a camera CortexBench's metaworld fork
  adds to the Sawyer base scene; pvr adds the same camera to the compiled model
  through ``mujoco.MjSpec`` (no metaworld file is changed). ``camera_name=`` picks
  another of the model's cameras (``corner``, ``corner2``, ``topview``, ...);
- ``true_state`` is the full observation; ``info["proprio"]`` is its first 4 values
  (end-effector xyz and gripper opening), CortexBench's proprioception;
- success is the **last** step's ``info["success"]`` (CortexBench counts an episode as
  a success when the final step succeeds): pvr's per-step ``success`` is True only on
  the episode's final step (truncation at the horizon) and only if metaworld's
  success holds there; metaworld's per-step value is kept as ``info["goal_achieved"]``.

Seeding: metaworld's ``reset`` ignores its ``seed``; here ``reset(seed=s)`` seeds the
env's generator (``env.seed(s)``) first and task placements are drawn from it
(``seeded_rand_vec``), so an episode depends on its seed alone.

Frames use pvr's fast MuJoCo preset (no shadows, reflections or MSAA) unless
``fast_render=False``.

The mujoco 3.17 fix
-------------------
metaworld 3.1.1 targets mujoco 3.3.0, where a weld constraint has 11 parameters
(``mujoco.mjNEQDATA == 11``); ``SawyerMocapBase.reset_mocap_welds`` writes an 11-value
array into each ``model.eq_data`` row. mujoco 3.17 has ``mjNEQDATA == 12`` and the
assignment fails with a broadcast error, so no env can be built.
:func:`patch_mocap_welds` replaces that one method with one that writes the same 11
values into the first 11 entries of the row (the 12th keeps the model's value) — only
when ``mjNEQDATA != 11``.
"""
from __future__ import annotations

import difflib
import functools
import re
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs.registry import register_suite
from pvr.envs.render import PixelObservation, apply_fast_preset, image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "MetaWorld"
PREFIX = "MetaWorld-"
DEFAULT_IMAGE_SIZE = 256
HORIZON = 500
CAMERA = "top_cap2"
# CortexBench's camera (its metaworld fork, xyz_base.xml): looks at the table from above the robot.
CAMERA_SPEC = {"pos": (0.0, 0.9, 0.6), "target": "tablelink"}
PROPRIO_DIM = 4
CORTEXBENCH_TASKS = ["assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer"]
WELD_DATA = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0)  # metaworld's mocap weld values
ORIGINAL: dict[str, Any] = {}  # metaworld's functions that patch_mocap_welds replaced
INSTALL_HINT = "run scripts/bootstrap.sh, or: pip install --no-deps metaworld==3.1.1"


def _probe() -> str | None:
    try:
        import metaworld  # noqa: F401
    except Exception as exc:
        return f"cannot import metaworld ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    return None


def reset_mocap_welds(self) -> None:
    """metaworld's ``SawyerMocapBase.reset_mocap_welds``, writing only the 11 weld values it knows."""
    import mujoco

    model = self.model
    if model.nmocap > 0 and model.eq_data is not None:
        for i in range(model.eq_data.shape[0]):
            if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                model.eq_data[i, :len(WELD_DATA)] = WELD_DATA


def patch_mocap_welds() -> bool:
    """Install :func:`reset_mocap_welds` if mujoco's weld data is not 11 long; returns whether it patched."""
    import mujoco
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    if mujoco.mjNEQDATA == len(WELD_DATA):
        return False
    if SawyerMocapBase.reset_mocap_welds is not reset_mocap_welds:
        ORIGINAL["reset_mocap_welds"] = SawyerMocapBase.reset_mocap_welds  # kept for the tests
        SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    return True


def tasks() -> list[str]:
    """All MetaWorld task names (without version), as metaworld lists them."""
    import metaworld

    return [name[:-len("-v3")] for name in metaworld.ALL_V3_ENVIRONMENTS]


def parse(name: str) -> str:
    """``MetaWorld-<task>[-v2|-v3][-goal-observable]`` → metaworld's id ``<task>-v3``."""
    m = re.fullmatch(r"MetaWorld-(?P<task>[a-z0-9-]+?)(-v[23])?(-goal-observable)?", name)
    known = tasks()
    if not m or m["task"] not in known:
        names = [f"{PREFIX}{t}-v3" for t in known]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PvrError(f"unknown MetaWorld task {name!r}.{hint} Use MetaWorld-<task>-v3 with one of the "
                       f"{len(known)} tasks of metaworld.ALL_V3_ENVIRONMENTS, e.g. "
                       f"{', '.join(f'{PREFIX}{t}-v3' for t in CORTEXBENCH_TASKS)}")
    return f"{m['task']}-v3"


def add_camera(spec: Any) -> None:
    """Add CortexBench's ``top_cap2`` camera to a metaworld scene's ``mujoco.MjSpec`` world body."""
    import mujoco

    spec.worldbody.add_camera(name=CAMERA, mode=mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY,
                              targetbody=CAMERA_SPEC["target"], pos=list(CAMERA_SPEC["pos"]))


@functools.lru_cache(maxsize=None)
def env_class(task_id: str) -> type:
    """metaworld's env class for ``task_id`` whose model also has the ``top_cap2`` camera."""
    import metaworld
    import mujoco

    base = metaworld.ALL_V3_ENVIRONMENTS[task_id]

    def _initialize_simulation(self):
        # As gymnasium's MujocoEnv, but compiled from an MjSpec with the extra camera.
        spec = mujoco.MjSpec.from_file(self.fullpath)
        add_camera(spec)
        model = spec.compile()
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    return type(f"{base.__name__}TopCap2", (base,), {"_initialize_simulation": _initialize_simulation})


def camera_names(model: Any) -> list[str]:
    import mujoco

    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def make_goal_observable(env: Any) -> None:
    """Goal in the observation, a new placement per reset drawn from ``env.np_random`` (CortexBench's setup)."""
    env._partially_observable = False
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.__dict__.pop("sawyer_observation_space", None)  # cached_property: recomputed with the goal bounds
    env._set_task_called = True


class MetaWorldObs(PixelObservation):
    """Frames out; the last float64 observation kept (``metaworld_obs``) for scripted policies.

    Also: seeds metaworld's generator at ``reset(seed=...)``, adds ``info["proprio"]``
    and ``info["goal_achieved"]`` (metaworld's per-step success).
    """

    def __init__(self, env: gym.Env, hw: tuple[int, int], task_id: str):
        super().__init__(env, hw)
        self.metaworld_task = task_id
        self.metaworld_obs = np.zeros(0, np.float64)

    def _out(self, obs: np.ndarray, info: dict) -> tuple[np.ndarray, dict]:
        self.metaworld_obs = np.array(obs, dtype=np.float64, copy=True)
        info = dict(info)
        info["proprio"] = self.metaworld_obs[:PROPRIO_DIM].astype(np.float32)
        info["goal_achieved"] = bool(info.get("success", False))
        return self._pixels(obs), info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        obs, info = self.env.reset(seed=seed, options=options)
        return self._out(obs, info)

    def step(self, action):
        u = self.env.unwrapped
        if u.curr_path_length >= u.max_path_length:
            raise PvrError(f"MetaWorld episodes end after {u.max_path_length} steps (truncated=True); reset the env")
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        frame, info = self._out(obs, info)
        return frame, float(reward), terminated, truncated, info


def true_state(env: gym.Env) -> np.ndarray:
    return env.get_wrapper_attr("metaworld_obs")


def last_step_success(env, reward, terminated, truncated, info) -> bool:
    """CortexBench's rule: the episode succeeds iff metaworld's success holds on its final step."""
    return bool((terminated or truncated) and info.get("goal_achieved", False))


def make_metaworld(name: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE, fast_render: bool = True,
                   camera_name: str = CAMERA, max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Build ``MetaWorld-<task>-v3`` (see module docstring); other keyword arguments go to the
    metaworld env class (e.g. ``reward_function_version="v1"``)."""
    task_id = parse(name)
    patch_mocap_welds()
    hw = image_hw(image_size)
    horizon = HORIZON if max_episode_steps is None else int(max_episode_steps)
    if horizon < 1:
        raise PvrError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    try:
        env = env_class(task_id)(render_mode="rgb_array", camera_name=camera_name, width=hw[1], height=hw[0],
                                 **kwargs)
    except TypeError as exc:
        raise PvrError(f"{name}: bad keyword argument ({exc})") from None
    cameras = camera_names(env.model)
    if camera_name not in cameras:  # gymnasium would silently render its free camera instead
        env.close()
        raise PvrError(f"{name}: no camera {camera_name!r} in the model; use {CAMERA!r} (CortexBench's) "
                       f"or one of {', '.join(c for c in cameras if c != CAMERA)}")
    make_goal_observable(env)
    env.max_path_length = horizon
    if fast_render:
        apply_fast_preset(env)
    wrapped = MetaWorldObs(env, hw, task_id)
    return InfoWrapper(wrapped, true_state, last_step_success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "MetaWorld-*",
    make_metaworld,
    description="MetaWorld v3 tasks (metaworld 3.1.1) with CortexBench's settings: goal observable, camera "
                "top_cap2, 500 steps, last-step success",
    examples=[f"{PREFIX}{t}-v3" for t in CORTEXBENCH_TASKS],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (image_size=)",
    default_expert="metaworld_scripted",
    probe=_probe,
    spaces="obs (256, 256, 3) uint8; action Box(-1, 1, (4,)) end-effector dx, dy, dz, gripper",
)
