"""The one exception type for mistakes a user can make.

The CLI prints a ``PvrError`` as a single line (no traceback) and exits non-zero,
so its message must say what went wrong *and* what to do about it.
"""


class PvrError(Exception):
    """A user-facing error: unknown name, missing weights or data, malformed input."""
