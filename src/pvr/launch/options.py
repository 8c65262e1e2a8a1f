"""The submitit flags shared by ``pvr launch`` and ``pvr sweep``, and their translation.

Kept free of any submitit import so that building the CLI parser stays cheap.
Flags are the cluster's vocabulary (partition, time limit, GPUs, CPUs, memory);
``to_parameters`` turns them into ``AutoExecutor.update_parameters`` keywords,
where the Slurm-only ones carry the ``slurm_`` prefix and are ignored elsewhere.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pvr.errors import PvrError

CLUSTERS = ("auto", "local", "slurm", "debug")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("submitit / Slurm options")
    g.add_argument("--cluster", choices=CLUSTERS, default="auto",
                   help="auto: Slurm when sbatch is available, else local processes; local: submitit's "
                        "LocalExecutor (a process per job, for tests and laptops); debug: in this process "
                        "(default: auto)")
    g.add_argument("--submitit_folder", default=None,
                   help="where submitit keeps job pickles and logs (default: <save_path>/submitit)")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--account", default=None, help="Slurm account")
    g.add_argument("--qos", default=None, help="Slurm quality of service")
    g.add_argument("--constraint", default=None, help="Slurm node constraint, e.g. volta32gb")
    g.add_argument("--timeout_min", type=int, default=24 * 60,
                   help="time limit per job in minutes; a job that reaches it checkpoints and is requeued "
                        "(default: 1440)")
    g.add_argument("--gpus_per_node", type=int, default=None,
                   help="GPUs per job (default: 1, or 0 with --disable_cuda)")
    g.add_argument("--cpus_per_task", type=int, default=8,
                   help="CPUs per job (training + the evaluation process) (default: 8)")
    g.add_argument("--mem_gb", type=float, default=None, help="memory per job in GB (default: the cluster's)")
    g.add_argument("--slurm_array_parallelism", type=int, default=None,
                   help="sweep: at most this many array tasks run at once (default: no limit)")
    g.add_argument("--max_num_timeout", type=int, default=3,
                   help="requeue a job at most this many times after reaching its time limit; preemptions "
                        "do not count (default: 3)")
    g.add_argument("--job_name", default=None, help="Slurm job name (default: pvr-<xpid>, or pvr-sweep)")
    g.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, repeatable, e.g. --slurm exclude=node[1-3] --slurm mail_type=END")
    g.add_argument("--wait", action="store_true",
                   help="block until the job(s) finish and report their outcome")


def submitit_folder(ns: argparse.Namespace, save_path: str) -> Path:
    return Path(ns.submitit_folder) if ns.submitit_folder else Path(save_path) / "submitit"


def cluster_name(ns: argparse.Namespace) -> str | None:
    """The ``AutoExecutor(cluster=...)`` value: None lets submitit pick."""
    return None if ns.cluster == "auto" else ns.cluster


def to_parameters(ns: argparse.Namespace, *, disable_cuda: bool, name: str) -> dict:
    """Keywords for ``AutoExecutor.update_parameters``; None means "not set"."""
    gpus = ns.gpus_per_node if ns.gpus_per_node is not None else (0 if disable_cuda else 1)
    params = dict(timeout_min=ns.timeout_min, gpus_per_node=gpus, cpus_per_task=ns.cpus_per_task,
                  mem_gb=ns.mem_gb, name=ns.job_name or name, slurm_partition=ns.partition,
                  slurm_account=ns.account, slurm_qos=ns.qos, slurm_constraint=ns.constraint,
                  slurm_array_parallelism=ns.slurm_array_parallelism)
    extra = {}
    for item in ns.slurm:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PvrError(f"--slurm expects KEY=VALUE (an sbatch option without its dashes), got {item!r}")
        extra[key.strip().replace("-", "_")] = value
    if extra:
        params["slurm_additional_parameters"] = extra
    return {k: v for k, v in params.items() if v is not None}
