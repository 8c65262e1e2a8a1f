"""Theia encoders (``theia_tiny``, ``theia_small``, ``theia_base`` and the ``_cddsv`` variants).

Theia distils several vision foundation models into a DeiT backbone; robot learning uses
the backbone's features (``RobotVisionFM.forward_feature``), not the translator heads.
Weights are the safetensors file of the Hugging Face release
(``theaiinstitute/theia-<size>-patch16-224-<cdiv|cddsv>``: ``model.safetensors``), read from
the Hugging Face cache or ``$PVR_MODEL_PATH/<repo name>/model.safetensors``. The release's
own loader runs code from the repo (``trust_remote_code``); this one reads only tensors:
the backbone is a Hugging Face ``ViTModel`` (keys ``backbone.model.embeddings.*``,
``backbone.model.encoder.layer.<i>.*``, ``backbone.model.layernorm.*``), re-laid into timm's
ViT (separate query/key/value fused into ``qkv``; LayerNorm eps 1e-12 as in DeiT's config);
the ``translator.*`` heads are ignored.

Preprocessing is DeiT's image processor (``facebook/deit-*-patch16-224``): resize to
256×256 whatever the aspect ratio (bicubic, antialiased on the uint8 image), centre crop
224, ImageNet mean/std. Output: the patch tokens after the final LayerNorm, pooled —
by default their mean (Theia's ``feature_reduce_method="mean_pooling"``); ``:pool=cls``,
``:pool=max`` (``max_pooling``), ``:pool=grid`` (all spatial tokens, Theia's default
``None``) and the other token options of :mod:`pvr.encoders.tokens`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

import torch

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder
from pvr.encoders.registry import register_encoder
from pvr.encoders.siglip import SquashPreprocess
from pvr.errors import PvrError

LICENCE = "The AI Institute licence (BSD-style, non-commercial research only)"
INPUT, PATCH = 224, 16
#: the pooling robot-learning users get by default (Theia's "mean_pooling")
DEFAULT_TOKENS = token_opts.TokenSpec(pool="mean")


@dataclass(frozen=True)
class Model:
    size: str  # tiny | small | base
    targets: str  # cdiv (the paper's main models) | cddsv (all teachers)
    timm_arch: str
    width: int
    overrides: dict = field(default_factory=dict)  # tests build tiny networks of the same layout

    @property
    def repo(self) -> str:
        return f"theaiinstitute/theia-{self.size}-patch16-224-{self.targets}"


_SIZES = {"tiny": ("vit_tiny_patch16_224", 192), "small": ("vit_small_patch16_224", 384),
          "base": ("vit_base_patch16_224", 768)}
MODELS: dict[str, Model] = {}
for _size, (_arch, _width) in _SIZES.items():
    MODELS[f"theia_{_size}"] = Model(_size, "cdiv", _arch, _width)
    MODELS[f"theia_{_size}_cddsv"] = Model(_size, "cddsv", _arch, _width)

#: Hugging Face ViT names (under encoder.layer.<i>.) → timm's (under blocks.<i>.)
_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
          "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
_ANCHOR = "embeddings.patch_embeddings.projection.weight"


def spec(name: str) -> weights.WeightsSpec:
    m = MODELS[name]
    folder = m.repo.split("/")[1]
    return weights.WeightsSpec(f"{folder}/model.safetensors", f"https://huggingface.co/{m.repo}",
                               hf=(m.repo, ("model.safetensors",)))


def build(name: str):
    import timm
    from torch import nn

    m = MODELS[name]
    return timm.create_model(m.timm_arch, pretrained=False, num_classes=0, global_pool="",
                             norm_layer=partial(nn.LayerNorm, eps=1e-12), **m.overrides)


def convert(state: dict, path) -> tuple[dict, list[str]]:
    """The release's backbone tensors → timm's ViT layout; also the keys that are neither backbone nor heads."""
    prefix = next((k[: -len(_ANCHOR)] for k in state if k.endswith(_ANCHOR)), None)
    if prefix is None:
        raise PvrError(f"{path} has no Theia/DeiT backbone (no '*{_ANCHOR}' key; first keys: {list(state)[:5]})")
    out, qkv, stray = {}, {}, []
    for k, v in state.items():
        if not k.startswith(prefix):
            if not (k.startswith("translator.") or ".translator." in k):  # the distillation heads
                stray.append(k)
            continue
        k = k[len(prefix):]
        m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", k)
        if k in _TOP:
            out[_TOP[k]] = v
        elif m and m.group(2).startswith("attention.attention."):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2).rsplit(".", 1)[1]] = v
        elif m and m.group(2) in _LAYER:
            out[f"blocks.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}"] = v
        else:
            out[k] = v  # reported by load_strict
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise PvrError(f"{path}: layer {i} has attention {kind}s {sorted(parts)}, not query, key and value")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out, stray


def load(net, path) -> None:
    state = weights.load_checkpoint(path)
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(state).__name__}, not Theia's safetensors")
    converted, stray = convert(state, path)
    weights.load_strict(net, converted, source=path, extra_unexpected=stray)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    m = MODELS[name]
    path = spec(name).require(name) if pretrained else None
    net = build(name)
    side = INPUT // PATCH
    chosen = tokens if tokens is not None else DEFAULT_TOKENS
    backbone, dim, _ = token_opts.apply(net, chosen, name=name, native_dim=m.width, width=net.embed_dim,
                                        depth=len(net.blocks), patch_grid=(side, side))
    source = "random init (pretrained=False)"
    if path is not None:
        load(net, path)
        source = str(path)
    # DeiT's image processor: resize to (256, 256) (PIL bicubic), centre crop 224, ImageNet mean/std
    pre = SquashPreprocess(resize=256, crop=INPUT, interpolation="bicubic", antialias=True, uint8=True,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Encoder(name, backbone, pre, dim=dim, trainable=train, weights_source=source,
                   extra_identity=token_opts.identity(tokens), micro_batch=8)


for _name, _m in MODELS.items():
    register_encoder(_name, family="theia", weights=spec(_name).describe() + f" (or the Hugging Face cache, {_m.repo})",
                     dim=_m.width, input_size=INPUT, present=(lambda n=_name: spec(n).present()),
                     published=spec(_name).published, licence=LICENCE,
                     description=f"Theia-{_m.size} ({_m.targets}) DeiT backbone, mean of the patch tokens")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_m.width, patch_grid=(INPUT // PATCH, INPUT // PATCH), default_pool="mean")
