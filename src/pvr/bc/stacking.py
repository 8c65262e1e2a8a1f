"""Frame stacking on embeddings, applied after loading (so one dataset serves every K).

``cat`` concatenates the last K embeddings (oldest first); ``diff`` gives the K-1
consecutive differences followed by the last embedding. At an episode start the
missing history is filled with copies of the first embedding, in training and in
evaluation alike (one implementation: :func:`combine`).
"""
from __future__ import annotations

import numpy as np


def combine(window, mode: str):
    """(..., K, D) embeddings, oldest first → (..., K*D); numpy arrays or torch tensors."""
    if mode not in ("cat", "diff"):
        raise ValueError(f"unknown frame_stack_mode {mode!r}")
    if mode == "diff" and window.shape[-2] > 1:
        parts = [window[..., 1:, :] - window[..., :-1, :], window[..., -1:, :]]
        if isinstance(window, np.ndarray):
            window = np.concatenate(parts, axis=-2)
        else:
            import torch

            window = torch.cat(parts, -2)
    return window.reshape(*window.shape[:-2], -1)


def stack_indices(episode_ends: np.ndarray, k: int) -> np.ndarray:
    """(N, K) frame indices t-K+1 .. t of each frame, clamped to the start of its episode."""
    ends = np.asarray(episode_ends, dtype=np.int64)
    n = int(ends[-1]) if len(ends) else 0
    starts = np.repeat(np.concatenate([[0], ends[:-1]]), np.diff(np.concatenate([[0], ends])))
    idx = np.arange(n)[:, None] - np.arange(k - 1, -1, -1)[None, :]
    return np.maximum(idx, starts[:, None])


def stack_episodes(features: np.ndarray, episode_ends: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Stack every frame of concatenated episodes with its K-1 predecessors from the same episode."""
    if k == 1:
        return features
    return combine(features[stack_indices(episode_ends, k)], mode)


class OnlineStacker:
    """The same stacking, step by step, for B environments running in parallel."""

    def __init__(self, batch: int, k: int, mode: str):
        self.k, self.mode = k, mode
        self.window: np.ndarray | None = None
        self.batch = batch

    def __call__(self, features: np.ndarray, first: np.ndarray) -> np.ndarray:
        if self.k == 1:
            return features
        if self.window is None:
            self.window = np.repeat(features[:, None, :], self.k, axis=1)
        self.window = np.concatenate([self.window[:, 1:], features[:, None, :]], axis=1)
        if first.any():
            self.window[first] = features[first][:, None, :]
        return combine(self.window, self.mode)
