"""Training configuration: one dataclass whose defaults are the original's defaults.

The ``pvr train`` flags are generated from these fields (same names as the
original's ``src/arguments.py``), so the CLI, the saved ``config.json`` and the
Python API never drift apart. Fields that a learner recipe sets (batch size,
learning rate, frame stacking, ...) default to ``None``: :meth:`TrainConfig.validate`
fills each one the user left unset from the chosen ``--recipe`` (the original's
values for ``--recipe original``), and the resolved values are what ``config.json``
records.
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
    epochs: int | None = _f(None, "passes over the demonstrations", recipe=True)
    num_episodes_test: int = _f(50, "evaluation episodes per environment at each evaluation point")
    eval_every: int | None = _f(None, "evaluate every this many epochs (and after the last); default: the "
                                      "recipe's: original: its points, epoch 0 and 1-5, 10-60 (by tens), 80 and "
                                      "100 percent of --epochs; cortexbench: 5 (after epochs 6, 11, ..., as "
                                      "CortexBench counts)", recipe=True)
    num_envs_test: int | None = _f(None, "environments played at once during evaluation, each in its own process, "
                                        "with one batched encoder + policy (default: one per available core, "
                                        "Slurm's allocation included, at most --num_episodes_test)")
    runtime: str = _f("torch", "what runs the frozen encoder's backbone in the evaluation process on a CPU: "
                               "torch, onnxruntime, openvino (features checked against torch's before use), "
                               "or auto: the fastest measured there (pvr[runtime] extra; see pvr embed "
                               "--runtime). Not with --train_embedding or a GPU",
                      choices=("auto", "torch", "onnxruntime", "openvino"))
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
    batch_norm: bool | None = _f(None, "BatchNorm1d over the embedding at the input of the policy (default: the "
                                       "recipe's: original: on for every encoder except true_state, as in the "
                                       "original's sweep; cortexbench: on; --no_batch_norm turns it off)")
    disable_lstm: bool = _f(False, "MLP policy without the 2-layer LSTM")
    hidden_size: int | None = _f(None, "width of the MLP layers and the LSTM (default: original: 1024 for "
                                       "discrete actions, 256 for continuous ones; cortexbench: 256)")
    num_input_frames: int | None = _f(None, "frames per observation: the last K embeddings are stacked",
                                      recipe=True)
    frame_stack_mode: str | None = _f(None, "how K frames are combined: cat, or diff (consecutive differences "
                                            "+ last, CortexBench's FLARE fusion)", choices=("cat", "diff"),
                                      recipe=True)
    proprio: bool | None = _f(None, "append the robot's proprioception (a prefix of true_state: Adroit pen 24, "
                                    "relocate 30, MetaWorld 4 values, as CortexBench; other envs have none) to "
                                    "each observation (default: the recipe's: original off, cortexbench on "
                                    "for vision encoders; --no_proprio turns it off)")
    recipe: str = _f("original", "learner recipe: network, loss, optimiser, schedule and the defaults of the "
                                 "flags whose help reads '(default: original X, cortexbench Y)'; original: the "
                                 "PVR paper's learner, cortexbench: CortexBench's MuJoCo learner (eai-vc); see "
                                 "pvr.bc.recipes")
    action_squash: str | None = _f(None, "continuous mean: symmetric = tanh x bound when the bounds are "
                                         "(-a, a), linear otherwise (the original); bounds = tanh mapped into "
                                         "any [low, high]; linear = never squashed (CortexBench)",
                                   choices=("symmetric", "bounds", "linear"), recipe=True)
    batch_size: int | None = _f(None, "sequences per gradient step", recipe=True)
    unroll_length: int | None = _f(None, "length of each training sequence (time steps)", recipe=True)
    learning_rate: float | None = _f(None, "learning rate (original: RMSprop's, decayed linearly to 0; "
                                           "cortexbench: Adam's, constant)", recipe=True)
    lr_schedule: str = _f("epoch", "when the learning rate decays: once per epoch (the original) or per update",
                          choices=("epoch", "update"))
    alpha: float = _f(0.99, "RMSprop smoothing constant")
    momentum: float = _f(0.0, "RMSprop momentum")
    epsilon: float = _f(1e-5, "RMSprop epsilon")
    max_grad_norm: float | None = _f(None, "gradient-norm clipping; 0 turns it off", recipe=True)
    skip_eval_if_behind: bool = _f(False, "when an evaluation is still running at the next evaluation point, "
                                          "skip that point instead of waiting for it (the last epoch is always "
                                          "evaluated)")
    adaptive_threads: bool = _f(False, "give all cores to the evaluation process while training waits for it, "
                                       "and to training while no evaluation runs (faster: whole runs x1.23-1.36 "
                                       "measured on 2 cores), at the cost of bit-for-bit reproducibility: which steps "
                                       "get more threads depends on timing, and float sums over more threads "
                                       "round differently, so two runs may differ in the last digits. "
                                       "Default: fixed thread counts (the final evaluation always gets all "
                                       "cores)")
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
        from pvr.bc import recipes

        recipe = recipes.get(self.recipe)
        for name, value in recipe.fixed.items():
            setattr(self, name, value)
        for f in dataclasses.fields(self):  # the flags the user left unset: the recipe's values
            if getattr(self, f.name) is None and f.name in recipe.defaults:
                setattr(self, f.name, recipe.default(f.name, self))
        for name in ("epochs", "num_episodes_test", "batch_size", "unroll_length", "num_input_frames",
                     "hidden_size", "eval_every", "num_envs_test", "frame_skips"):
            value = getattr(self, name)
            if value is not None and value < (0 if name in ("epochs", "num_episodes_test") else 1):
                raise PvrError(f"--{name} must be positive (got {value})")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise PvrError(f"--max_grad_norm must be positive, or 0 for no clipping (got {self.max_grad_norm})")
        if self.runtime != "torch" and self.train_embedding:
            raise PvrError(f"--runtime {self.runtime} runs a frozen encoder; a fine-tuned one (--train_embedding) "
                           "changes every epoch: use --runtime torch")
        for name, allowed in (("frame_stack_mode", ("cat", "diff")), ("frame_skip_mode", ("last", "avg", "max")),
                              ("runtime", ("auto", "torch", "onnxruntime", "openvino")),
                              ("lr_schedule", ("epoch", "update")),
                              ("action_squash", ("symmetric", "bounds", "linear"))):
            if getattr(self, name) not in allowed:
                raise PvrError(f"--{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if self.disable_pretrained_embedding and not self.train_embedding:
            raise PvrError("--disable_pretrained_embedding applies only with --train_embedding (frozen features "
                           "always use the pretrained weights, as in the original); add --train_embedding, or "
                           "use a random<N> encoder for random frozen features")
        if self.train_embedding and self.embedding_name == "true_state":
            raise PvrError("--train_embedding needs a vision encoder: true_state has no weights to train")
        self.env_kwargs_dict()
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
        typ = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str,
               "float | None": float}.get(str(f.type), str)
        if f.metadata.get("recipe") and f.name != "eval_every":
            kw["help"] += f" (default: {_recipe_defaults(f.name)})"
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kw["required"] = True
        else:
            kw["default"] = f.default
            if f.default is not None:
                kw["help"] += f" (default: {f.default})"
        parser.add_argument(flag, type=typ, **kw)


def _recipe_defaults(name: str) -> str:
    """'original 16, cortexbench 256': what each registered recipe puts in a flag left unset."""
    from pvr.bc import recipes

    return ", ".join(f"{r.name} {r.defaults.get(name)}" for r in recipes.RECIPES.values())


def from_namespace(ns: argparse.Namespace, cls=TrainConfig) -> TrainConfig:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})
