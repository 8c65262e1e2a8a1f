"""The PVR zoo: ``create(name)`` returns a frozen :class:`Encoder`; ``available()`` lists names.

Families live in one module each and register themselves on import. Users add
their own with :func:`register_encoder` from their own module (see README).
"""
from __future__ import annotations

import torch

from pvr.encoders.base import Encoder, Preprocess, encode
from pvr.encoders.registry import ENCODERS, register_encoder
from pvr.encoders import random_conv, efficientnet, true_state, resnet, moco  # noqa: F401  (registration)
from pvr.encoders import clip, mae, maskrcnn  # noqa: F401  (registration)
from pvr.encoders import dinov2, dinov3, siglip, theia  # noqa: F401  (registration: foundation-model ViTs)
from pvr.encoders import r3m, liv, mvp, vc1  # noqa: F401,E402  (robotics PVRs: R3M, VIP, LIV, MVP, VC-1)
from pvr.encoders.concat import ConcatEncoder, concat  # noqa: E402  (registers the uber models)
from pvr.encoders import antialias  # noqa: F401,E402  (the antialias:<name> variants)
from pvr.encoders.custom import register_checkpoint, register_module, register_timm
from pvr.encoders.random_conv import DEFAULT_SEED
from pvr.errors import PvrError

__all__ = ["encode", "Encoder", "Preprocess", "ConcatEncoder", "create", "available", "info", "concat", "register_encoder",
           "register_timm", "register_module", "register_checkpoint", "PvrError"]


def create(name: str, *, seed: int | None = None, **kw) -> Encoder:
    """Build encoder ``name``; ``train=True`` leaves it trainable (fine-tuning).

    ``seed`` draws the weights of encoders whose weights are random: the
    ``random<N>`` family, and any encoder built with ``pretrained=False``; it then
    enters the fingerprint. Encoders with pretrained weights ignore it (their
    fingerprint does not change). ``None`` is ``pvr train``'s default seed, 1.
    """
    entry = ENCODERS.get(name)
    if entry.meta.get("seeded"):
        enc = entry.factory(seed=seed, **kw)
    elif kw.get("pretrained", True) is False and entry.meta.get("family") != "true_state":
        enc = _seeded_init(entry.factory, DEFAULT_SEED if seed is None else int(seed), kw)
    else:
        enc = entry.factory(**kw)
    if not isinstance(enc, Encoder):
        raise PvrError(f"encoder factory for {name!r} returned {type(enc).__name__}, not a pvr Encoder")
    return enc


def _seeded_init(factory, seed: int, kw: dict) -> Encoder:
    # torch's default initialisers draw from the global RNG: seed a private copy
    # of it, so that the same seed builds the same network and the caller's RNG is untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = factory(**kw)
    return enc  # the seed enters the fingerprint through the weights' digest


def available(pattern: str | None = None) -> list[str]:
    return ENCODERS.names(pattern)


def info(name: str) -> dict:
    entry = ENCODERS.get(name)
    meta = dict(entry.meta)
    present = meta.pop("present")
    meta["present"] = bool(present())
    return {"name": name, **meta}
