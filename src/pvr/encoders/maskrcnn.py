"""``maskrcnn_l3``: layer-3 (``res4``) features of the original's Mask R-CNN R-50-C4 backbone.

The original trained a detectron2 Mask R-CNN whose ``res4`` stage ends with two
extra ``BasicBlock``s (1024→11→1024) and kept the backbone up to the first one:
11×14×14 = 2156 values at 224 px. This module rebuilds that backbone in plain
torch with detectron2's parameter names, so ``maskrcnn_l3.pth`` (a dict with a
``model`` key, ``backbone.*`` keys) loads without detectron2:

- detectron2 ``Conv2d`` = conv without bias + ``.norm``; the ResNet stages use
  ``FrozenBN`` (no step counter), the compression block plain BatchNorm;
- MSRA-style bottlenecks: the stride sits in the first 1×1 conv
  (``stride_in_1x1=True``), unlike torchvision;
- left over, by design: the detection heads (``proposal_generator.*``,
  ``roi_heads.*``), the expanding block ``backbone.res4.7.*`` and ``backbone.res5.*``.

Input is BGR in 0–255 minus detectron2's pixel means (103.530, 116.280, 123.675),
std 1, after resize 256 (bilinear, no antialiasing, on floats: the original converts
to float before resizing, so nothing is rounded) / centre crop 224.

One deliberate difference: the original's channel flip ``x[:, :, [0,1,2]] =
x[:, :, [2,1,0]]`` runs on an (N, C, H, W) tensor, so it swaps image rows 0 and 2
and leaves the channels RGB. pvr does the intended RGB → BGR flip (the order the
detectron2 weights expect); ``original_swap=True`` restores the original's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.encoders.taps import PVR_RELEASES
from pvr.errors import PvrError

FILENAME = "maskrcnn_l3.pth"
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
UNUSED_OUTSIDE = ("proposal_generator.", "roi_heads.", "pixel_mean", "pixel_std")
UNUSED_BACKBONE = ("res4.7.", "res5.")
DIM = 11 * 14 * 14


class ConvNorm(nn.Conv2d):
    """detectron2's ``Conv2d(..., bias=False, norm=...)``: keys ``weight`` and ``norm.*``."""

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, frozen: bool = True):
        super().__init__(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.norm = FrozenBatchNorm2d(cout, eps=1e-5) if frozen else nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int, stride: int):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride) if cin != cout else None
        self.conv1 = ConvNorm(cin, mid, 1, stride=stride)  # stride_in_1x1
        self.conv2 = ConvNorm(mid, mid, 3)
        self.conv3 = ConvNorm(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, frozen=False) if cin != cout else None
        self.conv1 = ConvNorm(cin, cout, 3, frozen=False)
        self.conv2 = ConvNorm(cout, cout, 3, frozen=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvNorm(3, 64, 7, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


def _stage(n: int, cin: int, cout: int, mid: int, stride: int) -> list[nn.Module]:
    return [Bottleneck(cin if i == 0 else cout, cout, mid, stride if i == 0 else 1) for i in range(n)]


class MaskRCNNRes4(nn.Module):
    """detectron2 R-50 backbone to ``res4`` + the 1024→11 compression block, flattened."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.res2 = nn.Sequential(*_stage(3, 64, 256, 64, 1))
        self.res3 = nn.Sequential(*_stage(4, 256, 512, 128, 2))
        self.res4 = nn.Sequential(*_stage(6, 512, 1024, 256, 2), BasicBlock(1024, 11))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.res4(self.res3(self.res2(self.stem(x)))), 1)


def load_backbone(net: nn.Module, path) -> None:
    ckpt = weights.load_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(k.startswith("backbone.") for k in state):
        raise PvrError(f"{path} is not a detectron2 Mask R-CNN checkpoint (expected a 'model' dict with "
                       f"'backbone.*' keys)")
    inside, outside = weights.select_prefix(state, "backbone.", ignore=UNUSED_OUTSIDE)
    weights.load_strict(net, inside, source=path, allow_unused=UNUSED_BACKBONE, extra_unexpected=outside)


_SPEC = weights.WeightsSpec(FILENAME, PVR_RELEASES)


@register_encoder("maskrcnn_l3", family="maskrcnn", weights=_SPEC.describe(), dim=DIM, input_size=224,
                  present=_SPEC.present, description="Mask R-CNN R-50-C4 res4 + compression block (BGR, 0-255)")
def maskrcnn_l3(train: bool = False, pretrained: bool = True, original_swap: bool = False) -> Encoder:
    path = _SPEC.require("maskrcnn_l3") if pretrained else None
    net = MaskRCNNRes4()
    source = "random init (pretrained=False)"
    if path is not None:
        load_backbone(net, path)
        source = str(path)
    pre = Preprocess(resize=256, crop=224, scale=1.0, mean=PIXEL_MEAN_BGR, std=(1.0, 1.0, 1.0),
                     bgr=not original_swap, swap_rows=original_swap, antialias=False, uint8=False)
    return Encoder("maskrcnn_l3", net, pre, dim=DIM, trainable=train, weights_source=source, micro_batch=4)
