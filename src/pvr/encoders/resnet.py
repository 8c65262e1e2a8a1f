"""torchvision ImageNet ResNets (``resnet18``, ``resnet34``, ``resnet50``): pooled features.

Weights are read from torchvision's own cache (``$TORCH_HOME/hub/checkpoints``)
or ``$PVR_MODEL_PATH``, under torchvision's file names; they are never downloaded
here. Preprocessing is the original's: resize 256, centre crop 224, ImageNet
mean/std.
"""
from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder

_MODELS = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 2048),
}


def _filename(name: str) -> str:
    return Path(_MODELS[name][1].url).name


def _make(name: str, train: bool = False, pretrained: bool = True) -> Encoder:
    ctor, w, dim = _MODELS[name]
    net = ctor(weights=None)
    source = "random init (pretrained=False)"
    if pretrained:
        path = weights.require(_filename(name), encoder=name, published=w.url)
        weights.load_strict(net, weights.load_state_dict(path), source=path)
        source = str(path)
    net.fc = nn.Identity()
    return Encoder(name, net, Preprocess(), dim=dim, trainable=train, weights_source=source)


for _name, (_ctor, _w, _dim) in _MODELS.items():
    register_encoder(_name, family="resnet", weights=f"torchvision:{_w} ({_filename(_name)})", dim=_dim,
                     input_size=224, present=(lambda n=_name: weights.find(_filename(n)) is not None),
                     description="torchvision ImageNet ResNet, global-pooled")(
        lambda n=_name, **kw: _make(n, **kw))
