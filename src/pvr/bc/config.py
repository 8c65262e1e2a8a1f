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
    eval_every: int = _f(1, "evaluate every this many epochs (and after the last)")
    num_envs_test: int = _f(8, "environments stepped together (one batched encoder + policy) during evaluation")
    env_kwargs: str = _f("", "JSON dict of keyword arguments for pvr.envs.make at evaluation "
                              "(default: those recorded in the dataset)")
    num_trajectories_train: int | None = _f(None, "use only the first N demonstrations per environment")
    train_embedding: bool = _f(False, "fine-tune the encoder on raw frames with the policy (slow on a CPU)")
    batch_norm: bool = _f(False, "BatchNorm1d over the embedding at the input of the policy")
    disable_lstm: bool = _f(False, "MLP policy without the 2-layer LSTM")
    hidden_size: int = _f(1024, "width of the MLP layers and the LSTM")
    num_input_frames: int = _f(1, "frames per observation: the last K embeddings are stacked")
    frame_stack_mode: str = _f("cat", "how K frames are combined: cat, or diff (consecutive differences + last)",
                               choices=("cat", "diff"))
    batch_size: int = _f(32, "sequences per gradient step")
    unroll_length: int = _f(100, "length of each training sequence (time steps)")
    learning_rate: float = _f(1e-4, "RMSprop learning rate, decayed linearly to 0")
    alpha: float = _f(0.99, "RMSprop smoothing constant")
    momentum: float = _f(0.0, "RMSprop momentum")
    epsilon: float = _f(1e-5, "RMSprop epsilon")
    max_grad_norm: float = _f(40.0, "gradient-norm clipping")
    skip_eval_if_behind: bool = _f(False, "when an evaluation is still running at the next evaluation point, "
                                          "skip that point instead of waiting for it (the last epoch is always "
                                          "evaluated)")
    disable_tensorboard: bool = _f(False, "do not write TensorBoard event files to <run>/tensorboard")
    wandb: str | None = _f(None, "also log to Weights & Biases, in this project (needs `pip install wandb`)")
    debug: bool = _f(False, "tiny run to check a setup: 2 epochs, 2 test episodes")
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
                     "hidden_size", "eval_every", "num_envs_test"):
            if getattr(self, name) < (0 if name in ("epochs", "num_episodes_test") else 1):
                raise PvrError(f"--{name} must be positive (got {getattr(self, name)})")
        if self.frame_stack_mode not in ("cat", "diff"):
            raise PvrError("--frame_stack_mode must be cat or diff")
        self.env_kwargs_dict()
        if self.debug:
            self.epochs, self.num_episodes_test = min(self.epochs, 2), min(self.num_episodes_test, 2)
        return self

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
        typ = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}.get(str(f.type), str)
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kw["required"] = True
        else:
            kw["default"] = f.default
            kw["help"] += f" (default: {f.default})"
        parser.add_argument(flag, type=typ, **kw)


def from_namespace(ns: argparse.Namespace, cls=TrainConfig) -> TrainConfig:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})
