"""The original project's exchange format: a pickle of a dict of lists of arrays.

``{"obs": [ (n,h,w,3) uint8, ...], "action": [...], "done": [...], "true_state": [...]}``
with one array per trajectory. Plain ``pickle.load`` would run whatever code the
file names, so loading goes through :class:`SafeUnpickler`, which resolves only
the handful of numpy globals an array needs and refuses everything else.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pvr.data.validate import FRAME_KEYS, expected_from, validate_episode
from pvr.errors import PvrError
from pvr.utils.io import atomic_path

LEGACY_KEYS = ("obs", "action", "done", "true_state")
PICKLE_SUFFIXES = (".pickle", ".pkl")


class _ObjectDtype(Exception):
    """An object dtype met while unpickling (could carry arbitrary objects)."""


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise _ObjectDtype()
    return dt


# (module, name) -> the object to hand back. numpy 1.x wrote ``numpy.core.*``,
# numpy 2.x writes ``numpy._core.*``; both map to the live numpy implementation.
def _allowed() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray, numeric  # numpy >= 2

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,  # protocol-2 pickles store bytes this way
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return table


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"unexpected bytes encoding {encoding!r}")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild builtins containers and numpy arrays."""

    def __init__(self, file: Any, path: str) -> None:
        super().__init__(file)
        self._path = path
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise PvrError(
                f"refusing to load {self._path}: it references {module}.{name}, which could run code when "
                "unpickled; only plain dicts/lists of numpy arrays are accepted"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise PvrError(f"refusing to load {self._path}: it uses persistent ids; only plain dicts/lists of numpy arrays are accepted")


def _check_no_objects(obj: Any, path: str, depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise PvrError(f"refusing to load {path}: it holds an object-dtype numpy array, which can smuggle arbitrary "
                       "objects; re-save the arrays with numeric dtypes")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_no_objects(v, path, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_no_objects(v, path, depth + 1)


def _raw_load(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, str(path)).load()
    except PvrError:
        raise
    except _ObjectDtype:
        raise PvrError(f"refusing to load {path}: it holds an object-dtype numpy array, which can smuggle arbitrary "
                       "objects; re-save the arrays with numeric dtypes") from None
    except FileNotFoundError:
        raise PvrError(f"no such file {path}; check the path") from None
    except IsADirectoryError:
        raise PvrError(f"{path} is a directory, not a pickle file; open a .zarr store with pvr.data.open") from None
    except Exception as e:  # truncated or garbage file
        raise PvrError(f"cannot read {path} as a pickle ({type(e).__name__}: {e}); the file is damaged or not a pickle, "
                       "re-export it") from None


def check_legacy_dict(data: Any, source: str) -> dict[str, list[np.ndarray]]:
    """Validate the dict-of-lists layout and every trajectory; return it normalised (store dtypes)."""
    if not isinstance(data, dict):
        raise PvrError(f"{source}: holds a {type(data).__name__}, not a dict with keys {', '.join(LEGACY_KEYS)}; "
                       "re-export it in the legacy format")
    for key in LEGACY_KEYS:
        if key not in data:
            raise PvrError(f"{source}: key {key!r} is missing; a legacy pickle needs keys {', '.join(LEGACY_KEYS)}, "
                           "each a list with one numpy array per trajectory")
    keys = [k for k in FRAME_KEYS if k in data and data[k] is not None]
    for key in keys:
        if not isinstance(data[key], (list, tuple)):
            raise PvrError(f"{source}: key {key!r} is a {type(data[key]).__name__}, not a list with one numpy array "
                           "per trajectory; wrap per-trajectory arrays in a list")
    n = len(data["obs"])
    if n == 0:
        raise PvrError(f"{source}: key 'obs' holds no trajectories; the file has nothing to load")
    for key in keys:
        if len(data[key]) != n:
            raise PvrError(f"{source}: key {key!r} has {len(data[key])} trajectories but 'obs' has {n}; "
                           "every key needs one array per trajectory")
    out: dict[str, list[np.ndarray]] = {k: [] for k in FRAME_KEYS}
    expected = None
    for i in range(n):
        ep = validate_episode({k: data[k][i] for k in keys}, i, expected=expected, require_done=True)
        if expected is None:
            expected = expected_from(ep)
        for k in FRAME_KEYS:
            out[k].append(ep[k])
    return out


def load_pickle(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Load and validate a legacy pickle without executing code from it.

    Returns ``{"obs", "action", "done", "true_state", "reward"}`` lists (``reward``
    is zeros when the file has none), normalised to the store's dtypes.
    """
    path = Path(path)
    data = _raw_load(path)
    _check_no_objects(data, str(path))
    return check_legacy_dict(data, str(path))


def save_pickle(path: str | os.PathLike, data: dict, *, overwrite: bool = False) -> Path:
    """Write ``data`` (dict of per-trajectory lists) in the legacy format, atomically.

    The four legacy keys are written, plus ``reward`` when present (the original
    reader looks keys up by name, so the extra key is harmless).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise PvrError(f"{path} already exists; pass overwrite=True (or --overwrite) to replace it, or pick another path")
    clean = check_legacy_dict(data, str(path))
    keys = LEGACY_KEYS + (("reward",) if data.get("reward") is not None else ())
    payload = {k: list(clean[k]) for k in keys}
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            pickle.dump(payload, f, protocol=4)
    return path
