"""The behavioural-cloning policy of the original: [BatchNorm] → MLP → [2-layer LSTM] → head.

Discrete actions: softmax head (trained with cross-entropy, argmax at test time).
Continuous actions: Gaussian head whose mean is tanh-squashed into the action
bounds and whose state-independent log-std is learned and clamped; trained by
negative log-likelihood, the mean is the test-time action. The LSTM state is reset
wherever ``first`` marks an episode start.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class ActionSpec:
    """What the head predicts: ``n`` discrete actions, or a box of ``n`` dims with bounds."""

    discrete: bool
    n: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @classmethod
    def from_space(cls, space) -> "ActionSpec":
        import gymnasium as gym

        if isinstance(space, gym.spaces.Discrete):
            return cls(True, int(space.n))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            low = np.where(np.isfinite(space.low), space.low, -1.0)
            high = np.where(np.isfinite(space.high), space.high, 1.0)
            return cls(False, int(space.shape[0]), tuple(map(float, low)), tuple(map(float, high)))
        raise ValueError(f"unsupported action space {space}")

    def to_dict(self) -> dict:
        return {"discrete": self.discrete, "n": self.n, "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: dict) -> "ActionSpec":
        return cls(d["discrete"], d["n"], tuple(d["low"]), tuple(d["high"]))


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class Policy(nn.Module):
    def __init__(self, obs_dim: int, action: ActionSpec, *, hidden_size: int = 1024, batch_norm: bool = False,
                 lstm: bool = True):
        super().__init__()
        self.action = action
        relu = nn.init.calculate_gain("relu")
        layers: list[nn.Module] = [nn.BatchNorm1d(obs_dim)] if batch_norm else []
        layers += [_orthogonal(nn.Linear(obs_dim, hidden_size), relu), nn.ReLU(),
                   _orthogonal(nn.Linear(hidden_size, hidden_size), relu), nn.ReLU()]
        self.fc = nn.Sequential(*layers)
        self.core = nn.LSTM(hidden_size, hidden_size, num_layers=2) if lstm else None
        self.head = _orthogonal(nn.Linear(hidden_size, action.n), 1.0)
        if not action.discrete:
            self.log_std = nn.Parameter(torch.zeros(action.n))
            self.register_buffer("low", torch.tensor(action.low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(action.high, dtype=torch.float32))

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor] | tuple:
        if self.core is None:
            return ()
        z = torch.zeros(self.core.num_layers, batch, self.core.hidden_size, device=self.head.weight.device)
        return (z, z.clone())

    def forward(self, obs: torch.Tensor, first: torch.Tensor, state=()):
        """obs (T, B, D), first (T, B) bool → head output (T, B, n), new state."""
        T, B = obs.shape[:2]
        x = self.fc(obs.reshape(T * B, -1)).view(T, B, -1)
        if self.core is not None:
            # The LSTM runs fused over each stretch of time in which no sequence starts
            # an episode, and its state is zeroed only for the sequences that do start
            # one: the same result as the original's step-by-step loop, with one call
            # per stretch instead of one per step (bench/RESULTS.md).
            cuts = [0, *(torch.nonzero(first[1:].any(dim=1)).flatten() + 1).tolist(), T]
            outs = []
            keep = (~first).to(x.dtype)
            for a, b in zip(cuts[:-1], cuts[1:]):
                m = keep[a].view(1, B, 1)
                state = tuple(m * s for s in state)
                out, state = self.core(x[a:b], state)
                outs.append(out)
            x = torch.cat(outs)
        return self.head(x), state

    def mean_action(self, out: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(out) + 1) * 0.5 * (self.high - self.low)

    def loss(self, out: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the expert's actions over unmasked steps."""
        if self.action.discrete:
            nll = F.cross_entropy(out.flatten(0, 1), actions.flatten().long(), reduction="none")
        else:
            std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
            dist = torch.distributions.Normal(self.mean_action(out), std)
            nll = -dist.log_prob(actions.float()).sum(-1).flatten()
        mask = mask.flatten().float()
        return (nll * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, first: torch.Tensor, state=()):
        """One step for B environments: obs (B, D), first (B,) → actions (B,) or (B, n), new state."""
        out, state = self.forward(obs[None], first[None], state)
        out = out[0]
        action = out.argmax(-1) if self.action.discrete else self.mean_action(out)
        return action, state
