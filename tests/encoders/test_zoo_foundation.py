"""Foundation-model PVRs (DINOv2, DINOv3, SigLIP, CLIP ViTs, Theia) from checkpoints in their upstream layouts.

Each test builds a small checkpoint exactly as its authors publish it (same key
names and shapes, a tiny depth/width where the architecture allows), saves it under
the published file name, creates the encoder by name and compares its features with
a forward pass written here from the checkpoint's tensors (or the reference library
run directly), after the upstream preprocessing re-stated here.
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

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


def frames(n=2, h=90, w=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def resize_crop(fr, short, crop, *, antialias=True, mode="bicubic"):
    """torchvision Resize(short) + CenterCrop(crop) on uint8 images (bicubic, clamped and rounded)."""
    x = fr.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    size = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias).clamp(0, 255).round()
    if crop is None:
        return x
    h, w = x.shape[-2:]
    top, left = int(round((h - crop) / 2)), int(round((w - crop) / 2))
    return x[..., top:top + crop, left:left + crop]


def check_frozen(enc):
    assert not enc.backbone.training
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.backbone.training  # a frozen encoder stays in eval mode


def check_no_range_guess(enc, fr):
    """The encoder owns the 0-255 range: the same content as floats gives the same features, and
    nothing rescales a frame whose values happen to lie in 0-1 (a dark frame is a dark frame)."""
    with torch.no_grad():
        ref = enc(fr)
        torch.testing.assert_close(enc(fr.float()), ref, rtol=1e-5, atol=1e-5)
        dark = (fr // 255).float()  # values 0 and 1 only
        torch.testing.assert_close(enc(dark), enc(fr // 255), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(enc(dark), enc((dark * 255).to(torch.uint8)), atol=1e-3)


def rand_state(shapes: dict, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.2 for k, s in shapes.items()}


# -- a ViT written from the checkpoint tensors (DINOv2's layout) -----------------------------------
def ln(x, sd, p, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def attention(x, sd, p, heads):
    b, n, d = x.shape
    qkv = F.linear(x, sd[p + ".qkv.weight"], sd[p + ".qkv.bias"]).reshape(b, n, 3, heads, d // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1)
    return F.linear((a @ v).transpose(1, 2).reshape(b, n, d), sd[p + ".proj.weight"], sd[p + ".proj.bias"])


def dinov2_block(x, sd, i, heads):
    p = f"blocks.{i}"
    x = x + sd[p + ".ls1.gamma"] * attention(ln(x, sd, p + ".norm1"), sd, p + ".attn", heads)
    h = F.gelu(F.linear(ln(x, sd, p + ".norm2"), sd[p + ".mlp.fc1.weight"], sd[p + ".mlp.fc1.bias"]))
    return x + sd[p + ".ls2.gamma"] * F.linear(h, sd[p + ".mlp.fc2.weight"], sd[p + ".mlp.fc2.bias"])


def dinov2_positions(pos, grid, registers):
    """DINOv2's interpolate_pos_encoding for a square input (hub settings for plain / register models)."""
    cls, patch = pos[:, :1], pos[:, 1:]
    m, d = int(math.sqrt(patch.shape[1])), patch.shape[2]
    patch = patch.reshape(1, m, m, d).permute(0, 3, 1, 2)
    if registers:
        patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", antialias=True)
    else:
        patch = F.interpolate(patch, scale_factor=((grid + 0.1) / m, (grid + 0.1) / m), mode="bicubic",
                              antialias=False)
    return torch.cat([cls, patch.permute(0, 2, 3, 1).reshape(1, grid * grid, d)], 1)


def dinov2_forward(sd, x, *, depth, heads, patch=14, registers=False):
    """DINOv2's forward_features from the flat state dict: tokens after the final norm."""
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    b, d, gh, gw = t.shape
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], 1)
    t = t + dinov2_positions(sd["pos_embed"], gh, registers)
    if registers:
        t = torch.cat([t[:, :1], sd["register_tokens"].expand(b, -1, -1), t[:, 1:]], 1)
    for i in range(depth):
        t = dinov2_block(t, sd, i, heads)
    return ln(t, sd, "norm")


TINY_DINOV2 = dict(embed_dim=32, depth=2, num_heads=2)


def dinov2_checkpoint(registers: bool, seed=0) -> dict:
    """A state dict in the exact layout of dinov2_vit*14[_reg4]_pretrain.pth, tiny width and depth."""
    d, hidden, grid = 32, 128, 518 // 14
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + grid * grid, d), "mask_token": (1, d),
              "patch_embed.proj.weight": (d, 3, 14, 14), "patch_embed.proj.bias": (d,),
              "norm.weight": (d,), "norm.bias": (d,)}
    if registers:
        shapes["register_tokens"] = (1, 4, d)
    for i in range(2):
        p = f"blocks.{i}."
        shapes.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "attn.qkv.weight": (3 * d, d),
                       p + "attn.qkv.bias": (3 * d,), p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                       p + "ls1.gamma": (d,), p + "norm2.weight": (d,), p + "norm2.bias": (d,),
                       p + "mlp.fc1.weight": (hidden, d), p + "mlp.fc1.bias": (hidden,),
                       p + "mlp.fc2.weight": (d, hidden), p + "mlp.fc2.bias": (d,), p + "ls2.gamma": (d,)})
    sd = rand_state(shapes, seed)
    for k in sd:
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            sd[k] = 1 + sd[k]
    return sd


@pytest.fixture
def tiny_dinov2(monkeypatch):
    from pvr.encoders import dinov2

    for name, m in list(dinov2.MODELS.items()):
        if name.startswith("dinov2_vits14"):
            monkeypatch.setitem(dinov2.MODELS, name, dataclasses.replace(m, overrides=TINY_DINOV2))
    return dinov2


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2_matches_upstream_forward(model_dir, tiny_dinov2, registers):
    name = "dinov2_vits14_reg" if registers else "dinov2_vits14"
    filename = "dinov2_vits14_reg4_pretrain.pth" if registers else "dinov2_vits14_pretrain.pth"
    sd = dinov2_checkpoint(registers)
    torch.save(sd, model_dir / filename)
    enc = E.create(name)
    check_frozen(enc)
    assert enc.dim == 32
    fr = frames()
    x = (resize_crop(fr, 256, 224) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        tok = dinov2_forward(sd, x, depth=2, heads=2, registers=registers)
        n_prefix = 5 if registers else 1
        torch.testing.assert_close(enc(fr), tok[:, 0], rtol=1e-4, atol=1e-4)
        # token options read the same tokens: patch mean (registers excluded) and the 16x16 grid pooled to 2x2
        mean = E.create(name + ":pool=mean")
        torch.testing.assert_close(mean(fr), tok[:, n_prefix:].mean(1), rtol=1e-4, atol=1e-4)
        grid = E.create(name + ":grid=2")
        cells = tok[:, n_prefix:].reshape(2, 16, 16, 32).permute(0, 3, 1, 2)
        want = F.avg_pool2d(cells, 8).permute(0, 2, 3, 1).reshape(2, -1)
        torch.testing.assert_close(grid(fr), want, rtol=1e-4, atol=1e-4)
        assert grid.dim == 4 * 32 and len({enc.fingerprint, mean.fingerprint, grid.fingerprint}) == 3
    check_no_range_guess(enc, fr)


def test_dinov2_positions_resampled_like_timm_for_register_models(tiny_dinov2):
    """518 -> 224 px: the register models' rule is timm's resample_abs_pos_embed; the plain models' is not."""
    from timm.layers import resample_abs_pos_embed

    g = torch.Generator().manual_seed(1)
    pos = torch.randn(1, 37 * 37, 8, generator=g)
    ours = tiny_dinov2.interpolate_positions(pos, 16, registers=True)
    torch.testing.assert_close(ours, resample_abs_pos_embed(pos, (16, 16), num_prefix_tokens=0))
    plain = tiny_dinov2.interpolate_positions(pos, 16, registers=False)
    hand = dinov2_positions(torch.cat([torch.zeros(1, 1, 8), pos], 1), 16, False)[:, 1:]
    torch.testing.assert_close(plain, hand)
    assert not torch.allclose(plain, ours, atol=1e-3)  # the 0.1 offset and no antialiasing do differ
    # a hand check of one value: a grid of 37 -> 37 is left alone
    assert torch.equal(tiny_dinov2.interpolate_positions(pos, 37, registers=False), pos)


def test_dinov2_missing_file_and_wrong_keys(model_dir, tiny_dinov2):
    with pytest.raises(PvrError, match=r"dinov2_vits14_pretrain\.pth.*not found in .*models.*"
                                       r"dl\.fbaipublicfiles\.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain\.pth"):
        E.create("dinov2_vits14")
    sd = dinov2_checkpoint(False)
    sd["blocks.0.attn.qkv.weightx"] = sd.pop("blocks.0.attn.qkv.weight")
    torch.save(sd, model_dir / "dinov2_vits14_pretrain.pth")
    with pytest.raises(PvrError, match=r"missing keys \['blocks\.0\.attn\.qkv\.weight'\].*unexpected keys "
                                       r"\['blocks\.0\.attn\.qkv\.weightx'\]"):
        E.create("dinov2_vits14")


def test_dinov2_train_flag_leaves_it_trainable(model_dir, tiny_dinov2):
    torch.save(dinov2_checkpoint(False), model_dir / "dinov2_vits14_pretrain.pth")
    enc = E.create("dinov2_vits14", train=True)
    enc.train()
    assert enc.backbone.training and all(p.requires_grad for p in enc.backbone.parameters())
