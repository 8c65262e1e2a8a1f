"""``pvr pretrain --cluster ...``: one pre-training run as a submitit job, requeued on preemption.

The trainer writes atomic checkpoints under ``<save_path>/<name>/`` and resumes from
the newest one, so on ``SIGUSR2`` (Slurm's time limit or preemption) the job only
resubmits the same call, as ``pvr launch``'s training jobs do.
"""
from __future__ import annotations

import argparse
import os
import subprocess

import submitit

from pvr.errors import PvrError
from pvr.pretrain.config import PretrainConfig


class PretrainJob(submitit.helpers.Checkpointable):
    """``PretrainJob(cwd)(cfg)`` pre-trains ``cfg`` in the submitting directory; returns ``NAME.pth``."""

    def __init__(self, cwd: str | None = None):
        self.cwd = cwd or os.getcwd()

    def __call__(self, cfg: PretrainConfig) -> str:
        from pvr.pretrain.trainer import pretrain

        os.chdir(self.cwd)  # relative --data_path / --save_path keep their meaning
        return str(pretrain(cfg, progress=False))

    def checkpoint(self, cfg: PretrainConfig) -> submitit.helpers.DelayedSubmission:
        # the run directory already holds the last checkpoint; the requeued job resumes from it
        return submitit.helpers.DelayedSubmission(PretrainJob(self.cwd), cfg)


def submit(cfg: PretrainConfig, ns: argparse.Namespace, *, echo=print) -> "submitit.Job":
    """Check ``cfg`` here (a mistake fails before anything is queued), submit it, and wait with ``--wait``
    or ``--cluster debug`` (whose job runs in this process when its result is asked for)."""
    from pvr.launch import options
    from pvr.launch.submission import _last_error, make_executor
    from pvr.pretrain.trainer import check_name, check_run_dir

    cfg.validate()
    check_name(cfg)
    check_run_dir(cfg)
    folder = options.submitit_folder(ns, cfg.save_path)
    ex = make_executor(ns, folder, disable_cuda=cfg.disable_cuda, name=f"pvr-pretrain-{cfg.name}")
    try:
        job = ex.submit(PretrainJob(os.getcwd()), cfg)
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        raise PvrError(f"submitting to {ex.cluster} failed ({e!r}); is Slurm reachable from here? "
                       "--cluster local runs the job on this machine") from None
    echo(f"submitted job {job.job_id}: pre-training {cfg.name} in {cfg.save_path}/{cfg.name}  "
         f"(log: {job.paths.stdout})")
    if ns.wait or ns.cluster == "debug":
        try:
            echo(f"job {job.job_id} finished: {job.result()}")
        except Exception as e:  # submitit wraps the job's traceback
            raise PvrError(f"pre-training job {job.job_id} failed ({_last_error(e)}); "
                           f"read {job.paths.stderr}") from None
    return job
