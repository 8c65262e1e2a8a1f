"""Running training elsewhere: Slurm through submitit (``pvr launch``, ``pvr sweep``).

- :mod:`pvr.launch.options` — the submitit flags and their translation (no submitit import).
- :mod:`pvr.launch.job` — :class:`TrainJob`, the checkpointable callable a job runs.
- :mod:`pvr.launch.submission` — checks, skipping of finished/queued runs, submission, waiting.

The heavy parts (submitit, torch) load on first use, so that building the CLI
parser stays fast.
"""
from __future__ import annotations

from pvr.launch.options import add_executor_arguments

__all__ = ["add_executor_arguments", "TrainJob", "launch", "sweep", "grid", "submit", "wait"]


def __getattr__(name: str):
    if name == "TrainJob":
        from pvr.launch.job import TrainJob

        return TrainJob
    if name in ("launch", "sweep", "grid", "submit", "wait"):
        from pvr.launch import submission

        return getattr(submission, name)
    raise AttributeError(f"module 'pvr.launch' has no attribute {name!r}")
