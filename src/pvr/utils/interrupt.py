"""Ctrl-C and SIGTERM that always stop a command, even on a busy machine.

Python runs a signal handler in the main thread at the next bytecode boundary,
wherever that is. When it is inside a ``__del__`` method or a garbage-collector
or weakref callback (tqdm bars, multiprocessing finalizers and torch hooks run
such code in every training loop), the ``KeyboardInterrupt`` it raises is printed
as "Exception ignored in ..." and swallowed, and the command carries on as if
nothing had been pressed. So the CLI's handler also records the request, and the
long loops (training updates, evaluation waits, embedding and collection batches)
call :func:`check`, which raises again until the command unwinds.

Two safety nets for the cases no loop sees: a second signal exits at once, and
when the first has not ended the process within :data:`GRACE` seconds a watchdog
thread ends it. Either way the last complete checkpoint is still the newest
(checkpoints are written atomically), and child processes die with their parent
(:func:`pvr.utils.procs.die_with_parent`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

#: seconds a stop request may take to unwind before the process is ended (``PVR_STOP_GRACE`` overrides)
GRACE = 20.0
EXIT_CODE = 130

_requested: str | None = None  # the name of the first signal received, once one was


def requested() -> bool:
    return _requested is not None


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested (a no-op unless :func:`install` ran)."""
    if _requested is not None:
        raise KeyboardInterrupt


def _force_exit(why: str) -> None:
    try:
        sys.stderr.write(f"pvr: {why}; exiting now\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CODE)


def _watchdog(grace: float) -> None:
    threading.Event().wait(grace)
    _force_exit(f"still stopping {grace:g} s after {_requested}")


def _handle(signum: int, frame) -> None:
    global _requested
    if _requested is not None:  # pressed again: the user will not wait for the clean-up
        _force_exit(f"{signal.Signals(signum).name} again")
    _requested = signal.Signals(signum).name
    grace = float(os.environ.get("PVR_STOP_GRACE", GRACE))
    threading.Thread(target=_watchdog, args=(grace,), daemon=True, name="pvr-stop-watchdog").start()
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM (Slurm, ``kill``) through :func:`_handle`; call from the main thread."""
    global _requested
    _requested = None
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """:func:`install` for the duration of a command, then the previous handlers again (a caller
    that runs commands in-process, such as a test session, keeps its own Ctrl-C)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install()
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
