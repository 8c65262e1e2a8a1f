"""DINOv2 encoders: ``dinov2_vit{s,b,l,g}14`` and the register variants ``dinov2_vit{s,b,l,g}14_reg``.

Weights are the published flat state dicts, ``dinov2_vit*14_pretrain.pth`` /
``dinov2_vit*14_reg4_pretrain.pth`` (DINOv2's own layout: ``cls_token``,
``pos_embed`` for 518 px (1 + 37·37 positions), ``register_tokens``, ``mask_token``,
``blocks.<i>.ls1.gamma``, ViT-g's SwiGLU ``mlp.w12`` / ``mlp.w3``), looked up in
``$PVR_MODEL_PATH`` and the torch hub cache (where ``torch.hub.load`` puts them), or
timm's converted copy ``timm/vit_*_patch14[_reg4]_dinov2.lvd142m`` in the Hugging Face
cache. The network is timm's DINOv2 ViT built for 224 px.

Positions: DINOv2 interpolates its 37×37 grid of patch positions to the input's grid
at every forward pass; the encoder's input is always 224 px (16×16 patches), so this
is done once, at load time, exactly as DINOv2's hub models do it — bicubic with
``scale_factor = (16 + 0.1) / 37`` and no antialiasing for the plain models, bicubic to
size 16×16 with antialiasing (``interpolate_offset=0``, ``interpolate_antialias=True``)
for the register models. The CLS position is not interpolated.

Preprocessing is DINOv2's evaluation transform: resize the shorter side to 256
(bicubic, antialiased, on the uint8 image), centre crop 224, ImageNet mean/std. The
output is the CLS token after the final norm (``x_norm_clstoken``); the token options
of :mod:`pvr.encoders.tokens` read the patch tokens or an intermediate block instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError

INPUT = 224
PATCH = 14
#: DINOv2's pretraining resolution: its checkpoints hold 37×37 patch positions
PRETRAIN_GRID = 518 // PATCH
BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
LICENCE = "Apache-2.0"


@dataclass(frozen=True)
class Model:
    arch: str  # DINOv2's short name (vits14 ...)
    timm_arch: str
    width: int
    depth: int
    registers: bool = False
    #: architecture overrides (tests build tiny models of the same layout)
    overrides: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"dinov2_{self.arch}{'_reg4' if self.registers else ''}_pretrain.pth"


_ARCHS = {"vits14": ("vit_small_patch14", 384, 12), "vitb14": ("vit_base_patch14", 768, 12),
          "vitl14": ("vit_large_patch14", 1024, 24), "vitg14": ("vit_giant_patch14", 1536, 40)}
MODELS: dict[str, Model] = {}
for _arch, (_timm, _width, _depth) in _ARCHS.items():
    MODELS[f"dinov2_{_arch}"] = Model(_arch, f"{_timm}_dinov2", _width, _depth)
    MODELS[f"dinov2_{_arch}_reg"] = Model(_arch, f"{_timm}_reg4_dinov2", _width, _depth, registers=True)

#: keys of the published checkpoints the encoder does not use
UNUSED = ("mask_token",)


def spec(name: str) -> weights.WeightsSpec:
    m = MODELS[name]
    return weights.WeightsSpec(m.filename, f"{BASE_URL}/dinov2_{m.arch}/{m.filename}",
                               hf=(f"timm/{m.timm_arch}.lvd142m", ("model.safetensors", "pytorch_model.bin")))


def build(name: str):
    import timm

    m = MODELS[name]
    return timm.create_model(m.timm_arch, pretrained=False, img_size=INPUT, num_classes=0, global_pool="token",
                             **m.overrides)


def interpolate_positions(patch_pos: torch.Tensor, grid: int, *, registers: bool) -> torch.Tensor:
    """(1, M·M, D) patch positions → (1, grid·grid, D), as DINOv2's hub models interpolate them."""
    n, dim = patch_pos.shape[1], patch_pos.shape[2]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise PvrError(f"DINOv2 positions must form a square grid; got {n} patch positions")
    if side == grid:
        return patch_pos
    x = patch_pos.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if registers:  # interpolate_offset=0, interpolate_antialias=True
        x = F.interpolate(x, size=(grid, grid), mode="bicubic", antialias=True)
    else:  # interpolate_offset=0.1 (the DINO-era float-error kludge), no antialiasing
        scale = (grid + 0.1) / side
        x = F.interpolate(x, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    return x.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(patch_pos.dtype)


def convert(state: dict, name: str, grid: int) -> dict:
    """DINOv2's published layout → timm's (positions interpolated to ``grid``).

    timm's register models keep positions on the patches only, so the CLS position
    is folded into the CLS token (they are added before the first block either way).
    """
    m = MODELS[name]
    out = {}
    for k, v in state.items():
        if k in UNUSED:
            continue
        # ViT-g's fused SwiGLU: w12 is timm's packed fc1, w3 its fc2
        k = k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        out[k] = v
    if "pos_embed" not in out or "cls_token" not in out:
        return out  # load_strict reports what is missing
    pos = out.pop("pos_embed")
    if "register_tokens" in out:
        out["reg_token"] = out.pop("register_tokens")
    if m.registers:
        out["cls_token"] = out["cls_token"] + pos[:, :1]
        out["pos_embed"] = interpolate_positions(pos[:, 1:], grid, registers=True)
    else:
        out["pos_embed"] = torch.cat([pos[:, :1], interpolate_positions(pos[:, 1:], grid, registers=False)], 1)
    return out


def from_timm_layout(state: dict, name: str, grid: int) -> dict:
    """timm's Hugging Face copy (already converted, positions for 518 px) → positions for ``grid``."""
    m, out = MODELS[name], dict(state)
    if "pos_embed" in out:
        pos = out["pos_embed"]
        if m.registers:
            out["pos_embed"] = interpolate_positions(pos, grid, registers=True)
        else:
            out["pos_embed"] = torch.cat([pos[:, :1], interpolate_positions(pos[:, 1:], grid, registers=False)], 1)
    return out


def load(net, name: str, path) -> None:
    state = weights.load_checkpoint(path)
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(state).__name__}, not DINOv2's flat state dict")
    grid = net.patch_embed.grid_size[0]
    # timm's copy has no mask token (and its registers are already split out as reg_token)
    is_timm = "reg_token" in state or ("mask_token" not in state and "register_tokens" not in state)
    state = from_timm_layout(state, name, grid) if is_timm else convert(state, name, grid)
    weights.load_strict(net, state, source=path)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    m = MODELS[name]
    path = spec(name).require(name) if pretrained else None
    net = build(name)
    depth, width, grid = len(net.blocks), net.embed_dim, net.patch_embed.grid_size
    backbone, dim, ident = token_opts.apply(net, tokens, name=name, native_dim=width, width=width, depth=depth,
                                            patch_grid=grid)
    source = "random init (pretrained=False)"
    if path is not None:
        load(net, name, path)
        source = str(path)
    # DINOv2's eval transform: Resize(256, bicubic) on the image, CenterCrop(224), ImageNet mean/std
    pre = Preprocess(resize=256, crop=INPUT, interpolation="bicubic", antialias=True, uint8=True)
    return Encoder(name, backbone, pre, dim=dim, trainable=train, weights_source=source, extra_identity=ident,
                   micro_batch=8)


for _name, _m in MODELS.items():
    register_encoder(_name, family="dinov2", weights=spec(_name).describe() + " (or timm's cache)", dim=_m.width,
                     input_size=INPUT, present=(lambda n=_name: spec(n).present()),
                     published=spec(_name).published, licence=LICENCE,
                     description=f"DINOv2 ViT-{_m.arch[3:].upper()}{' with 4 registers' if _m.registers else ''}, "
                                 f"CLS token after the final norm")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_m.width, patch_grid=(INPUT // PATCH, INPUT // PATCH))
