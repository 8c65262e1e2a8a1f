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


def thread_lock_for_progress_bars() -> None:
    """Give tqdm a threading lock in a spawned helper process.

    A spawned child inherits the "spawn" start method, so tqdm's default
    ``multiprocessing.RLock`` there is a named semaphore registered with the shared
    resource tracker; when the parent kills the child (Ctrl-C, SIGTERM, errors) the
    child never unregisters it and the tracker warns about "leaked semaphore
    objects" at exit. These children draw their bars from one process: a thread lock
    is all tqdm needs.
    """
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
