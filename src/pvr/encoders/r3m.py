"""R3M (``r3m_resnet18/34/50``) and VIP (``vip_resnet50``): torchvision ResNets trained on Ego4D.

Both projects save the whole training module wrapped in ``DataParallel``:
``model.pt = {"r3m" | "vip": {"module.convnet.<torchvision key>": ..., ...}}``.
R3M's file also holds its language heads (``module.lang_enc.*``, ``module.lang_rew.*``),
which its own loader deletes; they are dropped here too, and any other key is an
error. R3M replaces the classifier by the identity (512/512/2048 features); VIP keeps
``convnet.fc`` as a trained 2048→1024 linear layer, so its features are 1024 values.

Input range: both networks divide their input by 255 themselves, and both authors'
examples feed a PIL ``Resize(256)`` + ``CenterCrop(224)`` + ``ToTensor()`` image
multiplied back by 255. VIP decides whether to divide by looking at the pixel values
(``max > 2``), which a dark frame defeats; pvr never looks: frames are uint8, always
divided by 255. Preprocessing here: shorter side to 256 (bilinear, antialiased, as
PIL's resize is; rounded to uint8), centre crop 224, /255, ImageNet mean/std.

Files: ``r3m_resnet<N>.pt`` / ``vip_resnet50.pt`` in ``$PVR_MODEL_PATH`` (R3M's
``r3m_<N>/model.pt`` folder layout is accepted there too), or where the upstream
loaders keep them (``~/.r3m/r3m_<N>/model.pt``, ``~/.vip/resnet50/model.pt``).
"""
from __future__ import annotations

import torchvision
from torch import nn

from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.encoders.upstream import UpstreamSpec, licence_notice, nested_state

R3M_LICENCE = "MIT"
VIP_LICENCE = "CC-BY-NC-4.0"

#: R3M's Google Drive files, as its loader names them (r3m/__init__.py load_r3m)
_R3M_URLS = {
    18: "https://drive.google.com/uc?id=1A1ic-p4KtYlKXdXHcV2QV0cUzI4kn0u-",
    34: "https://drive.google.com/uc?id=15bXD3QRhspIRacOKyWPw5y2HpoWUCEnE",
    50: "https://drive.google.com/uc?id=1Xu0ssuG0N1zjZS54wmWzJ7-nb0-7XzbA",
}
_VIP_URL = "https://pytorch.s3.amazonaws.com/models/rl/vip/model.pt"

#: pvr name → (torchvision constructor, checkpoint key, output size, spec, language-head prefixes dropped)
MODELS: dict[str, tuple] = {}
for _n, _ctor, _dim in [(18, torchvision.models.resnet18, 512), (34, torchvision.models.resnet34, 512),
                        (50, torchvision.models.resnet50, 2048)]:
    MODELS[f"r3m_resnet{_n}"] = (_ctor, "r3m", _dim, UpstreamSpec(
        f"r3m_resnet{_n}.pt", f"{_R3M_URLS[_n]} (R3M's model.pt for resnet{_n})",
        alternates=(f"r3m_{_n}/model.pt",), cache=(f"~/.r3m/r3m_{_n}/model.pt",)),
        ("lang_enc.", "lang_rew."))
MODELS["vip_resnet50"] = (torchvision.models.resnet50, "vip", 1024, UpstreamSpec(
    "vip_resnet50.pt", f"{_VIP_URL} (VIP's model.pt)", cache=("~/.vip/resnet50/model.pt",)), ())

#: the DataParallel-wrapped module (the published files) or the bare one
PREFIXES = ("module.convnet.", "convnet.")
#: measured in bench/bench_encoders.py for torchvision ResNets
MICRO_BATCH = 4


def preprocess() -> Preprocess:
    # PIL Resize(256) (bilinear, antialiased, uint8 out) + CenterCrop(224); /255 and ImageNet mean/std in the model
    return Preprocess(resize=256, crop=224, interpolation="bilinear", antialias=True, uint8=True)


def convnet(name: str) -> nn.Module:
    """The network as R3M/VIP build it: torchvision ResNet, fc = identity (R3M) or 2048→1024 (VIP)."""
    ctor, key, dim, _, _ = MODELS[name]
    net = ctor(weights=None)
    net.fc = nn.Linear(net.fc.in_features, dim) if key == "vip" else nn.Identity()
    return net


def load(net: nn.Module, name: str, path) -> None:
    _, key, _, _, heads = MODELS[name]
    # the language heads sit beside convnet, under the same DataParallel prefix
    drop = tuple(pre + h for pre in ("module.", "") for h in heads)
    state, others = nested_state(path, key, PREFIXES, drop=drop)
    weights.load_strict(net, state, source=path, extra_unexpected=others)


def _make(name: str, train: bool = False, pretrained: bool = True) -> Encoder:
    _, key, dim, spec, _ = MODELS[name]
    path = spec.require(name) if pretrained else None
    net = convnet(name)
    source = "random init (pretrained=False)"
    if path is not None:
        load(net, name, path)
        source = str(path)
        if key == "vip":
            licence_notice(name, VIP_LICENCE)
    return Encoder(name, net, preprocess(), dim=dim, trainable=train, weights_source=source,
                   micro_batch=MICRO_BATCH)


for _name, (_ctor, _key, _dim, _spec, _heads) in MODELS.items():
    _r3m = _key == "r3m"
    register_encoder(
        _name, family=_key, weights=_spec.describe(), dim=_dim, input_size=224,
        present=(lambda s=_spec: s.present()), published=_spec.published,
        licence=R3M_LICENCE if _r3m else VIP_LICENCE,
        description=("R3M (Ego4D, time-contrastive + language) " if _r3m else "VIP (Ego4D, value-implicit) ")
        + f"{_ctor.__name__}, {'pooled' if _r3m else 'fc 2048→1024'}")(
        lambda n=_name, **kw: _make(n, **kw))
