"""The frames pre-training sees: several stores read lazily, a fixed held-out split, a batch plan.

Held-out split: episode ``i`` of environment ``env`` is held out when the first 8
bytes of ``sha256(f"{env}/{i}")``, read as a fraction of 2**64, fall below
``--holdout``. It depends on nothing else, so appending episodes to a store never
moves an earlier episode across the split, and a later ``pvr train`` can exclude
exactly the episodes pre-training saw (they are recorded in ``NAME.pvr.json``).
Whole episodes, not frames, are split: demonstrations are episodes.

Batch plan: frames are stored in compressed chunks of 64; a uniformly random batch
would decompress a chunk per frame. An epoch therefore visits the chunks in a
random order, and shuffles frames within windows of :data:`WINDOW` chunks, so a
batch touches a few chunks. The plan is a function of (seed, epoch) alone, so a
resumed run draws the same batches without reading anything it skips.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pvr.errors import PvrError

#: chunks whose frames are shuffled together
WINDOW = 16


def held_out(env: str, episode: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(f"{env}/{episode}".encode()).digest()[:8], "big")
    return h / 2.0 ** 64 < fraction


def content_fingerprint(ds, *, progress: bool = False, batch: int = 1024) -> str:
    """16 hex digits over a store's frames (shape, dtype, bytes) and episode boundaries.

    Everything a pre-trained model can depend on; not the store's path, creation time or features."""
    h = hashlib.sha256()
    obs = ds["obs"]
    h.update(f"{tuple(obs.shape)}:{obs.dtype};".encode())
    h.update(np.asarray(ds.episode_ends, dtype=np.int64).tobytes())
    n = ds.num_frames
    for start in tqdm(range(0, n, batch), desc=f"fingerprint {ds.env}", disable=not progress, leave=False):
        h.update(np.ascontiguousarray(obs[start:start + batch]).tobytes())
    return h.hexdigest()[:16]


@dataclass
class Part:
    env: str
    path: Path
    frames: np.ndarray        # indices of the training frames in this store
    held_out: list[int]       # episode indices kept out
    fingerprint: str
    num_frames: int
    num_episodes: int
    frame_shape: tuple[int, ...]


class FrameSource:
    """Training frames of several stores, addressed 0..N-1; stores are opened lazily in each process."""

    def __init__(self, data_path: str | os.PathLike, envs: list[str], *, holdout: float, progress: bool = False):
        from pvr.embed import open_dataset

        self.parts: list[Part] = []
        for env in envs:
            with open_dataset(data_path, env) as ds:
                if not ds.has_frames:
                    raise PvrError(f"{ds.path} holds imported features, no frames; pre-training needs frames "
                                   f"(collect them with `pvr collect --env {env}`)")
                shape = tuple(ds.obs_shape or ())
                if ds.num_frames == 0:
                    raise PvrError(f"{ds.path} has no frames yet; collect some with `pvr collect --env {env}`")
                if len(shape) != 3 or shape[-1] % 3:
                    raise PvrError(f"{ds.path}: frames shaped {shape}, expected (H, W, 3k) RGB views")
                keep, out = [], []
                for i in range(ds.num_episodes):
                    (out if held_out(env, i, holdout) else keep).append(i)
                frames = np.concatenate([np.arange(*ds.episode_bounds(i)) for i in keep]) if keep else \
                    np.zeros(0, np.int64)
                self.parts.append(Part(env, Path(ds.path), frames.astype(np.int64), out,
                                       content_fingerprint(ds, progress=progress), ds.num_frames, ds.num_episodes,
                                       shape))
        self.offsets = np.cumsum([0] + [len(p.frames) for p in self.parts])
        if self.num_frames == 0:
            raise PvrError(f"no frames left for pre-training in {', '.join(envs)} after holding out "
                           f"{holdout:.0%} of the episodes; collect more episodes or lower --holdout")
        self._open: dict[int, tuple[int, list]] = {}

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    def datasets(self) -> list[dict]:
        """What ``NAME.pvr.json`` records about the data (no paths: moving the data changes nothing)."""
        return [{"env": p.env, "fingerprint": p.fingerprint, "frames": p.num_frames, "episodes": p.num_episodes,
                 "frame_shape": list(p.frame_shape), "held_out_episodes": p.held_out} for p in self.parts]

    # -- the batch plan ------------------------------------------------------
    def epoch_order(self, seed: int, epoch: int, chunk: int = 64) -> np.ndarray:
        """A permutation of 0..N-1 that keeps batches within a few chunks (see module docstring)."""
        rng = np.random.default_rng([seed, epoch])
        groups = []
        for k, p in enumerate(self.parts):
            ids = np.arange(len(p.frames)) + self.offsets[k]
            chunk_of = p.frames // chunk
            cuts = np.flatnonzero(np.diff(chunk_of)) + 1
            groups += np.split(ids, cuts)
        order = rng.permutation(len(groups))
        out = []
        for w in range(0, len(order), WINDOW):
            window = np.concatenate([groups[g] for g in order[w:w + WINDOW]])
            out.append(rng.permutation(window))
        return np.concatenate(out)

    # -- reading ---------------------------------------------------------------
    def _store(self, k: int):
        import pvr.data

        pid = os.getpid()
        if k not in self._open or self._open[k][0] != pid:  # a forked data-loading worker opens its own
            ds = pvr.data.open(self.parts[k].path)
            self._open[k] = (pid, [ds, ds["obs"]])
        return self._open[k][1][1]

    def read(self, ids: np.ndarray) -> list[np.ndarray]:
        """Frames (H, W, C) uint8 for global training-frame ids, in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        part = np.searchsorted(self.offsets, ids, side="right") - 1
        out: list[np.ndarray | None] = [None] * len(ids)
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            local = self.parts[k].frames[ids[sel] - self.offsets[k]]
            frames = self._store(int(k))[local]
            for j, f in zip(sel, frames):
                out[j] = f
        return out  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state
