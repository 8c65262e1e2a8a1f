"""Demonstration sources: planners and scripted experts, one module each.

    expert = pvr.experts.create(None, env)   # the suite's default (MiniGrid: "bfs")
    expert.reset(obs, info); action = expert.act(obs, info); expert.describe()

A new expert is one module that decorates its class with :func:`register_expert`,
plus one line in ``_EXPERT_MODULES``.
"""
import importlib

from pvr.experts.base import EXPERTS, Expert, available, create, register_expert

_EXPERT_MODULES = ["minigrid_bfs", "shortest_path", "classic", "policy", "mppi", "atari", "metaworld"]
for _module in _EXPERT_MODULES:
    importlib.import_module(f"pvr.experts.{_module}")

__all__ = ["EXPERTS", "Expert", "available", "create", "register_expert"]
