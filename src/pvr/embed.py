"""Dataset → features: every frame through the encoder once, batched, cached.

Features live inside the dataset store, under ``features/<encoder name>-<fingerprint>``,
as an (N, dim) float32 array over the dataset's frames. The key includes the
encoder's fingerprint (name + weights digest + preprocessing), so changing any of
them embeds again, and nothing else does. Progress is committed batch by batch
(``frames_done`` attribute), so a killed ``pvr embed`` resumes where it stopped, and
an appended dataset only embeds its new frames. A lock file stops two ``embed``
processes from writing the same features at once.
"""
from __future__ import annotations

import fcntl
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

import pvr.data
import pvr.encoders
from pvr.encoders import Encoder
from pvr.errors import PvrError
from pvr.utils import default_device

FEATURES_GROUP = "features"


def features_key(encoder: Encoder) -> str:
    return f"{encoder.name}-{encoder.fingerprint}"


def dataset_path(data_path: str | os.PathLike, env: str) -> Path:
    """``<data_path>/<env>.zarr``: one dataset per environment name, as in the original."""
    return Path(data_path) / f"{env}.zarr"


def open_dataset(data_path: str | os.PathLike, env: str, mode: str = "r"):
    path = dataset_path(data_path, env)
    if not path.exists():
        legacy = [p for p in (Path(data_path) / f"{env}.pickle", Path(data_path) / f"{env}.pkl") if p.exists()]
        hint = (f" A legacy pickle exists: convert it with `pvr convert {legacy[0]} {path}`." if legacy
                else f" Collect it with `pvr collect --env {env} --episodes N --data_path {data_path}`.")
        raise PvrError(f"no dataset for {env} at {path}.{hint}")
    return pvr.data.open(path, mode=mode)


def make_encoder(name: str, ds=None, **kw) -> Encoder:
    """Create encoder ``name``; ``true_state`` takes its size from the dataset."""
    if name == "true_state" and ds is not None and "dim" not in kw:
        kw["dim"] = int(ds["true_state"].shape[1])
    return pvr.encoders.create(name, **kw)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PvrError(f"another process is embedding into {path.parent} right now; "
                           "wait for it to finish (its result will be reused)") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def find_features(ds, encoder: Encoder):
    """The complete feature array for ``encoder`` over all of ``ds``'s frames, or None."""
    key = features_key(encoder)
    try:
        arr = ds.group[FEATURES_GROUP][key]
    except (KeyError, FileNotFoundError, AttributeError):
        return None
    if arr.attrs.get("frames_done", 0) < ds.num_frames or arr.shape[0] < ds.num_frames:
        return None
    return arr


def embed(ds, encoder: Encoder, *, batch_size: int = 64, progress: bool = True, device: str | None = None):
    """Embed every frame of ``ds`` (opened with mode="a") with ``encoder``; return the feature array.

    Runs on the GPU when there is one (``device`` overrides)."""
    done = find_features(ds, encoder)
    if done is not None:
        return done
    key = features_key(encoder)
    lock_path = Path(ds.path) / f".{FEATURES_GROUP}-{key}.lock"
    with _lock(lock_path):
        grp = ds.group.require_group(FEATURES_GROUP)
        n = ds.num_frames
        if key in grp:
            arr = grp[key]
            if arr.shape[0] < n:
                arr.resize((n, encoder.dim))
        else:
            arr = grp.create_array(key, shape=(n, encoder.dim), chunks=(min(max(n, 1), 4096), encoder.dim),
                                   dtype="float32")
            arr.attrs.update({"encoder": encoder.name, "fingerprint": encoder.fingerprint,
                              "identity": {k: v for k, v in encoder.identity().items() if k != "preprocess"},
                              "dim": encoder.dim, "frames_done": 0})
        start = int(arr.attrs.get("frames_done", 0))
        source = ds[encoder.input_key]
        starts = list(range(start, n, batch_size))
        bar = tqdm(total=n, initial=start, desc=f"embed {ds.env} [{encoder.name}]", unit="frame",
                   disable=not progress, dynamic_ncols=True)

        def read(a: int) -> np.ndarray:
            return np.asarray(source[a : min(a + batch_size, n)])

        encoder.eval()
        if device is None:
            device = default_device()
        encoder.to(device)
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            pending = pool.submit(read, starts[0]) if starts else None
            for i, a in enumerate(starts):
                batch = pending.result()
                pending = pool.submit(read, starts[i + 1]) if i + 1 < len(starts) else None
                feats = encoder(torch.from_numpy(batch).to(device)).cpu().numpy()
                arr[a : a + len(feats)] = feats
                arr.attrs["frames_done"] = a + len(feats)
                bar.update(len(feats))
        bar.close()
        return arr


def load_features(ds, encoder: Encoder) -> np.ndarray:
    """All features of ``ds`` for ``encoder`` as one (N, dim) array; PvrError if not embedded yet."""
    arr = find_features(ds, encoder)
    if arr is None:
        raise PvrError(f"{ds.path} has no complete {encoder.name} features (fingerprint {encoder.fingerprint}); "
                       f"run `pvr embed --env {ds.env} --embedding_name {encoder.name} --data_path {Path(ds.path).parent}`")
    return np.asarray(arr[: ds.num_frames])
