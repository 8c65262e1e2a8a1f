"""Parallel evaluation: batched rollouts in vectorised environments, in a worker process.

The names are imported on first use: env processes import :mod:`pvr.evaluation.vector`
through this package and must not pay for torch, which the rollout and the worker need."""
from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "EvalWorker"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from pvr.evaluation.rollout import evaluate

        return evaluate
    if name == "EvalWorker":
        from pvr.evaluation.worker import EvalWorker

        return EvalWorker
    raise AttributeError(f"module 'pvr.evaluation' has no attribute {name!r}")
