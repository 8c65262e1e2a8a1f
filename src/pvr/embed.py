"""Dataset → features: every frame through the encoder once, batched, cached.

Features live inside the dataset store, under ``features/<encoder name>-<fingerprint>``,
as an (N, dim) float32 array over the dataset's frames. The key includes the
encoder's fingerprint (name + weights digest + preprocessing), so changing any of
them embeds again, and nothing else does.

Memory is bounded by the batch size, not the dataset: frames are read lazily,
one batch ahead of the encoder (a prefetching reader thread), and features are
written batch by batch.

Progress and concurrency. The feature array is cut into chunks of ``C`` frames.
A companion array ``features/<key>.progress`` holds, per chunk, how many of its
leading frames are embedded; it has one element per file, so processes working
on different chunks never write the same file. That makes three things safe:

- resume: a killed ``embed`` restarts from each chunk's progress (nothing is
  embedded twice, nothing is skipped, the result equals an uninterrupted run);
- sharding: ``shard=(i, n)`` embeds only the i-th of n contiguous chunk ranges,
  so n processes (or a Slurm array) can write the same array at once;
- a second ``embed`` of the same dataset and encoder refuses (or, with
  ``wait=True``, waits and then reuses the result) instead of corrupting it.

Locks (all ``fcntl``, released by the kernel when a process dies, even on
SIGKILL), in ``<dataset>.zarr/.features-<key>.*``:

- ``.lock``: an unsharded run holds it exclusively, shards hold it shared;
- ``.ranges.lock``: each process holds a byte-range lock over its chunk range,
  so overlapping shards (0/2 and 0/4, or the same shard twice) refuse;
- ``.meta.lock``: a short exclusive section around every metadata write
  (creating/resizing the arrays, the ``frames_done`` attribute).

``frames_done`` (an attribute of the feature array) is the number of leading
frames embedded; features are complete when it reaches the dataset's frames.
"""
from __future__ import annotations

import fcntl
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

import pvr.data
import pvr.encoders
from pvr.data.embedded import imported_features
from pvr.data.store import FrameArray
from pvr.encoders import Encoder
from pvr.encoders.base import encode
from pvr.encoders.runtime import apply_runtime, record_provenance
from pvr.errors import PvrError
from pvr.utils import default_device
from pvr.utils import interrupt

FEATURES_GROUP = "features"
PROGRESS_SUFFIX = ".progress"
_CHUNK_BYTES = 1 << 20  # target size of one feature chunk
_MAX_RANGE = 1 << 40  # "to the end" for byte-range locks


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


def feature_dim(encoder: Encoder, ds) -> int:
    """Size of one frame's features: ``encoder.dim`` per RGB view (ImageNav frames hold 2 views);
    in a store of imported features (no frames), the width of those features."""
    if encoder.input_key != "obs":
        return encoder.dim
    if not getattr(ds, "has_frames", True):
        arr = find_features(ds, encoder)
        if arr is not None:
            return int(arr.shape[1])
    shape = ds.obs_shape or (0, 0, 3)
    return encoder.dim * max(1, int(shape[-1]) // 3)


def make_encoder(name: str, ds=None, *, seed: int | None = None, runtime: str = "torch", **kw) -> Encoder:
    """Create encoder ``name`` for dataset ``ds``.

    ``seed`` draws random weights (``random<N>``, ``pretrained=False``; see
    :func:`pvr.encoders.create`). With ``ds``: ``true_state`` takes its size from
    the dataset, and encoders that see frames at their native size (``random<N>``)
    set ``dim`` from the dataset's frame size. ``runtime`` (auto, torch,
    onnxruntime, openvino) picks what runs the backbone: :mod:`pvr.encoders.runtime`.
    """
    if name == "true_state" and ds is not None and "dim" not in kw:
        kw["dim"] = int(ds["true_state"].shape[1])
    enc = pvr.encoders.create(name, seed=seed, **kw)
    if ds is not None and enc.native_size and getattr(ds, "obs_shape", None):
        enc.fit_frames(ds.obs_shape)
    if runtime != "torch":
        apply_runtime(enc, runtime, frame_shape=getattr(ds, "obs_shape", None) if ds is not None else None)
    return enc


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) → (i, n); None stays None."""
    if text is None or text == "":
        return None
    if isinstance(text, tuple):
        i, n = text
    else:
        try:
            i, n = (int(x) for x in str(text).split("/"))
        except ValueError:
            raise PvrError(f"--shard {text!r} is not of the form i/n; use e.g. --shard 0/4 ... --shard 3/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise PvrError(f"--shard {i}/{n} is out of range; i must be in 0..n-1, e.g. --shard 0/{max(n, 1)}")
    return int(i), int(n)


# -- locks -------------------------------------------------------------------------
@contextmanager
def _flock(path: Path, *, shared: bool, wait: bool, busy: str) -> Iterator[None]:
    """Whole-file lock (per open file, so it also excludes threads of this process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(f, flags if wait else flags | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PvrError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# Open-file-description byte-range locks (Linux): like flock they belong to the
# open file, not the process, so two claims from one process conflict too.
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_F_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


@contextmanager
def _range_lock(path: Path, lo: int, hi: int, *, wait: bool, busy: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, lo, hi - lo, 0)
        try:
            fcntl.fcntl(fd, _F_OFD_SETLKW if wait else _F_OFD_SETLK, flock)
        except OSError as e:
            if e.errno in (11, 13):  # EAGAIN / EACCES: someone holds an overlapping range
                raise PvrError(busy) from None
            # no OFD locks on this system: fall back to per-process POSIX locks
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB), hi - lo, lo)
            except OSError:
                raise PvrError(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


# -- the feature arrays ---------------------------------------------------------------
_WARNED: set[tuple[str, str]] = set()


def find_features(ds, encoder: Encoder):
    """The complete feature array for ``encoder`` over all of ``ds``'s frames, or None.

    Features pvr computed with this exact encoder (its fingerprint) come first; else
    features imported under the same encoder name (``pvr convert`` of an embedded
    pickle, weights unknown) are used, with a one-line warning per dataset."""
    key = features_key(encoder)
    try:
        arr = ds.group[FEATURES_GROUP][key]
    except (KeyError, FileNotFoundError, AttributeError, TypeError):
        arr = None
    if arr is not None and arr.attrs.get("frames_done", 0) >= ds.num_frames and arr.shape[0] >= ds.num_frames:
        return arr
    arr = imported_features(ds, encoder.name)
    if arr is None:
        return None
    width = int(arr.shape[1])
    if encoder.input_key == "obs" and encoder.dim and width % int(encoder.dim):
        raise PvrError(f"{ds.path}: the imported {encoder.name} features are {width} wide but pvr's {encoder.name} "
                       f"gives {encoder.dim} per view, so evaluation could not feed the policy; they came from another "
                       "encoder: convert the embedded pickle again with the right --embedding_name")
    seen = (str(ds.path), encoder.name)
    if seen not in _WARNED:
        _WARNED.add(seen)
        print(f"WARN: {ds.path}: using {encoder.name} features imported from {arr.attrs.get('source')}, not computed "
              f"by pvr (their weights are unknown); evaluation embeds live frames with pvr's {encoder.name}",
              file=sys.stderr, flush=True)
    return arr


def chunk_frames_for(dim: int) -> int:
    """Frames per feature chunk: about 1 MiB of float32, between 16 and 8192 frames."""
    return int(max(16, min(8192, _CHUNK_BYTES // (4 * max(1, dim)))))


def _prepare(ds, encoder: Encoder, key: str, chunk_frames: int | None):
    """Create or grow the feature and progress arrays (caller holds the meta lock)."""
    grp = ds.group.require_group(FEATURES_GROUP)
    n = ds.num_frames
    dim = feature_dim(encoder, ds)
    if key in grp:
        arr = grp[key]
        if arr.shape[0] < n:
            arr.resize((n, dim))
    else:
        c = chunk_frames or chunk_frames_for(dim)
        arr = grp.create_array(key, shape=(n, dim), chunks=(c, dim), dtype="float32")
        arr.attrs.update({"encoder": encoder.name, "fingerprint": encoder.fingerprint,
                          "identity": {k: v for k, v in encoder.identity().items() if k != "preprocess"},
                          "dim": dim, "frames_done": 0})
    c = int(arr.chunks[0])
    nchunks = -(-n // c)
    pkey = key + PROGRESS_SUFFIX
    if pkey in grp:
        prog = grp[pkey]
        if prog.shape[0] < nchunks:
            prog.resize((nchunks,))
    else:
        # one element per file: concurrent shards never write the same file
        prog = grp.create_array(pkey, shape=(nchunks,), chunks=(1,), dtype="int64", fill_value=0)
        done = int(arr.attrs.get("frames_done", 0))  # features written before progress arrays existed
        if done:
            prog[:] = np.clip(done - np.arange(nchunks) * c, 0, c)
    return arr, prog, c


def _chunk_lengths(n: int, c: int) -> np.ndarray:
    nchunks = -(-n // c)
    return np.minimum(c, n - np.arange(nchunks, dtype=np.int64) * c)


def _prefix(progress: np.ndarray, lengths: np.ndarray, c: int) -> int:
    """Frames embedded from the start without a gap."""
    short = np.flatnonzero(progress[: len(lengths)] < lengths)
    if short.size == 0:
        return int(lengths.sum())
    k = int(short[0])
    return k * c + int(progress[k])


def _todo(progress: np.ndarray, lengths: np.ndarray, c: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """Frame intervals still to embed in chunks [lo, hi), merged where contiguous."""
    out: list[tuple[int, int]] = []
    for k in range(lo, hi):
        a, b = k * c + int(progress[k]), k * c + int(lengths[k])
        if a >= b:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def shard_chunks(nchunks: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The contiguous chunk range [lo, hi) that shard (i, n) owns."""
    if shard is None:
        return 0, nchunks
    i, n = shard
    return nchunks * i // n, nchunks * (i + 1) // n


def embed(ds, encoder: Encoder, *, batch_size: int | str = 64, progress: bool = True, device: str | None = None,
          shard: tuple[int, int] | str | None = None, wait: bool = False, chunk_frames: int | None = None,
          prefetch: int = 2):
    """Embed the frames of ``ds`` (opened with mode="a") with ``encoder``; return the feature array.

    ``shard=(i, n)`` (or ``"i/n"``) embeds only shard i of n; the array is complete
    once every shard has run (check with :func:`find_features`). ``wait=True``
    waits for a concurrent ``embed`` of the same features instead of refusing.
    Runs on the GPU when there is one (``device`` overrides). ``batch_size="auto"``
    picks it by measuring (:func:`auto_batch_size`); ``prefetch`` batches are read
    from the store on a background thread while the current one encodes (0: none).
    """
    shard = parse_shard(shard)
    batch_size = parse_batch_size(batch_size)
    if prefetch < 0:
        raise PvrError(f"prefetch must be 0 (off) or more batches, got {prefetch}")
    done = find_features(ds, encoder)
    if done is not None:
        return done
    if encoder.input_key not in ds:
        ds[encoder.input_key]  # a store of imported features says why it has no frames
        raise PvrError(f"{ds.path} has no {encoder.input_key!r} frames to embed; collect or convert episodes first")
    if ds.read_only:
        raise PvrError(f"{ds.path} is open read-only; open it with mode='a' to embed")
    key = features_key(encoder)
    base = Path(ds.path) / f".{FEATURES_GROUP}-{key}"
    what = f"shard {shard[0]}/{shard[1]}" if shard else "all frames"
    busy = (f"another process is embedding {key} into {ds.path} right now; wait for it to finish "
            "(its result will be reused) or pass --wait")
    with _flock(Path(f"{base}.lock"), shared=shard is not None, wait=wait, busy=busy):
        if wait and (found := find_features(ds, encoder)) is not None:
            return found  # someone else finished while we waited
        with _flock(Path(f"{base}.meta.lock"), shared=False, wait=True, busy=busy):
            arr, prog, c = _prepare(ds, encoder, key, chunk_frames)
            record_provenance(arr, encoder)  # which runtime computed (part of) these features
        n = ds.num_frames
        lengths = _chunk_lengths(n, c)
        lo, hi = shard_chunks(len(lengths), shard)
        busy_range = (f"{what} of {key} in {ds.path} overlaps one another process is embedding right now; "
                      "run each shard once, with the same n (e.g. --shard 0/4 ... 3/4), or pass --wait")
        # a shard with no chunks (more shards than chunks) writes nothing, so it claims no range: a
        # one-byte claim at lo would collide with the next shard, which starts at the same chunk
        claim = (_range_lock(Path(f"{base}.ranges.lock"), lo, hi, wait=wait, busy=busy_range) if hi > lo
                 else nullcontext())
        with claim:
            state = np.asarray(prog[:], dtype=np.int64)
            todo = _todo(state, lengths, c, lo, hi)
            t0 = time.time()
            _run(ds, encoder, arr, prog, state, lengths, c, todo, batch_size, progress, device,
                 update_prefix=shard is None, prefetch=prefetch,
                 desc=f"embed {ds.env} [{encoder.name}]" + (f" {what}" if shard else ""))
        with _flock(Path(f"{base}.meta.lock"), shared=False, wait=True, busy=busy):
            fresh = ds.group[FEATURES_GROUP][key]  # re-read: other shards may have changed it
            state = np.asarray(ds.group[FEATURES_GROUP][key + PROGRESS_SUFFIX][:], dtype=np.int64)
            prefix = _prefix(state, lengths, c)
            if prefix > int(fresh.attrs.get("frames_done", 0)):
                fresh.attrs["frames_done"] = prefix
            # wall time of the encoding, summed over sessions and shards, for `pvr report`
            fresh.attrs["embed_seconds"] = round(float(fresh.attrs.get("embed_seconds", 0)) + time.time() - t0, 3)
        return fresh


def parse_batch_size(value: int | str) -> int | str:
    """A positive int, or ``"auto"`` (measured when the device is known)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise PvrError(f"batch size {value!r} is not a number; give e.g. --batch_size 64 or "
                       "--batch_size auto") from None
    if n < 1:
        raise PvrError(f"batch size must be at least 1, got {n}")
    return n


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host frames → device. For a GPU the (uint8) frames go through pinned memory and are copied
    without blocking the host, so the reader can fill the next batch during the copy; conversion
    to float, resizing and normalisation then run on the device (each encoder's preprocessing
    works on whatever device its input is on)."""
    t = torch.from_numpy(batch)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def auto_batch_size(encoder: Encoder, frames: np.ndarray, device: torch.device, *, start: int = 8,
                    limit: int = 1024, gain: float = 1.05, seconds: float = 0.3) -> int:
    """The batch size to embed with, by measurement: double from ``start`` while images/s
    grow by more than 5 % and memory suffices (an out-of-memory error ends the search at the
    last size that ran). ``frames`` are the dataset's first frames, repeated as needed."""
    if len(frames) == 0:
        return start
    best, best_rate, size = start, 0.0, start
    while size <= limit:
        batch = np.resize(frames, (size, *frames.shape[1:])) if len(frames) < size else frames[:size]
        try:
            x = _to_device(np.ascontiguousarray(batch), device)
            encode(encoder, x)  # warm-up (allocator, kernel selection)
            n, t0 = 0, time.perf_counter()
            while True:
                encode(encoder, x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                n += size
                if time.perf_counter() - t0 >= seconds:
                    break
            rate = n / (time.perf_counter() - t0)
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        if rate <= best_rate * gain:
            break
        best, best_rate, size = size, rate, size * 2
    return best


def _run(ds, encoder, arr, prog, state, lengths, c, todo, batch_size, progress, device, *, update_prefix, desc,
         prefetch: int = 2):
    source = ds[encoder.input_key]
    encoder.eval()
    device = torch.device(device if device is not None else default_device())
    encoder.to(device)
    # on a GPU the whole batch is one forward pass; CPU micro-batching is for CPU caches
    micro = encoder.micro_batch
    if device.type == "cuda":
        encoder.micro_batch = None
    try:
        with torch.inference_mode():
            if batch_size == "auto":
                sample = np.asarray(source[0: min(ds.num_frames, 64)])
                batch_size = auto_batch_size(encoder, sample, device)
                if progress:
                    print(f"embed: batch size {batch_size} (measured on {device})", file=sys.stderr, flush=True)
            _encode_batches(source, encoder, arr, prog, state, lengths, c, todo, batch_size, progress, device,
                            update_prefix=update_prefix, desc=desc, prefetch=prefetch)
    finally:
        encoder.micro_batch = micro


def _encode_batches(source, encoder, arr, prog, state, lengths, c, todo, batch_size, progress, device, *,
                    update_prefix, desc, prefetch):
    total = sum(b - a for a, b in todo)
    batches = [(s, min(s + batch_size, b)) for a, b in todo for s in range(a, b, batch_size)]
    bar = tqdm(total=int(lengths.sum()), initial=int(lengths.sum()) - total, desc=desc, unit="frame",
               disable=not progress, dynamic_ncols=True)

    def read(ab: tuple[int, int]) -> np.ndarray:
        return np.asarray(source[ab[0]: ab[1]])

    pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
    pending: deque = deque()
    try:
        nxt = 0
        for a, b in batches:
            interrupt.check()
            if pool is None:
                batch = read((a, b))
            else:
                # a bounded queue: at most `prefetch` batches read ahead of the encoder
                while nxt < len(batches) and len(pending) < prefetch + 1:
                    pending.append(pool.submit(read, batches[nxt]))
                    nxt += 1
                batch = pending.popleft().result()
            feats = encode(encoder, _to_device(batch, device)).cpu().numpy()
            arr[a:b] = feats
            # commit: per-chunk progress (one file each), after the features are on disk
            for k in range(a // c, (b - 1) // c + 1):
                state[k] = min(b, k * c + int(lengths[k])) - k * c
                prog[k] = state[k]
            if update_prefix:  # only an unsharded run (it holds the exclusive lock) writes attrs per batch
                arr.attrs["frames_done"] = _prefix(state, lengths, c)
            bar.update(b - a)
    finally:
        if pool is not None:
            for f in pending:
                f.cancel()  # Ctrl-C: reads not started are dropped; the one running ends on its own
            pool.shutdown(wait=True)
        bar.close()


def open_features(ds, encoder: Encoder) -> FrameArray:
    """A lazy (N, dim) view of the complete features: only what is indexed is read."""
    arr = find_features(ds, encoder)
    if arr is None:
        raise PvrError(f"{ds.path} has no complete {encoder.name} features (fingerprint {encoder.fingerprint}); "
                       f"run `pvr embed --env {ds.env} --embedding_name {encoder.name} --data_path {Path(ds.path).parent}`")
    return FrameArray(arr, ds.num_frames, f"features/{Path(str(arr.path)).name}")


def load_features(ds, encoder: Encoder) -> np.ndarray:
    """All features of ``ds`` for ``encoder`` as one (N, dim) array; PvrError if not embedded yet."""
    return np.asarray(open_features(ds, encoder)[:])


# -- several devices: one process per device, each embedding its shard -----------------------
def parse_devices(text: str | None) -> list[str] | None:
    """``"cuda:0,cuda:1"`` (any torch devices, ``cpu`` repeated included) or ``"all"`` (every GPU)."""
    if text is None or text == "":
        return None
    if text.strip().lower() == "all":
        n = torch.cuda.device_count()
        if n == 0:
            raise PvrError("--devices all found no GPU here; name devices instead, e.g. --devices cpu,cpu")
        return [f"cuda:{i}" for i in range(n)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        try:
            dev = torch.device(d)
        except RuntimeError:
            raise PvrError(f"--devices: {d!r} is not a device; use e.g. --devices cuda:0,cuda:1 or "
                           "--devices all") from None
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise PvrError(f"--devices: {d} does not exist here ({torch.cuda.device_count()} GPU(s))")
    return devices


def _embed_shard(data_path: str, env: str, name: str, seed: int | None, runtime: str, batch_size, prefetch: int,
                 shard: tuple[int, int], device: str, wait: bool, plugins: list[str], sys_path: list[str]) -> None:
    """One device's process: its own encoder copy on ``device``, embedding shard i/n."""
    import pvr.plugins

    interrupt.install()
    sys.path[:] = sys_path + [p for p in sys.path if p not in sys_path]  # plugins the parent imported from there
    pvr.plugins.load(plugins)
    with open_dataset(data_path, env, mode="a") as ds:
        enc = make_encoder(name, ds, seed=seed, runtime=runtime)
        embed(ds, enc, batch_size=batch_size, progress=False, device=device, shard=shard, wait=wait,
              prefetch=prefetch)


def embed_on_devices(data_path: str | os.PathLike, env: str, name: str, devices: list[str], *,
                     seed: int | None = None, runtime: str = "torch", batch_size: int | str = 64, prefetch: int = 2,
                     wait: bool = False):
    """Embed ``env``'s dataset on several devices at once: shard i of n on devices[i], each in its
    own process (the sharded, lock-safe path of :func:`embed`); then check that every frame is
    embedded and return the feature array. A failed shard raises, naming it; finished shards'
    features stay, so running the command again embeds only what is missing."""
    import multiprocessing as mp

    import pvr.plugins

    n = len(devices)
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    procs = [ctx.Process(target=_embed_shard, name=f"pvr-embed-{i}of{n}",
                         args=(str(data_path), env, name, seed, runtime, batch_size, prefetch, (i, n), d, wait,
                               pvr.plugins.loaded(), list(sys.path)))
             for i, d in enumerate(devices)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            interrupt.check()
            for p in procs:
                p.join(timeout=0.2)
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each child stops at its next batch, keeping its progress
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        raise
    failed = [f"shard {i}/{n} on {devices[i]} (exit code {p.exitcode})" for i, p in enumerate(procs) if p.exitcode]
    if failed:
        raise PvrError(f"embedding {env} with {name} failed in {', '.join(failed)}; see the messages above and "
                       "run the same command again (finished shards are kept)")
    with open_dataset(data_path, env, mode="a") as ds:
        enc = make_encoder(name, ds, seed=seed, runtime=runtime)
        arr = find_features(ds, enc)
        if arr is None:
            raise PvrError(f"{ds.path}: every shard of {name} exited cleanly but the features are not complete; "
                           "run the same command again to embed the missing frames")
        return arr
