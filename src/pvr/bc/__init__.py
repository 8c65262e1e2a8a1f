"""Behavioural cloning: policy, sequence sampler, trainer, checkpoints."""
from pvr.bc.config import TrainConfig
from pvr.bc.policy import ActionSpec, Policy

__all__ = ["TrainConfig", "ActionSpec", "Policy", "train"]


def train(cfg: TrainConfig, **kw):
    from pvr.bc.trainer import train as _train

    return _train(cfg, **kw)
