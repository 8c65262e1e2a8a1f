"""Concatenated encoders: the original's "uber" models and any list of encoders.

``moco_aug_uber_345`` = ``moco_aug_l3`` ⊕ ``moco_aug_l4`` ⊕ ``moco_aug`` (the
suffix names the ResNet stages: 3 = layer3 tap, 4 = layer4 tap, 5 = pooled
output), likewise ``_35``, ``_34``, ``_45`` and for ``moco_aug_places``,
``moco_croponly``, ``moco_croponly_places``. Any other list:
``create("concat:moco_aug_l3+resnet50")`` or :func:`concat`. Each part keeps its
own preprocessing; the fingerprint covers every part.
"""
from __future__ import annotations


import torch
from torch import nn

from pvr.encoders.base import Encoder
from pvr.encoders.registry import ENCODERS, add_encoder_rule, register_encoder
from pvr.errors import PvrError
from pvr.registry import Entry

PREFIX = "concat:"


class ConcatEncoder(Encoder):
    """Several encoders side by side: features ``[f1(x), f2(x), ...]`` along dim 1."""

    def __init__(self, name: str, parts: list[Encoder], *, trainable: bool = False):
        if not parts:
            raise PvrError("a concatenated encoder needs at least one part")
        keys = {p.input_key for p in parts}
        if keys != {"obs"}:
            raise PvrError(f"{name}: only image encoders can be concatenated (parts read {sorted(keys)})")
        nn.Module.__init__(self)
        self.name = name
        self.parts = nn.ModuleList(parts)
        self.backbone = self.parts  # so generic code (digest, .to, parameters) sees every part
        self.preprocess = None
        self.weights_source = " + ".join(p.weights_source for p in parts)
        self._extra_identity = {}
        self._fingerprint = None
        self.micro_batch, self.channels_last = None, True
        self.dim = sum(p.dim for p in parts)
        self.set_trainable(trainable)

    def set_layout(self, *, micro_batch: int | None, channels_last: bool) -> "ConcatEncoder":
        for p in self.parts:
            p.set_layout(micro_batch=micro_batch, channels_last=channels_last)
        self.micro_batch, self.channels_last = micro_batch, channels_last
        return self

    def set_trainable(self, trainable: bool) -> "ConcatEncoder":
        self.trainable = trainable
        for p in self.parts:
            p.set_trainable(trainable)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> "ConcatEncoder":
        nn.Module.train(self, mode)
        for p in self.parts:
            p.train(mode and self.trainable)  # a frozen concatenation stays in eval mode, wrappers included
        if not self.trainable:
            self.parts.eval()
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([p(frames) for p in self.parts], dim=1)

    @property
    def native_size(self) -> bool:
        return any(p.native_size for p in self.parts)

    def dim_for(self, frame_shape) -> int:
        return sum(p.dim_for(frame_shape) for p in self.parts)

    def fit_frames(self, frame_shape) -> "ConcatEncoder":
        for p in self.parts:
            p.fit_frames(frame_shape)
        self.dim = sum(p.dim for p in self.parts)
        return self

    def identity(self) -> dict:
        return {"name": self.name, "parts": [p.identity() for p in self.parts], "input_key": self.input_key}


def concat(names: list[str], *, name: str | None = None, **kw) -> ConcatEncoder:
    """Build each encoder in ``names`` (with the same keyword arguments) and concatenate them."""
    import pvr.encoders as E

    parts = [E.create(n, **kw) for n in names]
    return ConcatEncoder(name or PREFIX + "+".join(names), parts, trainable=kw.get("train", False))


def _meta(names: list[str], description: str) -> dict:
    metas = [ENCODERS.get(n).meta for n in names]
    dims = [m.get("dim") for m in metas]
    if all(isinstance(d, int) for d in dims):
        dim = sum(dims)
    elif any(isinstance(d, str) for d in dims):  # a part's size depends on the frame size
        dim = " + ".join(str(d) for d in dims)
    else:
        dim = None
    # seeded: the seed goes on to every part (only parts with random weights use it)
    return dict(family="concat", weights=" + ".join(str(m.get("weights")) for m in metas), dim=dim, seeded=True,
                input_size=metas[0].get("input_size"),
                present=lambda: all(m["present"]() for m in metas), description=description)


def _rule(name: str) -> Entry | None:
    if not name.startswith(PREFIX):
        return None
    names = [n for n in name[len(PREFIX):].split("+") if n]
    if not names:
        raise PvrError(f"{name!r}: list the encoders to concatenate, e.g. 'concat:moco_aug_l3+moco_aug'")
    for n in names:
        ENCODERS.get(n)  # unknown parts fail with the registry's message
    return Entry(name, lambda **kw: concat(names, name=name, **kw),
                 _meta(names, "concatenation of " + ", ".join(names)))


add_encoder_rule(_rule)

#: the original's uber models: suffix digit → tap
_STAGE = {"3": "_l3", "4": "_l4", "5": ""}
for _base in ("moco_aug", "moco_aug_places", "moco_croponly", "moco_croponly_places"):
    for _layers in ("345", "35", "34", "45"):
        _parts = [_base + _STAGE[c] for c in _layers]
        _uber = f"{_base}_uber_{_layers}"
        register_encoder(_uber, **{k: v for k, v in _meta(_parts, " + ".join(_parts)).items()})(
            lambda parts=_parts, n=_uber, **kw: concat(parts, name=n, **kw))
