"""The trajectory store: one zarr v3 group, episodes concatenated, ``episode_ends`` last.

Layout (like diffusion_policy's ReplayBuffer)::

    <name>.zarr/
      obs         (N, H, W, 3) uint8, chunks of 64 frames, compressed
      action      (N,) int64 | (N, A) float32
      done        (N,) bool
      true_state  (N, S) float32
      reward      (N,) float32
      episode_ends (E,) int64   cumulative end index of each episode
      features/   written by pvr.embed; never touched here
    attrs["meta"] = {env, format_version, pvr_version, created, command, ...}

Crash safety: an append resizes and writes the per-frame arrays first and
commits by appending to ``episode_ends`` last (zarr's LocalStore writes each
chunk/metadata file atomically). Readers only see frames up to the last valid
episode end, and ``open(mode="a")`` cuts away anything beyond it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import zarr
from zarr.storage import LocalStore

import pvr
from pvr.data.validate import FRAME_KEYS, expected_from, validate_episode
from pvr.errors import PvrError

FORMAT_VERSION = 1
OBS_CHUNK = 64
_TARGET_CHUNK_BYTES = 1 << 20


def _row_chunk(row_shape: tuple[int, ...], itemsize: int) -> int:
    row = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
    return int(min(65536, max(64, _TARGET_CHUNK_BYTES // row)))


class FrameArray:
    """Lazy view of one per-frame array, limited to committed frames.

    Supports ``len``, ``.shape``, ``.dtype`` and indexing along axis 0 by int,
    slice or integer array (plus trailing indices); only what is indexed is read.
    """

    def __init__(self, array: Any, length: int, key: str) -> None:
        self._array = array
        self._len = int(length)
        self.key = key

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._len,) + tuple(self._array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self._len

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"FrameArray({self.key!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index) or any(i is None for i in index):
            return np.asarray(self[:])[index]
        first, rest = index[0], index[1:]
        n = self._len
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            i = int(first)
            if not -n <= i < n:
                raise PvrError(f"frame {i} is out of range for {self.key!r} with {n} frames; use an index in [-{n}, {n})")
            return np.asarray(self._array[(i + n if i < 0 else i,) + rest])
        if isinstance(first, slice):
            start, stop, step = first.indices(n)
            if step < 0:
                lo = stop + 1
                hi = start + 1
                if hi <= lo:
                    return np.asarray(self._array[(slice(0, 0),) + rest])
                block = np.asarray(self._array[(slice(lo, hi),) + rest])
                return block[::-1][:: -step]
            stop = max(start, stop)
            return np.asarray(self._array[(slice(start, stop, step),) + rest])
        idx = np.asarray(first)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise PvrError(f"boolean mask of shape {idx.shape} does not match {n} frames of {self.key!r}")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise PvrError(f"cannot index {self.key!r} with {type(first).__name__}; use an int, a slice or an integer array")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise PvrError(f"frame index out of range for {self.key!r} with {n} frames; use indices in [-{n}, {n})")
        idx = np.where(idx < 0, idx + n, idx)
        flat = idx.reshape(-1)
        if flat.size == 0:
            out = np.asarray(self._array[(slice(0, 0),) + rest])
        else:
            order = np.unique(flat)  # sorted, de-duplicated: one read per needed chunk
            full = tuple(slice(None) for _ in range(len(self._array.shape) - 1))
            block = np.asarray(self._array.get_orthogonal_selection((order,) + full))
            out = block[np.searchsorted(order, flat)]
            if rest:
                out = out[(slice(None),) + rest]
        return out.reshape(idx.shape + out.shape[1:])


class Dataset:
    """Read API shared by the zarr store and the legacy pickle (episodes over concatenated frames)."""

    path: Path
    meta: dict
    group: Any = None
    read_only: bool = True

    # -- provided by subclasses -------------------------------------------
    def _frame_array(self, key: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def keys(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def episode_ends(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared -------------------------------------------------------------
    @property
    def env(self) -> str:
        return self.meta.get("env")

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_ends))

    @property
    def num_frames(self) -> int:
        ends = self.episode_ends
        return int(ends[-1]) if len(ends) else 0

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_ends, prepend=np.int64(0)).astype(np.int64)

    def episode_bounds(self, i: int) -> tuple[int, int]:
        e = self.num_episodes
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise PvrError(f"episode index must be an int, got {type(i).__name__}")
        if not -e <= int(i) < e:
            raise PvrError(f"episode {int(i)} is out of range: {self.path} has {e} episodes; use an index in [-{e}, {e})")
        i = int(i) % e
        ends = self.episode_ends
        return (int(ends[i - 1]) if i > 0 else 0), int(ends[i])

    def episode(self, i: int) -> dict[str, np.ndarray]:
        start, stop = self.episode_bounds(i)
        return {k: np.asarray(self[k][start:stop]) for k in self.keys()}

    def episodes(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    @property
    def has_frames(self) -> bool:
        """Whether the dataset holds frames (``obs``); a store of imported features holds none."""
        return "obs" in self.keys()

    @property
    def frameless(self) -> bool:
        """A store made from an embedded pickle: features and actions, never frames."""
        return bool(self.meta.get("frameless"))

    def __getitem__(self, key: str) -> Any:
        if key not in FRAME_KEYS:
            raise PvrError(f"unknown key {key!r}; a dataset has {', '.join(FRAME_KEYS)}")
        if key == "obs" and self.frameless:
            raise PvrError(f"{self.path} holds only features imported from {self.meta.get('source', 'an embedded pickle')} "
                           f"({self.meta.get('imported_embedding')}), no frames; embedding with another encoder or "
                           f"fine-tuning needs the frames: convert the raw-frame pickle ({self.env}.pickle) instead")
        if key not in self.keys():
            raise PvrError(f"{self.path} has no {key!r} frames yet (it holds {self.num_episodes} episodes); append an episode first")
        return self._frame_array(key)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __len__(self) -> int:
        return self.num_episodes

    @property
    def is_discrete(self) -> bool | None:
        """True for integer actions; None for an empty store."""
        if "action" not in self.keys():
            return None
        return self["action"].dtype.kind in "iu"

    @property
    def obs_shape(self) -> tuple[int, ...] | None:
        """(H, W, 3); None for an empty store."""
        if "obs" not in self.keys():
            shape = self.meta.get("obs_shape")
            return tuple(shape) if shape else None
        return tuple(self["obs"].shape[1:])

    def close(self) -> None:
        pass

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, env={self.env!r}, episodes={self.num_episodes}, frames={self.num_frames})"


def _valid_prefix(ends: np.ndarray, limit: int) -> int:
    """Number of leading episode ends that are strictly increasing, positive and <= limit."""
    prev = 0
    for k, v in enumerate(ends.tolist()):
        if v <= prev or v > limit:
            return k
        prev = v
    return len(ends)


class ZarrDataset(Dataset):
    """An episode store on zarr v3 (see module docstring)."""

    def __init__(self, path: Path, group: zarr.Group, store: LocalStore, mode: str) -> None:
        self.path = path
        self.group = group
        self._store = store
        self.mode = mode
        self.read_only = mode == "r"
        meta = group.attrs.get("meta")
        if not isinstance(meta, dict) or "episode_ends" not in group:
            raise PvrError(f"{path} is a zarr group but not a pvr dataset (no meta / episode_ends); "
                           "create one with pvr.data.create or convert your data with pvr.data.convert")
        self.meta = dict(meta)
        self._arrays: dict[str, Any] = {k: group[k] for k in FRAME_KEYS if k in group}
        self._ends_array = group["episode_ends"]
        raw = np.asarray(self._ends_array[:], dtype=np.int64)
        limit = min((a.shape[0] for a in self._arrays.values()), default=0)
        self._ends = raw[: _valid_prefix(raw, limit)].copy()
        if not self.read_only:
            self._recover(len(raw))

    # -- reading ------------------------------------------------------------
    def keys(self) -> list[str]:
        return [k for k in FRAME_KEYS if k in self._arrays]

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    def _frame_array(self, key: str) -> FrameArray:
        return FrameArray(self._arrays[key], self.num_frames, key)

    # -- writing ------------------------------------------------------------
    def _recover(self, raw_len: int) -> None:
        """Drop what a killed append left beyond the last committed episode."""
        e, n = len(self._ends), self.num_frames
        if raw_len != e:
            self._ends_array.resize((e,))
        if n == 0 and self._arrays:
            # a first episode that never committed: its shapes must not bind the store
            for k in list(self._arrays):
                del self.group[k]
            self._arrays.clear()
            return
        for arr in self._arrays.values():
            if arr.shape[0] != n:
                arr.resize((n,) + tuple(arr.shape[1:]))

    def _expected(self) -> dict | None:
        if not {"action", "true_state"} <= set(self._arrays) or ("obs" not in self._arrays and not self.frameless):
            return None
        return {
            "obs": tuple(self._arrays["obs"].shape[1:]) if "obs" in self._arrays else None,
            "action": (tuple(self._arrays["action"].shape[1:]),
                       "discrete" if np.dtype(self._arrays["action"].dtype).kind in "iu" else "continuous"),
            "true_state": tuple(self._arrays["true_state"].shape[1:]),
        }

    def append_episode(self, obs: np.ndarray | None, action: np.ndarray, true_state: np.ndarray,
                       reward: np.ndarray | None = None, done: np.ndarray | None = None) -> int:
        """Validate and append one episode; return its index. Commits by extending ``episode_ends`` last.

        ``obs`` is None (and must be) only in a store of imported features (meta ``frameless``)."""
        if self.read_only:
            raise PvrError(f"{self.path} is open read-only; reopen it with pvr.data.open(path, mode='a') to append")
        index = self.num_episodes
        ep = validate_episode({"obs": obs, "action": action, "true_state": true_state, "reward": reward, "done": done},
                              index, expected=self._expected(), views=int(self.meta.get("views") or 1),
                              frames=not self.frameless)
        if not self._arrays:
            self._create_arrays(ep)
        start = self.num_frames
        stop = start + ep["action"].shape[0]
        for key in self._arrays:
            arr = self._arrays[key]
            arr.resize((stop,) + tuple(arr.shape[1:]))
            arr[start:stop] = ep[key]
        # commit: only now does the episode exist for readers
        self._ends_array.resize((index + 1,))
        self._ends_array[index] = stop
        self._ends = np.append(self._ends, np.int64(stop))
        return index

    def _create_arrays(self, ep: dict) -> None:
        for key in (k for k in FRAME_KEYS if k in ep):
            a = ep[key]
            tail = tuple(a.shape[1:])
            rows = OBS_CHUNK if key == "obs" else _row_chunk(tail, a.dtype.itemsize)
            self._arrays[key] = self.group.create_array(
                key, shape=(0,) + tail, chunks=(rows,) + tail, dtype=a.dtype, fill_value=0)
        if "obs_shape" not in self.meta and "obs" in ep:
            self.update_meta(obs_shape=list(ep["obs"].shape[1:]))

    def update_meta(self, **fields: Any) -> None:
        """Add or replace entries of ``meta`` (JSON-serialisable values)."""
        if self.read_only:
            raise PvrError(f"{self.path} is open read-only; reopen it with mode='a' to change its meta")
        meta = dict(self.meta)
        meta.update(_jsonable(fields))
        self.group.attrs["meta"] = meta
        self.meta = meta

    def close(self) -> None:
        try:
            self._store.close()
        except Exception:
            pass


class PickleDataset(Dataset):
    """A legacy pickle, loaded (safely) into memory, with the store's read API."""

    def __init__(self, path: Path, env: str | None = None) -> None:
        from pvr.data.legacy import load_pickle

        self.path = path
        data = load_pickle(path)
        lengths = np.array([len(o) for o in data["obs"]], dtype=np.int64)
        self._ends = np.cumsum(lengths).astype(np.int64)
        self._data = {k: np.concatenate(v, axis=0) for k, v in data.items()}
        self.meta = {
            "env": env or path.stem,
            "format_version": None,
            "source": "legacy-pickle",
            "obs_shape": list(self._data["obs"].shape[1:]),
        }
        views = int(self._data["obs"].shape[-1]) // 3
        if views > 1:
            self.meta["views"] = views

    def keys(self) -> list[str]:
        return [k for k in FRAME_KEYS if k in self._data]

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    def _frame_array(self, key: str) -> np.ndarray:
        return self._data[key]

    def append_episode(self, *args: Any, **kw: Any) -> int:
        raise PvrError(f"{self.path} is a legacy pickle and read-only; convert it with pvr.data.convert(src, 'name.zarr') to append")


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError) as e:
        raise PvrError(f"dataset meta must be JSON-serialisable ({e}); pass plain str/number/list/dict values") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, tuple)):
        return str(o) if isinstance(o, Path) else list(o)
    return str(o)


def create(path: str | os.PathLike, env: str, meta: dict | None = None, *, command: str | None = None) -> ZarrDataset:
    """Create a new, empty store at ``path`` and return it open for appending."""
    path = Path(path)
    if path.exists():
        raise PvrError(f"{path} already exists; use pvr.data.open({str(path)!r}, mode='a') to append to it, "
                       "or delete it to start over")
    if not env or not isinstance(env, str):
        raise PvrError("pvr.data.create needs env=<environment name>, e.g. env='MiniGrid-DoorKey-5x5-v0'")
    full = dict(_jsonable(meta or {}))
    full.update(env=env, format_version=FORMAT_VERSION, pvr_version=pvr.__version__,
                created=full.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"))
    full["command"] = command if command is not None else full.get("command", " ".join(sys.argv))
    # build beside the destination and rename, so a kill never leaves half a store at ``path``
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        store = LocalStore(tmp)
        group = zarr.open_group(store=store, mode="w-", zarr_format=3)
        group.attrs["meta"] = full
        group.create_array("episode_ends", shape=(0,), chunks=(4096,), dtype=np.int64, fill_value=0)
        store.close()
        try:
            os.rename(tmp, path)  # fails rather than merge if someone created path meanwhile
        except OSError:
            raise PvrError(f"{path} already exists; use pvr.data.open(path, mode='a') to append to it, or delete it") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open(path, mode="a")


def open(path: str | os.PathLike, mode: str = "r", *, env: str | None = None) -> Dataset:  # noqa: A001
    """Open a store (``mode`` "r" read-only, "a" append) or a legacy ``.pickle``/``.pkl`` (read-only)."""
    path = Path(path)
    if mode not in ("r", "a"):
        raise PvrError(f"unknown mode {mode!r}; use mode='r' to read or mode='a' to append (pvr.data.create makes a new store)")
    if path.suffix.lower() in (".pickle", ".pkl"):
        if mode != "r":
            raise PvrError(f"{path} is a legacy pickle and read-only; convert it with pvr.data.convert(src, 'name.zarr') to append")
        if not path.is_file():
            raise PvrError(f"no such file {path}; check the path")
        return PickleDataset(path, env=env)
    if not path.exists():
        raise PvrError(f"no dataset at {path}; check the path, or make one with pvr.data.create / `pvr collect`")
    if not path.is_dir() or not (path / "zarr.json").is_file():
        raise PvrError(f"{path} is not a pvr dataset (expected a .zarr directory or a .pickle/.pkl file); "
                       "convert it with pvr.data.convert")
    store = LocalStore(path, read_only=(mode == "r"))
    try:
        group = zarr.open_group(store=store, mode="r" if mode == "r" else "r+", zarr_format=3)
    except Exception as e:
        raise PvrError(f"cannot open {path} as a zarr v3 group ({type(e).__name__}: {e}); "
                       "it is damaged or was written by another tool") from None
    return ZarrDataset(path, group, store, mode)


__all__ = ["Dataset", "ZarrDataset", "PickleDataset", "FrameArray", "create", "open"]
