"""The robotics PVRs (R3M, VIP, LIV, MVP, VC-1) against their upstream checkpoint layouts.

Each test builds a randomly initialised reference network (torchvision, open_clip
or timm — what the upstream project builds on), saves it exactly as the upstream
training code does (``DataParallel`` prefixes, language heads, text towers, MAE
decoders, optimizer state), loads it through ``pvr.encoders.create`` and compares
with the upstream forward and preprocessing re-stated here with torchvision ops.
"""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

import pvr.encoders as E
from pvr.encoders import mvp, upstream, vc1
from pvr.errors import PvrError

ATOL = 1e-4
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def frames(b=2, h=60, w=80, seed=0, high=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (b, h, w, 3), dtype=torch.uint8, generator=g)


def close(out, ref):
    """Equal to float32 accumulation-order noise, scaled to the features' size (random BN statistics make them large)."""
    torch.testing.assert_close(out, ref, atol=ATOL * max(1.0, float(ref.abs().max())), rtol=1e-4)


def randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics and affine terms away from (0, 1), so a mis-loaded buffer shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def isolate(monkeypatch, tmp_path):
    """Weights only from tmp_path: no real caches of this machine are looked at."""
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def assert_frozen(enc):
    enc.train()  # a frozen encoder stays in eval mode inside a training policy
    assert not enc.backbone.training
    assert all(not p.requires_grad for p in enc.backbone.parameters())


# -- the upstream preprocessing, re-stated per image with torchvision -------------------------------
def pil_like(frames_u8, resize, crop, mode, mean_std):
    """torchvision Resize(resize, mode, antialias=True) + CenterCrop on the uint8 image, /255, Normalize."""
    out = []
    for f in frames_u8:
        x = TF.center_crop(TF.resize(f.permute(2, 0, 1), resize, interpolation=mode, antialias=True), crop)
        out.append(TF.normalize(x.float() / 255.0, *mean_std))
    return torch.stack(out)


def float_resize(frames_u8, resize, crop, mean_std):
    """/255 first, then Resize(resize) of the float image (bilinear, no antialias), CenterCrop, Normalize."""
    out = []
    for f in frames_u8:
        x = f.permute(2, 0, 1).float() / 255.0
        x = TF.center_crop(TF.resize(x, resize, interpolation=InterpolationMode.BILINEAR, antialias=False), crop)
        out.append(TF.normalize(x, *mean_std))
    return torch.stack(out)


# -- R3M and VIP ------------------------------------------------------------------------------------
R3M = {18: (torchvision.models.resnet18, 512), 34: (torchvision.models.resnet34, 512),
       50: (torchvision.models.resnet50, 2048)}


def r3m_convnet(size: int, vip: bool = False) -> nn.Module:
    torch.manual_seed(size)
    ctor, dim = R3M[size]
    net = ctor(weights=None)
    net.fc = nn.Linear(dim, 1024) if vip else nn.Identity()  # R3M: fc = Identity; VIP: hidden_dim 1024
    randomise_bn(net, seed=size)
    return net.eval()


def r3m_file(net: nn.Module, key: str) -> dict:
    """torch.save({key: DataParallel(R3M|VIP).state_dict()}) as the upstream trainers do."""
    state = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    if key == "r3m":  # R3M's language encoder (DistilBERT) and reward head, which its loader deletes
        state["module.lang_enc.model.embeddings.word_embeddings.weight"] = torch.randn(30, 8)
        state["module.lang_rew.pred.0.weight"] = torch.randn(16, 2048 + 768)
        state["module.lang_rew.pred.0.bias"] = torch.randn(16)
    return {key: state, "global_step": 7}


def r3m_reference(net, x_u8):
    # the authors' example: PIL Resize(256) + CenterCrop(224) + ToTensor, ×255, then the model's /255 and Normalize
    with torch.no_grad():
        return net(pil_like(x_u8, 256, 224, InterpolationMode.BILINEAR, IMAGENET))


@pytest.mark.parametrize("size", [18, 34, 50])
def test_r3m_loads_the_published_layout(size, monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    net = r3m_convnet(size)
    torch.save(r3m_file(net, "r3m"), tmp_path / f"r3m_resnet{size}.pt")
    enc = E.create(f"r3m_resnet{size}")
    assert enc.dim == R3M[size][1]
    assert_frozen(enc)
    x = frames(h=300, w=257)
    out = enc(x)
    assert out.shape == (2, R3M[size][1])
    close(out, r3m_reference(net, x))
    assert_dark_frames_divided(enc, net)


def test_vip_keeps_its_fc_layer(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    net = r3m_convnet(50, vip=True)
    torch.save(r3m_file(net, "vip"), tmp_path / "vip_resnet50.pt")
    enc = E.create("vip_resnet50")
    assert enc.dim == 1024
    assert_frozen(enc)
    x = frames()
    close(enc(x), r3m_reference(net, x))
    assert_dark_frames_divided(enc, net)


def assert_dark_frames_divided(enc, net):
    # VIP divides by 255 only when max > 2 (LIV: > 10): frames with values 0..2 must still be read as 0..255 content
    dark = frames(high=3)
    assert int(dark.max()) == 2
    close(enc(dark), r3m_reference(net, dark))


def test_r3m_found_where_its_loader_keeps_it(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    net = r3m_convnet(18)
    folder = tmp_path / "home" / ".r3m" / "r3m_18"
    folder.mkdir(parents=True)
    torch.save(r3m_file(net, "r3m"), folder / "model.pt")
    assert E.info("r3m_resnet18")["present"]
    enc = E.create("r3m_resnet18")
    assert enc.weights_source == str(folder / "model.pt")
    x = frames()
    close(enc(x), r3m_reference(net, x))
    # and R3M's folder layout copied into $PVR_MODEL_PATH
    (tmp_path / "r3m_18").mkdir()
    (folder / "model.pt").rename(tmp_path / "r3m_18" / "model.pt")
    assert E.create("r3m_resnet18").weights_source == str(tmp_path / "r3m_18" / "model.pt")


def test_r3m_fingerprint_follows_the_weights(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    net = r3m_convnet(18)
    torch.save(r3m_file(net, "r3m"), tmp_path / "r3m_resnet18.pt")
    fp = E.create("r3m_resnet18").fingerprint
    assert E.create("r3m_resnet18").fingerprint == fp
    ckpt = r3m_file(net, "r3m")
    ckpt["r3m"]["module.convnet.layer4.1.bn2.running_mean"] += 1.0
    torch.save(ckpt, tmp_path / "r3m_resnet18.pt")
    assert E.create("r3m_resnet18").fingerprint != fp


def test_r3m_wrong_and_missing_keys_are_listed(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    ckpt = r3m_file(r3m_convnet(18), "r3m")
    ckpt["r3m"]["module.critic.weight"] = torch.zeros(3)
    del ckpt["r3m"]["module.convnet.layer2.0.conv1.weight"]
    torch.save(ckpt, tmp_path / "r3m_resnet18.pt")
    with pytest.raises(PvrError) as e:
        E.create("r3m_resnet18")
    assert "module.critic.weight" in str(e.value) and "layer2.0.conv1.weight" in str(e.value)
    torch.save({"state_dict": ckpt["r3m"]}, tmp_path / "r3m_resnet18.pt")
    with pytest.raises(PvrError, match="no 'r3m' entry"):
        E.create("r3m_resnet18")


def test_r3m_weights_of_another_size_are_refused(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    torch.save(r3m_file(r3m_convnet(18), "r3m"), tmp_path / "r3m_resnet34.pt")
    with pytest.raises(PvrError, match="missing keys"):
        E.create("r3m_resnet34")


@pytest.mark.parametrize("name,file,where", [
    ("r3m_resnet50", "r3m_resnet50.pt", "drive.google.com"), ("vip_resnet50", "vip_resnet50.pt", "pytorch.s3"),
    ("liv_rn50", "liv_rn50.pt", "huggingface.co/jasonyma/LIV"), ("mvp_vits", "vits-mae-hoi.pth", "berkeley.box.com"),
    ("vc1_vitb", "vc1_vitb.pth", "dl.fbaipublicfiles.com/eai-vc/vc1_vitb.pth")])
def test_missing_file_is_one_error_naming_file_folders_and_source(name, file, where, monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    assert not E.info(name)["present"]
    with pytest.raises(PvrError) as e:
        E.create(name)
    msg = str(e.value)
    assert repr(file) in msg and str(tmp_path) in msg and where in msg
    assert E.info(name)["published"] and where in E.info(name)["published"]


def test_train_true_leaves_the_encoder_trainable(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    torch.save(r3m_file(r3m_convnet(18), "r3m"), tmp_path / "r3m_resnet18.pt")
    enc = E.create("r3m_resnet18", train=True)
    enc.train()
    assert enc.backbone.training and all(p.requires_grad for p in enc.backbone.parameters())


# -- LIV ----------------------------------------------------------------------------------------------
def liv_visual():
    """CLIP RN50's image tower (OpenAI's ModifiedResNet as open_clip builds it: heads = 64 * 32 // 64)."""
    from open_clip.modified_resnet import ModifiedResNet

    torch.manual_seed(3)
    visual = ModifiedResNet(layers=[3, 4, 6, 3], output_dim=1024, heads=32, image_size=224, width=64)
    randomise_bn(visual, seed=3)
    return visual.eval()


def liv_file(visual) -> dict:
    """LIV's model.pt: DataParallel(LIV).state_dict() (LIV.model = the whole CLIP), plus its optimizer state.

    The text tower is abridged to one tensor per module (the encoder never reads it)."""
    state = {f"module.model.visual.{k}": v for k, v in visual.state_dict().items()}
    for k, shape in [("positional_embedding", (77, 8)), ("text_projection", (8, 8)), ("logit_scale", ()),
                     ("token_embedding.weight", (20, 8)), ("ln_final.weight", (8,)),
                     ("transformer.resblocks.0.attn.in_proj_weight", (24, 8))]:
        state[f"module.model.{k}"] = torch.randn(shape)
    p = nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=1e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001)
    p.grad = torch.ones(3)
    opt.step()
    return {"liv": state, "optimizer": opt.state_dict(), "global_step": 3}


def test_liv_loads_the_published_layout(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    model = liv_visual()
    ckpt = liv_file(model)
    assert any(k.startswith("module.model.transformer.") for k in ckpt["liv"])  # the text tower is in the file
    torch.save(ckpt, tmp_path / "liv_rn50.pt")
    enc = E.create("liv_rn50")
    assert enc.dim == 1024
    assert_frozen(enc)
    # one ordinary frame and one dark one: LIV divides by 255 only when max > 10, pvr always does
    x = torch.cat([frames(b=1, h=96, w=128), frames(b=1, h=96, w=128, seed=1, high=11)])
    with torch.no_grad():
        ref = model(float_resize(x, 224, 224, OPENAI))
    close(enc(x), ref)
    # LIV trains CLIP on GPU after clip.model.convert_weights (model_liv.py): conv/linear weights in fp16
    half = {k: (v.half() if v.ndim >= 2 else v) for k, v in ckpt["liv"].items()}
    torch.save({**ckpt, "liv": half}, tmp_path / "liv_rn50.pt")
    enc16 = E.create("liv_rn50")
    assert all(p.dtype == torch.float32 for p in enc16.backbone.parameters())
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(p.half().float())
        ref = model(float_resize(x, 224, 224, OPENAI))
    close(enc16(x), ref)


def test_liv_keys_outside_the_clip_model_are_listed(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    ckpt = liv_file(liv_visual())
    ckpt["liv"]["module.value_head.weight"] = torch.zeros(2)
    del ckpt["liv"]["module.model.visual.attnpool.c_proj.bias"]
    torch.save(ckpt, tmp_path / "liv_rn50.pt")
    with pytest.raises(PvrError) as e:
        E.create("liv_rn50")
    assert "module.value_head.weight" in str(e.value) and "attnpool.c_proj.bias" in str(e.value)


# -- MVP and VC-1 (MAE-layout ViTs) ---------------------------------------------------------------------
def timm_vit(dim, depth, heads, img_size, seed=0):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    net = VisionTransformer(img_size=img_size, patch_size=16, embed_dim=dim, depth=depth, num_heads=heads,
                            mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    with torch.no_grad():  # timm initialises these to ~0 / ones: make every one matter
        net.cls_token.normal_()
        net.pos_embed.normal_(std=0.5)
        net.norm.weight.uniform_(0.5, 1.5)
        net.norm.bias.normal_(std=0.1)
    return net.eval()


def mae_file(net) -> dict:
    """MAE's {"model": state}: the encoder without the classifier, plus the decoder and mask token."""
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    d = net.embed_dim
    state["mask_token"] = torch.randn(1, 1, 16)
    state["decoder_embed.weight"] = torch.randn(16, d)
    state["decoder_pos_embed"] = torch.randn(1, net.pos_embed.shape[1], 16)
    state["decoder_blocks.0.norm1.weight"] = torch.ones(16)
    state["decoder_pred.weight"] = torch.randn(16 * 16 * 3, 16)
    return {"model": state, "epoch": 399}


def mvp_features(net, x):
    """MVP's VisionTransformer.extract_feat + forward_norm: CLS after the blocks, then the final LayerNorm."""
    with torch.no_grad():
        t = net.patch_embed(x)
        t = torch.cat([net.cls_token.expand(x.shape[0], -1, -1), t], dim=1) + net.pos_embed
        for blk in net.blocks:
            t = blk(t)
        return net.norm(t[:, 0])


def vc1_features(net, x):
    """VC-1's forward_features (use_cls): positions added to patches and CLS separately, blocks, norm, token 0."""
    with torch.no_grad():
        t = net.patch_embed(x) + net.pos_embed[:, 1:, :]
        cls = net.cls_token + net.pos_embed[:, :1, :]
        t = torch.cat([cls.expand(x.shape[0], -1, -1), t], dim=1)
        return net.norm(net.blocks(t))[:, 0]


#: depth used in tests: the key layout of every block is the same, the full depths only cost time
SHALLOW = 2


@pytest.mark.parametrize("name,dim,heads,size", [("mvp_vits", 384, 12, 224), ("mvp_vits_in", 384, 12, 224),
                                                 ("mvp_vitb", 768, 12, 224), ("mvp_vitl", 1024, 16, 256)])
def test_mvp_loads_the_published_layout(name, dim, heads, size, monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    model, d, depth, h, s, url = mvp.MODELS[name]
    assert (d, h, s) == (dim, heads, size)  # ViT-S with 12 heads (not timm's 6); ViT-L at 256 px
    monkeypatch.setitem(mvp.MODELS, name, (model, d, SHALLOW, h, s, url))
    net = timm_vit(dim, SHALLOW, heads, size)
    torch.save(mae_file(net), tmp_path / f"{model}.pth")
    enc = E.create(name)
    assert enc.dim == dim and enc.backbone.blocks[0].attn.num_heads == heads
    assert_frozen(enc)
    x = frames(h=size, w=size + 40)  # at the model's height: MVP's own centre crop of the width
    with torch.no_grad():
        crop = x[:, :, 20:20 + size].permute(0, 3, 1, 2).float() / 255.0
        ref = mvp_features(net, TF.normalize(crop, *IMAGENET))
    close(enc(x), ref)
    y = frames(h=100, w=150, seed=1)  # other sizes: bilinear float resize (OpenCV INTER_LINEAR), crop
    close(enc(y), mvp_features(net, float_resize(y, size, size, IMAGENET)))


def test_mvp_vits_with_six_heads_would_differ(monkeypatch, tmp_path):
    # guards the test above: the head count changes the features, so a 6-head ViT-S cannot pass it
    isolate(monkeypatch, tmp_path)
    net = timm_vit(384, SHALLOW, 6, 224)
    monkeypatch.setitem(mvp.MODELS, "mvp_vits", ("vits-mae-hoi", 384, SHALLOW, 12, 224, "u"))
    torch.save(mae_file(net), tmp_path / "vits-mae-hoi.pth")
    x = frames(h=224, w=224)
    ref = mvp_features(net, TF.normalize(x.permute(0, 3, 1, 2).float() / 255.0, *IMAGENET))
    assert (E.create("mvp_vits")(x) - ref).abs().max() > 1e-3


def test_mvp_unexpected_keys_and_grid_are_errors(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setitem(mvp.MODELS, "mvp_vits", ("vits-mae-hoi", 384, SHALLOW, 12, 224, "u"))
    ckpt = mae_file(timm_vit(384, SHALLOW, 12, 224))
    ckpt["model"]["head.weight"] = torch.zeros(1000, 384)
    torch.save(ckpt, tmp_path / "vits-mae-hoi.pth")
    with pytest.raises(PvrError, match="head.weight"):
        E.create("mvp_vits")
    # MVP's loader does not resample positions: a 256-px file in the 224-px model is a shape error
    torch.save(mae_file(timm_vit(384, SHALLOW, 12, 256)), tmp_path / "vits-mae-hoi.pth")
    with pytest.raises(PvrError, match="pos_embed"):
        E.create("mvp_vits")


@pytest.mark.parametrize("name,dim,heads", [("vc1_vitb", 768, 12), ("vc1_vitl", 1024, 16)])
def test_vc1_loads_the_published_layout(name, dim, heads, monkeypatch, tmp_path, capsys):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setattr(upstream, "_NOTICES", set())
    d, depth, h = vc1.MODELS[name]
    assert (d, h, depth) == (dim, heads, 12 if dim == 768 else 24)
    monkeypatch.setitem(vc1.MODELS, name, (d, SHALLOW, h))
    net = timm_vit(dim, SHALLOW, heads, 224)
    torch.save(mae_file(net), tmp_path / f"{name}.pth")
    enc = E.create(name)
    assert "CC-BY-NC" in capsys.readouterr().err and E.info(name)["licence"] == "CC-BY-NC-4.0"
    assert enc.dim == dim
    assert_frozen(enc)  # VC-1's load_model returns the model in train mode
    x = frames(h=240, w=320)
    ref = vc1_features(net, pil_like(x, 256, 224, InterpolationMode.BICUBIC, IMAGENET))
    close(enc(x), ref)
    E.create(name)
    assert capsys.readouterr().err == ""  # the notice is printed once


def test_vc1_resamples_pos_embed_of_another_grid(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setitem(vc1.MODELS, "vc1_vitb", (768, SHALLOW, 12))
    net = timm_vit(768, SHALLOW, 12, 256)  # a 16×16 grid, loaded into the 14×14 model
    torch.save(mae_file(net), tmp_path / "vc1_vitb.pth")
    enc = E.create("vc1_vitb")
    # timm's resize_pos_embed as VC-1 calls it: CLS kept, grid resized bicubically, align_corners=False
    pe = net.pos_embed.detach()
    grid = pe[:, 1:].reshape(1, 16, 16, 768).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False)
    ref_pe = torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 196, 768)], dim=1)
    torch.testing.assert_close(enc.backbone.pos_embed.detach(), ref_pe, atol=1e-5, rtol=1e-5)
    small = timm_vit(768, SHALLOW, 12, 224)
    small.load_state_dict({**{k: v for k, v in net.state_dict().items() if k != "pos_embed"}, "pos_embed": ref_pe})
    x = frames()
    ref = vc1_features(small, pil_like(x, 256, 224, InterpolationMode.BICUBIC, IMAGENET))
    close(enc(x), ref)


def test_vc1_keys_beyond_decoder_and_mask_token_are_listed(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    monkeypatch.setitem(vc1.MODELS, "vc1_vitb", (768, SHALLOW, 12))
    ckpt = mae_file(timm_vit(768, SHALLOW, 12, 224))
    ckpt["model"]["fc_norm.weight"] = torch.ones(768)
    del ckpt["model"]["blocks.1.mlp.fc2.bias"]
    torch.save(ckpt, tmp_path / "vc1_vitb.pth")
    with pytest.raises(PvrError) as e:
        E.create("vc1_vitb")
    assert "fc_norm.weight" in str(e.value) and "blocks.1.mlp.fc2.bias" in str(e.value)
    torch.save({"state_dict": ckpt["model"]}, tmp_path / "vc1_vitb.pth")
    with pytest.raises(PvrError, match="MAE-format"):
        E.create("vc1_vitb")


def test_pvr_encoders_lists_files_sources_and_licences():
    for name, licence in [("r3m_resnet50", "MIT"), ("vip_resnet50", "CC-BY-NC-4.0"), ("liv_rn50", "MIT"),
                          ("mvp_vitl", "unstated"), ("vc1_vitl", "CC-BY-NC-4.0")]:
        info = E.info(name)
        assert info["licence"] == licence and info["published"].startswith("https://")
    assert "r3m_50/model.pt" in E.info("r3m_resnet50")["weights"]
    assert "~/.vip/resnet50/model.pt" in E.info("vip_resnet50")["weights"]
    assert E.info("mvp_vitl")["input_size"] == 256


def normed_tokens(net, x, blocks):
    """The token sequence after the first ``blocks`` blocks, through the final LayerNorm (MVP's/VC-1's embedding)."""
    with torch.no_grad():
        t = torch.cat([net.cls_token.expand(x.shape[0], -1, -1), net.patch_embed(x)], dim=1) + net.pos_embed
        for blk in net.blocks[:blocks]:
            t = blk(t)
        return net.norm(t)


@pytest.mark.parametrize("name,option", [("mvp_vits", "pool=mean"), ("vc1_vitb", "pool=mean"),
                                         ("vc1_vitb", "block=1"), ("mvp_vits", "block=1:pool=max")])
def test_token_options_read_the_patch_tokens(name, option, monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    if name.startswith("mvp"):
        monkeypatch.setitem(mvp.MODELS, name, ("vits-mae-hoi", 384, SHALLOW, 12, 224, "u"))
        net, file = timm_vit(384, SHALLOW, 12, 224), "vits-mae-hoi.pth"
        pre = lambda x: float_resize(x, 224, 224, IMAGENET)  # noqa: E731
    else:
        monkeypatch.setitem(vc1.MODELS, name, (768, SHALLOW, 12))
        net, file = timm_vit(768, SHALLOW, 12, 224), "vc1_vitb.pth"
        pre = lambda x: pil_like(x, 256, 224, InterpolationMode.BICUBIC, IMAGENET)  # noqa: E731
    torch.save(mae_file(net), tmp_path / file)
    enc = E.create(f"{name}:{option}")
    assert_frozen(enc)
    x = frames()
    t = normed_tokens(net, pre(x), 1 if "block=1" in option else SHALLOW)
    ref = {"pool=mean": t[:, 1:].mean(1), "block=1": t[:, 0], "block=1:pool=max": t[:, 1:].amax(1)}[option]
    close(enc(x), ref)
    assert enc.fingerprint != E.create(name).fingerprint


# -- the authors' PIL pipelines, on real photographs --------------------------------------------------
PHOTOS = sorted(__import__("pathlib").Path("/usr/share/darknet/data").glob("*.jpg"))[:3]


@pytest.mark.skipif(not PHOTOS, reason="needs Debian's darknet package (apt-get install -y darknet) for real photos")
def test_batched_resize_is_close_to_the_authors_pil_pipelines(monkeypatch, tmp_path):
    """R3M/VIP/VC-1's examples resize PIL images; pvr's batched torch resize differs by ±1 grey level here
    and there, which moves the features by well under 1% (measured 0.03-0.3% with random weights)."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    isolate(monkeypatch, tmp_path)
    monkeypatch.setitem(vc1.MODELS, "vc1_vitb", (768, SHALLOW, 12))
    r3m_net, vit = r3m_convnet(18), timm_vit(768, SHALLOW, 12, 224)
    torch.save(r3m_file(r3m_net, "r3m"), tmp_path / "r3m_resnet18.pt")
    torch.save(mae_file(vit), tmp_path / "vc1_vitb.pth")
    r3m_enc, vc1_enc = E.create("r3m_resnet18"), E.create("vc1_vitb")
    norm = T.Normalize(*IMAGENET)
    for photo in PHOTOS:
        img = Image.open(photo).convert("RGB")
        fr = torch.from_numpy(np.array(img))[None]
        with torch.no_grad():  # r3m/example.py; vc_models vit_transforms as CortexBench feeds it (PIL)
            r3m_ref = r3m_net(norm(T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])(img))[None])
            vc1_ref = vc1_features(vit, norm(T.Compose([T.Resize(256, interpolation=InterpolationMode.BICUBIC),
                                                         T.CenterCrop(224), T.ToTensor()])(img))[None])
        for out, ref in [(r3m_enc(fr), r3m_ref), (vc1_enc(fr), vc1_ref)]:
            assert float((out - ref).norm() / ref.norm()) < 0.01


@pytest.mark.parametrize("name", ["mvp_vits", "vc1_vitb"])
def test_mae_families_never_guess_the_input_range(name, monkeypatch, tmp_path):
    """MVP and VC-1 read 0-255 content whatever the values: float frames of the same content give the
    same features, and a frame whose values all lie in 0..1 is a (nearly black) 0-255 frame, not 0-1."""
    isolate(monkeypatch, tmp_path)
    monkeypatch.setattr(upstream, "_NOTICES", set())
    if name.startswith("mvp"):
        model, d, _, h, s, url = mvp.MODELS[name]
        monkeypatch.setitem(mvp.MODELS, name, (model, d, SHALLOW, h, s, url))
        file = f"{model}.pth"
    else:
        d, _, h = vc1.MODELS[name]
        monkeypatch.setitem(vc1.MODELS, name, (d, SHALLOW, h))
        file, s = f"{name}.pth", 224
    torch.save(mae_file(timm_vit(d, SHALLOW, h, s)), tmp_path / file)
    enc = E.create(name)
    x = frames(h=s, w=s)
    with torch.no_grad():
        ref = enc(x)
        close(enc(x.float()), ref)
        dark = frames(h=s, w=s, seed=3, high=2)  # values 0 and 1 only
        assert int(dark.max()) == 1
        close(enc(dark.float()), enc(dark))
        assert not torch.allclose(enc(dark), enc(dark * 255), atol=1e-3)  # 1 is not read as full white
