"""The PVR zoo against the upstream checkpoint layouts.

Each test builds a randomly initialised model the way its upstream project does,
saves it in that project's exact file layout and name, loads it through
``pvr.encoders.create`` and compares with the upstream model's own output.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

import pvr.encoders as E
from pvr.errors import PvrError

ATOL = 1e-4


def frames(b=2, h=60, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=g)


def randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics away from (0, 1), so a mis-loaded or mis-ordered buffer shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if hasattr(m, "running_var") and m.running_var is not None:
            n = m.running_var.numel()
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


# -- ResNet-50 taps, MoCo ------------------------------------------------------------------
def upstream_resnet50(tap: str, head: str) -> nn.Module:
    """The network as it was trained: the tap's compression *and* expansion blocks, full head."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    if tap == "l3":
        net.layer3 = nn.Sequential(net.layer3, _block(1024, 11), _block(11, 1024))
    elif tap == "l4":
        net.layer4 = nn.Sequential(net.layer4, _block(2048, 42), _block(42, 2048))
    if head == "moco":  # MoCo v2's MLP projection head
        net.fc = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))
    randomise_bn(net)
    return net.eval()


def _block(cin, cout):
    return BasicBlock(cin, cout, downsample=nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout)))


def upstream_features(net: nn.Module, tap: str, x: torch.Tensor) -> torch.Tensor:
    """The original's forward at the tap: later layers and the head replaced by empty Sequentials."""
    import copy

    net = copy.deepcopy(net)
    if tap == "l3":
        net.layer3 = nn.Sequential(net.layer3[0], net.layer3[1])
        net.layer4 = nn.Sequential()
        net.avgpool = nn.Sequential()
    elif tap == "l4":
        net.layer4 = nn.Sequential(net.layer4[0], net.layer4[1])
        net.avgpool = nn.Sequential()
    net.fc = nn.Sequential()
    with torch.no_grad():
        return net(x)


def save_upstream(net: nn.Module, path, layout: str) -> None:
    sd = net.state_dict()
    if layout == "moco":  # facebookresearch/moco main_moco.py: the whole MoCo module under DataParallel
        state = {f"module.encoder_q.{k}": v for k, v in sd.items()}
        state.update({f"module.encoder_k.{k}": v.clone() for k, v in list(sd.items())[:8]})  # (abridged)
        state["module.queue"] = torch.randn(128, 64)
        state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
        ckpt = {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}
    else:  # supervised training under DataParallel (CSAIL Places365, the original's l3/l4 files)
        ckpt = {"epoch": 90, "arch": "resnet50", "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(ckpt, path)


TAP_FILES = {  # the original's file names: (moco layout, supervised layout)
    "conv5": ("moco_aug.pth.tar", "resnet50_places.pth.tar"),
    "l3": ("moco_aug_l3.pth", "resnet50_l3.tar"),
    "l4": ("moco_aug_l4.pth", "resnet50_l4.pth.tar"),
}


@pytest.fixture(scope="module")
def tap_files(tmp_path_factory):
    """One upstream network per tap, saved in both layouts; and its features on ``frames()``."""
    folder = tmp_path_factory.mktemp("taps")
    nets = {}
    for tap, (moco_file, sup_file) in TAP_FILES.items():
        nets[tap] = upstream_resnet50(tap, "moco")
        save_upstream(nets[tap], folder / moco_file, "moco")
        save_upstream(nets[tap], folder / sup_file, "supervised")
    from pvr.encoders.base import Preprocess

    x = Preprocess()(frames())
    return folder, nets, {tap: upstream_features(net, tap, x) for tap, net in nets.items()}


@pytest.mark.parametrize("name,tap,dim", [
    ("moco_aug", "conv5", 2048), ("moco_aug_l3", "l3", 2156), ("moco_aug_l4", "l4", 2058),
    ("resnet50_places", "conv5", 2048), ("resnet50_l3", "l3", 2156), ("resnet50_l4", "l4", 2058),
])
def test_resnet50_taps_load_upstream_checkpoints(name, tap, dim, tap_files, monkeypatch):
    folder, _, expected = tap_files
    monkeypatch.setenv("PVR_MODEL_PATH", str(folder))
    assert E.info(name)["present"]
    enc = E.create(name)
    out = enc(frames())
    assert out.shape == (2, dim) and enc.dim == dim
    assert torch.allclose(out, expected[tap], atol=ATOL), (out - expected[tap]).abs().max()
    layout = "module.encoder_q." if name.startswith("moco") else "module."
    assert f"keys under {layout!r}" in enc.weights_source


def test_tap_checkpoint_with_wrong_keys_lists_them(tap_files, monkeypatch, tmp_path):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    folder = tap_files[0]
    ckpt = torch.load(folder / "moco_aug_l4.pth", weights_only=True)
    del ckpt["state_dict"]["module.encoder_q.layer4.1.downsample.0.bias"]  # the compression block's shortcut
    ckpt["state_dict"]["module.encoder_q.layer5.0.weight"] = torch.zeros(1)  # not a head key: refused
    ckpt["state_dict"]["module.something_else"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "moco_croponly_places_l4.pth")
    with pytest.raises(PvrError) as e:
        E.create("moco_croponly_places_l4")
    msg = str(e.value)
    assert "moco_croponly_places_l4.pth" in msg and "missing keys" in msg and "layer4.1.downsample.0.bias" in msg
    assert "layer5.0.weight" in msg and "module.something_else" in msg
    # an l3 file is not an l4 file
    (tmp_path / "moco_croponly_places_l4.pth").write_bytes((folder / "moco_aug_l3.pth").read_bytes())
    with pytest.raises(PvrError, match="do not fit"):
        E.create("moco_croponly_places_l4")


def test_uber_models_concatenate_their_taps(tap_files, monkeypatch, tmp_path):
    folder, nets, expected = tap_files
    monkeypatch.setenv("PVR_MODEL_PATH", str(folder))
    assert E.info("moco_aug_uber_345")["present"] and E.info("moco_aug_uber_345")["dim"] == 6262
    assert E.info("moco_aug_uber_35")["dim"] == 2156 + 2048 and not E.info("moco_croponly_uber_35")["present"]
    uber = E.create("moco_aug_uber_345")
    x = frames()
    out = uber(x)
    assert uber.dim == 6262
    assert torch.allclose(out, torch.cat([expected["l3"], expected["l4"], expected["conv5"]], 1), atol=ATOL)
    assert E.info("concat:moco_aug_l3+moco_aug")["dim"] == 2156 + 2048
    # the fingerprint covers every part's weights (here: one BatchNorm of the l4 tap)
    for f in ("moco_aug_l3.pth", "moco_aug.pth.tar"):
        (tmp_path / f).symlink_to(folder / f)
    import copy

    changed = copy.deepcopy(nets["l4"])
    with torch.no_grad():
        changed.layer4[1].bn2.bias += 0.5
    save_upstream(changed, tmp_path / "moco_aug_l4.pth", "moco")
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    assert E.create("moco_aug_uber_345").fingerprint != uber.fingerprint


def test_concat_any_encoders_and_fingerprint():
    a = E.create("concat:random+random3")
    assert a.name == "concat:random+random3"
    # native-size parts at 32 px: 32 * ceil(32/32)^2 + 32 * ceil(32/8)^2
    assert a.dim_for((32, 32, 3)) == 32 + 32 * 4 * 4 and a.native_size
    x = frames(3, 32, 32)
    assert torch.equal(a(x), torch.cat([E.create("random")(x), E.create("random3")(x)], 1))
    assert E.info("concat:random+random3")["dim"] == "32*ceil(H/32)*ceil(W/32) + 32*ceil(H/8)*ceil(W/8)"
    assert a.fingerprint == E.create("concat:random+random3").fingerprint
    assert a.fingerprint != E.create("concat:random3+random").fingerprint
    assert a.fingerprint == E.create("concat:random+random3", seed=1).fingerprint  # None is seed 1
    assert a.fingerprint != E.create("concat:random+random3", seed=2).fingerprint
    with pytest.raises(PvrError, match="unknown encoder 'nope'"):
        E.create("concat:random+nope")
    tuned = E.concat(["random", "random2"], train=True)
    tuned(frames(2, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in tuned.parameters())


# -- missing weights ------------------------------------------------------------------------
WEIGHTED = [n for n in E.available() if n not in ("random", "true_state") and not n.startswith("efficientnet")]


@pytest.mark.parametrize("name", WEIGHTED)
def test_missing_weights_is_one_clear_error(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    info = E.info(name)
    assert not info["present"]
    with pytest.raises(PvrError) as e:
        E.create(name)
    msg = str(e.value)
    first_file = info["weights"].split("file:")[-1].split(" ")[0] if "file:" in info["weights"] else None
    assert "PVR_MODEL_PATH" in msg and "http" in msg
    if first_file and not name.startswith(("moco_aug_uber_", "moco_aug_places_uber", "moco_croponly_uber_",
                                           "moco_croponly_places_uber")):
        assert first_file in msg


# -- CLIP -----------------------------------------------------------------------------------
class _OpenAIStyle(nn.Module):
    """The attribute layout of OpenAI's traced CLIP (``visual.*`` plus the text side's scalars)."""

    def __init__(self, model):
        super().__init__()
        self.visual = model.visual
        self.logit_scale = model.logit_scale
        self.text_projection = model.text_projection
        self.register_buffer("input_resolution", torch.tensor(224))

    def forward(self, x):
        return self.visual(x)


def _clip_model(name: str):
    """open_clip's image tower for the OpenAI config (QuickGELU), random init, inside a CLIP-shaped holder."""
    import open_clip
    from open_clip.model import _build_vision_tower

    torch.manual_seed(0)
    cfg = open_clip.get_model_config({"clip_rn50": "RN50-quickgelu", "clip_vit": "ViT-B-32-quickgelu"}[name])
    holder = nn.Module()
    holder.visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=True).eval()
    holder.logit_scale = nn.Parameter(torch.tensor(4.6))
    holder.text_projection = nn.Parameter(torch.randn(8, cfg["embed_dim"]))  # (text tower, abridged: unused)
    randomise_bn(holder.visual)
    return holder


@pytest.mark.slow
def test_clip_rn50_loads_openai_torchscript_archive_from_clip_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    model = _clip_model("clip_rn50")
    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    # OpenAI's files are traced TorchScript archives with half-precision weights
    traced = torch.jit.trace(_OpenAIStyle(model), torch.zeros(1, 3, 224, 224)).half()
    traced.save(str(cache / "RN50.pt"))
    assert E.info("clip_rn50")["present"]
    enc = E.create("clip_rn50")
    x = frames()
    model.visual.half().float()  # the reference sees the same rounded weights
    with torch.no_grad():
        expected = model.visual(enc.preprocess(x))  # = CLIP.encode_image
    out = enc(x)
    assert out.shape == (2, 1024)
    assert torch.allclose(out, expected, atol=ATOL), (out - expected).abs().max()
    assert enc.preprocess.interpolation == "bicubic" and enc.preprocess.resize == 224


@pytest.mark.slow
def test_clip_vit_loads_open_clip_hf_cache(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    model = _clip_model("clip_vit")
    repo = hub / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              repo / "snapshots" / "abc123" / "open_clip_model.safetensors")
    enc = E.create("clip_vit")
    x = frames()
    with torch.no_grad():
        expected = model.visual(enc.preprocess(x))  # = CLIP.encode_image
    assert torch.allclose(enc(x), expected, atol=ATOL)
    # a ViT checkpoint under the RN50 name is refused with the keys that do not fit
    (tmp_path / "models").mkdir(exist_ok=True)
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path / "models"))
    torch.save(model.state_dict(), tmp_path / "models" / "RN50.pt")
    with pytest.raises(PvrError, match="missing keys.*unexpected keys.*class_embedding"):
        E.create("clip_rn50")


# -- MAE ------------------------------------------------------------------------------------
def mae_forward_encoder(vit, x, mask_ratio=0.0, seed=0):
    """facebookresearch/mae ``forward_encoder``: patches + positions, random shuffle/mask, CLS, blocks, norm."""
    x = vit.patch_embed(x)
    x = x + vit.pos_embed[:, 1:, :]
    n, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(n, length, generator=torch.Generator().manual_seed(seed))
    ids = torch.argsort(noise, dim=1)[:, :keep]
    x = torch.gather(x, 1, ids.unsqueeze(-1).repeat(1, 1, d))
    cls = (vit.cls_token + vit.pos_embed[:, :1, :]).expand(n, -1, -1)
    x = torch.cat([cls, x], 1)
    for blk in vit.blocks:
        x = blk(x)
    return vit.norm(x)


@pytest.mark.slow
def test_mae_base_loads_mae_checkpoint(monkeypatch, tmp_path):
    import timm

    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    with torch.no_grad():
        vit.pos_embed.normal_(std=0.5)
        vit.cls_token.normal_()
    state = dict(vit.state_dict())
    state.update({"mask_token": torch.zeros(1, 1, 512), "decoder_embed.weight": torch.zeros(512, 768),
                  "decoder_pred.bias": torch.zeros(768)})  # MAE's decoder, unused
    torch.save({"model": state}, tmp_path / "mae_pretrain_vit_base.pth")
    enc = E.create("mae_base")
    assert enc.preprocess.interpolation == "bicubic" and enc.preprocess.resize == 256
    x = frames()
    with torch.no_grad():
        expected = mae_forward_encoder(vit, enc.preprocess(x))[:, 0]
    out = enc(x)
    assert out.shape == (2, 768)
    assert torch.allclose(out, expected, atol=ATOL), (out - expected).abs().max()


@pytest.mark.parametrize("name,dim,depth,tokens", [("mae_base", 768, 12, 197), ("mae_large", 1024, 24, 197),
                                                   ("mae_huge", 1280, 32, 257)])
def test_mae_architectures_match_the_published_sizes(name, dim, depth, tokens):
    from pvr.encoders import mae

    with torch.device("meta"):
        vit = mae.vit(name)
    assert vit.pos_embed.shape == (1, tokens, dim) and len(vit.blocks) == depth
    assert vit.blocks[0].attn.qkv.bias is not None and vit.global_pool == "token"
    assert E.info(name)["dim"] == dim


# -- Mask R-CNN ------------------------------------------------------------------------------
def d2_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """detectron2's R-50-C4 res4 forward, written directly over the checkpoint's keys."""
    import torch.nn.functional as F

    def conv(name, x, stride=1, frozen=True):
        w = sd[f"backbone.{name}.weight"]
        x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)
        n = lambda s: sd[f"backbone.{name}.norm.{s}"]  # noqa: E731
        return F.batch_norm(x, n("running_mean"), n("running_var"), n("weight"), n("bias"), False, 0.0, 1e-5)

    x = F.max_pool2d(F.relu(conv("stem.conv1", x, 2)), 3, 2, 1)
    for stage, blocks in ((2, 3), (3, 4), (4, 6)):
        for i in range(blocks):
            p, s = f"res{stage}.{i}", (2 if stage > 2 and i == 0 else 1)
            out = F.relu(conv(f"{p}.conv1", x, s))  # stride in the 1x1 conv
            out = conv(f"{p}.conv3", F.relu(conv(f"{p}.conv2", out)))
            short = conv(f"{p}.shortcut", x, s) if f"backbone.{p}.shortcut.weight" in sd else x
            x = F.relu(out + short)
    out = conv("res4.6.conv2", F.relu(conv("res4.6.conv1", x)))
    return F.relu(out + conv("res4.6.shortcut", x)).flatten(1)


def test_maskrcnn_l3_loads_detectron2_checkpoint(monkeypatch, tmp_path):
    from pvr.encoders.maskrcnn import MaskRCNNRes4

    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    torch.manual_seed(0)
    net = MaskRCNNRes4()
    randomise_bn(net)
    sd = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    assert "backbone.res2.0.conv1.norm.running_var" in sd and "backbone.stem.conv1.weight" in sd
    assert not any(k.endswith("num_batches_tracked") and ".res4.6." not in k for k in sd)  # FrozenBN
    # the rest of the Mask R-CNN: expansion block, res5, heads
    sd.update({"backbone.res4.7.conv1.weight": torch.zeros(1024, 11, 3, 3),
               "backbone.res5.0.conv1.weight": torch.zeros(512, 1024, 1, 1),
               "proposal_generator.rpn_head.conv.weight": torch.zeros(1024, 1024, 3, 3),
               "roi_heads.box_predictor.cls_score.weight": torch.zeros(81, 2048)})
    torch.save({"model": sd, "__author__": "pvr test", "iteration": 1}, tmp_path / "maskrcnn_l3.pth")
    enc = E.create("maskrcnn_l3")
    x = frames()
    pre = enc.preprocess
    assert pre.bgr and pre.scale == 1.0 and pre.mean == (103.530, 116.280, 123.675)
    # BGR, 0..255 minus the means: check the preprocessing itself on a flat colour
    flat = torch.zeros(1, 224, 224, 3, dtype=torch.uint8)
    flat[..., 0] = 200  # red
    assert torch.allclose(pre(flat)[0, :, 0, 0], torch.tensor([-103.530, -116.280, 200 - 123.675]))
    with torch.no_grad():
        expected = d2_reference(sd, pre(x))
    out = enc(x)
    assert out.shape == (2, 2156)
    assert torch.allclose(out, expected, atol=1e-3), (out - expected).abs().max()
    del sd["backbone.res3.1.conv2.norm.running_mean"]
    sd["roi_heads.extra"] = torch.zeros(1)
    sd["backbone.res6.0.weight"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "maskrcnn_l3.pth")
    with pytest.raises(PvrError, match=r"res3\.1\.conv2\.norm\.running_mean.*res6\.0\.weight"):
        E.create("maskrcnn_l3")


# -- training / freezing, devices -----------------------------------------------------------
@pytest.mark.parametrize("name", ["moco_aug_l3", "clip_rn50", "mae_base", "maskrcnn_l3", "resnet18",
                                  "concat:random+resnet18"])
def test_frozen_by_default_trainable_on_request(name):
    frozen = E.create(name, pretrained=False)
    frozen.train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(m.training for m in frozen.backbone.modules())
    tuned = E.create(name, train=True, pretrained=False)
    tuned.train()
    assert all(p.requires_grad for p in tuned.parameters())
    assert tuned.backbone.training
    assert "random init" in frozen.weights_source


def test_random_init_only_when_asked():
    with pytest.raises(PvrError):
        E.create("mae_base")
    assert E.create("maskrcnn_l3", pretrained=False).weights_source.startswith("random init")


# -- listing --------------------------------------------------------------------------------
def test_every_issue_name_is_registered():
    names = set(E.available())
    expected = {"resnet18", "resnet34", "resnet50", "resnet50_places", "resnet50_l3", "resnet50_l4",
                "resnet50_places_l3", "resnet50_places_l4", "moco_aug", "moco_croponly", "moco_coloronly",
                "moco_aug_places", "moco_croponly_places", "moco_aug_habitat", "moco_aug_mujoco", "moco_aug_uber",
                "moco_croponly_habitat", "moco_croponly_mujoco", "moco_croponly_uber", "clip_rn50", "clip_vit",
                "mae_base", "mae_large", "mae_huge", "maskrcnn_l3", "random", "true_state",
                "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    for base in ("moco_aug", "moco_aug_places", "moco_croponly", "moco_croponly_places"):
        expected |= {f"{base}_l3", f"{base}_l4"} | {f"{base}_uber_{s}" for s in ("345", "35", "34", "45")}
    assert expected <= names, expected - names
    assert "random7" in E.ENCODERS


def test_cli_lists_file_names_and_presence(capsys, monkeypatch, tmp_path):
    from pvr import cli

    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    (tmp_path / "moco_croponly.pth").write_bytes(b"")
    cli.main(["encoders", "--pattern", "moco_croponly*"])
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("moco_")}
    assert set(lines) == set(E.available("moco_croponly*"))
    assert "moco_croponly.pth" in lines["moco_croponly"] and lines["moco_croponly"].rstrip().endswith("yes")
    assert "moco_croponly_habitat_64.pth" in lines["moco_croponly_habitat"]
    assert lines["moco_croponly_l3"].rstrip().endswith("no")
