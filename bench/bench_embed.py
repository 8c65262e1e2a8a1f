"""Embedding throughput (frames/s) with and without the prefetching reader, in one run.

A dataset of random 224x224 frames (zarr-compressed as `pvr collect` writes them) is
embedded twice into fresh copies: ``prefetch=0`` (read a batch, then encode it) and
``prefetch=N`` (the next batches are read on a background thread while the current one
encodes). Also ``--batch_size auto``'s choice and its throughput. Features of both runs
are checked equal. Weights are random where the real ones are absent (throughput does
not depend on them).

    .venv/bin/python bench/bench_embed.py --encoder resnet18 --frames 512 --batch_size 32
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import pvr.data
import pvr.encoders as E
from pvr.embed import embed, make_encoder

ENV = "BenchEmbed-v0"


def make_data(path: Path, frames: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    ep = 64
    with pvr.data.create(path / f"{ENV}.zarr", env=ENV) as ds:
        for s in range(0, frames, ep):
            n = min(ep, frames - s)
            # smooth-ish content so compression (and so decompression on read) is realistic, not incompressible noise
            base = rng.integers(0, 256, (n, side // 8, side // 8, 3), dtype=np.uint8)
            obs = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
            ds.append_episode(obs=obs, action=np.zeros(n, np.int64), true_state=np.zeros((n, 2)))
    return path


def encoder(name: str, ds):
    try:
        return make_encoder(name, ds), "real"
    except Exception:  # weights not on this machine
        return E.create(name, pretrained=False), "random"


def run(src: Path, name: str, batch_size, prefetch: int, device: str) -> tuple[float, np.ndarray, str]:
    work = Path(tempfile.mkdtemp(prefix="pvr-bench-embed-"))
    try:
        shutil.copytree(src / f"{ENV}.zarr", work / f"{ENV}.zarr")
        with pvr.data.open(work / f"{ENV}.zarr", mode="a") as ds:
            enc, weights = encoder(name, ds)
            t0 = time.perf_counter()
            arr = embed(ds, enc, batch_size=batch_size, prefetch=prefetch, progress=False, device=device)
            dt = time.perf_counter() - t0
            return ds.num_frames / dt, np.asarray(arr[:]), weights
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--auto", action="store_true", help="also run --batch_size auto")
    a = p.parse_args(argv)
    src = make_data(Path(tempfile.mkdtemp(prefix="pvr-bench-embed-src-")), a.frames, a.side)
    try:
        run(src, a.encoder, a.batch_size, a.prefetch, a.device)  # warm-up: imports, allocator, page cache
        off, f_off, weights = run(src, a.encoder, a.batch_size, 0, a.device)
        on, f_on, _ = run(src, a.encoder, a.batch_size, a.prefetch, a.device)
        assert np.array_equal(f_off, f_on), "prefetch changed the features"
        print(f"{a.encoder} ({weights} weights) on {a.device}, torch threads {torch.get_num_threads()}, "
              f"{a.frames} frames {a.side}x{a.side}, batch {a.batch_size}")
        print(f"  prefetch=0        {off:8.1f} frames/s")
        print(f"  prefetch={a.prefetch:<8d} {on:8.1f} frames/s   x{on / off:.2f} (same features)")
        if a.auto:
            auto, _, _ = run(src, a.encoder, "auto", a.prefetch, a.device)
            print(f"  batch auto        {auto:8.1f} frames/s (includes the measurement)")
    finally:
        shutil.rmtree(src, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
