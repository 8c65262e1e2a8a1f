"""``antialias:<name>``: encoder ``name`` with an antialiased resize.

The original resized frames the way torchvision resized tensors then, without
antialiasing. That is harmless when frames are enlarged (≤ 256 px frames for the
256-px resize), but frames larger than the resize are subsampled and alias
(thin edges break up, fine textures turn into moiré), unlike the antialiased
(PIL) resize the networks saw in training. ``antialias:resnet50`` keeps
everything else of ``resnet50`` and antialiases the resize; it is a different
encoder for every cache (its own name and fingerprint). Encoders without a
resize (``random<N>``) are unchanged but for their name.
"""
from __future__ import annotations

from dataclasses import replace

from pvr.encoders.base import Encoder
from pvr.encoders.registry import ENCODERS, add_encoder_rule
from pvr.registry import Entry

PREFIX = "antialias:"


def antialiased(enc: Encoder) -> Encoder:
    """Switch on antialiasing in ``enc``'s resize (and its parts', for a concatenation), in place."""
    parts = getattr(enc, "parts", None)
    if parts is not None:
        for p in parts:
            antialiased(p)
    elif enc.preprocess is not None and enc.preprocess.resize is not None:
        enc.preprocess = replace(enc.preprocess, antialias=True)
    enc._fingerprint = None
    return enc


def _rule(name: str) -> Entry | None:
    if not name.startswith(PREFIX):
        return None
    inner = name[len(PREFIX):]
    entry = ENCODERS.get(inner)  # unknown names fail with the registry's message

    def make(**kw) -> Encoder:
        import pvr.encoders as E

        enc = antialiased(E.create(inner, **kw))
        enc.name = name
        return enc

    meta = {**entry.meta, "seeded": True, "description": f"{entry.meta.get('description', inner)}; antialiased resize"}
    return Entry(name, make, meta)


add_encoder_rule(_rule)
