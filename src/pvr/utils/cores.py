"""How many CPU cores this process may use (shared by evaluation, the encoder runtimes and pre-training)."""
from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, narrowed by Slurm's ``SLURM_CPUS_PER_TASK``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores)
