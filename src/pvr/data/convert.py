"""Convert between the legacy pickle and the zarr store, never leaving half a file at dst."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from pvr.data.legacy import PICKLE_SUFFIXES, load_pickle, save_pickle
from pvr.data.store import ZarrDataset, create, open as open_dataset
from pvr.data.validate import FRAME_KEYS
from pvr.errors import PvrError

SUPPORTED = ".pickle/.pkl -> .zarr, .zarr -> .pickle/.pkl"


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix == ".zarr":
        return "zarr"
    return None


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, env: str | None = None, overwrite: bool = False) -> Path:
    """Convert ``src`` to ``dst``, the direction chosen by file type; return ``dst``.

    ``.pickle``/``.pkl`` -> ``.zarr`` store (env from ``env`` or the pickle's stem);
    ``.zarr`` -> ``.pickle``. The result is built beside ``dst`` and renamed into
    place at the end, so a validation error leaves nothing at ``dst``.
    """
    src, dst = Path(src), Path(dst)
    kinds = (_kind(src), _kind(dst))
    if kinds not in (("pickle", "zarr"), ("zarr", "pickle")):
        raise PvrError(f"cannot convert {src.name} to {dst.name}: supported conversions are {SUPPORTED}")
    if not src.exists():
        raise PvrError(f"no such file or directory {src}; check the path")
    if dst.exists() and not overwrite:
        raise PvrError(f"{dst} already exists; pass overwrite=True (or --overwrite) to replace it, or pick another path")
    if kinds == ("pickle", "zarr"):
        return _pickle_to_zarr(src, dst, env=env)
    return _zarr_to_pickle(src, dst)


def _pickle_to_zarr(src: Path, dst: Path, *, env: str | None) -> Path:
    data = load_pickle(src)  # validates every trajectory before anything is written
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        ds = create(tmp, env=env or src.stem, meta={"source": str(src), "source_format": "legacy-pickle"})
        with ds:
            for i in range(len(data["obs"])):
                ds.append_episode(**{k: data[k][i] for k in FRAME_KEYS})
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.rename(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _zarr_to_pickle(src: Path, dst: Path) -> Path:
    ds = open_dataset(src, mode="r")
    if not isinstance(ds, ZarrDataset):  # pragma: no cover - suffix already checked
        raise PvrError(f"{src} is not a zarr store; supported conversions are {SUPPORTED}")
    with ds:
        if ds.num_episodes == 0:
            raise PvrError(f"{src} holds no episodes; collect some before converting")
        data: dict[str, list] = {k: [] for k in FRAME_KEYS}
        for ep in ds.episodes():  # one episode in flight from disk at a time
            for k in FRAME_KEYS:
                data[k].append(ep[k])
    return save_pickle(dst, data, overwrite=True)  # overwrite already checked; save is atomic
