"""VC-1 (``vc1_vitb``, ``vc1_vitl``): MAE ViTs trained on egocentric video + ImageNet (eai-vc).

Files: ``vc1_vitb.pth`` / ``vc1_vitl.pth`` as published, MAE's layout ``{"model": state}``.
VC-1's loader (``vc_models/models/vit/vit.py`` ``load_mae_encoder``) drops every key
containing ``decoder`` or ``mask_token``, resamples ``pos_embed`` when its grid
differs from the model's, and loads the rest strictly; pvr does the same. The
features are the CLS token after the final LayerNorm (configs ``use_cls: True``):
768 (ViT-B) or 1024 (ViT-L) values.

VC-1's ``load_model`` hands the model back in *train* mode; pvr's encoders are
frozen and in eval mode unless ``train=True``.

Preprocessing (``vc_models.transforms.vit_transforms``, fed PIL images in
CortexBench): ``Resize(256, BICUBIC)`` (antialiased, uint8), ``CenterCrop(224)``,
``ToTensor``, ImageNet mean/std. pvr: the same steps as batched torch ops.

Licence: CC-BY-NC 4.0 (non-commercial); shown by ``pvr encoders`` and printed once
when the encoder is created.
"""
from __future__ import annotations

from pathlib import Path

from pvr.encoders import tokens as token_opts
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.encoders.upstream import UpstreamSpec, mae_vit, mae_vit_encoder

#: pvr name → (embed dim, depth, heads)
MODELS = {"vc1_vitb": (768, 12, 12), "vc1_vitl": (1024, 24, 16)}
LICENCE = "CC-BY-NC-4.0"
_URL = "https://dl.fbaipublicfiles.com/eai-vc/"
#: as MAE's encoders (mae.py)
MICRO_BATCH = 8


def spec(name: str) -> UpstreamSpec:
    # vc_models downloads to model_ckpts/ three folders above its model_utils.py: beside the package
    import sysconfig

    cache = str(Path(sysconfig.get_paths()["purelib"]) / "model_ckpts" / f"{name}.pth")
    return UpstreamSpec(f"{name}.pth", f"{_URL}{name}.pth", cache=(cache,))


def vit(name: str):
    dim, depth, heads = MODELS[name]
    return mae_vit(embed_dim=dim, depth=depth, heads=heads, img_size=224)


def preprocess() -> Preprocess:
    return Preprocess(resize=256, crop=224, interpolation="bicubic", antialias=True, uint8=True)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    path = spec(name).require(name) if pretrained else None
    return mae_vit_encoder(name, vit(name), path, preprocess(), train=train, tokens=tokens,
                           resize_pos_embed=True, micro_batch=MICRO_BATCH, licence=LICENCE)


for _name, (_dim, _depth, _heads) in MODELS.items():
    register_encoder(_name, family="vc1", weights=spec(_name).describe(), dim=_dim, input_size=224,
                     present=(lambda n=_name: spec(n).present()), published=spec(_name).published, licence=LICENCE,
                     description=f"VC-1 MAE ViT-{'B' if _dim == 768 else 'L'}/16, CLS after the final norm")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_dim, patch_grid=(224 // 16, 224 // 16))
