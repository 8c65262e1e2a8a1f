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
