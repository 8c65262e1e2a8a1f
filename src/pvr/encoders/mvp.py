"""MVP (``mvp_vits``, ``mvp_vits_in``, ``mvp_vitb``, ``mvp_vitl``): MAE ViTs for motor control.

The files are MAE's format, ``{"model": state}`` with timm key names (MVP's
``mvp/backbones/vit.py`` loads them into a timm ``VisionTransformer`` with the
head deleted). MVP's features are the CLS token after the final LayerNorm. Its
ViT-S has **12** heads of 32 channels (timm's and DeiT's ViT-S have 6), and its
ViT-L runs at 256 px (``vitl-256-mae-egosoup``: a 16×16 patch grid).
MAE's decoder and mask token, if present, are dropped; any other key is an error
(MVP's own loader ignores mismatches with ``strict=False``, so a wrong file would
give a partly random network).

Preprocessing: MVP's simulated tasks render the camera at the model's size (224,
or 256 for ViT-L) and centre-crop the width; its real-robot data are resized with
OpenCV's bilinear filter (float, not antialiased). pvr resizes the shorter side to
the model's size the same way (bilinear, no antialias, unrounded), centre-crops
a square, divides by 255 and applies ImageNet mean/std; for frames already at the
model's height this is exactly MVP's crop.

Files: MVP's own cache names (``<model>.pth`` as ``mvp.load`` saves them), e.g.
``vits-mae-hoi.pth``, in ``$PVR_MODEL_PATH`` or ``/tmp/mvp-download-cache``.
"""
from __future__ import annotations

from pathlib import Path

from pvr.encoders import tokens as token_opts
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.encoders.upstream import UpstreamSpec, mae_vit, mae_vit_encoder

#: pvr name → (MVP model name, embed dim, depth, heads, image size, download link from MVP's model zoo)
MODELS = {
    "mvp_vits": ("vits-mae-hoi", 384, 12, 12, 224,
                 "https://berkeley.box.com/shared/static/m93ynem558jo8vltlads5rcmnahgsyzr.pth"),
    "mvp_vits_in": ("vits-mae-in", 384, 12, 12, 224,
                    "https://berkeley.box.com/shared/static/qlsjkv03nngu37eyvtjikfe7rz14k66d.pth"),
    "mvp_vitb": ("vitb-mae-egosoup", 768, 12, 12, 224,
                 "https://berkeley.box.com/shared/static/0ckepd2ja3pi570z89ogd899cn387yut.pth"),
    "mvp_vitl": ("vitl-256-mae-egosoup", 1024, 24, 16, 256,
                 "https://berkeley.box.com/shared/static/6p0pc47mlpp4hhwlin2hf035lxlgddxr.pth"),
}
#: ir413/mvp has no licence file; the weights' terms are not stated
LICENCE = "unstated"
_CACHE = "/tmp/mvp-download-cache"
#: as MAE's encoders (mae.py)
MICRO_BATCH = 8


def spec(name: str) -> UpstreamSpec:
    model, *_, url = MODELS[name]
    return UpstreamSpec(f"{model}.pth", f"{url} (MVP's {model})", cache=(str(Path(_CACHE) / f"{model}.pth"),))


def vit(name: str):
    _, dim, depth, heads, size, _ = MODELS[name]
    return mae_vit(embed_dim=dim, depth=depth, heads=heads, img_size=size)


def preprocess(name: str) -> Preprocess:
    size = MODELS[name][4]
    return Preprocess(resize=size, crop=size, interpolation="bilinear", antialias=False, uint8=False)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    path = spec(name).require(name) if pretrained else None
    return mae_vit_encoder(name, vit(name), path, preprocess(name), train=train, tokens=tokens,
                           resize_pos_embed=False, micro_batch=MICRO_BATCH)


for _name, (_model, _dim, _depth, _heads, _size, _url) in MODELS.items():
    register_encoder(_name, family="mvp", weights=spec(_name).describe(), dim=_dim, input_size=_size,
                     present=(lambda n=_name: spec(n).present()), published=spec(_name).published, licence=LICENCE,
                     description=f"MVP {_model}: MAE ViT ({_heads} heads, {_size} px), CLS after the final norm")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_dim, patch_grid=(_size // 16, _size // 16))
