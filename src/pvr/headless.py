"""Headless rendering defaults, set before any simulator is imported.

Only variables the user has not set are touched, so ``MUJOCO_GL=osmesa pvr ...``
still wins.
"""
import os

DEFAULTS = {
    "MUJOCO_GL": "egl",
    "PYGLET_HEADLESS": "true",
    "SDL_VIDEODRIVER": "dummy",
    "SDL_AUDIODRIVER": "dummy",
}


def configure() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    preload_triton()


def preload_triton() -> None:
    """Load triton's native library before any EGL/OpenGL context exists.

    With Mesa's EGL (MuJoCo ``MUJOCO_GL=egl``, MiniWorld's headless pyglet), loading
    triton *after* a GL context was created segfaults the process: torch imports
    triton lazily (``torch._dynamo``, pulled in by ``torchvision.models``, timm,
    open_clip), so "build an env, then load an encoder" — evaluation, rendering
    features of a fresh env — would crash. Loaded first, both work. ~0.4 s, once,
    and only where triton is installed (it comes with torch's CUDA wheels).
    """
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is None:
            return
        import triton._C.libtriton  # noqa: F401
    except Exception:  # a broken triton must not stop simulators from working; torch reports it itself
        pass
