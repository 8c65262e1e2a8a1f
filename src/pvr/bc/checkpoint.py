"""Atomic checkpoints: temp file, fsync, rename; the previous one is kept.

A kill at any instant leaves either the new checkpoint or the previous one intact,
never a torn file (the original's "PytorchStreamReader failed" failure).
Checkpoints hold only tensors and plain values and load with ``weights_only=True``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pvr.utils.io import atomic_path

CKPT = "checkpoint.pt"
PREV = "checkpoint.prev.pt"


def save(run_dir: Path, state: dict) -> Path:
    path = run_dir / CKPT
    with atomic_path(run_dir / f"{CKPT}.new") as tmp:
        torch.save(state, tmp)
    # rotate: current → prev, new → current (each step a rename, each state loadable)
    if path.exists():
        os.replace(path, run_dir / PREV)
    os.replace(run_dir / f"{CKPT}.new", path)
    return path


def load(run_dir: Path) -> dict | None:
    """The newest loadable checkpoint, or None if the run has none."""
    for name in (f"{CKPT}.new", CKPT, PREV):  # .new exists only complete, and is newest
        p = run_dir / name
        if p.exists():
            try:
                return torch.load(p, map_location="cpu", weights_only=True)
            except Exception:
                continue
    return None
