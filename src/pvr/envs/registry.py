"""The environment-name → suite registry.

Each simulator suite lives in one module (``envs/<suite>.py``) that calls
:func:`register_suite` once at import time. A suite claims a *family* of names
with a shell-style pattern (``MiniGrid-*``) through a :class:`~pvr.registry.Registry`
rule, so names that cannot be enumerated still resolve; its ``examples`` are
registered as plain entries so listings and did-you-mean hints have something
concrete to show.

Suite modules must import their simulator lazily (inside the factory and the
probe), so that ``import pvr.envs`` stays cheap and one broken simulator never
hides the others.
"""
from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from pvr.errors import PvrError
from pvr.envs.wrappers import InfoWrapper
from pvr.registry import Entry, Registry

EnvFactory = Callable[..., gym.Env]


@dataclass
class SuiteInfo:
    """What ``pvr envs`` shows for one suite."""

    name: str
    pattern: str
    description: str
    examples: list[str] = field(default_factory=list)
    image_size: str = ""
    works: bool = True
    reason: str = ""
    default_expert: str | None = None
    spaces: str = ""  # observation / action spaces in words, e.g. "obs (84, 84, 3) uint8; action Box(-1, 1, (6,))"


@dataclass
class _Suite:
    info: SuiteInfo
    factory: EnvFactory  # factory(name, **kwargs) -> gym.Env
    probe: Callable[[], str | None]  # returns None when usable here, else why not


_SUITES: dict[str, _Suite] = {}
ENVS: Registry[gym.Env] = Registry("environment", "pvr envs")


def register_suite(
    name: str,
    pattern: str,
    factory: EnvFactory,
    *,
    description: str,
    examples: list[str],
    image_size: str = "",
    default_expert: str | None = None,
    probe: Callable[[], str | None] | None = None,
    match: Callable[[str], bool] | None = None,
    spaces: str = "",
) -> None:
    """Register a suite: every env name matching ``pattern`` is built by ``factory(name, **kw)``.

    ``match(name)``, when given, replaces the shell-style ``pattern`` test: suites whose
    names have no common prefix (Gymnasium's ``Pendulum-v1``, ``HalfCheetah-v5``) claim
    exactly the ids they can build, so unknown names still get the registry's error.
    """
    if name in _SUITES:
        raise PvrError(f"environment suite {name!r} is registered twice; give the new suite another name")
    info = SuiteInfo(name, pattern, description, list(examples), image_size, default_expert=default_expert, spaces=spaces)
    suite = _Suite(info, factory, probe or (lambda: None))
    _SUITES[name] = suite
    meta = {"suite": name}
    for example in examples:
        ENVS.register(example, _bind(factory, example), **meta)

    def rule(env_name: str) -> Entry[gym.Env] | None:
        if (match(env_name) if match is not None else fnmatch.fnmatchcase(env_name, pattern)):
            return Entry(env_name, _bind(factory, env_name), dict(meta))
        return None

    ENVS.add_rule(rule)


def _bind(factory: EnvFactory, env_name: str) -> Callable[..., gym.Env]:
    def make(**kwargs: Any) -> gym.Env:
        return factory(env_name, **kwargs)

    return make


def _suite(name: str) -> _Suite:
    return _SUITES[name]


def suite_names() -> list[str]:
    return list(_SUITES)


def suites() -> list[SuiteInfo]:
    """All registered suites, with ``works``/``reason`` probed on this machine now."""
    out = []
    for suite in _SUITES.values():
        try:
            reason = suite.probe()
        except Exception as exc:  # a probe must never take the listing down
            reason = f"{type(exc).__name__}: {exc}"
        info = SuiteInfo(**{**suite.info.__dict__, "examples": list(suite.info.examples)})
        info.works, info.reason = reason is None, reason or ""
        out.append(info)
    return out


def available(pattern: str | None = None) -> list[str]:
    """Example env names of every suite, optionally filtered by a shell-style ``pattern``."""
    return ENVS.names(pattern)


def suite_for(name: str) -> SuiteInfo:
    """The suite that owns env ``name`` (PvrError listing suites and examples if none)."""
    entry = _resolve(name)
    return _suite(entry.meta["suite"]).info


def _resolve(name: str) -> Entry[gym.Env]:
    try:
        return ENVS.get(name)
    except PvrError as exc:
        listing = "; ".join(f"{s.info.name} ({s.info.pattern}, e.g. {', '.join(s.info.examples[:2])})" for s in _SUITES.values())
        raise PvrError(f"{exc} Environment suites: {listing}.") from None


def make(name: str, **kwargs: Any) -> gym.Env:
    """Build environment ``name`` with RGB uint8 observations and ``true_state``/``success`` in ``info``."""
    entry = _resolve(name)
    suite = _suite(entry.meta["suite"])
    reason = suite.probe()
    if reason is not None:
        raise PvrError(f"environment {name!r} needs the {suite.info.name} suite, which cannot run here: {reason}")
    env = entry.factory(**kwargs)
    if isinstance(env, InfoWrapper):
        # Lets gymnasium (env_checker, vector envs) rebuild exactly this env from its spec.
        env.pvr_spec = EnvSpec(
            id=re.sub(r"[^\w:.\-/]", "_", name),  # gymnasium's id syntax (no '+'); entry_point keeps the name
            entry_point=functools.partial(make, name),
            kwargs=dict(kwargs),
            order_enforce=False,
            disable_env_checker=True,
        )
    return env


def suite_of(env: gym.Env) -> str:
    """The suite name of an env made by :func:`make` (read from its :class:`InfoWrapper`)."""
    try:
        return env.get_wrapper_attr("pvr_suite")
    except AttributeError:
        spec = getattr(env.unwrapped, "spec", None)
        if spec is not None:
            return suite_for(spec.id).name
        raise PvrError(
            f"cannot tell which suite {env} belongs to; build it with pvr.envs.make(name) "
            "or pass the expert kind explicitly"
        ) from None
