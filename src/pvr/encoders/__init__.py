"""The PVR zoo: ``create(name)`` returns a frozen :class:`Encoder`; ``available()`` lists names.

Families live in one module each and register themselves on import. Users add
their own with :func:`register_encoder` from their own module (see README).
"""
from __future__ import annotations

from pvr.encoders.base import Encoder, Preprocess, encode
from pvr.encoders.registry import ENCODERS, register_encoder
from pvr.encoders import random_conv, efficientnet, true_state, resnet, moco  # noqa: F401  (registration)
from pvr.encoders import clip, mae, maskrcnn  # noqa: F401  (registration)
from pvr.encoders.concat import ConcatEncoder, concat  # noqa: E402  (registers the uber models)
from pvr.encoders.custom import register_checkpoint, register_module, register_timm
from pvr.errors import PvrError

__all__ = ["encode", "Encoder", "Preprocess", "ConcatEncoder", "create", "available", "info", "concat", "register_encoder",
           "register_timm", "register_module", "register_checkpoint", "PvrError"]


def create(name: str, **kw) -> Encoder:
    """Build encoder ``name``; ``train=True`` leaves it trainable (fine-tuning)."""
    enc = ENCODERS.get(name).factory(**kw)
    if not isinstance(enc, Encoder):
        raise PvrError(f"encoder factory for {name!r} returned {type(enc).__name__}, not a pvr Encoder")
    return enc


def available(pattern: str | None = None) -> list[str]:
    return ENCODERS.names(pattern)


def info(name: str) -> dict:
    entry = ENCODERS.get(name)
    meta = dict(entry.meta)
    present = meta.pop("present")
    meta["present"] = bool(present())
    return {"name": name, **meta}
