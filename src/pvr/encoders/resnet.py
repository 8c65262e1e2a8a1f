"""ResNets: torchvision ImageNet (``resnet18/34/50``), Places, and ResNet-50 layer taps.

``resnet18``, ``resnet34``, ``resnet50``: torchvision ImageNet weights, pooled features.
``resnet50_places``: ResNet-50 trained on Places365 (``resnet50_places.pth.tar``,
``module.`` keys, as CSAIL publishes it). ``resnet50_l3`` / ``_l4`` and
``resnet50_places_l3`` / ``_l4``: the original's compressed taps (see ``taps.py``),
from the original's files.

Weights are read from torchvision's own cache (``$TORCH_HOME/hub/checkpoints``)
or ``$PVR_MODEL_PATH``, under torchvision's file names; they are never downloaded
here. Preprocessing is the original's: the uint8 frame resized to 256 (bilinear, no
antialiasing, rounded to uint8), centre crop 224, ImageNet mean/std (``Preprocess()``).
"""
from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from pvr.encoders import taps, weights
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
    path = weights.require(_filename(name), encoder=name, published=w.url) if pretrained else None
    net = ctor(weights=None)
    source = "random init (pretrained=False)"
    if path is not None:
        weights.load_strict(net, weights.load_state_dict(path), source=path)
        source = str(path)
    net.fc = nn.Identity()
    return Encoder(name, net, Preprocess(), dim=dim, trainable=train, weights_source=source,
                   micro_batch=MICRO_BATCH[name])


#: measured in bench/bench_encoders.py
MICRO_BATCH = {"resnet18": 4, "resnet34": 4, "resnet50": 4}


for _name, (_ctor, _w, _dim) in _MODELS.items():
    register_encoder(_name, family="resnet", weights=f"torchvision:{_w} ({_filename(_name)})", dim=_dim,
                     input_size=224, present=(lambda n=_name: weights.find(_filename(n)) is not None),
                     description="torchvision ImageNet ResNet, global-pooled")(
        lambda n=_name, **kw: _make(n, **kw))


# -- Places and the compressed taps: files as the original named them ----------------------
_PLACES_URL = ("https://github.com/sparisi/pvr_habitat/releases/tag/models (or CSAIL's "
               "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar, renamed)")
taps.register_tap("resnet50_places", "conv5", "resnet50_places.pth.tar", family="resnet", published=_PLACES_URL,
                  description="ResNet-50 trained on Places365, global-pooled")
for _name, _tap, _file in [("resnet50_l3", "l3", "resnet50_l3.tar"), ("resnet50_l4", "l4", "resnet50_l4.pth.tar"),
                           ("resnet50_places_l3", "l3", "resnet50_places_l3.tar"),
                           ("resnet50_places_l4", "l4", "resnet50_places_l4.tar")]:
    taps.register_tap(_name, _tap, _file, family="resnet",
                      description=f"supervised ResNet-50 {_tap} + trained compression block")
