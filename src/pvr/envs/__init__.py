"""Environments: one name scheme, one factory, one module per simulator suite.

    import pvr.envs
    env = pvr.envs.make("MiniGrid-DoorKey-5x5-v0")
    pvr.envs.suites(); pvr.envs.available("MiniGrid-*")

Every env made here returns RGB uint8 (H, W, 3) observations and puts
``true_state`` (1-D float32, fixed length per env) and ``success`` (bool) in
``info`` at reset and at every step. A new suite is one module ``envs/<suite>.py``
that calls :func:`register_suite`, plus one line in ``_SUITE_MODULES``.
"""
from pvr import headless

headless.configure()  # before any simulator is imported

import importlib  # noqa: E402

from pvr.envs.registry import (  # noqa: E402
    ENVS,
    SuiteInfo,
    available,
    make,
    register_suite,
    suite_for,
    suite_of,
    suites,
)
from pvr.envs.wrappers import EncoderObservation, FrameSkip, FrameStack, InfoWrapper, stack_frames  # noqa: E402

_SUITE_MODULES = ["minigrid", "gymnasium_envs", "atari", "dmc", "hms", "kitchen", "imagenav", "habitat", "metaworld"]
for _module in _SUITE_MODULES:
    importlib.import_module(f"pvr.envs.{_module}")

__all__ = [
    "ENVS",
    "EncoderObservation",
    "FrameSkip",
    "FrameStack",
    "InfoWrapper",
    "SuiteInfo",
    "available",
    "make",
    "register_suite",
    "stack_frames",
    "suite_for",
    "suite_of",
    "suites",
]
