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
    y = ln(x, sd, p + ".norm2")
    if p + ".mlp.w12.weight" in sd:  # ViT-g: SwiGLUFFNFused, silu(x1) * x2 from the packed w12, then w3
        x1, x2 = F.linear(y, sd[p + ".mlp.w12.weight"], sd[p + ".mlp.w12.bias"]).chunk(2, dim=-1)
        return x + sd[p + ".ls2.gamma"] * F.linear(F.silu(x1) * x2, sd[p + ".mlp.w3.weight"], sd[p + ".mlp.w3.bias"])
    h = F.gelu(F.linear(y, sd[p + ".mlp.fc1.weight"], sd[p + ".mlp.fc1.bias"]))
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


def dinov2_checkpoint(registers: bool, seed=0, *, swiglu=False) -> dict:
    """A state dict in the exact layout of dinov2_vit*14[_reg4]_pretrain.pth, tiny width and depth.

    ``swiglu``: ViT-g's layout (``mlp.w12`` packs both SwiGLU inputs, ``mlp.w3`` projects back), at width 48,
    where DINOv2's hidden size (int(4·48·2/3) + 7) // 8 · 8 = 128 agrees with timm's packed 2·128 = int(48·5.33334).
    """
    d, hidden, grid = (48, 128, 518 // 14) if swiglu else (32, 128, 518 // 14)
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
                       p + "ls2.gamma": (d,)})
        if swiglu:
            shapes.update({p + "mlp.w12.weight": (2 * hidden, d), p + "mlp.w12.bias": (2 * hidden,),
                           p + "mlp.w3.weight": (d, hidden), p + "mlp.w3.bias": (d,)})
        else:
            shapes.update({p + "mlp.fc1.weight": (hidden, d), p + "mlp.fc1.bias": (hidden,),
                           p + "mlp.fc2.weight": (d, hidden), p + "mlp.fc2.bias": (d,)})
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
        if name.startswith("dinov2_vitg14"):  # SwiGLU: a width where both hidden-size rules agree
            monkeypatch.setitem(dinov2.MODELS, name, dataclasses.replace(m, overrides=dict(TINY_DINOV2, embed_dim=48)))
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


def test_dinov2_vitg14_swiglu_layout(model_dir, tiny_dinov2):
    sd = dinov2_checkpoint(False, seed=5, swiglu=True)
    torch.save(sd, model_dir / "dinov2_vitg14_pretrain.pth")
    enc = E.create("dinov2_vitg14")
    assert enc.dim == 48
    fr = frames()
    x = (resize_crop(fr, 256, 224) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        torch.testing.assert_close(enc(fr), dinov2_forward(sd, x, depth=2, heads=2)[:, 0], rtol=1e-4, atol=1e-4)


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


# -- CLIP ViT-B/16, ViT-L/14 (OpenAI TorchScript archives) ------------------------------------------
OPENAI_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
OPENAI_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


class OpenAIStyle(torch.nn.Module):
    """The attribute layout of OpenAI's traced CLIP: ``visual.*`` plus the text side's scalars."""

    def __init__(self, visual, embed_dim):
        super().__init__()
        self.visual = visual
        self.logit_scale = torch.nn.Parameter(torch.tensor(4.6))
        self.text_projection = torch.nn.Parameter(torch.randn(8, embed_dim))
        self.register_buffer("input_resolution", torch.tensor(224))

    def forward(self, x):
        return self.visual(x)


@pytest.fixture
def tiny_clip(monkeypatch):
    """clip_vitb16 / clip_vitl14 with a 2-layer, 64-wide tower of the same open_clip layout (QuickGELU)."""
    import open_clip.factory as F_
    from pvr.encoders import clip

    for name, patch in (("clip_vitb16", 16), ("clip_vitl14", 14)):
        cfg_name = f"tiny-{name}-quickgelu"
        monkeypatch.setitem(F_._MODEL_CONFIGS, cfg_name, {
            "embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": patch, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}})
        _, file, repo, _ = clip.MODELS[name]
        monkeypatch.setitem(clip.MODELS, name, (cfg_name, file, repo, 16))
    return clip


def clip_tokens(visual, x):
    """open_clip VisionTransformer's tokens after ln_post, re-stated from its parts."""
    t = visual.conv1(x).flatten(2).transpose(1, 2)
    t = torch.cat([visual.class_embedding.expand(t.shape[0], 1, -1), t], 1) + visual.positional_embedding
    t = visual.transformer(visual.ln_pre(t))
    return visual.ln_post(t)


@pytest.mark.parametrize("name,file,side", [("clip_vitb16", "ViT-B-16.pt", 14), ("clip_vitl14", "ViT-L-14.pt", 16)])
def test_clip_vits_load_openai_archives(model_dir, tiny_clip, name, file, side):
    from open_clip.model import _build_vision_tower

    torch.manual_seed(0)
    import open_clip

    cfg = open_clip.get_model_config(tiny_clip.MODELS[name][0])
    visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=True).eval()
    with torch.no_grad():  # open_clip zero-inits nothing that matters here, but make every tensor non-trivial
        for p in visual.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    traced = torch.jit.trace(OpenAIStyle(visual, 16).eval(), torch.zeros(1, 3, 224, 224), check_trace=False)
    traced.save(str(model_dir / file))
    enc = E.create(name)
    check_frozen(enc)
    assert enc.dim == 16
    fr = frames()
    x = (resize_crop(fr, 224, 224) / 255 - OPENAI_MEAN) / OPENAI_STD
    with torch.no_grad():
        torch.testing.assert_close(enc(fr), visual(x), rtol=1e-4, atol=1e-4)  # encode_image, unnormalised
        tok = clip_tokens(visual, x)
        mean = E.create(name + ":pool=mean")
        torch.testing.assert_close(mean(fr), tok[:, 1:].mean(1), rtol=1e-4, atol=1e-4)
        cls = E.create(name + ":pool=cls")  # the CLS token before the projection
        torch.testing.assert_close(cls(fr), tok[:, 0], rtol=1e-4, atol=1e-4)
        assert mean.dim == cls.dim == 64 and E.create(name + ":pool=grid").dim == side * side * 64
    check_no_range_guess(enc, fr)


def test_clip_vit_missing_file(model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PvrError, match=r"'ViT-L-14\.pt'.*not found in .*openaipublic.*ViT-L-14\.pt"):
        E.create("clip_vitl14")


# -- SigLIP / SigLIP 2 (open_clip's Hugging Face release) ------------------------------------------
TINY_SIGLIP = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def tiny_siglip(monkeypatch):
    from pvr.encoders import siglip

    for name in ("siglip2_base", "siglip_base"):
        monkeypatch.setitem(siglip.MODELS, name, dataclasses.replace(siglip.MODELS[name], overrides=TINY_SIGLIP))
    return siglip


def hf_snapshot(tmp_path, repo: str, files: dict) -> None:
    """A Hugging Face cache entry as huggingface_hub lays it out: blobs, snapshots/<rev>/, refs/main."""
    from safetensors.torch import save_file

    root = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0123abcd")
    for name, state in files.items():
        save_file({k: v.contiguous() for k, v in state.items()}, str(snap / name))


def siglip_trunk(seed=0):
    torch.manual_seed(seed)
    trunk = timm.create_model("vit_base_patch16_siglip_224", pretrained=False, num_classes=0, global_pool="map",
                              **TINY_SIGLIP).eval()
    with torch.no_grad():
        for p in trunk.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return trunk


@pytest.mark.slow  # open_clip builds the full-size tower before the tiny trunk replaces it: ~20 s here
@pytest.mark.parametrize("name,repo", [("siglip2_base", "timm/ViT-B-16-SigLIP2"), ("siglip_base", "timm/ViT-B-16-SigLIP")])
def test_siglip_map_head_from_hf_snapshot(model_dir, tmp_path, tiny_siglip, name, repo):
    trunk = siglip_trunk()
    state = {f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}
    state.update({"text.token_embedding.weight": torch.randn(10, 32), "logit_scale": torch.tensor(2.3),
                  "logit_bias": torch.tensor(-10.0)})  # open_clip's file holds the text tower too
    hf_snapshot(tmp_path, repo, {"open_clip_model.safetensors": state})
    assert E.info(name)["present"]
    enc = E.create(name)
    check_frozen(enc)
    assert enc.dim == 32
    fr = frames(h=90, w=160)  # not square: squashed to 224x224, not cropped
    x = fr.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 255).round()
    x = (x / 255 - 0.5) / 0.5
    with torch.no_grad():
        torch.testing.assert_close(enc(fr), trunk(x), rtol=1e-4, atol=1e-4)  # the MAP head's pooled output
        tok = trunk.norm(trunk.blocks(trunk.patch_embed(x) + trunk.pos_embed))  # no CLS: positions on patches
        mean = E.create(name + ":pool=mean")
        torch.testing.assert_close(mean(fr), tok.mean(1), rtol=1e-4, atol=1e-4)
        assert mean.dim == 32 and E.info(name + ":grid=7")["dim"] == 49 * 768  # listed for the real width
    with pytest.raises(PvrError, match="pool=cls"):
        E.info(name + ":pool=cls")
    check_no_range_guess(enc, fr)


def test_siglip_missing_and_wrong_keys(model_dir, tmp_path, tiny_siglip):
    with pytest.raises(PvrError, match=r"ViT-B-16-SigLIP2/open_clip_model\.safetensors.*not found.*"
                                       r"timm/ViT-B-16-SigLIP2.*huggingface\.co/timm/ViT-B-16-SigLIP2"):
        E.create("siglip2_base")
    state = {f"visual.trunk.{k}": v for k, v in siglip_trunk().state_dict().items()}
    state["visual.trunk.attn_pool.qq.weight"] = state.pop("visual.trunk.attn_pool.q.weight")
    (model_dir / "ViT-B-16-SigLIP2").mkdir()
    from safetensors.torch import save_file
    save_file(state, str(model_dir / "ViT-B-16-SigLIP2" / "open_clip_model.safetensors"))
    with pytest.raises(PvrError, match=r"missing keys \['trunk\.attn_pool\.q\.weight'\].*"
                                       r"unexpected keys \['trunk\.attn_pool\.qq\.weight'\]"):
        E.create("siglip2_base")


# -- DINOv3 (the gated release's flat state dicts) -------------------------------------------------
TINY_DINOV3 = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def tiny_dinov3(monkeypatch):
    from pvr.encoders import dinov3

    for name in ("dinov3_vits16", "dinov3_vitl16_sat"):
        monkeypatch.setitem(dinov3.MODELS, name, dataclasses.replace(dinov3.MODELS[name], overrides=TINY_DINOV3))
    return dinov3


def dinov3_reference(arch="vit_small_patch16_dinov3_qkvb", seed=0):
    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="token", img_size=256,
                            **TINY_DINOV3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def to_dinov3_layout(net, *, sat=False) -> dict:
    """The reference network's tensors under DINOv3's own names (as dinov3_*_pretrain_*.pth hold them)."""
    sd, d, heads = net.state_dict(), 32, 2
    head_dim = d // heads
    out = {"cls_token": sd["cls_token"], "storage_tokens": sd["reg_token"], "mask_token": torch.zeros(1, d),
           "patch_embed.proj.weight": sd["patch_embed.proj.weight"], "patch_embed.proj.bias": sd["patch_embed.proj.bias"],
           # RopePositionEmbedding(base=100): periods = base ** (2 i / (D_head / 2)), i < D_head / 4
           "rope_embed.periods": 100.0 ** (2 * torch.arange(head_dim // 4) / (head_dim // 2)),
           "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"]}
    for i in range(2):
        p = f"blocks.{i}."
        out[p + "norm1.weight"], out[p + "norm1.bias"] = sd[p + "norm1.weight"], sd[p + "norm1.bias"]
        out[p + "attn.qkv.weight"] = sd[p + "attn.qkv.weight"]
        # DINOv3 stores one qkv bias and a mask that zeroes its key third
        out[p + "attn.qkv.bias"] = torch.cat([sd[p + "attn.q_bias"], torch.randn(d), sd[p + "attn.v_bias"]])
        out[p + "attn.qkv.bias_mask"] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
        out[p + "attn.proj.weight"], out[p + "attn.proj.bias"] = sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"]
        out[p + "ls1.gamma"], out[p + "ls2.gamma"] = sd[p + "gamma_1"], sd[p + "gamma_2"]
        out[p + "norm2.weight"], out[p + "norm2.bias"] = sd[p + "norm2.weight"], sd[p + "norm2.bias"]
        for f in ("fc1", "fc2"):
            out[p + f"mlp.{f}.weight"], out[p + f"mlp.{f}.bias"] = sd[p + f"mlp.{f}.weight"], sd[p + f"mlp.{f}.bias"]
    if sat:  # the satellite ViT-L's training-only norm for local crops
        out["local_cls_norm.weight"], out["local_cls_norm.bias"] = torch.ones(d), torch.zeros(d)
    return out


@pytest.mark.parametrize("name,file,mean,std", [
    ("dinov3_vits16", "dinov3_vits16_pretrain_lvd1689m-08c60483.pth", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("dinov3_vitl16_sat", "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth", (0.430, 0.411, 0.296), (0.213, 0.156, 0.143)),
])
def test_dinov3_matches_timm_reference(model_dir, tiny_dinov3, name, file, mean, std):
    net = dinov3_reference()
    torch.save(to_dinov3_layout(net, sat=name.endswith("sat")), model_dir / file)
    enc = E.create(name)
    check_frozen(enc)
    assert enc.dim == 32
    fr = frames(h=90, w=160)
    # DINOv3's make_transform: Resize((256, 256), antialias=True) (bilinear) on the uint8 image, no crop
    x = F.interpolate(fr.permute(0, 3, 1, 2).float(), size=(256, 256), mode="bilinear", antialias=True,
                      align_corners=False).clamp(0, 255).round() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc(fr), net(x), rtol=1e-4, atol=1e-4)  # x_norm_clstoken
        tok = net.forward_features(x)  # [CLS, 4 storage, 16x16 patches] after the final norm
        mean_enc = E.create(name + ":pool=mean")
        torch.testing.assert_close(mean_enc(fr), tok[:, 5:].mean(1), rtol=1e-4, atol=1e-4)
        assert E.create(name + ":pool=grid").dim == 256 * 32
    check_no_range_guess(enc, fr)


def test_dinov3_any_hash_missing_file_wrong_keys_and_periods(model_dir, tiny_dinov3):
    with pytest.raises(PvrError, match=r"dinov3_vits16_pretrain_lvd1689m-08c60483\.pth.*not found.*dinov3-downloads"):
        E.create("dinov3_vits16")
    sd = to_dinov3_layout(dinov3_reference())
    torch.save(sd, model_dir / "dinov3_vits16_pretrain_lvd1689m-0000beef.pth")  # another release's hash
    assert E.info("dinov3_vits16")["present"]
    E.create("dinov3_vits16")
    bad = dict(sd, **{"rope_embed.periods": sd["rope_embed.periods"] * 2})
    torch.save(bad, model_dir / "dinov3_vits16_pretrain_lvd1689m-0000beef.pth")
    with pytest.raises(PvrError, match="RoPE periods"):
        E.create("dinov3_vits16")
    bad = dict(sd)
    bad["blocks.1.ls1.gama"] = bad.pop("blocks.1.ls1.gamma")
    torch.save(bad, model_dir / "dinov3_vits16_pretrain_lvd1689m-0000beef.pth")
    with pytest.raises(PvrError, match=r"missing keys \['blocks\.1\.gamma_1'\].*unexpected keys \['blocks\.1\.ls1\.gama'\]"):
        E.create("dinov3_vits16")


# -- Theia (the Hugging Face release's safetensors: a transformers ViTModel backbone + translators) --
TINY_THEIA = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def tiny_theia(monkeypatch):
    from pvr.encoders import theia

    monkeypatch.setitem(theia.MODELS, "theia_tiny", dataclasses.replace(theia.MODELS["theia_tiny"], overrides=TINY_THEIA))
    return theia


def theia_checkpoint(seed=0) -> dict:
    """model.safetensors of theaiinstitute/theia-*: ``backbone.model.*`` (HF ViTModel names) and ``translator.*``."""
    d, hidden, n = 32, 128, 1 + 14 * 14
    b = "backbone.model."
    shapes = {b + "embeddings.cls_token": (1, 1, d), b + "embeddings.position_embeddings": (1, n, d),
              b + "embeddings.patch_embeddings.projection.weight": (d, 3, 16, 16),
              b + "embeddings.patch_embeddings.projection.bias": (d,),
              b + "layernorm.weight": (d,), b + "layernorm.bias": (d,),
              "translator.translators.facebook/dinov2-large.0.weight": (8, d)}
    for i in range(2):
        p = f"{b}encoder.layer.{i}."
        for name, shape in [("attention.attention.query", (d, d)), ("attention.attention.key", (d, d)),
                            ("attention.attention.value", (d, d)), ("attention.output.dense", (d, d)),
                            ("intermediate.dense", (hidden, d)), ("output.dense", (d, hidden))]:
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = shape, shape[:1]
        for ln_ in ("layernorm_before", "layernorm_after"):
            shapes[p + ln_ + ".weight"], shapes[p + ln_ + ".bias"] = (d,), (d,)
    sd = rand_state(shapes, seed)
    for k in sd:
        if "layernorm" in k and k.endswith("weight"):
            sd[k] = 1 + sd[k]
    return sd


def hf_vit_tokens(sd, x, *, depth=2, heads=2, eps=1e-12):
    """transformers' ViTModel last_hidden_state, written from the tensors (pre-norm blocks, exact GELU)."""
    b = "backbone.model."
    g = lambda k: sd[b + k]  # noqa: E731
    t = F.conv2d(x, g("embeddings.patch_embeddings.projection.weight"), g("embeddings.patch_embeddings.projection.bias"),
                 stride=16).flatten(2).transpose(1, 2)
    t = torch.cat([g("embeddings.cls_token").expand(t.shape[0], -1, -1), t], 1) + g("embeddings.position_embeddings")
    lnf = lambda y, k: F.layer_norm(y, y.shape[-1:], g(k + ".weight"), g(k + ".bias"), eps)  # noqa: E731
    lin = lambda y, k: F.linear(y, g(k + ".weight"), g(k + ".bias"))  # noqa: E731
    for i in range(depth):
        p = f"encoder.layer.{i}."
        h = lnf(t, p + "layernorm_before")
        bsz, n, d = h.shape
        q, k, v = (lin(h, p + f"attention.attention.{w}").reshape(bsz, n, heads, -1).transpose(1, 2)
                   for w in ("query", "key", "value"))
        a = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1)
        t = t + lin((a @ v).transpose(1, 2).reshape(bsz, n, d), p + "attention.output.dense")
        t = t + lin(F.gelu(lin(lnf(t, p + "layernorm_after"), p + "intermediate.dense")), p + "output.dense")
    return lnf(t, "layernorm")


def test_theia_matches_hf_vit_forward(model_dir, tmp_path, tiny_theia):
    sd = theia_checkpoint()
    hf_snapshot(tmp_path, "theaiinstitute/theia-tiny-patch16-224-cdiv", {"model.safetensors": sd})
    enc = E.create("theia_tiny")
    check_frozen(enc)
    assert enc.dim == 32
    fr = frames(h=90, w=160)
    # DeiT's image processor: resize to (256, 256) bicubic, centre crop 224, ImageNet mean/std
    x = F.interpolate(fr.permute(0, 3, 1, 2).float(), size=(256, 256), mode="bicubic", antialias=True,
                      align_corners=False).clamp(0, 255).round()[..., 16:240, 16:240]
    x = (x / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        tok = hf_vit_tokens(sd, x)
        torch.testing.assert_close(enc(fr), tok[:, 1:].mean(1), rtol=1e-4, atol=1e-4)  # Theia's mean_pooling
        torch.testing.assert_close(E.create("theia_tiny:pool=max")(fr), tok[:, 1:].amax(1), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(E.create("theia_tiny:pool=cls")(fr), tok[:, 0], rtol=1e-4, atol=1e-4)
        spatial = E.create("theia_tiny:pool=grid")  # Theia's default forward_feature: every spatial token
        torch.testing.assert_close(spatial(fr), tok[:, 1:].reshape(2, -1), rtol=1e-4, atol=1e-4)
        assert spatial.dim == 196 * 32
    check_no_range_guess(enc, fr)


def test_theia_missing_file_and_stray_keys(model_dir, tmp_path, tiny_theia):
    with pytest.raises(PvrError, match=r"theia-tiny-patch16-224-cdiv/model\.safetensors.*not found.*"
                                       r"huggingface\.co/theaiinstitute/theia-tiny-patch16-224-cdiv"):
        E.create("theia_tiny")
    sd = theia_checkpoint()
    sd["decoder.weight"] = torch.zeros(3)  # neither backbone nor translator heads
    del sd["backbone.model.encoder.layer.1.output.dense.bias"]
    from safetensors.torch import save_file
    (model_dir / "theia-tiny-patch16-224-cdiv").mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(model_dir / "theia-tiny-patch16-224-cdiv" / "model.safetensors"))
    with pytest.raises(PvrError, match=r"missing keys \['blocks\.1\.mlp\.fc2\.bias'\].*unexpected keys \['decoder\.weight'\]"):
        E.create("theia_tiny")


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2_from_timm_copy_in_hf_cache(model_dir, tmp_path, tiny_dinov2, registers):
    """timm's converted copy (no mask token; registers split out, CLS position folded in) gives the same features."""
    sd = dinov2_checkpoint(registers, seed=3)
    timm_sd = {k: v for k, v in sd.items() if k != "mask_token"}
    if registers:
        timm_sd["reg_token"] = timm_sd.pop("register_tokens")
        timm_sd["cls_token"] = sd["cls_token"] + sd["pos_embed"][:, :1]
        timm_sd["pos_embed"] = sd["pos_embed"][:, 1:]
    repo = f"timm/vit_small_patch14{'_reg4' if registers else ''}_dinov2.lvd142m"
    hf_snapshot(tmp_path, repo, {"model.safetensors": timm_sd})
    name = "dinov2_vits14_reg" if registers else "dinov2_vits14"
    enc = E.create(name)
    assert str(enc.weights_source).endswith("model.safetensors")
    fr = frames()
    x = (resize_crop(fr, 256, 224) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        want = dinov2_forward(sd, x, depth=2, heads=2, registers=registers)[:, 0]
        torch.testing.assert_close(enc(fr), want, rtol=1e-4, atol=1e-4)
