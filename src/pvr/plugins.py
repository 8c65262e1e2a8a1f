"""User modules that register their own encoders, environments or experts.

Loaded from ``pvr --plugin MODULE`` and from entry points in the group
``pvr.plugins``. The list of what was loaded travels to child processes (the
evaluation worker) so they see the same registries as their parent.
"""
from __future__ import annotations

import importlib
import importlib.metadata

from pvr.errors import PvrError

_loaded: list[str] = []


def load(modules: list[str] | tuple[str, ...] = (), *, entry_points: bool = True) -> None:
    if entry_points:
        for ep in importlib.metadata.entry_points(group="pvr.plugins"):
            ep.load()
    for name in modules:
        if not name or name == "__main__":
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PvrError(f"plugin {name}: cannot import it ({e}); is it on PYTHONPATH or installed?") from None
        if name not in _loaded:
            _loaded.append(name)


def loaded() -> list[str]:
    return list(_loaded)
