"""The behavioural-cloning policy of the original: [BatchNorm] → MLP → [2-layer LSTM] → head.

Discrete actions (the original's ``DiscretePolicy``): two 1024-wide ReLU layers,
orthogonal init with ReLU gain, a 1024-wide LSTM, softmax head (cross-entropy,
argmax at test time). Continuous actions (its ``ContinuousPolicy``): two 256-wide
Tanh layers with Tanh gain, a 256-wide LSTM and a Gaussian head with a learned,
state-independent log-std (initialised at 0, clamped from below at -3); trained by
negative log-likelihood, the mean is the test-time action. The mean goes through
tanh and is scaled by the bound only when the bounds are symmetric (``squash=
"symmetric"``, the original's rule; otherwise it is left linear); ``squash="bounds"``
maps it into any [low, high]; ``squash="linear"`` leaves it linear for every box. The
LSTM state is reset wherever ``first`` marks an episode start.

Other learners reuse this class through their keyword arguments (``layers``,
``init``; see :mod:`pvr.bc.recipes`), so a saved run always rebuilds from
``Policy(obs_dim, action, **policy_kwargs)`` whatever recipe trained it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN = -3.0  # the original's floor; it sets no ceiling
HIDDEN = {True: 1024, False: 256}           # width by ``ActionSpec.discrete``
ACTIVATION = {True: "relu", False: "tanh"}  # hidden activation by ``ActionSpec.discrete``
SQUASH_MODES = ("symmetric", "bounds", "linear")
INIT_MODES = ("orthogonal", "mjrl")
_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


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
    def __init__(self, obs_dim: int, action: ActionSpec, *, hidden_size: int | None = None, batch_norm: bool = False,
                 lstm: bool = True, activation: str | None = None, squash: str = "symmetric",
                 log_std_min: float | None = LOG_STD_MIN, log_std_max: float | None = None,
                 layers: int = 2, init: str = "orthogonal"):
        super().__init__()
        self.action = action
        hidden_size = hidden_size or HIDDEN[action.discrete]
        activation = activation or ACTIVATION[action.discrete]
        if activation not in _ACT:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(_ACT)}")
        if squash not in SQUASH_MODES:
            raise ValueError(f"unknown squash {squash!r}; use one of {SQUASH_MODES}")
        if init not in INIT_MODES:
            raise ValueError(f"unknown init {init!r}; use one of {INIT_MODES}")
        gain = nn.init.calculate_gain(activation)
        # "orthogonal": the original's init; "mjrl": PyTorch's default Linear init (CortexBench's mjrl MLP)
        linear = (lambda i, o, g: _orthogonal(nn.Linear(i, o), g)) if init == "orthogonal" else \
            (lambda i, o, g: nn.Linear(i, o))
        modules: list[nn.Module] = [nn.BatchNorm1d(obs_dim)] if batch_norm else []
        for i in range(layers):
            modules += [linear(obs_dim if i == 0 else hidden_size, hidden_size, gain), _ACT[activation]()]
        self.fc = nn.Sequential(*modules)
        self.core = nn.LSTM(hidden_size, hidden_size, num_layers=2) if lstm else None
        self.head = linear(hidden_size, action.n, 1.0)
        if init == "mjrl" and batch_norm:
            # mjrl's BatchNormMLP scales "the last layer" by 1e-2 as list(model.parameters())[-2:], but its
            # network registers the input BatchNorm after the Linear layers, so those two parameters are
            # the BatchNorm's affine weight and bias: γ starts at 0.01, β at 0; the head keeps its init
            with torch.no_grad():
                self.fc[0].weight.mul_(1e-2)
                self.fc[0].bias.mul_(1e-2)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        if not action.discrete:
            self.log_std = nn.Parameter(torch.zeros(action.n))
            self.register_buffer("low", torch.tensor(action.low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(action.high, dtype=torch.float32))
            symmetric = bool(np.all(np.asarray(action.high) == -np.asarray(action.low)))
            # "symmetric" (the original): tanh × bound for (-a, a) boxes, a linear mean otherwise
            self.squash = {"bounds": "bounds", "linear": "none"}.get(squash, "tanh" if symmetric else "none")

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
        if self.squash == "tanh":
            return torch.tanh(out) * self.high
        if self.squash == "none":
            return out
        return self.low + (torch.tanh(out) + 1) * 0.5 * (self.high - self.low)

    def std(self) -> torch.Tensor:
        if self.log_std_min is None and self.log_std_max is None:
            return self.log_std.exp()
        return self.log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def loss(self, out: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the expert's actions over unmasked steps."""
        if self.action.discrete:
            nll = F.cross_entropy(out.flatten(0, 1), actions.flatten().long(), reduction="none")
        else:
            dist = torch.distributions.Normal(self.mean_action(out), self.std())
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
