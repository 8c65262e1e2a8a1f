"""A small name → factory registry shared by encoders, environments and experts.

Shaped after timm's model registry: entries carry metadata for listings and
error messages, ``available(pattern)`` filters with shell-style wildcards, and an
unknown name is a :class:`PvrError` that lists close matches.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from pvr.errors import PvrError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names mapped to factories, plus optional prefix rules for families of names.

    A *rule* resolves names that cannot be enumerated (``random7``,
    ``MiniGrid-Empty-16x16-v0``): it receives the name and returns an
    :class:`Entry` or ``None``.
    """

    def __init__(self, kind: str, list_command: str):
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[T]] = {}
        self._rules: list[Callable[[str], Entry[T] | None]] = []

    def register(self, name: str, factory: Callable[..., T] | None = None, *, overwrite: bool = False, **meta):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and not overwrite:
                raise PvrError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._entries[name] = Entry(name, fn, dict(meta))
            return fn

        return deco(factory) if factory is not None else deco

    def add_rule(self, rule: Callable[[str], Entry[T] | None]) -> None:
        self._rules.append(rule)

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def __iter__(self) -> Iterator[Entry[T]]:
        return (self._entries[n] for n in sorted(self._entries))

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except PvrError:
            return False
        return True

    def get(self, name: str) -> Entry[T]:
        if name in self._entries:
            return self._entries[name]
        for rule in self._rules:
            entry = rule(name)
            if entry is not None:
                return entry
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PvrError(
            f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}"
            f" (details: `{self.list_command}`)."
        )
