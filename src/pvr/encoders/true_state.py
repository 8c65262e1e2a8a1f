"""``true_state``: the simulator's low-dimensional state, the upper-bound baseline.

Not a vision model: it reads the dataset's (or the environment info's)
``true_state`` vector instead of frames, so ``input_key`` is ``"true_state"``.
"""
from __future__ import annotations

import torch
from torch import nn

from pvr.encoders.base import Encoder
from pvr.encoders.registry import register_encoder


class TrueStateEncoder(Encoder):
    input_key = "true_state"

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return state.reshape(state.shape[0], -1).float()


@register_encoder("true_state", family="true_state", weights="none", dim=None, input_size="state vector",
                  description="the simulator's low-dimensional state (upper baseline)")
def true_state(dim: int = 0, train: bool = False, **_) -> Encoder:
    return TrueStateEncoder("true_state", nn.Identity(), None, dim=dim, weights_source="none")
