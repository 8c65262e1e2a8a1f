"""Sequence sampling for training: windows of ``unroll_length`` over the demonstrations.

All episodes (of every training environment) are laid end to end; each epoch cuts
that stream into windows at a fresh random offset, shuffles them and yields batches.
Windows cross episode boundaries freely: ``first`` marks each episode start so the
policy resets its LSTM state there. Padding at the stream's two ends is masked out
of the loss. The order depends only on (seed, epoch), so a resumed run samples
exactly what an uninterrupted one would. Under data-parallel training every rank
draws the same global batches and keeps its share of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass
class Demonstrations:
    """Training data of one or more environments, concatenated: inputs, actions, episode starts.

    ``obs`` holds the features (N, D) of a frozen encoder, or the raw encoder inputs
    (frames or states) when the encoder is fine-tuned (``raw``). ``stack_index``
    (N, K) says which of them make up each step's observation; frozen features are
    stacked per batch (``stack_mode``), so memory holds each embedding once, not K
    times. ``proprio`` (N, P), when the learner uses it, is appended to every
    observation (:func:`pvr.bc.stacking.fuse`).
    """

    obs: np.ndarray      # (N, D) float32, or raw inputs when fine-tuning
    actions: np.ndarray  # (N,) int64 or (N, A) float32
    first: np.ndarray    # (N,) bool
    stack_index: np.ndarray | None = None  # (N, K) int64; None: K = 1 (frozen features only)
    raw: bool = False    # obs are encoder inputs (fine-tuning): batches carry indices, not obs
    stack_mode: str = "cat"
    proprio: np.ndarray | None = None  # (N, P) float32: appended to each observation

    @classmethod
    def concat(cls, parts: list["Demonstrations"]) -> "Demonstrations":
        stack = proprio = None
        if parts[0].stack_index is not None:
            offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
            stack = np.concatenate([p.stack_index + o for p, o in zip(parts, offsets)])
        if parts[0].proprio is not None:
            proprio = np.concatenate([p.proprio for p in parts])
        return cls(np.concatenate([p.obs for p in parts]), np.concatenate([p.actions for p in parts]),
                   np.concatenate([p.first for p in parts]), stack, parts[0].raw, parts[0].stack_mode, proprio)

    def observations(self, index: np.ndarray) -> np.ndarray:
        """Stacked frozen features (+ proprioception) at stream positions ``index`` (any shape)
        → (*index.shape, K*D [+ P])."""
        proprio = None if self.proprio is None else self.proprio[index]
        if self.stack_index is None and proprio is None:
            return self.obs[index]
        from pvr.bc.stacking import fuse

        window = self.obs[index][..., None, :] if self.stack_index is None else self.obs[self.stack_index[index]]
        return fuse(window, self.stack_mode, proprio)

    def __len__(self) -> int:
        return len(self.obs)


def episode_starts(episode_ends: np.ndarray, n: int) -> np.ndarray:
    first = np.zeros(n, dtype=bool)
    first[np.concatenate([[0], episode_ends[:-1]]).astype(np.int64)] = True
    return first


def batches(data: Demonstrations, *, unroll: int, batch_size: int, seed: int, epoch: int,
            rank: int = 0, world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """Yield dicts of time-major tensors: obs (T,B,D) (frozen encoder only), index (T,B) into the
    stream, actions (T,B[,A]), first (T,B), mask (T,B)."""
    rng = np.random.default_rng([seed, epoch])
    n = len(data)
    offset = int(rng.integers(unroll)) if n > unroll else 0
    # window w covers stream positions [offset + (w-1)*unroll, offset + w*unroll)
    n_windows = -(-(n + (unroll - offset) % unroll) // unroll)
    starts = offset - unroll + np.arange(n_windows) * unroll if offset else np.arange(n_windows) * unroll
    order = rng.permutation(len(starts))
    cuts = list(range(0, len(order), batch_size)) + [len(order)]
    if unroll == 1 and len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:
        # a last batch of one single frame cannot be batch-normalised in training: it joins the one before
        del cuts[-2]
    for b, e in zip(cuts[:-1], cuts[1:]):
        chosen = order[b:e]
        dummy = False
        if world_size > 1:  # data-parallel: this rank's share of the global batch
            share = chosen[rank::world_size]
            dummy = len(share) == 0  # keep every rank stepping; a masked-out window adds nothing
            chosen = share if len(share) else chosen[:1]
        idx = starts[chosen][None, :] + np.arange(unroll)[:, None]  # (T, B)
        mask = (idx >= 0) & (idx < n) & (not dummy)
        safe = np.clip(idx, 0, n - 1)
        first = data.first[safe].copy()
        first[0] = True  # each window starts from a fresh LSTM state
        yield {
            "index": torch.from_numpy(safe),
            **({} if data.raw else {"obs": torch.from_numpy(np.ascontiguousarray(data.observations(safe)))}),
            "actions": torch.from_numpy(data.actions[safe]),
            "first": torch.from_numpy(first),
            "mask": torch.from_numpy(mask),
        }
