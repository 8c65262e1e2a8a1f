"""Child processes that cannot outlive their parent.

``die_with_parent()`` asks Linux to SIGKILL the calling process when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), which covers a parent killed with SIGKILL,
where no ``finally`` runs. Elsewhere it is a no-op and daemon processes plus
explicit ``close()`` in ``finally`` blocks do the job.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # parent already gone
        os._exit(1)
