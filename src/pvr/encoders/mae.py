"""MAE encoders: ``mae_base`` (ViT-B/16), ``mae_large`` (ViT-L/16), ``mae_huge`` (ViT-H/14).

The original ran MAE's ``forward_encoder`` with mask ratio 0 and took the CLS
token. With nothing masked, MAE's random shuffle of the patch tokens changes
nothing the CLS token can see (attention is order-free once positions are added),
so this is exactly timm's plain ViT forward with ``global_pool="token"``: patch
embedding + sin-cos positions, the blocks, the final LayerNorm, token 0.

Weights: MAE's ``mae_pretrain_vit_<size>.pth`` (a dict with a ``model`` key; any
decoder keys are ignored) in ``$PVR_MODEL_PATH`` or the torch hub cache, or timm's
Hugging Face copy ``timm/vit_<size>_patch<p>_224.mae`` in the Hugging Face cache.
Preprocessing is the original's for MAE: resize the uint8 frame to 256 with
PyTorch's *bicubic* kernel, no antialiasing, clamped and rounded to uint8 (torchvision
``Resize(256, interpolation=3)`` on a tensor), centre crop 224, ImageNet mean/std.

``mae_base:pool=mean``, ``:grid=N``, ``:block=K``, ``:norm=no`` read other tokens instead of
the CLS token (:mod:`pvr.encoders.tokens`).
"""
from __future__ import annotations

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError

#: pvr name → (timm architecture, MAE file, embedding size)
MODELS = {
    "mae_base": ("vit_base_patch16_224", "mae_pretrain_vit_base.pth", 768),
    "mae_large": ("vit_large_patch16_224", "mae_pretrain_vit_large.pth", 1024),
    "mae_huge": ("vit_huge_patch14_224", "mae_pretrain_vit_huge.pth", 1280),
}
#: keys of the full MAE (pre-training) model that the encoder does not use
UNUSED = ("decoder_", "mask_token")
#: measured in bench/bench_encoders.py
MICRO_BATCH = 8


def spec(name: str) -> weights.WeightsSpec:
    arch, filename, _ = MODELS[name]
    return weights.WeightsSpec(filename, f"https://dl.fbaipublicfiles.com/mae/pretrain/{filename}",
                               hf=(f"timm/{arch}.mae", ("model.safetensors", "pytorch_model.bin")))


def vit(name: str):
    import timm

    return timm.create_model(MODELS[name][0], pretrained=False, num_classes=0, global_pool="token")


def load_mae(net, path) -> None:
    ckpt = weights.load_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(ckpt).__name__}, not an MAE checkpoint (a dict with a 'model' key)")
    weights.load_strict(net, state, source=path, allow_unused=UNUSED)


def _patch_grid(name: str) -> tuple[int, int]:
    side = 224 // (14 if MODELS[name][0].startswith("vit_huge") else 16)
    return side, side


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    path = spec(name).require(name) if pretrained else None
    net = vit(name)
    dim = MODELS[name][2]
    if tokens is not None:  # ``mae_base:pool=mean`` etc. (pvr.encoders.tokens)
        tokens.check(name, depth=len(net.blocks), patch_grid=_patch_grid(name))
    source = "random init (pretrained=False)"
    if path is not None:
        load_mae(net, path)
        source = str(path)
    if tokens is not None:
        net = token_opts.readout(net, tokens, name=name, depth=len(net.blocks))
        dim = tokens.dim(MODELS[name][2], _patch_grid(name))
    pre = Preprocess(resize=256, crop=224, interpolation="bicubic", antialias=False, uint8=True)
    return Encoder(name, net, pre, dim=dim, trainable=train, weights_source=source,
                   micro_batch=MICRO_BATCH, extra_identity=token_opts.identity(tokens))


for _name, (_arch, _file, _dim) in MODELS.items():
    register_encoder(_name, family="mae", weights=f"file:{_file} (or timm's cache)", dim=_dim, input_size=224,
                     present=(lambda n=_name: spec(n).present()),
                     description=f"MAE {_arch} encoder, mask ratio 0, CLS token")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_dim, patch_grid=_patch_grid(_name))
