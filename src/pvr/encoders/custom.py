"""Registering your own encoder in one call: a timm model, a torch module factory, a checkpoint.

    import pvr.encoders as E
    E.register_timm("my_convnext", "convnext_tiny", checkpoint="convnext_tiny.pth")
    E.register_module("my_net", lambda: MyNet(), preprocess=E.Preprocess(resize=128, crop=112))
    E.create("my_convnext")

Checkpoints load with ``weights_only=True`` and must fit the module exactly (keys
under a ``state_dict`` / ``model`` / ``module.`` wrapper are unwrapped); a relative
``checkpoint`` is looked up in ``$PVR_MODEL_PATH``. Nothing here falls back to
random weights: pass ``checkpoint=None`` only for a module that builds its own
weights (say so in ``weights=``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError


def _resolve(checkpoint: str | Path, name: str) -> Path:
    p = Path(checkpoint).expanduser()
    if p.is_absolute() or p.is_file():
        if not p.is_file():
            raise PvrError(f"encoder {name!r} needs weights file {p}, which does not exist")
        return p
    return weights.WeightsSpec(str(checkpoint), "wherever you got it (your own checkpoint)").require(name)


def unwrap(state) -> dict:
    """The state dict inside common wrappers: ``state_dict``, ``model``, ``module.`` prefixes."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if isinstance(state, dict) and state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def register_module(name: str, factory: Callable[[], nn.Module], *, checkpoint: str | Path | None = None,
                    preprocess: Preprocess | None = None, dim: int | None = None, input_size: int | None = None,
                    family: str = "custom", weights: str | None = None, allow_unused: tuple[str, ...] = (),
                    micro_batch: int | None = 4, overwrite: bool = False) -> None:
    """Register ``factory()`` (an ``nn.Module`` from (B,3,h,w) floats to features) as encoder ``name``."""
    preprocess = preprocess or Preprocess()
    source = weights or (f"file:{checkpoint}" if checkpoint else "built by the factory")

    def present() -> bool:
        if checkpoint is None:
            return True
        try:
            _resolve(checkpoint, name)
            return True
        except PvrError:
            return False

    def make(train: bool = False, **_) -> Encoder:
        net = factory()
        where = source
        if checkpoint is not None:
            path = _resolve(checkpoint, name)
            from pvr.encoders import weights as W

            W.load_strict(net, unwrap(W.load_checkpoint(path)), source=path, allow_unused=allow_unused)
            where = str(path)
        return Encoder(name, net, preprocess, dim=dim, trainable=train, weights_source=where,
                       micro_batch=micro_batch)

    register_encoder(name, family=family, weights=source, dim=dim, input_size=input_size or preprocess.input_size,
                     present=present, description=f"user encoder ({source})", overwrite=overwrite)(make)


def register_timm(name: str, model_name: str, *, checkpoint: str | Path | None, preprocess: Preprocess | None = None,
                  dim: int | None = None, overwrite: bool = False, **timm_kwargs) -> None:
    """Register timm's ``model_name`` (pooled features, no classifier) with weights from ``checkpoint``.

    ``preprocess`` defaults to the model's own timm configuration (resize by its
    crop ratio, centre crop, its mean/std and interpolation).
    """
    import timm

    if preprocess is None:
        cfg = timm.models.get_pretrained_cfg(model_name)
        cfg = cfg.to_dict() if cfg is not None else {}
        size = cfg.get("input_size", (3, 224, 224))[-1]
        preprocess = Preprocess(resize=int(round(size / cfg.get("crop_pct", 0.875))), crop=size,
                                interpolation=cfg.get("interpolation", "bilinear") if cfg.get("interpolation") in
                                ("bilinear", "bicubic") else "bilinear",
                                mean=tuple(cfg.get("mean", Preprocess.mean)), std=tuple(cfg.get("std", Preprocess.std)))
    register_module(name, lambda: timm.create_model(model_name, pretrained=False, num_classes=0, **timm_kwargs),
                    checkpoint=checkpoint, preprocess=preprocess, dim=dim, family="timm",
                    weights=f"file:{checkpoint}" if checkpoint else f"timm:{model_name} (random init)",
                    overwrite=overwrite)


def register_checkpoint(name: str, factory: Callable[[], nn.Module], checkpoint: str | Path, **kw) -> None:
    """Shorthand for :func:`register_module` with a required checkpoint file."""
    register_module(name, factory, checkpoint=checkpoint, **kw)
