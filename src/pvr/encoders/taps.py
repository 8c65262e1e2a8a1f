"""ResNet-50 and its "compressed" layer taps, loaded from the original's checkpoints.

The PVR paper embeds frames not only with ResNet-50's pooled output (``conv5``)
but with intermediate layers squeezed to about 2,000 values:

- ``l3``: ResNet-50 up to ``layer3`` (1024×14×14 at 224 px), then a torchvision
  ``BasicBlock`` 1024→11 whose shortcut is a 3×3 conv (with bias) + BatchNorm;
  flattened: 11×14×14 = 2156.
- ``l4``: up to ``layer4``, then a ``BasicBlock`` 2048→42: 42×7×7 = 2058.

The compression block was trained with the network, so its weights are in the
checkpoint, nested exactly as the original built it (``layer3 = Sequential(layer3,
block)``: keys ``layer3.0.<i>.*`` and ``layer3.1.*``). Checkpoints hold a
``state_dict`` whose keys carry ``module.`` (supervised, DataParallel) or
``module.encoder_q.`` (MoCo) prefixes; the only keys allowed to be left over are
the unused head: ``fc.*`` and the layers after the tap (for ``l3``: the expanding
block ``layer3.2.*`` and ``layer4.*``; for ``l4``: ``layer4.2.*``), plus MoCo's
key encoder and queue.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from pvr.encoders import weights
from pvr.errors import PvrError

#: tap → (channels at the tap, compressed channels, flattened size at 224 px)
TAPS = {"l3": (1024, 11, 11 * 14 * 14), "l4": (2048, 42, 42 * 7 * 7), "conv5": (2048, None, 2048)}
#: key prefixes (after the model prefix) a checkpoint may hold beyond each tap
UNUSED = {"conv5": ("fc.",), "l4": ("fc.", "layer4.2."), "l3": ("fc.", "layer3.2.", "layer4.")}
#: checkpoint-level keys that are not the query encoder (MoCo's momentum encoder and queue)
MOCO_EXTRAS = ("module.encoder_k.", "module.queue")
PREFIXES = ("module.encoder_q.", "module.", "")


def compression_block(in_ch: int, out_ch: int) -> BasicBlock:
    shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(out_ch))
    return BasicBlock(in_ch, out_ch, stride=1, downsample=shortcut)


class ResNet50Tap(nn.Module):
    """ResNet-50 cut at ``layer3`` or ``layer4``, compressed, flattened (module names as the original's)."""

    def __init__(self, tap: str):
        super().__init__()
        if tap not in ("l3", "l4"):
            raise ValueError(f"tap must be 'l3' or 'l4', not {tap!r}")
        net = torchvision.models.resnet50(weights=None)
        self.tap = tap
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        in_ch, out_ch, _ = TAPS[tap]
        if tap == "l3":
            self.layer3 = nn.Sequential(net.layer3, compression_block(in_ch, out_ch))
        else:
            self.layer3 = net.layer3
            self.layer4 = nn.Sequential(net.layer4, compression_block(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.tap == "l4":
            x = self.layer4(x)
        return torch.flatten(x, 1)


def build(tap: str) -> nn.Module:
    if tap == "conv5":
        net = torchvision.models.resnet50(weights=None)
        net.fc = nn.Identity()
        return net
    return ResNet50Tap(tap)


def load_into(net: nn.Module, tap: str, path: Path) -> str:
    """Load a ``{"state_dict": ...}`` checkpoint into ``net``; returns the key prefix found."""
    ckpt = weights.load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dict with a 'state_dict'")
    prefix = next((p for p in PREFIXES if f"{p}conv1.weight" in state), None)
    if prefix is None:
        raise PvrError(f"{path} has no ResNet-50 weights: no key conv1.weight under any of the prefixes "
                       f"{[p for p in PREFIXES if p]} or none (first keys: {list(state)[:5]})")
    inside, outside = weights.select_prefix(state, prefix, ignore=MOCO_EXTRAS)
    weights.load_strict(net, inside, source=path, allow_unused=UNUSED[tap], extra_unexpected=outside)
    return prefix


PVR_RELEASES = "https://github.com/sparisi/pvr_habitat/releases/tag/models"


def make_encoder(name: str, tap: str, spec: weights.WeightsSpec, *, train: bool = False, pretrained: bool = True,
                 micro_batch: int | None = None):
    """An :class:`Encoder` for a ResNet-50 tap whose weights ``spec`` finds (original preprocessing)."""
    from pvr.encoders.base import Encoder, Preprocess

    path = spec.require(name) if pretrained else None  # before building: a missing file fails fast
    net = build(tap)
    source = "random init (pretrained=False)"
    if path is not None:
        prefix = load_into(net, tap, path)
        source = f"{path} (keys under {prefix or 'no prefix'!r})"
    enc = Encoder(name, net, Preprocess(), dim=TAPS[tap][2], trainable=train, weights_source=source,
                  micro_batch=micro_batch if micro_batch is not None else MICRO_BATCH)
    return enc


#: ResNet-50 at 224 px on this CPU: measured in bench/bench_encoders.py
MICRO_BATCH = 4


def register_tap(name: str, tap: str, filename: str, *, family: str, published: str = PVR_RELEASES,
                 description: str = "", alternates: tuple[str, ...] = ()) -> None:
    from pvr.encoders.registry import register_encoder

    spec = weights.WeightsSpec(filename, published, alternates=alternates)
    register_encoder(name, family=family, weights=spec.describe(), dim=TAPS[tap][2], input_size=224,
                     present=spec.present, description=description)(
        lambda **kw: make_encoder(name, tap, spec, **kw))
