"""Learner recipes: how a run builds its policy, optimiser and learning-rate schedule.

The trainer, sampler, checkpoints and evaluation are shared; what differs between
published learners (the original's RMSprop MLP/LSTM with NLL; later, CortexBench's
BatchNorm MLP with MSE and Adam) is one entry here, chosen with ``--recipe``.
A new learner is a new :class:`Recipe` registered with :func:`register_recipe`,
not a branch in the trainer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pvr.bc.policy import HIDDEN, ActionSpec, Policy
from pvr.errors import PvrError


@dataclass(frozen=True)
class Recipe:
    name: str
    policy_kwargs: Callable[["TrainConfig", ActionSpec], dict]  # noqa: F821 - saved with the run
    optimizer: Callable[[list, "TrainConfig"], torch.optim.Optimizer]  # noqa: F821
    # (optimizer, cfg, updates per epoch) → scheduler, and whether it steps per update (else per epoch)
    scheduler: Callable[[torch.optim.Optimizer, "TrainConfig", int], tuple[object, bool]]  # noqa: F821
    description: str = ""

    def policy(self, obs_dim: int, action: ActionSpec, kwargs: dict) -> Policy:
        return Policy(obs_dim, action, **kwargs)


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise PvrError(f"unknown --recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def _original_policy_kwargs(cfg, action: ActionSpec) -> dict:
    # every value is written out, so the saved run rebuilds the same network whatever the defaults become
    return dict(hidden_size=cfg.hidden_size or HIDDEN[action.discrete], batch_norm=bool(cfg.batch_norm),
                lstm=not cfg.disable_lstm, activation="relu" if action.discrete else "tanh",
                squash=cfg.action_squash, log_std_min=-3.0, log_std_max=None)


def _original_optimizer(params: list, cfg) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.alpha, eps=cfg.epsilon, momentum=cfg.momentum)


def _linear_decay(optimizer: torch.optim.Optimizer, cfg, updates_per_epoch: int):
    """The original: factor 1 - e/E, stepped once per epoch (epoch e = 0..E-1 trains at lr·(1 - e/E)).
    ``--lr_schedule update`` decays the same line per update instead, reaching 0 at the end."""
    if cfg.lr_schedule == "update":
        total = max(1, cfg.epochs * updates_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total)), True
    epochs = max(1, cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(0.0, 1 - e / epochs)), False


ORIGINAL = register_recipe(Recipe(
    "original", _original_policy_kwargs, _original_optimizer, _linear_decay,
    description="PVR for Control: [BatchNorm] → 2-layer MLP → 2-layer LSTM → softmax / Gaussian head, "
                "NLL loss, RMSprop, linear LR decay per epoch"))
