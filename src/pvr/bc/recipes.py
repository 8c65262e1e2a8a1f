"""Learner recipes: how a run builds its policy, loss, optimiser, schedule and observations.

The trainer, sampler, checkpoints and evaluation are shared; what differs between
published learners (the original's RMSprop MLP/LSTM with NLL; CortexBench's
BatchNorm MLP with MSE and Adam) is one entry here, chosen with ``--recipe``.
A new learner is a new :class:`Recipe` registered with :func:`register_recipe`,
not a branch in the trainer.

A recipe's ``defaults`` fill the training flags the user left unset (``None`` in
:class:`~pvr.bc.config.TrainConfig`); :meth:`TrainConfig.validate` writes the
resolved values into the config, so ``config.json`` records what the run used and
a rerun, a resume or ``pvr evaluate`` rebuilds the same learner. Observation
fusion (frame history, proprioception) is chosen by the resolved flags
``num_input_frames``, ``frame_stack_mode`` and ``proprio`` and applied by one
function, :func:`pvr.bc.stacking.fuse`, in training and evaluation alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from pvr.bc.policy import HIDDEN, ActionSpec, Policy
from pvr.errors import PvrError

# the original's evaluation points, as fractions of --epochs (main_bc.py is_essential_save): no 70% or 90%
ESSENTIAL_PROGRESS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def original_eval_epochs(epochs: int, every: int | None = None) -> list[int]:
    """Epochs at which the policy is evaluated: 0, then the original's points (both the floor and the
    ceiling of each fraction of ``epochs``), or every ``every`` epochs; the last epoch always."""
    if every:
        points = {e for e in range(epochs + 1) if e % every == 0}
    else:
        points = {0} | {int(f(p * epochs)) for p in ESSENTIAL_PROGRESS for f in (np.floor, np.ceil)}
    return sorted(e for e in points | {epochs} if 0 <= e <= epochs)


def _policy_nll(policy: Policy, out: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return policy.loss(out, actions, mask)


@dataclass(frozen=True)
class Recipe:
    name: str
    policy_kwargs: Callable[["TrainConfig", ActionSpec], dict]  # noqa: F821 - saved with the run
    optimizer: Callable[[list, "TrainConfig"], torch.optim.Optimizer]  # noqa: F821
    # (optimizer, cfg, updates per epoch) → scheduler, and whether it steps per update (else per epoch)
    scheduler: Callable[[torch.optim.Optimizer, "TrainConfig", int], tuple[object, bool]]  # noqa: F821
    description: str = ""
    # (policy, head output (T, B, n), expert actions, mask (T, B)) → scalar loss over unmasked steps
    loss: Callable[[Policy, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = _policy_nll
    # flag → value (or cfg → value) for every TrainConfig field left None by the user
    defaults: dict[str, Any] = field(default_factory=dict)
    # flag → value the recipe always uses (its network has no such part), whatever was passed
    fixed: dict[str, Any] = field(default_factory=dict)
    # (epochs, --eval_every) → the epochs (0 = before training) at which the policy is evaluated
    eval_epochs: Callable[[int, int | None], list[int]] = original_eval_epochs

    def policy(self, obs_dim: int, action: ActionSpec, kwargs: dict) -> Policy:
        return Policy(obs_dim, action, **kwargs)

    def default(self, name: str, cfg) -> Any:
        value = self.defaults.get(name)
        return value(cfg) if callable(value) else value


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
                "NLL loss, RMSprop, linear LR decay per epoch",
    # src/arguments.py; batch_norm: submitit_bc.py's sweep (on for every encoder but the simulator's state)
    defaults=dict(epochs=100, batch_size=16, unroll_length=100, learning_rate=1e-4, max_grad_norm=40.0,
                  num_input_frames=1, frame_stack_mode="cat", action_squash="symmetric", proprio=False,
                  batch_norm=lambda cfg: cfg.embedding_name != "true_state")))


# -- CortexBench (facebookresearch/eai-vc, cortexbench/mujoco_vc/visual_imitation) --------------------------

def _cortexbench_policy_kwargs(cfg, action: ActionSpec) -> dict:
    # mjrl BatchNormMLP (the commit eai-vc pins): BatchNorm1d on the input, Linear → ReLU × 3 (256 wide),
    # a linear output; PyTorch's default init, the BatchNorm's γ scaled to 0.01; log-std 0, floor -3
    return dict(hidden_size=cfg.hidden_size or 256, batch_norm=bool(cfg.batch_norm), lstm=False,
                activation="relu", squash=cfg.action_squash, log_std_min=-3.0, log_std_max=None,
                layers=3, init="mjrl")


def _adam(params: list, cfg) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.learning_rate)


def _constant(optimizer: torch.optim.Optimizer, cfg, updates_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0), False


def mse_loss(policy: Policy, out: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """torch.nn.MSELoss on the mean action: the mean over unmasked steps and action dimensions. The
    Gaussian's log-std takes no part, so it stays at its initial 0, as upstream (its Adam holds only the
    network's parameters). Discrete actions (which CortexBench has none of) use the cross-entropy."""
    if policy.action.discrete:
        return policy.loss(out, actions, mask)
    err = (policy.mean_action(out) - actions.float()) ** 2  # (T, B, A)
    m = mask.float()
    return (err.sum(-1) * m).sum() / (m.sum() * err.shape[-1]).clamp(min=1)


def cortexbench_eval_epochs(epochs: int, every: int | None = None) -> list[int]:
    """train_loop.py evaluates after the 0-based epoch e when ``(e % eval_frequency == 0 and e > 0) or
    e == epochs - 1``, i.e. after 6, 11, ..., 96 and 100 trained epochs for (100, 5); never before training."""
    every = every or 5
    return sorted({e + 1 for e in range(epochs) if (e % every == 0 and e > 0) or e == epochs - 1})


CORTEXBENCH = register_recipe(Recipe(
    "cortexbench", _cortexbench_policy_kwargs, _adam, _constant,
    description="CortexBench (eai-vc MuJoCo visual imitation): BatchNorm → 3 × 256 ReLU MLP → linear mean, "
                "MSE loss, Adam lr 1e-3, batch 256 of single frames, 3 frames fused by differences "
                "[+ proprioception], 100 epochs evaluated every 5",
    loss=mse_loss,
    # config/{Adroit,DMC,Metaworld}_BC_config.yaml bc_kwargs / env_kwargs; the DataLoader shuffles single
    # (trajectory, step) samples, which is the shared sampler with windows of one step
    defaults=dict(epochs=100, batch_size=256, unroll_length=1, learning_rate=1e-3, max_grad_norm=0.0,
                  num_input_frames=3, frame_stack_mode="diff", action_squash="linear", eval_every=5,
                  batch_norm=True, proprio=lambda cfg: cfg.embedding_name != "true_state"),
    fixed=dict(disable_lstm=True),
    eval_epochs=cortexbench_eval_epochs))
