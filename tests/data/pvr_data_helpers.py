"""Tiny synthetic episodes shared by the data tests (8x8 frames, a few steps)."""
from __future__ import annotations

import numpy as np
import pytest


def make_episode(n: int, seed: int = 0, *, hw: int = 8, continuous: bool = False, state_dim: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    ep = {
        "obs": rng.integers(0, 256, size=(n, hw, hw, 3), dtype=np.uint8),
        "action": (rng.standard_normal((n, 2)).astype(np.float32) if continuous
                   else rng.integers(0, 7, size=n).astype(np.int64)),
        "true_state": rng.standard_normal((n, state_dim)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
    }
    done = np.zeros(n, dtype=bool)
    done[-1] = True
    ep["done"] = done
    return ep


@pytest.fixture
def episodes() -> list[dict]:
    return [make_episode(n, seed=i) for i, n in enumerate((5, 70, 3))]
