"""The ``Expert`` interface and the kind → expert registry.

An expert is a demonstration source bound to one live environment::

    expert = pvr.experts.create("bfs", env)    # or create(None, env): the suite's default
    obs, info = env.reset(seed=0); expert.reset(obs, info)
    action = expert.act(obs, info)

Experts may read the simulator through ``env.unwrapped`` (planners do); they
must leave it exactly as they found it.
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from pvr.errors import PvrError
from pvr.registry import Registry


class Expert:
    """Base class: override :meth:`act`; :meth:`reset` and :meth:`describe` as needed."""

    name: str = "expert"

    def __init__(self, env: gym.Env):
        self.env = env

    def seed(self, seed: int) -> None:
        """Called before :meth:`reset` with the episode's seed: experts that sample
        (planners) re-seed their generator here, so an episode depends on its seed
        alone, not on which process ran it or what it ran before."""

    def reset(self, obs: Any, info: dict) -> None:
        """Called once at each episode start, right after ``env.reset``."""

    def act(self, obs: Any, info: dict) -> Any:
        raise NotImplementedError

    def describe(self) -> dict:
        """Name and settings, stored in dataset metadata (JSON-serialisable)."""
        return {"name": self.name}


EXPERTS: Registry[Expert] = Registry("expert", "pvr experts")


def register_expert(kind: str, *, suites: tuple[str, ...], description: str) -> Callable:
    """Decorator: register an ``Expert`` class or factory ``f(env, **kw)`` under ``kind``."""
    return EXPERTS.register(kind, suites=tuple(suites), description=description)


def available(pattern: str | None = None) -> list[str]:
    return EXPERTS.names(pattern)


def create(kind: str | None, env: gym.Env, **kwargs: Any) -> Expert:
    """Build expert ``kind`` for ``env``; ``None`` picks the default expert of the env's suite."""
    from pvr.envs.registry import _SUITES, suite_of

    suite = suite_of(env)
    if kind is not None and kind.startswith("policy:"):  # a saved policy: --expert policy:<path>
        kind, kwargs = "policy", {**kwargs, "path": kind[len("policy:"):]}
    if kind is None:
        info = _SUITES[suite].info if suite in _SUITES else None
        kind = info.default_expert if info else None
        if kind is None:
            raise PvrError(
                f"the {suite} suite has no default expert; pass one of {', '.join(available()) or '(none)'} "
                "explicitly (list them with `pvr experts`)"
            )
    entry = EXPERTS.get(kind)
    supported = entry.meta.get("suites", ())
    if supported and suite not in supported:
        fits = [e.name for e in EXPERTS if suite in e.meta.get("suites", ())]
        raise PvrError(
            f"expert {kind!r} supports the {', '.join(supported)} suite(s), not {suite}; "
            f"for {suite} use one of: {', '.join(fits) or '(none registered)'} (`pvr experts`)"
        )
    try:
        return entry.factory(env, **kwargs)
    except TypeError as exc:
        if kwargs and "argument" in str(exc):
            raise PvrError(f"expert {kind!r}: bad option ({exc}); its options are the keyword arguments of "
                           f"{getattr(entry.factory, '__qualname__', kind)}") from None
        raise
