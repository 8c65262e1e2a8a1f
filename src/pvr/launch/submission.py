"""``pvr launch`` (one run) and ``pvr sweep`` (a grid as one job array) through submitit.

Both check everything they can before queueing (config, encoder names, datasets,
a run directory holding other settings), skip runs that are finished, and skip
runs still queued or running from an earlier submission, which they remember in
``<submitit_folder>/submitted.json``. The jobs themselves are :class:`TrainJob`,
so preemption and time limits lead to a requeue that resumes the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import time
from pathlib import Path

import submitit

from pvr.bc.config import TrainConfig
from pvr.bc.trainer import DONE_MARKER, check_run_dir
from pvr.errors import PvrError
from pvr.launch import options
from pvr.launch.job import TrainJob
from pvr.utils.io import write_json

REGISTRY = "submitted.json"
_SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                 "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING"}


# -- the grid -----------------------------------------------------------------------
def _values(flag: str, text: str) -> list[str]:
    vals = [v.strip() for v in str(text).split(",") if v.strip()]
    if not vals:
        raise PvrError(f"--{flag} needs at least one value (comma-separated)")
    if len(set(vals)) != len(vals):
        raise PvrError(f"--{flag} lists a value twice: {text!r}")
    return vals


def _seeds(text: str) -> list[int]:
    out = []
    for v in _values("seed", text):
        lo, dash, hi = v.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if dash and lo else [int(v)]
        except ValueError:
            raise PvrError(f"--seed expects integers or ranges, e.g. 1,2,3 or 1-5; got {v!r}") from None
    return out


def grid(base: TrainConfig, embedding_names: str, envs: str, seeds: str) -> list[TrainConfig]:
    """encoders × environments × seeds. In ``envs`` commas separate grid values and ``+``
    joins environments trained together: ``"A+B,C"`` is two runs, one on A and B jointly."""
    cfgs = []
    for env in _values("env", envs):
        joint = ",".join(e.strip() for e in env.split("+") if e.strip())
        for name in _values("embedding_name", embedding_names):
            for seed in _seeds(seeds):
                cfgs.append(dataclasses.replace(base, env=joint, embedding_name=name, seed=seed, xpid=None))
    return cfgs


# -- checks before queueing ------------------------------------------------------------
def _check(cfgs: list[TrainConfig], *, check_data: bool = True) -> list[tuple[TrainConfig, Path, bool]]:
    """Validate every run up front (one bad name should not surface hours later in a job log).

    ``check_data=False``: the datasets need not exist yet (a job the runs depend on collects them).
    """
    from pvr.embed import open_dataset
    from pvr.encoders import ENCODERS

    for name in dict.fromkeys(c.embedding_name for c in cfgs):
        ENCODERS.get(name)
    checked, conflicts, seen = [], [], set()
    for cfg in cfgs:
        cfg.validate()
        try:
            run_dir, finished = check_run_dir(cfg)
        except PvrError as e:
            conflicts.append(str(e))
            continue
        checked.append((cfg, run_dir, finished))
        if not finished and check_data:
            seen.update((cfg.data_path, env) for env in cfg.envs)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise PvrError(conflicts[0] + more)
    for data_path, env in sorted(seen):
        with open_dataset(data_path, env):
            pass
    return checked


# -- what was submitted before ---------------------------------------------------------
def _load_registry(folder: Path) -> dict:
    path = folder / REGISTRY
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a finished child of this very process lingers as a zombie until reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _active(entry: dict, folder: Path, run_dir: Path) -> bool:
    """Whether the job recorded for a run is still queued or running."""
    if (run_dir / DONE_MARKER).exists():
        return False
    cluster, job_id = entry.get("cluster"), str(entry.get("job_id", ""))
    if cluster == "local":
        done = submitit.core.utils.JobPaths(folder, job_id).result_pickle.exists()
        return job_id.isdigit() and not done and _pid_alive(int(job_id))
    if cluster == "slurm":
        try:
            return submitit.SlurmJob(folder, job_id).state.upper() in _SLURM_ACTIVE
        except Exception:  # sacct unavailable: better to resubmit than to hang on to a lost job
            return False
    return False


def _record(folder: Path, jobs: list[tuple[TrainConfig, "submitit.Job"]], cluster: str) -> None:
    reg = _load_registry(folder)
    for cfg, job in jobs:
        reg[cfg.run_id] = {"job_id": str(job.job_id), "cluster": cluster, "save_path": cfg.save_path,
                           "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(folder / REGISTRY, reg)


# -- submission -----------------------------------------------------------------------
def make_executor(ns: argparse.Namespace, folder: Path, *, disable_cuda: bool,
                  name: str) -> submitit.AutoExecutor:
    n = ns.max_num_timeout
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=options.cluster_name(ns),
                                   slurm_max_num_timeout=n, local_max_num_timeout=n)
        ex.update_parameters(**options.to_parameters(ns, disable_cuda=disable_cuda, name=name))
    except (RuntimeError, ValueError, NameError) as e:
        raise PvrError(f"cannot set up submitit ({e}); check --cluster and the Slurm options") from None
    return ex


def submit(cfgs: list[TrainConfig], ns: argparse.Namespace, *, name: str, plugins: list[str] = (),
           echo=print, check_data: bool = True) -> list[tuple[TrainConfig, "submitit.Job"]]:
    """Submit the runs of ``cfgs`` that are neither finished nor queued/running; return (cfg, job) pairs.

    Several runs go out as ONE job array. Raises PvrError before anything is queued
    if any run is misconfigured.
    """
    checked = _check(cfgs, check_data=check_data)
    saves = {c.save_path for c in cfgs}
    folder = options.submitit_folder(ns, cfgs[0].save_path)
    if len(saves) > 1 and not ns.submitit_folder:
        raise PvrError("runs with different --save_path need an explicit --submitit_folder")
    registry = _load_registry(folder)
    todo, finished, active = [], [], []
    for cfg, run_dir, done in checked:
        if done:
            finished.append(cfg)
        elif cfg.run_id in registry and _active(registry[cfg.run_id], folder, run_dir):
            active.append((cfg, registry[cfg.run_id]["job_id"]))
        else:
            todo.append(cfg)
    for cfg in finished:
        echo(f"finished, skipped: {Path(cfg.save_path) / cfg.run_id}")
    for cfg, job_id in active:
        echo(f"queued or running as job {job_id}, skipped: {Path(cfg.save_path) / cfg.run_id}")
    if not todo:
        echo(f"nothing to submit: {len(finished)} run(s) finished, {len(active)} queued or running")
        return []

    ex = make_executor(ns, folder, disable_cuda=all(c.disable_cuda for c in todo), name=name)
    job_fn = TrainJob(list(plugins), os.getcwd())
    try:
        if len(todo) == 1:
            jobs = [ex.submit(job_fn, todo[0])]
        else:
            with ex.batch():  # one job array on Slurm
                jobs = [ex.submit(job_fn, cfg) for cfg in todo]
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        raise PvrError(f"submitting to {ex.cluster} failed ({str(e).strip().splitlines()[-1] if str(e).strip() else e!r}); "
                       "is Slurm reachable from here? --cluster local runs the jobs on this machine") from None
    pairs = list(zip(todo, jobs))
    _record(folder, pairs, ex.cluster)
    for cfg, job in pairs:
        echo(f"submitted job {job.job_id}: {Path(cfg.save_path) / cfg.run_id}  (log: {job.paths.stdout})")
    echo(f"{len(pairs)} job(s) submitted to {ex.cluster}"
         + (f"; {len(finished)} finished run(s) skipped" if finished else "")
         + (f"; {len(active)} queued or running run(s) skipped" if active else ""))
    return pairs


def _last_error(e: Exception) -> str:
    """The ``SomeError: message`` line of the job's traceback that submitit wraps in ``e``."""
    lines = [line.strip() for line in str(e).splitlines()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return errors[-1] if errors else next((line for line in lines if line), repr(e))


def wait(pairs: list[tuple[TrainConfig, "submitit.Job"]], echo=print) -> None:
    """Block until every job ends; raise PvrError naming the failed ones and their logs."""
    failed = []
    for cfg, job in pairs:
        try:
            run_dir = job.result()
            echo(f"job {job.job_id} finished: {run_dir}")
        except Exception as e:  # FailedJobError / UncompletedJobError carry the job's traceback
            failed.append(f"{cfg.run_id} (job {job.job_id}, log {job.paths.stderr}): {_last_error(e)}")
    if failed:
        raise PvrError(f"{len(failed)} of {len(pairs)} job(s) failed; read their logs. First: {failed[0]}")


# -- the two commands -------------------------------------------------------------------
def launch(cfg: TrainConfig, ns: argparse.Namespace, *, plugins: list[str] = (), echo=print):
    """Submit one run; return its job, or None when nothing was submitted."""
    pairs = submit([cfg], ns, name=f"pvr-{cfg.run_id}", plugins=plugins, echo=echo)
    if pairs and (ns.wait or ns.cluster == "debug"):  # debug jobs run in this process, on result()
        wait(pairs, echo)
    return pairs[0][1] if pairs else None


def sweep(base: TrainConfig, embedding_names: str, envs: str, seeds: str, ns: argparse.Namespace, *,
          plugins: list[str] = (), echo=print) -> list:
    """Submit the grid as one job array; return the submitted jobs (empty when nothing was left)."""
    if base.xpid:
        raise PvrError("pvr sweep names each run <env>-<embedding_name>-s<seed>; drop --xpid "
                       "(use --save_path to keep sweeps apart)")
    pairs = submit(grid(base, embedding_names, envs, seeds), ns, name="pvr-sweep", plugins=plugins, echo=echo)
    if pairs and (ns.wait or ns.cluster == "debug"):  # debug jobs run in this process, on result()
        wait(pairs, echo)
    return [job for _, job in pairs]
