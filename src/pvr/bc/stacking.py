"""Frame stacking on embeddings, applied after loading (so one dataset serves every K).

``cat`` concatenates the last K embeddings (oldest first); ``diff`` gives the K-1
consecutive differences followed by the last embedding. At an episode start the
missing history is filled with copies of the first embedding, in training and in
evaluation alike (one implementation: :func:`combine`).

A learner may also append the robot's proprioception to the combined embeddings
(CortexBench's recipe: :func:`proprio_dims` says how much of ``true_state`` that is
for each env). :func:`fuse` is the single place where an observation is built from
its frames and proprioception: training batches, fine-tuning windows and
evaluation steps all go through it.
"""
from __future__ import annotations

import fnmatch

import numpy as np

# CortexBench's proprioception (eai-vc mujoco_vc/gym_wrapper.py get_proprioception): a prefix of the env's
# state observation, which is pvr's ``true_state`` for these suites. Adroit: the hand's joint positions
# (pen: 24, relocate: 6 arm + 24 hand); MetaWorld: hand position and gripper opening. Other envs (DMC
# included, and Adroit door/hammer, for which the upstream returns None) have none.
PROPRIO_PREFIX = {"HMS-pen*": 24, "HMS-relocate*": 30, "MetaWorld-*": 4}


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


def proprio_dims(env_name: str) -> int:
    """How many leading values of ``true_state`` are the proprioception of ``env_name`` (0: none)."""
    return next((n for pattern, n in PROPRIO_PREFIX.items() if fnmatch.fnmatchcase(env_name, pattern)), 0)


def fuse(window, mode: str, proprio=None):
    """(..., K, D) embeddings, oldest first, and (..., P) proprioception or None → (..., K*D [+ P])."""
    out = combine(window, mode)
    if proprio is None or proprio.shape[-1] == 0:
        return out
    if isinstance(out, np.ndarray):
        return np.concatenate([out, np.asarray(proprio, dtype=out.dtype)], axis=-1)
    import torch

    return torch.cat([out, torch.as_tensor(proprio, dtype=out.dtype, device=out.device)], -1)


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

    def __call__(self, features: np.ndarray, first: np.ndarray, proprio: np.ndarray | None = None) -> np.ndarray:
        if self.k == 1:
            return fuse(features[:, None, :], self.mode, proprio)
        if self.window is None:
            self.window = np.repeat(features[:, None, :], self.k, axis=1)
        self.window = np.concatenate([self.window[:, 1:], features[:, None, :]], axis=1)
        if first.any():
            self.window[first] = features[first][:, None, :]
        return fuse(self.window, self.mode, proprio)
