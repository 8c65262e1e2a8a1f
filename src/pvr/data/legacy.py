"""The original project's exchange format: a pickle of a dict of lists of arrays.

``{"obs": [ (n,h,w,3) uint8, ...], "action": [...], "done": [...], "true_state": [...]}``
with one array per trajectory. Three variants exist, all read here:

- the DMC / Adroit / MiniGrid files: the four keys above;
- the Habitat files: ``obs`` (n, H, W, 6) uint8 (current view + goal view on
  channels), plus ``reward``; float64 ``reward`` and ``true_state``;
- embedded files ``<env>_<embedding>.pickle``: the same dict with ``obs``
  replaced by (n, D * views) float32 features (see :mod:`pvr.data.embedded`).

What a file held — its keys in order, each key's dtype, and the exact values
of any key the store keeps in a narrower dtype (float64 ``true_state``) — is
returned as a :class:`LegacyFile`, so a store made from it can be written back
identically. Plain ``pickle.load`` would run whatever code the file names, so
loading goes through :class:`SafeUnpickler`, which resolves only the handful of
numpy globals an array needs and refuses everything else.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pvr.data.validate import FRAME_KEYS, expected_from, validate_episode
from pvr.errors import PvrError
from pvr.utils.io import atomic_path

LEGACY_KEYS = ("obs", "action", "done", "true_state")
PICKLE_SUFFIXES = (".pickle", ".pkl")
# save_habitat_trajectories.py: dict(obs=..., action=..., reward=..., done=..., true_state=...)
HABITAT_KEYS = ("obs", "action", "reward", "done", "true_state")
HABITAT_DTYPES = {"obs": "uint8", "action": "int64", "reward": "float64", "done": "bool", "true_state": "float64"}
# frames of this many channels are 2 RGB views (current + goal): the only multi-view frames the original wrote
VIEW_CHANNELS = {6: 2}


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



@dataclass
class LegacyFile:
    """A validated legacy pickle: store-ready trajectories plus what is needed to write the file back."""

    data: dict[str, list[np.ndarray]]  # FRAME_KEYS in the store's dtypes ("obs" absent for an embedded file)
    keys: list[str]  # the file's keys, in its order (only the ones pvr reads)
    dtypes: dict[str, Any]  # key -> dtype name, or a list of names when trajectories differ
    exact: dict[str, list[np.ndarray]] = field(default_factory=dict)  # keys the store dtype would round
    views: int = 1
    features: list[np.ndarray] | None = None  # embedded file: its float features, one array per trajectory
    dropped: list[str] = field(default_factory=list)  # keys pvr does not read

    @property
    def embedded(self) -> bool:
        return self.features is not None

    def layout(self) -> dict:
        """JSON description kept in the store's meta (``pickle_layout``)."""
        return {"keys": list(self.keys), "dtypes": dict(self.dtypes), "exact": sorted(self.exact),
                "dropped": list(self.dropped)}


def looks_embedded(data: Any) -> bool:
    """An embedded pickle: ``obs`` holds 2-D float features instead of (n, H, W, C) frames."""
    obs = data.get("obs") if isinstance(data, dict) else None
    first = obs[0] if isinstance(obs, (list, tuple)) and obs else None
    return isinstance(first, np.ndarray) and first.ndim == 2 and first.dtype.kind == "f"


def _views_of(obs: Any) -> int:
    first = obs[0] if isinstance(obs, (list, tuple)) and obs else None
    if isinstance(first, np.ndarray) and first.ndim == 4:
        return VIEW_CHANNELS.get(int(first.shape[-1]), 1)
    return 1


def _check_features(feats: list, actions: list[np.ndarray], source: str) -> list[np.ndarray]:
    out, width = [], None
    for i, f in enumerate(feats):
        where = f"{source}: trajectory {i}: key 'obs'"
        if not isinstance(f, np.ndarray) or f.ndim != 2 or f.dtype.kind != "f":
            shape = getattr(f, "shape", None)
            raise PvrError(f"{where} is {type(f).__name__} {shape} but this embedded pickle's first trajectory holds "
                           "(n, D) float features; every trajectory needs (n, D) float features")
        if width is None:
            width = int(f.shape[1])
        if f.shape[1] != width:
            raise PvrError(f"{where} has features of size {f.shape[1]} but earlier trajectories have {width}; "
                           "one file holds one encoder's features")
        if f.shape[0] != actions[i].shape[0]:
            raise PvrError(f"{where} has {f.shape[0]} steps but 'action' has {actions[i].shape[0]}; "
                           "all keys of a trajectory need the same length")
        if not np.isfinite(f).all():
            raise PvrError(f"{where} contains NaN or inf; re-embed that trajectory")
        out.append(f.astype(np.float32, copy=False))
    return out


def _dtype_record(arrays: list[np.ndarray]) -> Any:
    names = [str(np.asarray(a).dtype) for a in arrays]
    return names[0] if len(set(names)) == 1 else names


def _lossy(raw: list[np.ndarray], stored: list[np.ndarray]) -> bool:
    """Whether the store's dtype loses any value (casting back does not give the file's array)."""
    return any(r.dtype != s.dtype and not np.array_equal(s.astype(r.dtype), r) for r, s in zip(raw, stored))


def read_legacy_dict(data: Any, source: str) -> LegacyFile:
    """Validate the dict-of-lists layout and every trajectory; return it normalised, with its layout."""
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
    embedded = looks_embedded(data)
    views = 1 if embedded else _views_of(data["obs"])
    store_keys = [k for k in FRAME_KEYS if not (embedded and k == "obs")]
    out: dict[str, list[np.ndarray]] = {k: [] for k in store_keys}
    expected = None
    for i in range(n):
        ep = {k: data[k][i] for k in keys if not (embedded and k == "obs")}
        ep = validate_episode(ep, i, expected=expected, require_done=True, views=views, frames=not embedded)
        if expected is None:
            expected = expected_from(ep)
        for k in store_keys:
            out[k].append(ep[k])
    features = _check_features(list(data["obs"]), out["action"], source) if embedded else None
    file_keys = [k for k in data if k in FRAME_KEYS]
    dtypes = {k: _dtype_record(list(data[k])) for k in file_keys}
    exact = {k: list(data[k]) for k in file_keys
             if _lossy(list(data[k]), features if (embedded and k == "obs") else out[k])}
    dropped = [str(k) for k in data if k not in FRAME_KEYS]
    return LegacyFile(out, file_keys, dtypes, exact, views, features, dropped)


def check_legacy_dict(data: Any, source: str) -> dict[str, list[np.ndarray]]:
    """Validate the dict-of-lists layout and every trajectory; return it normalised (store dtypes)."""
    return read_legacy_dict(data, source).data


def read_legacy(path: str | os.PathLike) -> LegacyFile:
    """Load and validate a legacy pickle (raw frames or embedded features) without executing code from it."""
    path = Path(path)
    data = _raw_load(path)
    _check_no_objects(data, str(path))
    return read_legacy_dict(data, str(path))


def load_pickle(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Load and validate a legacy pickle of frames without executing code from it.

    Returns ``{"obs", "action", "done", "true_state", "reward"}`` lists (``reward``
    is zeros when the file has none), normalised to the store's dtypes.
    """
    f = read_legacy(path)
    if f.embedded:
        raise PvrError(f"{path} holds embedded features, not frames (its 'obs' are (n, D) floats); import it into a "
                       f"store with `pvr convert {path} <env>.zarr` and train from that")
    return f.data


def save_pickle(path: str | os.PathLike, data: dict, *, overwrite: bool = False,
                keys: list[str] | tuple[str, ...] | None = None) -> Path:
    """Write ``data`` (dict of per-trajectory lists) in the legacy format, atomically, arrays as given.

    Everything is validated first. ``keys`` (default: the four legacy keys, plus
    ``reward`` when present) are written in that order; the original reader looks
    keys up by name, so an extra ``reward`` is harmless.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise PvrError(f"{path} already exists; pass overwrite=True (or --overwrite) to replace it, or pick another path")
    read_legacy_dict(data, str(path))
    if keys is None:
        keys = LEGACY_KEYS + (("reward",) if data.get("reward") is not None else ())
    payload = {k: [np.asarray(a) for a in data[k]] for k in keys}
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            pickle.dump(payload, f, protocol=4)
    return path
