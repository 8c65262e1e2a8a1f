"""DINOv3 encoders: ``dinov3_vits16``, ``dinov3_vits16plus``, ``dinov3_vitb16``, ``dinov3_vitl16``,
``dinov3_vitl16plus``, ``dinov3_vith16plus``, ``dinov3_vit7b16`` and the satellite ``dinov3_vitl16_sat`` and
``dinov3_vit7b16_sat``.

Weights are the gated release's files, ``dinov3_<arch>_pretrain_<lvd1689m|sat493m>-<hash>.pth``
(the hashes DINOv3's hub code names; any hash is accepted), in DINOv3's own layout:
``cls_token``, ``storage_tokens`` (4), ``mask_token``, ``rope_embed.periods``, blocks with
``attn.qkv.{weight,bias,bias_mask}`` and ``ls{1,2}.gamma``, ``norm``; the satellite ViT-L also
has ``local_cls_norm`` (a training-only norm for local crops), as has the 7B. The "plus" models and the 7B
replace the MLP by DINOv3's SwiGLU, ``mlp.w3(silu(mlp.w1(x)) * mlp.w2(x))``, whose hidden width is
``int(int(dim * ffn_ratio) * 2 / 3)`` rounded up to a multiple of 8 (64 for the 7B); the 7B has no QKV bias
(so no ``bias_mask`` either). They are looked up in
``$PVR_MODEL_PATH`` and the torch hub cache, or timm's converted copy
``timm/vit_*_patch16_dinov3_qkvb.<tag>`` in the Hugging Face cache.

The network is timm's DINOv3 ``Eva`` with QKV biases (``*_dinov3_qkvb``; the 7B's ``vit_7b_patch16_dinov3``
has none; timm has no ViT-L+, so ``dinov3_vitl16plus`` is its H+ at the L+ sizes), whose rotary
position embedding is DINOv3's (base 100, coordinates normalised per side, no jitter
or rescaling at inference). DINOv3 masks the key bias to zero (``bias_mask``), so only the
query and value thirds of ``qkv.bias`` are loaded; the file's RoPE periods must equal the
network's, which is checked. Output: the CLS token after the final norm
(``x_norm_clstoken``).

Preprocessing is DINOv3's ``make_transform``: resize the uint8 frame to 256×256 whatever its
aspect ratio (bilinear, antialiased), no crop, ImageNet mean/std — or, for the satellite
weights, mean (0.430, 0.411, 0.296) and std (0.213, 0.156, 0.143).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder
from pvr.encoders.registry import register_encoder
from pvr.encoders.siglip import SquashPreprocess
from pvr.errors import PvrError

INPUT = 256
PATCH = 16
SAT_MEAN = (0.430, 0.411, 0.296)
SAT_STD = (0.213, 0.156, 0.143)
LICENCE = "DINOv3 License (Meta; gated, redistribution restricted)"
PUBLISHED = ("https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/ (gated: the download links "
             "come by e-mail after accepting the licence)")


@dataclass(frozen=True)
class Model:
    arch: str  # DINOv3's compact name: vits16, vits16plus, vitb16, vitl16, vitl16plus, vith16plus, vit7b16
    weights: str  # lvd1689m | sat493m
    hash: str
    timm_arch: str
    width: int
    ffn: str = "mlp"  # DINOv3's ffn_layer: mlp | swiglu (align 8) | swiglu64
    ffn_ratio: float = 4.0
    arch_args: dict = field(default_factory=dict)  # sizes timm's model needs beyond its defaults
    timm_hub: bool = True  # timm publishes a converted copy of these weights
    overrides: dict = field(default_factory=dict)  # tests build tiny networks of the same layout

    @property
    def filename(self) -> str:
        return f"dinov3_{self.arch}_pretrain_{self.weights}-{self.hash}.pth"

    @property
    def pattern(self) -> str:
        return f"dinov3_{self.arch}_pretrain_{self.weights}-*.pth"


_L_PLUS = dict(embed_dim=1024, depth=24, num_heads=16)  # D3HB dinov3_vitl16plus
# hashes and sizes as DINOv3's hub code (dinov3/hub/backbones.py) names them
MODELS = {
    "dinov3_vits16": Model("vits16", "lvd1689m", "08c60483", "vit_small_patch16_dinov3_qkvb", 384),
    "dinov3_vits16plus": Model("vits16plus", "lvd1689m", "4057cbaa", "vit_small_plus_patch16_dinov3_qkvb", 384,
                               ffn="swiglu", ffn_ratio=6.0),
    "dinov3_vitb16": Model("vitb16", "lvd1689m", "73cec8be", "vit_base_patch16_dinov3_qkvb", 768),
    "dinov3_vitl16": Model("vitl16", "lvd1689m", "8aa4cbdd", "vit_large_patch16_dinov3_qkvb", 1024),
    "dinov3_vitl16_sat": Model("vitl16", "sat493m", "eadcf0ff", "vit_large_patch16_dinov3_qkvb", 1024),
    "dinov3_vitl16plus": Model("vitl16plus", "lvd1689m", "46503df0", "vit_huge_plus_patch16_dinov3_qkvb", 1024,
                               ffn="swiglu", ffn_ratio=6.0, arch_args=_L_PLUS, timm_hub=False),
    "dinov3_vith16plus": Model("vith16plus", "lvd1689m", "7c1da9a5", "vit_huge_plus_patch16_dinov3_qkvb", 1280,
                               ffn="swiglu", ffn_ratio=6.0),
    "dinov3_vit7b16": Model("vit7b16", "lvd1689m", "a955f4ea", "vit_7b_patch16_dinov3", 4096,
                            ffn="swiglu64", ffn_ratio=3.0),
    "dinov3_vit7b16_sat": Model("vit7b16", "sat493m", "a6675841", "vit_7b_patch16_dinov3", 4096,
                                ffn="swiglu64", ffn_ratio=3.0),
}
SWIGLU_ALIGN = {"swiglu": 8, "swiglu64": 64}
#: keys of the published files that inference does not use
UNUSED_SUFFIXES = (".bias_mask",)
UNUSED = ("mask_token", "local_cls_norm.", "rope_embed.")
#: DINOv3's SwiGLU (w1 through SiLU, times w2, then w3) under timm's names (fc1_g through SiLU, fc1_x, fc2)
SWIGLU_KEYS = ((".mlp.w1.", ".mlp.fc1_g."), (".mlp.w2.", ".mlp.fc1_x."), (".mlp.w3.", ".mlp.fc2."))


def swiglu_hidden(dim: int, ffn_ratio: float, align: int) -> int:
    """DINOv3's SwiGLU width: 2/3 of the block's ``int(dim * ffn_ratio)``, rounded up to ``align``."""
    d = int(int(dim * ffn_ratio) * 2 / 3)
    return d + (-d % align)


@dataclass(frozen=True)
class DinoV3Weights(weights.WeightsSpec):
    """The published name first, then any other hash of the same model and data."""

    pattern: str = ""

    def find(self) -> Path | None:
        found = super().find()
        if found is not None:
            return found
        for d in self.dirs():
            hits = sorted(d.glob(self.pattern)) if d.is_dir() else []
            if hits:
                return hits[0]
        return None


def spec(name: str) -> DinoV3Weights:
    m = MODELS[name]
    hf = (f"timm/{m.timm_arch}.{m.weights}", ("model.safetensors",)) if m.timm_hub else None
    return DinoV3Weights(m.filename, PUBLISHED, hf=hf, pattern=m.pattern)


def build(name: str):
    """timm's network in the model's sizes; a SwiGLU width that is not DINOv3's is refused here, before loading."""
    import timm

    m = MODELS[name]
    kw = {**m.arch_args, **m.overrides}
    dim = kw.get("embed_dim", m.width)
    if m.ffn != "mlp":
        # timm sizes its SwiGLU as int(dim * mlp_ratio) rounded up to the alignment; give it DINOv3's width
        kw.setdefault("mlp_ratio", swiglu_hidden(dim, m.ffn_ratio, SWIGLU_ALIGN[m.ffn]) / dim)
    net = timm.create_model(m.timm_arch, pretrained=False, img_size=INPUT, num_classes=0, global_pool="token", **kw)
    if m.ffn != "mlp":
        want, got = swiglu_hidden(dim, m.ffn_ratio, SWIGLU_ALIGN[m.ffn]), net.blocks[0].mlp.fc1_g.out_features
        if got != want:
            raise PvrError(f"{name}: timm built a SwiGLU {got} wide where DINOv3's is {want}; "
                           f"this timm version does not fit (pin the one in requirements.lock)")
    return net


def convert(state: dict, path) -> tuple[dict, torch.Tensor | None]:
    """DINOv3's layout → timm's ``Eva`` (and the file's RoPE periods, to be checked)."""
    out, periods = {}, state.get("rope_embed.periods")
    for k, v in state.items():
        if k.endswith(UNUSED_SUFFIXES) or k.startswith(UNUSED):
            continue
        if k.endswith(".attn.qkv.bias"):
            q, key_bias, v_ = v.chunk(3)
            mask = state.get(k + "_mask")
            if mask is not None and bool(mask.chunk(3)[1].any()):
                raise PvrError(f"{path}: {k}_mask does not mask the key bias; this is not a DINOv3 checkpoint")
            out[k.replace("qkv.bias", "q_bias")] = q
            out[k.replace("qkv.bias", "v_bias")] = v_
            continue
        k = k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")
        for old, new in SWIGLU_KEYS:
            k = k.replace(old, new)
        out["reg_token" if k == "storage_tokens" else k] = v
    return out, periods


def load(net, path) -> None:
    state = weights.load_checkpoint(path)
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(state).__name__}, not DINOv3's flat state dict")
    periods = None
    if "storage_tokens" in state or "mask_token" in state:
        state, periods = convert(state, path)
    weights.load_strict(net, state, source=path)
    if periods is not None and not torch.allclose(periods.float(), net.rope.periods.float(), rtol=1e-5):
        raise PvrError(f"{path}: its RoPE periods differ from DINOv3's (base 100) schedule that the network uses")


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    m = MODELS[name]
    path = spec(name).require(name) if pretrained else None
    net = build(name)
    grid = (INPUT // PATCH, INPUT // PATCH)
    backbone, dim, ident = token_opts.apply(net, tokens, name=name, native_dim=net.embed_dim, width=net.embed_dim,
                                            depth=len(net.blocks), patch_grid=grid)
    source = "random init (pretrained=False)"
    if path is not None:
        load(net, path)
        source = str(path)
    sat = m.weights == "sat493m"
    # DINOv3's make_transform: Resize((256, 256), antialias=True) (bilinear) on the uint8 image, no crop
    pre = SquashPreprocess(resize=INPUT, crop=INPUT, interpolation="bilinear", antialias=True, uint8=True,
                           mean=SAT_MEAN if sat else IMAGENET_MEAN, std=SAT_STD if sat else IMAGENET_STD)
    return Encoder(name, backbone, pre, dim=dim, trainable=train, weights_source=source, extra_identity=ident,
                   micro_batch=8)


for _name, _m in MODELS.items():
    _size = _m.arch[3:].split("16")[0].upper() + ("+" if "plus" in _m.arch else "")  # S, S+, B, L, L+, H+, 7B
    register_encoder(_name, family="dinov3",
                     weights=spec(_name).describe() + (" (any hash; or timm's cache)" if _m.timm_hub
                                                       else " (any hash)"),
                     dim=_m.width, input_size=INPUT, present=(lambda n=_name: spec(n).present()),
                     published=PUBLISHED, licence=LICENCE,
                     description=f"DINOv3 ViT-{_size}/16 "
                                 f"({_m.weights}), CLS token after the final norm, RoPE, 4 storage tokens"
                                 + ("" if _m.ffn == "mlp" else ", SwiGLU"))(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_m.width, patch_grid=(INPUT // PATCH, INPUT // PATCH))
