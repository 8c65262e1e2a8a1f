"""Named benchmark protocols and the runner behind ``pvr benchmark`` (see :mod:`pvr.benchmark.runner`)."""
from pvr.benchmark.protocol import Protocol, Task, describe_all, load, shipped
from pvr.benchmark.runner import Plan, dry_run, estimate, plan, run

__all__ = ["Plan", "Protocol", "Task", "describe_all", "dry_run", "estimate", "load", "plan", "run", "shipped"]
