"""On Slurm, collecting demonstrations is a job too: the runs of a task wait for it.

Collecting with the MuJoCo planners takes hours for a protocol such as ``paper``;
doing it on the login node (as ``--cluster local`` and ``debug`` do, in this
process) would block there. Under ``--cluster slurm`` each task whose dataset
lacks demonstrations becomes one ``CollectJob``; the task's runs are then
submitted as their own job array with ``--dependency=afterok:<collect job>`` and
``--kill-on-invalid-dep=yes`` (if collecting fails, Slurm cancels the runs
instead of leaving them pending forever), so one ``pvr benchmark`` submits
everything and returns. Collection appends and resumes (``pvr collect``), so a
requeued or resubmitted collect job continues where the last one stopped.
Submitted collect jobs are recorded in ``<submitit folder>/collect_jobs.json``;
a rerun does not submit a second one while the first is queued or running.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import submitit

from pvr.benchmark.protocol import Task
from pvr.errors import PvrError
from pvr.utils.io import write_json

REGISTRY = "collect_jobs.json"


class CollectJob(submitit.helpers.Checkpointable):
    """``CollectJob(cwd, plugins)(task, data_path)`` collects what the task's datasets lack."""

    def __init__(self, cwd: str, plugins: list[str] | None = None):
        self.cwd, self.plugins = cwd, list(plugins or [])

    def __call__(self, task: Task, data_path: str) -> str:
        import pvr.plugins
        from pvr.collect import collect

        os.chdir(self.cwd)
        pvr.plugins.load(self.plugins)
        for env in task.envs:
            collect(env, task.demonstrations, data_path, expert=task.expert, env_kwargs=task.env_kwargs,
                    expert_kwargs=task.expert_kwargs, keep_failures=task.keep_failures, progress=False)
        return task.env

    def checkpoint(self, task: Task, data_path: str) -> submitit.helpers.DelayedSubmission:
        # the store already holds every finished episode; the requeued job appends the rest
        return submitit.helpers.DelayedSubmission(CollectJob(self.cwd, self.plugins), task, data_path)


def _registry(folder: Path) -> dict:
    import json

    try:
        return json.loads((folder / REGISTRY).read_text())
    except (OSError, ValueError):
        return {}


def _queued(entry: dict, folder: Path) -> bool:
    from pvr.launch.submission import _SLURM_ACTIVE

    try:
        return submitit.SlurmJob(folder, str(entry["job_id"])).state.upper() in _SLURM_ACTIVE
    except Exception:  # sacct unavailable or the job unknown: resubmitting is safe (collection resumes)
        return False


def submit_collection(tasks: list[Task], data_path: Path, ns: argparse.Namespace, folder: Path, *,
                      name: str, plugins: list[str] = (), echo=print) -> dict[str, str]:
    """Submit one collect job per task (unless one is queued or running); return task env → job id."""
    from pvr.launch.submission import make_executor

    reg = _registry(folder)
    out, todo = {}, []
    for task in tasks:
        entry = reg.get(task.env)
        if entry and _queued(entry, folder):
            echo(f"collect {task.env}: queued or running as job {entry['job_id']}, not resubmitted")
            out[task.env] = str(entry["job_id"])
        else:
            todo.append(task)
    if todo:
        ex = make_executor(ns, folder, disable_cuda=True, name=f"{name}-collect")
        try:
            with ex.batch():
                jobs = [ex.submit(CollectJob(os.getcwd(), list(plugins)), t, str(data_path)) for t in todo]
        except (OSError, RuntimeError) as e:
            raise PvrError(f"submitting the collect jobs to Slurm failed ({e}); --cluster local collects on "
                           "this machine") from None
        for task, job in zip(todo, jobs):
            reg[task.env] = {"job_id": str(job.job_id), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
            out[task.env] = str(job.job_id)
            echo(f"collect {task.env}: submitted job {job.job_id} (log: {job.paths.stdout})")
        write_json(folder / REGISTRY, reg)
    return out


def after(ns: argparse.Namespace, job_id: str | None) -> argparse.Namespace:
    """``ns`` whose jobs start only once ``job_id`` succeeded (unchanged without a job)."""
    if job_id is None:
        return ns
    extra = [s for s in ns.slurm if not s.split("=", 1)[0].replace("_", "-") in ("dependency", "kill-on-invalid-dep")]
    return argparse.Namespace(**{**vars(ns), "slurm": extra + [f"dependency=afterok:{job_id}",
                                                               "kill-on-invalid-dep=yes"]})


__all__ = ["CollectJob", "after", "submit_collection"]
