"""Rendering helpers shared by the suites: MuJoCo's fast preset, frame resizing, pixel observations.

The fast preset
---------------
MuJoCo's offscreen renderer on a CPU (Mesa llvmpipe) spends most of its time on
shadows, reflections and 4× multisampling. With ``fast_render=True`` (the default
of every MuJoCo-based suite: Gymnasium MuJoCo, DMC, HMS/Adroit, Kitchen) pvr turns
the ``mjRND_SHADOW`` and ``mjRND_REFLECTION`` scene flags off and sets
``model.vis.quality.offsamples = 0`` (no MSAA). bench/RESULTS.md has the speed-up
(≈10–15× at 224 px). Frames look different (harder edges, no shadows), so
demonstrations and evaluation must use the same setting — they do, because both
build their envs through :func:`pvr.envs.make` with the same defaults; pass
``fast_render=False`` to both to get MuJoCo's default look.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pvr.errors import PvrError


def image_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``84`` → (84, 84); ``(h, w)`` → (h, w); anything else is a PvrError."""
    if isinstance(image_size, (int, np.integer)):
        h = w = int(image_size)
    else:
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise PvrError(f"image_size must be an int or (height, width), got {image_size!r}") from None
    if h < 8 or w < 8:
        raise PvrError(f"image_size must be at least 8 px, got {image_size!r}")
    return h, w


def resize(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 frame to ``hw`` (bilinear, PIL); a no-op when it already fits."""
    if frame.shape[:2] == tuple(hw):
        return np.array(frame, dtype=np.uint8, copy=True)
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    return np.asarray(img.resize((hw[1], hw[0]), Image.BILINEAR), dtype=np.uint8)


def set_fast_model(model: Any) -> None:
    """No multisampling in the offscreen buffer; must run before the render context exists."""
    model.vis.quality.offsamples = 0


def set_fast_scene(scene: Any) -> None:
    """No shadows, no reflections on an ``mujoco.MjvScene``."""
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def mujoco_renderer_of(env: gym.Env) -> Any | None:
    """The Gymnasium ``MujocoRenderer`` of a MuJoCo env (FrankaKitchen keeps it on its robot env), or None."""
    u = env.unwrapped
    renderer = getattr(u, "mujoco_renderer", None)
    if renderer is None and hasattr(u, "robot_env"):
        renderer = getattr(u.robot_env, "mujoco_renderer", None)
    return renderer


def apply_fast_preset(env: gym.Env) -> None:
    """Put a Gymnasium MuJoCo env (``MujocoEnv``/``MujocoRobotEnv``: ``mujoco_renderer``) on the fast preset.

    Called right after construction: sets ``offsamples`` first, then creates the
    ``rgb_array`` viewer (so the render context is built without MSAA) and turns
    its scene's shadows and reflections off. Gymnasium never resets those flags.
    """
    renderer = mujoco_renderer_of(env)
    if renderer is None:
        raise PvrError(f"{type(env.unwrapped).__name__} has no mujoco_renderer; the fast preset is for MuJoCo envs")
    set_fast_model(renderer.model)
    viewer = renderer._get_viewer("rgb_array")
    set_fast_scene(viewer.scn)


class MjFrameRenderer:
    """Offscreen frames of a raw ``mujoco`` model/data pair (used for dm_control physics).

    ``fast=True`` applies the fast preset; ``camera`` is a camera id or name
    (-1 = MuJoCo's free camera).
    """

    def __init__(self, model: Any, hw: tuple[int, int], *, camera: int | str = 0, fast: bool = True):
        import mujoco

        h, w = hw
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), w)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), h)
        if fast:
            set_fast_model(model)
        self._renderer = mujoco.Renderer(model, height=h, width=w)
        if fast:
            set_fast_scene(self._renderer.scene)
        self.camera = camera

    def render(self, data: Any) -> np.ndarray:
        self._renderer.update_scene(data, camera=self.camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class PixelObservation(gym.Wrapper):
    """Replace an env's (state) observation by its rendered RGB frame, resized to ``hw``.

    One job: pixels out. The replaced observation is kept as ``self.state_obs``
    (flattened float32) so a suite can use it as ``true_state``.
    """

    def __init__(self, env: gym.Env, hw: tuple[int, int]):
        super().__init__(env)
        self.hw = tuple(hw)
        self.observation_space = spaces.Box(0, 255, (*self.hw, 3), np.uint8)
        self.state_obs = np.zeros(0, np.float32)
        self._mj = mujoco_renderer_of(env)

    def _pixels(self, obs: Any) -> np.ndarray:
        self.state_obs = flatten_obs(obs)
        if self._mj is not None and self._mj.viewer is not None:
            # Gymnasium renders into whatever OpenGL context is current; with several
            # MuJoCo envs in one process (batched evaluation) that is another env's.
            self._mj.viewer.make_context_current()
        frame = self.env.render()
        if frame is None:
            raise PvrError(f"{self.env} rendered nothing; it must be made with render_mode='rgb_array'")
        return resize(np.asarray(frame), self.hw)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._pixels(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._pixels(obs), reward, terminated, truncated, info

    def close(self):
        free_mujoco_viewers(self._mj)
        super().close()


def free_mujoco_viewers(renderer: Any | None) -> None:
    """Free each viewer's ``MjrContext`` with its own OpenGL context current.

    Otherwise the ``MjrContext`` is freed whenever Python collects it, in whatever
    context is current then — another env's — deleting *that* env's framebuffers by
    id: its frames come out black. Close envs (``env.close()``) before dropping them.
    """
    if renderer is None:
        return
    for viewer in list(getattr(renderer, "_viewers", {}).values()):
        try:
            viewer.make_context_current()
            viewer.con.free()
        except Exception:  # already freed
            pass


def flatten_obs(obs: Any) -> np.ndarray:
    """A (nested) dict / array observation as one flat float32 vector (dict keys in insertion order)."""
    if isinstance(obs, dict):
        parts = [flatten_obs(v) for v in obs.values()]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.asarray(obs, dtype=np.float32).ravel()
