"""Shared pieces of the HDF5 formats (D4RL, robomimic, Minari): safe opening, picking keys, errors.

Readers yield *source episodes*: dicts with ``obs`` (frames, or None when the
file has only states), ``action``, ``true_state``, ``reward``, ``done`` (numpy
arrays or None), ``sim_state`` (a dict of per-step arrays a simulator can be
restored from: ``qpos``, ``qvel``, ``states``, ... whatever the file holds) and
``where`` (the file's name for the trajectory, used in error messages). They read
one trajectory at a time, so memory is bounded by the longest trajectory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pvr.errors import PvrError

H5_SUFFIXES = (".hdf5", ".h5", ".he5")


def open_h5(path: Path):
    import h5py

    if not path.exists():
        raise PvrError(f"no such file {path}; check the path")
    if path.is_dir():
        raise PvrError(f"{path} is a directory, not an HDF5 file; pass the .hdf5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise PvrError(f"cannot read {path} as HDF5 ({e}); the file is damaged or not HDF5, re-export it") from None


def fail(path: Path, index: int | None, where: str | None, key: str, msg: str) -> PvrError:
    loc = f"trajectory {index}" + (f" ({where})" if where else "") if index is not None else "file"
    return PvrError(f"{path.name}: {loc}: key {key!r} {msg}")


def is_image(a: Any) -> bool:
    """An (n, H, W, 3) uint8 dataset or array (frames)."""
    return getattr(a, "ndim", 0) == 4 and a.shape[-1] == 3 and np.dtype(a.dtype) == np.uint8


def is_dataset(node: Any) -> bool:
    import h5py

    return isinstance(node, h5py.Dataset)


def read(node: Any, a: int | None = None, b: int | None = None) -> np.ndarray:
    """Rows [a, b) of an HDF5 dataset as a numpy array (refusing object/string data)."""
    dt = np.dtype(node.dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"holds {dt} values, not numbers")
    return np.asarray(node[a:b] if a is not None else node[()])


def flat_state(parts: list[np.ndarray], n: int) -> np.ndarray:
    return np.concatenate([p.reshape(n, -1).astype(np.float32, copy=False) for p in parts], axis=1)


def numeric_members(group: Any, n_rows: tuple[int, ...], prefix: str = "") -> dict[str, Any]:
    """Numeric datasets under ``group`` (recursively) with a row count in ``n_rows``: name -> dataset."""
    out: dict[str, Any] = {}
    if group is None:
        return out
    for name, node in group.items():
        if is_dataset(node):
            if node.ndim >= 1 and node.shape[0] in n_rows and np.dtype(node.dtype).kind in "biuf":
                out[prefix + name] = node
        else:
            out.update(numeric_members(node, n_rows, prefix + name + "/"))
    return out


def sorted_groups(group: Any, stem: str) -> list[tuple[int, str]]:
    """Members named ``<stem><int>`` in numeric order (demo_2 before demo_10)."""
    out = []
    for name in group.keys():
        if name.startswith(stem) and name[len(stem):].isdigit():
            out.append((int(name[len(stem):]), name))
    return sorted(out)


def json_attr(path: Path, node: Any, name: str, default: Any = None) -> Any:
    if name not in node.attrs:
        return default
    raw = node.attrs[name]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise PvrError(f"{path.name}: attribute {name!r} of {node.name} is not valid JSON ({e}); "
                       "fix or delete that attribute") from None


def new_h5(path: Path):
    import h5py

    return h5py.File(path, "w")


def frames_dataset(group: Any, name: str, frames: np.ndarray, *, maxrows: bool = False):
    """Frames compressed per frame (gzip 1: fast, readable by every HDF5 tool)."""
    chunks = (1,) + tuple(frames.shape[1:]) if frames.ndim == 4 else True
    kw = dict(compression="gzip", compression_opts=1) if frames.ndim == 4 else {}
    if maxrows:
        kw["maxshape"] = (None,) + tuple(frames.shape[1:])
    return group.create_dataset(name, data=frames, chunks=chunks, **kw)


def appendable(group: Any, name: str, tail: tuple[int, ...], dtype: Any):
    import h5py  # noqa: F401

    is_frames = len(tail) == 3 and tail[-1] == 3 and np.dtype(dtype) == np.uint8
    chunks = (1,) + tail if is_frames else (max(1, min(4096, (1 << 20) // max(1, int(np.prod(tail, dtype=np.int64)) * np.dtype(dtype).itemsize))),) + tail
    kw = dict(compression="gzip", compression_opts=1) if is_frames else {}
    return group.create_dataset(name, shape=(0,) + tail, maxshape=(None,) + tail, dtype=dtype, chunks=chunks, **kw)


def append_rows(dset: Any, rows: np.ndarray) -> None:
    n = dset.shape[0]
    dset.resize((n + rows.shape[0],) + tuple(dset.shape[1:]))
    dset[n:] = rows


def minari_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


__all__ = ["H5_SUFFIXES", "open_h5", "fail", "is_image", "read", "numeric_members", "sorted_groups", "json_attr",
           "flat_state", "frames_dataset", "appendable", "append_rows", "minari_root", "Iterator"]
