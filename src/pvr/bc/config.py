"""Training configuration: one dataclass whose defaults are the original's defaults.

The ``pvr train`` flags are generated from these fields (same names as the
original's ``src/arguments.py``), so the CLI, the saved ``config.json`` and the
Python API never drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    env: str = _f("", "training environments, comma-separated (trained jointly, evaluated separately)", required=True)
    embedding_name: str = _f("resnet50", "encoder name (see `pvr encoders`)")
    data_path: str = _f("pvr_data", "folder holding one dataset per environment: <data_path>/<env>.zarr")
    save_path: str = _f("pvr_runs", "runs are written to <save_path>/<xpid>/")
    xpid: str | None = _f(None, "experiment id (default: <env>-<embedding_name>-s<seed>)")
    seed: int = _f(1, "random seed")
    epochs: int = _f(100, "passes over the demonstrations")
    num_episodes_test: int = _f(50, "evaluation episodes per environment at each evaluation point")
    eval_every: int | None = _f(None, "evaluate every this many epochs (and after the last); default: the "
                                      "original's points, epoch 0 and 1-5, 10-60 (by tens), 80 and 100 percent of --epochs")
    num_envs_test: int = _f(8, "environments stepped together (one batched encoder + policy) during evaluation")
    env_kwargs: str = _f("", "JSON dict of keyword arguments for pvr.envs.make at evaluation "
                              "(default: those recorded in the dataset)")
    frame_skips: int = _f(1, "evaluation environments repeat each action this many times (rewards summed); the "
                             "demonstrations are used as recorded, as in the original")
    frame_skip_mode: str = _f("last", "observation after a skipped step: last, avg or max of its frames",
                              choices=("last", "avg", "max"))
    num_trajectories_train: int | None = _f(None, "use only the first N demonstrations per environment")
    train_embedding: bool = _f(False, "fine-tune the encoder on raw frames with the policy (slow on a CPU)")
    disable_pretrained_embedding: bool = _f(False, "with --train_embedding: start the encoder from random "
                                                   "weights (seeded by --seed) instead of its pretrained ones")
    batch_norm: bool | None = _f(None, "BatchNorm1d over the embedding at the input of the policy (default: on "
                                       "for every encoder except true_state, as in the original's sweep; "
                                       "--no_batch_norm turns it off)")
    disable_lstm: bool = _f(False, "MLP policy without the 2-layer LSTM")
    hidden_size: int | None = _f(None, "width of the MLP layers and the LSTM (default: 1024 for discrete "
                                       "actions, 256 for continuous ones)")
    num_input_frames: int = _f(1, "frames per observation: the last K embeddings are stacked")
    frame_stack_mode: str = _f("cat", "how K frames are combined: cat, or diff (consecutive differences + last)",
                               choices=("cat", "diff"))
    recipe: str = _f("original", "learner recipe: network, loss, optimiser and schedule (see pvr.bc.recipes)")
    action_squash: str = _f("symmetric", "continuous mean: symmetric = tanh x bound when the bounds are "
                                         "(-a, a), linear otherwise (the original); bounds = tanh mapped into "
                                         "any [low, high]", choices=("symmetric", "bounds"))
    batch_size: int = _f(16, "sequences per gradient step")
    unroll_length: int = _f(100, "length of each training sequence (time steps)")
    learning_rate: float = _f(1e-4, "RMSprop learning rate, decayed linearly to 0")
    lr_schedule: str = _f("epoch", "when the learning rate decays: once per epoch (the original) or per update",
                          choices=("epoch", "update"))
    alpha: float = _f(0.99, "RMSprop smoothing constant")
    momentum: float = _f(0.0, "RMSprop momentum")
    epsilon: float = _f(1e-5, "RMSprop epsilon")
    max_grad_norm: float = _f(40.0, "gradient-norm clipping")
    skip_eval_if_behind: bool = _f(False, "when an evaluation is still running at the next evaluation point, "
                                          "skip that point instead of waiting for it (the last epoch is always "
                                          "evaluated)")
    disable_save: bool = _f(False, "write no results or policy (no run directory); results are only printed")
    disable_tensorboard: bool = _f(False, "do not write TensorBoard event files to <run>/tensorboard")
    wandb: str | None = _f(None, "also log to Weights & Biases, in this project (needs `pip install wandb`)")
    debug: bool = _f(False, "quick check of a setup, as in the original: 20 demonstrations per environment, "
                            "2 test episodes")
    disable_cuda: bool = _f(False, "train on the CPU even when CUDA is available")

    # -- derived --------------------------------------------------------------
    @property
    def envs(self) -> list[str]:
        return [e.strip() for e in self.env.split(",") if e.strip()]

    @property
    def run_id(self) -> str:
        return self.xpid or f"{'+'.join(self.envs)}-{self.embedding_name}-s{self.seed}"

    def env_kwargs_dict(self) -> dict[str, Any]:
        from pvr.errors import PvrError

        if not self.env_kwargs:
            return {}
        try:
            value = json.loads(self.env_kwargs)
        except json.JSONDecodeError as e:
            raise PvrError(f"--env_kwargs must be a JSON object, e.g. '{{\"max_steps\": 64}}': {e}") from None
        if not isinstance(value, dict):
            raise PvrError("--env_kwargs must be a JSON object, e.g. '{\"max_steps\": 64}'")
        return value

    def validate(self) -> "TrainConfig":
        from pvr.errors import PvrError

        if not self.envs:
            raise PvrError("--env is required: one or more environment names, comma-separated")
        for name in ("epochs", "num_episodes_test", "batch_size", "unroll_length", "num_input_frames",
                     "hidden_size", "eval_every", "num_envs_test", "frame_skips"):
            value = getattr(self, name)
            if value is not None and value < (0 if name in ("epochs", "num_episodes_test") else 1):
                raise PvrError(f"--{name} must be positive (got {value})")
        for name, allowed in (("frame_stack_mode", ("cat", "diff")), ("frame_skip_mode", ("last", "avg", "max")),
                              ("lr_schedule", ("epoch", "update")), ("action_squash", ("symmetric", "bounds"))):
            if getattr(self, name) not in allowed:
                raise PvrError(f"--{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        from pvr.bc import recipes

        recipes.get(self.recipe)
        if self.disable_pretrained_embedding and not self.train_embedding:
            raise PvrError("--disable_pretrained_embedding applies only with --train_embedding (frozen features "
                           "always use the pretrained weights, as in the original); add --train_embedding, or "
                           "use a random<N> encoder for random frozen features")
        if self.train_embedding and self.embedding_name == "true_state":
            raise PvrError("--train_embedding needs a vision encoder: true_state has no weights to train")
        self.env_kwargs_dict()
        if self.batch_norm is None:  # the original's sweep: on for every encoder but the simulator's state
            self.batch_norm = self.embedding_name != "true_state"
        if self.debug:  # the original's debug mode: 20 trajectories per environment, 2 test episodes
            self.num_trajectories_train, self.num_episodes_test = 20, 2
        return self

    def warnings(self) -> list[str]:
        """The original's two warnings about settings that usually hurt (printed, not refused)."""
        out = []
        if self.embedding_name != "true_state" and not self.batch_norm:
            out.append("You are using a perception module without batch normalization.")
        if self.num_input_frames > 1 and not self.disable_lstm:
            out.append("You are stacking frames but still using a LSTM.")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def add_arguments(parser: argparse.ArgumentParser, cls=TrainConfig) -> None:
    """Add one ``--<field>`` flag per dataclass field."""
    for f in dataclasses.fields(cls):
        kw = dict(help=f.metadata.get("help", ""))
        flag = f"--{f.name}"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", **kw)
            continue
        if f.type in ("bool | None",):  # tri-state: --X on, --no_X off, neither: the documented default
            parser.add_argument(flag, action="store_const", const=True, default=None, dest=f.name, **kw)
            parser.add_argument(f"--no_{f.name}", action="store_const", const=False, dest=f.name,
                                help=f"turn --{f.name} off")
            continue
        typ = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}.get(str(f.type), str)
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kw["required"] = True
        else:
            kw["default"] = f.default
            if f.default is not None:
                kw["help"] += f" (default: {f.default})"
        parser.add_argument(flag, type=typ, **kw)


def from_namespace(ns: argparse.Namespace, cls=TrainConfig) -> TrainConfig:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})
