"""Token options (``<vit>:pool=...``, ``:grid=N``, ``:block=K``, ``:norm=no``) against hand-computed pooling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pvr.encoders as E
from pvr.encoders import tokens
from pvr.errors import PvrError

timm = pytest.importorskip("timm")


def tiny_vit(reg_tokens: int = 0):
    torch.manual_seed(0)
    from timm.models.vision_transformer import VisionTransformer

    # with registers as timm's DINOv2-reg models: positions on the patches only (no_embed_class)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=0,
                             reg_tokens=reg_tokens, no_embed_class=bool(reg_tokens)).eval()


def hand_tokens(net, x, block: int, norm: bool):
    """The token sequence after 1-based ``block``, re-stated from the ViT's parts (timm's layout)."""
    t = net.patch_embed(x)  # (B, 16, D) for 32 px / patch 8
    b = t.shape[0]
    prefix = [net.cls_token.expand(b, -1, -1)]
    if net.reg_token is not None:
        prefix.append(net.reg_token.expand(b, -1, -1))
    if net.pos_embed.shape[1] == t.shape[1]:  # positions on the patches only
        t = torch.cat(prefix + [t + net.pos_embed], dim=1)
    else:  # positions on CLS + patches
        t = torch.cat(prefix + [t], dim=1) + net.pos_embed
    for blk in list(net.blocks)[:block]:
        t = blk(t)
    return net.norm(t) if norm else t


@pytest.mark.parametrize("reg", [0, 2])
def test_pools_match_hand_computation(reg):
    net = tiny_vit(reg)
    x = torch.randn(2, 3, 32, 32)
    n_prefix = 1 + reg
    with torch.no_grad():
        last = hand_tokens(net, x, 3, True)
        patches = last[:, n_prefix:]  # (B, 16, D), raster order over the 4x4 grid
        cases = {
            "pool=cls": last[:, 0],
            "pool=mean": patches.mean(1),
            "pool=max": patches.max(1).values,
            "pool=grid": patches.reshape(2, -1),
            # 4x4 grid averaged to 2x2: each cell the mean of a 2x2 block of patches
            "grid=2": torch.stack([patches.reshape(2, 4, 4, 16)[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((1, 2))
                                   for i in range(2) for j in range(2)], 1).reshape(2, -1),
            "grid=1": patches.mean(1),
            "block=2:pool=mean": hand_tokens(net, x, 2, True)[:, n_prefix:].mean(1),
            "block=1:norm=no:pool=cls": hand_tokens(net, x, 1, False)[:, 0],
            "norm=no:pool=mean": hand_tokens(net, x, 3, False)[:, n_prefix:].mean(1),
        }
        for option, want in cases.items():
            spec = tokens.parse_spec(option)
            got = tokens.readout(net, spec, name="tiny", depth=3, patch_grid=(4, 4))(x)
            assert got.shape == want.shape, option
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=option)
            assert got.shape[1] == spec.dim(16, (4, 4)), option


def test_grid_is_not_mean_and_cls_is_not_mean():
    net = tiny_vit()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        mean = tokens.readout(net, tokens.parse_spec("pool=mean"), name="t", depth=3)(x)
        cls = tokens.readout(net, tokens.parse_spec("pool=cls"), name="t", depth=3)(x)
        grid = tokens.readout(net, tokens.parse_spec("grid=2"), name="t", depth=3)(x)
    assert not torch.allclose(mean, cls)
    assert not torch.allclose(grid[:, :16], mean)  # a cell is not the whole-image mean


def test_parse_canonical_and_errors():
    assert tokens.parse_spec("grid=4").canonical() == "pool=grid:grid=4"
    assert tokens.parse_spec("norm=no:block=8:pool=mean").canonical() == "pool=mean:block=8:norm=no"
    assert tokens.split_name("dinov2_vitb14:pool=mean:block=3") == ("dinov2_vitb14", "pool=mean:block=3")
    assert tokens.split_name("antialias:mae_base") is None
    for bad, words in [("pool=avg", "not one of"), ("grid=0", "positive"), ("grid=x", "positive"),
                       ("blocks=3", "unknown token option"), ("pool=cls:grid=2", "cannot be combined"),
                       ("pool=mean:pool=cls", "twice"), ("norm=maybe", "norm=yes"), ("pool", "key=value")]:
        with pytest.raises(PvrError, match=words):
            tokens.parse_spec(bad)
    spec = tokens.parse_spec("block=4")
    with pytest.raises(PvrError, match="blocks 1..3"):
        spec.check("t", depth=3)
    with pytest.raises(PvrError, match="no CLS"):
        tokens.parse_spec("pool=cls").check("t", depth=3, has_cls=False)
    with pytest.raises(PvrError, match="finer than"):
        tokens.parse_spec("grid=5").check("t", depth=3, patch_grid=(4, 4))


def test_names_resolve_and_report_dims():
    assert E.info("mae_base:pool=mean")["dim"] == 768
    assert E.info("mae_base:grid=4")["dim"] == 4 * 4 * 768
    assert E.info("mae_base:pool=grid")["dim"] == 14 * 14 * 768
    assert E.info("mae_huge:pool=grid")["dim"] == 16 * 16 * 1280
    assert E.info("antialias:mae_base:pool=max")["dim"] == 768
    with pytest.raises(PvrError, match="takes no token options"):
        E.info("resnet50:pool=mean")
    with pytest.raises(PvrError, match="unknown token option"):
        E.info("mae_base:pol=mean")
    with pytest.raises(PvrError, match="out of range"):
        E.create("mae_base:block=13", pretrained=False)


@pytest.mark.slow  # a full ViT-B and two weight digests: ~40 s on this shared CPU
def test_mae_option_equals_hand_pooling_and_changes_fingerprint():
    enc = E.create("mae_base:grid=2", pretrained=False)
    plain = E.create("mae_base", pretrained=False)
    assert enc.dim == 2 * 2 * 768 and not enc.backbone.training and not enc.backbone.model.training
    assert all(not p.requires_grad for p in enc.parameters())
    assert enc.fingerprint != plain.fingerprint
    assert enc.identity()["tokens"] == "pool=grid:grid=2"
    frames = torch.randint(0, 256, (2, 64, 80, 3), dtype=torch.uint8)
    net = enc.backbone.model
    with torch.no_grad():
        x = enc.preprocess(frames)
        t = net.patch_embed(x) + net.pos_embed[:, 1:]  # MAE's timm ViT: pos_embed includes the CLS slot
        t = torch.cat([net.cls_token.expand(2, -1, -1) + net.pos_embed[:, :1], t], 1)
        for blk in net.blocks:
            t = blk(t)
        t = net.norm(t)
        grid = t[:, 1:].reshape(2, 14, 14, 768).permute(0, 3, 1, 2)
        want = F.adaptive_avg_pool2d(grid, 2).permute(0, 2, 3, 1).reshape(2, -1)
        got = enc(frames)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        # the same network without the option is MAE's CLS token, which the option did not change
        plain.backbone.load_state_dict(net.state_dict())
        torch.testing.assert_close(plain(frames), t[:, 0], rtol=1e-4, atol=1e-4)


def test_an_option_without_pool_uses_the_family_default():
    assert tokens.parse_spec("block=3").pool == "cls"
    assert tokens.parse_spec("block=3", default_pool="mean").pool == "mean"
    assert E.info("mae_base:block=3")["description"].endswith("tokens pool=cls:block=3")
    # Theia pools its spatial tokens by default, SigLIP has no CLS token: both default to the mean
    assert E.info("theia_tiny:block=3")["description"].endswith("tokens pool=mean:block=3")
    assert E.info("siglip2_base:norm=no")["description"].endswith("tokens pool=mean:norm=no")
