"""DINOv3's SwiGLU models (ViT-S+/16, ViT-L+/16, ViT-H+/16, ViT-7B/16) from checkpoints in the release's layout.

The reference is DINOv3's forward pass re-stated here from the checkpoint's tensors
(dinov3/models/vision_transformer.py, dinov3/layers: patch embedding, [CLS, 4 storage, patches],
RoPE on the patch tokens only, masked key bias, layer scale, SwiGLU ``w3(silu(w1 x) * w2 x)``,
LayerNorm eps 1e-5, CLS after the final norm) — it does not use timm, which pvr runs. Tiny
depth/width stand in for the real sizes; the real sizes are checked key by key and shape by
shape on the meta device (nothing allocated: the 7B alone is 27 GB in float32).
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import pvr.encoders as E
from pvr.errors import PvrError

timm = pytest.importorskip("timm")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SAT = ((0.430, 0.411, 0.296), (0.213, 0.156, 0.143))


# The upstream hyper-parameters (dinov3/hub/backbones.py), written out here rather than read from pvr:
# embed_dim, depth, num_heads, ffn_ratio, SwiGLU alignment, qkv_bias, untie_global_and_local_cls_norm
UPSTREAM = {
    "dinov3_vits16plus": (384, 12, 6, 6.0, 8, True, False),
    "dinov3_vitl16plus": (1024, 24, 16, 6.0, 8, True, False),
    "dinov3_vith16plus": (1280, 32, 20, 6.0, 8, True, False),
    "dinov3_vit7b16": (4096, 40, 32, 3.0, 64, False, True),
    "dinov3_vit7b16_sat": (4096, 40, 32, 3.0, 64, False, True),
}
FILES = {
    "dinov3_vits16plus": "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
    "dinov3_vitl16plus": "dinov3_vitl16plus_pretrain_lvd1689m-46503df0.pth",
    "dinov3_vith16plus": "dinov3_vith16plus_pretrain_lvd1689m-7c1da9a5.pth",
    "dinov3_vit7b16": "dinov3_vit7b16_pretrain_lvd1689m-a955f4ea.pth",
    "dinov3_vit7b16_sat": "dinov3_vit7b16_pretrain_sat493m-a6675841.pth",
}


def upstream_shapes(dim, depth, heads, ffn_ratio, align, qkv_bias, untie) -> dict:
    """Every tensor of DinoVisionTransformer.state_dict() for these sizes, with its shape."""
    d = int(int(dim * ffn_ratio) * 2 / 3)  # SwiGLUFFN(hidden_features=int(dim * ffn_ratio), align_to=align)
    hidden = d + (-d % align)
    s = {"cls_token": (1, 1, dim), "storage_tokens": (1, 4, dim), "mask_token": (1, dim),
         "patch_embed.proj.weight": (dim, 3, 16, 16), "patch_embed.proj.bias": (dim,),
         "rope_embed.periods": (dim // heads // 4,), "norm.weight": (dim,), "norm.bias": (dim,)}
    if untie:
        s["local_cls_norm.weight"], s["local_cls_norm.bias"] = (dim,), (dim,)
    for i in range(depth):
        p = f"blocks.{i}."
        s.update({p + "norm1.weight": (dim,), p + "norm1.bias": (dim,), p + "attn.qkv.weight": (3 * dim, dim),
                  p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,), p + "ls1.gamma": (dim,),
                  p + "norm2.weight": (dim,), p + "norm2.bias": (dim,), p + "ls2.gamma": (dim,),
                  p + "mlp.w1.weight": (hidden, dim), p + "mlp.w1.bias": (hidden,),
                  p + "mlp.w2.weight": (hidden, dim), p + "mlp.w2.bias": (hidden,),
                  p + "mlp.w3.weight": (dim, hidden), p + "mlp.w3.bias": (dim,)})
        if qkv_bias:
            s[p + "attn.qkv.bias"], s[p + "attn.qkv.bias_mask"] = (3 * dim,), (3 * dim,)
    return s


def upstream_checkpoint(dim, depth, heads, ffn_ratio, align, qkv_bias, untie, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in upstream_shapes(dim, depth, heads, ffn_ratio, align, qkv_bias, untie).items():
        sd[k] = torch.randn(shape, generator=g) * (0.5 if "gamma" in k else 0.1)
    for k in sd:
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            sd[k] = 1 + sd[k]
        if k.endswith("bias_mask"):  # init_weights_vit: ones, zeros over the key third
            sd[k] = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
    head = dim // heads
    sd["rope_embed.periods"] = 100.0 ** (2 * torch.arange(head // 4) / (head // 2))  # base 100
    return sd


def rope(h: int, w: int, periods: torch.Tensor):
    """RopePositionEmbedding(normalize_coords="separate") at inference: centres in [-1, 1] per side."""
    ch = (torch.arange(0.5, h) / h) * 2 - 1
    cw = (torch.arange(0.5, w) / w) * 2 - 1
    coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), -1).flatten(0, 1)  # [HW, 2]
    angles = (2 * math.pi * coords[:, :, None] / periods[None, None]).flatten(1, 2).tile(2)  # [HW, D_head]
    return angles.sin(), angles.cos()


def rotate(x, sin, cos):
    a, b = x.chunk(2, -1)
    return x * cos + torch.cat([-b, a], -1) * sin


def dinov3_forward(sd: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """Tokens after the final norm ([CLS, 4 storage, patches]) of DINOv3's ViT on normalised images."""
    ln = lambda t, p: F.layer_norm(t, t.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-5)  # noqa: E731
    p = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
    b, dim, h, w = p.shape
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), sd["storage_tokens"].expand(b, -1, -1),
                   p.flatten(2).transpose(1, 2)], 1)
    sin, cos = rope(h, w, sd["rope_embed.periods"])
    n_prefix = 5
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        q = f"blocks.{i}."
        y = ln(t, q + "norm1")
        bias = sd.get(q + "attn.qkv.bias")
        if bias is not None:
            bias = bias * sd[q + "attn.qkv.bias_mask"]
        qkv = F.linear(y, sd[q + "attn.qkv.weight"], bias).view(b, t.shape[1], 3, heads, dim // heads)
        qq, kk, vv = qkv.permute(2, 0, 3, 1, 4)
        qq = torch.cat([qq[:, :, :n_prefix], rotate(qq[:, :, n_prefix:], sin, cos)], 2)
        kk = torch.cat([kk[:, :, :n_prefix], rotate(kk[:, :, n_prefix:], sin, cos)], 2)
        att = (qq @ kk.transpose(-1, -2) / math.sqrt(dim // heads)).softmax(-1)
        y = (att @ vv).transpose(1, 2).reshape(b, -1, dim)
        t = t + F.linear(y, sd[q + "attn.proj.weight"], sd[q + "attn.proj.bias"]) * sd[q + "ls1.gamma"]
        y = ln(t, q + "norm2")
        y = F.silu(F.linear(y, sd[q + "mlp.w1.weight"], sd[q + "mlp.w1.bias"])) * \
            F.linear(y, sd[q + "mlp.w2.weight"], sd[q + "mlp.w2.bias"])
        t = t + F.linear(y, sd[q + "mlp.w3.weight"], sd[q + "mlp.w3.bias"]) * sd[q + "ls2.gamma"]
    return ln(t, "norm")


def preprocess(fr: torch.Tensor, mean, std) -> torch.Tensor:
    """DINOv3's make_transform: Resize((256, 256), antialias=True) (bilinear) on the uint8 image, no crop."""
    x = F.interpolate(fr.permute(0, 3, 1, 2).float(), size=(256, 256), mode="bilinear", antialias=True,
                      align_corners=False).clamp(0, 255).round() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def frames(n=2, h=90, w=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


# tiny sizes: S+ keeps its 2/3 width on a multiple of 8; the 7B's 2/3 width (80) rounds up to 128 (align 64)
TINY = {"dinov3_vits16plus": dict(embed_dim=32, depth=2, num_heads=2),
        "dinov3_vith16plus": dict(embed_dim=40, depth=2, num_heads=2),
        "dinov3_vit7b16_sat": dict(embed_dim=40, depth=2, num_heads=2)}


@pytest.fixture
def tiny(monkeypatch):
    from pvr.encoders import dinov3

    for name, kw in TINY.items():
        monkeypatch.setitem(dinov3.MODELS, name, dataclasses.replace(dinov3.MODELS[name], overrides=kw))
    return dinov3


@pytest.mark.parametrize("name,norm", [("dinov3_vits16plus", IMAGENET), ("dinov3_vith16plus", IMAGENET),
                                       ("dinov3_vit7b16_sat", SAT)])
def test_swiglu_models_match_dinov3_forward(model_dir, tiny, name, norm):
    _, _, _, ratio, align, qkv_bias, untie = UPSTREAM[name]
    kw = TINY[name]
    sd = upstream_checkpoint(kw["embed_dim"], kw["depth"], kw["num_heads"], ratio, align, qkv_bias, untie)
    if qkv_bias:  # a non-zero key bias that DINOv3 masks out: pvr must not use it
        assert sd["blocks.0.attn.qkv.bias"][kw["embed_dim"]:2 * kw["embed_dim"]].abs().sum() > 0
    torch.save(sd, model_dir / FILES[name])
    enc = E.create(name)
    assert enc.dim == kw["embed_dim"]
    assert not enc.backbone.training and all(not p.requires_grad for p in enc.parameters())
    fr = frames()
    with torch.no_grad():
        tok = dinov3_forward(sd, preprocess(fr, *norm), kw["num_heads"])
        torch.testing.assert_close(enc(fr), tok[:, 0], rtol=1e-4, atol=1e-4)  # x_norm_clstoken
        torch.testing.assert_close(E.create(name + ":pool=mean")(fr), tok[:, 5:].mean(1), rtol=1e-4, atol=1e-4)
        # the encoder owns the 0-255 range: float frames of the same content give the same features
        torch.testing.assert_close(enc(fr.float()), enc(fr), rtol=1e-5, atol=1e-5)


def test_swiglu_halves_are_not_interchangeable(model_dir, tiny):
    """Swapping w1 and w2 (the SiLU'd half and the linear half) changes the features: the mapping is pinned."""
    kw = TINY["dinov3_vits16plus"]
    sd = upstream_checkpoint(kw["embed_dim"], kw["depth"], kw["num_heads"], 6.0, 8, True, False)
    swapped = dict(sd)
    for i in range(kw["depth"]):
        for s in ("weight", "bias"):
            a, b = f"blocks.{i}.mlp.w1.{s}", f"blocks.{i}.mlp.w2.{s}"
            swapped[a], swapped[b] = sd[b], sd[a]
    torch.save(swapped, model_dir / FILES["dinov3_vits16plus"])
    fr = frames()
    with torch.no_grad():
        ref = dinov3_forward(sd, preprocess(fr, *IMAGENET), kw["num_heads"])[:, 0]
        assert not torch.allclose(E.create("dinov3_vits16plus")(fr), ref, atol=1e-3)


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_full_size_layout_on_meta_device(tiny, name, monkeypatch):
    """The published file's every key and shape, at the real sizes, fits the network pvr builds (no allocation)."""
    from pvr.encoders import weights

    monkeypatch.setitem(tiny.MODELS, name, dataclasses.replace(tiny.MODELS[name], overrides={}))
    shapes = upstream_shapes(*UPSTREAM[name])
    with torch.device("meta"):
        net = tiny.build(name)
        state = {k: torch.empty(s) for k, s in shapes.items()}
    converted, _ = tiny.convert({k: v for k, v in state.items() if not k.endswith("bias_mask")}, "file")
    weights.load_strict(net, converted, source="file")  # raises on any missing/unexpected key or shape
    n_params = sum(p.numel() for p in net.parameters())
    # DINOv3's README: ViT-S+/16 29M, ViT-H+/16 840M, ViT-7B/16 6,716M parameters
    # (rounded there: within half a unit of the last digit given)
    expected = {"dinov3_vits16plus": (29e6, 0.5e6), "dinov3_vith16plus": (840e6, 5e6),
                "dinov3_vit7b16": (6716e6, 0.5e6), "dinov3_vit7b16_sat": (6716e6, 0.5e6)}.get(name)
    if expected is not None:
        assert abs(n_params - expected[0]) <= expected[1], n_params
    assert E.info(name)["dim"] == UPSTREAM[name][0]


def test_published_names_licence_and_missing_file(model_dir):
    for name, file in FILES.items():
        info = E.info(name)
        assert file in info["weights"]
        assert "DINOv3 License" in info["licence"] and "dinov3-downloads" in info["published"]
        assert not info["present"]
    with pytest.raises(PvrError, match=r"dinov3_vit7b16_pretrain_lvd1689m-a955f4ea\.pth.*not found.*dinov3-downloads"):
        E.create("dinov3_vit7b16")


def test_wrong_swiglu_width_is_named(model_dir, tiny):
    kw = TINY["dinov3_vits16plus"]
    sd = upstream_checkpoint(kw["embed_dim"], kw["depth"], kw["num_heads"], 4.0, 8, True, False)  # ratio 4, not 6
    torch.save(sd, model_dir / FILES["dinov3_vits16plus"])
    with pytest.raises(PvrError, match=r"do not fit this architecture: blocks\.0\.mlp\.fc1_g\.weight"):
        E.create("dinov3_vits16plus")
