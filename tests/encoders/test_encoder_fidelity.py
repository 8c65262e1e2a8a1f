"""Encoders as the original project (sparisi/pvr_habitat) ran them.

Every expectation here is re-stated from the original's code, independently of
pvr's: its torchvision transforms are composed here from torchvision itself,
applied to uint8 (N, C, H, W) tensors as the original did (with the
``antialias=False`` that torchvision applied to tensors at the time), and its
random convnet is rebuilt here the way ``src/vision_models/generic.py`` builds it.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision
import torchvision.transforms as T
from torch import nn

import pvr.encoders as E
from pvr.cli import build_parser
from pvr.embed import feature_dim, make_encoder
from pvr.encoders.base import Preprocess
from pvr.errors import PvrError

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def frames(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=g)


def nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


# -- random<N> ------------------------------------------------------------------------------
def original_convnet(n_layers: int) -> nn.Sequential:
    """generic.py's ``generic_convnet``: one conv 3→32, then ONE conv 32→32 module listed n-1 times."""
    def init(conv):
        nn.init.orthogonal_(conv.weight.data, gain=nn.init.calculate_gain("relu"))
        nn.init.constant_(conv.bias.data, 0)
        return conv

    head = [init(nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1)), nn.ELU()]
    return nn.Sequential(*head, *([init(nn.Conv2d(32, 32, kernel_size=3, stride=2, padding=1)), nn.ELU()]
                                  * (n_layers - 1)))


def original_random_features(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The original's random<N> transform is ``ConvertImageDtype(torch.float)`` only: native size, [0, 1]."""
    with torch.no_grad():
        out = net(T.ConvertImageDtype(torch.float)(nchw(x)))
    return out.reshape(out.shape[0], -1)


@pytest.mark.parametrize("px,dim", [(64, 128), (84, 288), (256, 2048)])
def test_random5_runs_at_native_size(px, dim):
    enc = E.create("random5")
    x = frames(2, px, px)
    out = enc(x)
    assert out.shape == (2, dim) and enc.dim_for((px, px, 3)) == dim
    assert torch.equal(E.create("random")(x), out)  # random is random5
    assert enc.native_size and enc.preprocess.resize is None and enc.preprocess.crop is None


def test_random_dims_follow_the_size_rule_on_non_square_frames():
    for n, (h, w) in [(3, (60, 80)), (4, (84, 100)), (1, (7, 9))]:
        out = E.create(f"random{n}")(frames(1, h, w))
        side = 2 ** n
        assert out.shape[1] == 32 * (-(-h // side)) * (-(-w // side))


def test_layers_2_to_n_share_one_module():
    enc = E.create("random5")
    convs = [m for m in enc.backbone if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(c is convs[1] for c in convs[1:]) and convs[0] is not convs[1]
    assert sum(p.numel() for p in enc.parameters()) == (32 * 3 * 9 + 32) + (32 * 32 * 9 + 32)
    assert list(enc.backbone.state_dict()) == [f"{i}.{k}" for i in range(0, 10, 2) for k in ("weight", "bias")]


@pytest.mark.parametrize("n", [1, 3, 5])
def test_seed_draws_the_originals_network(n):
    """The original seeded torch with the run's seed right before building the net.

    The same RNG draws give the same weights; the orthogonalisation (a QR) can
    differ in the last bit with the thread count, so pvr fixes one thread: equal
    bit for bit at one thread, to float precision at any other.
    """
    enc = E.create(f"random{n}", seed=7)
    threads = torch.get_num_threads()
    for t in (1, threads):
        torch.set_num_threads(t)
        try:
            torch.manual_seed(7)
            orig = original_convnet(n)
        finally:
            torch.set_num_threads(threads)
        for (k1, v1), (k2, v2) in zip(orig.state_dict().items(), enc.backbone.state_dict().items()):
            assert k1 == k2 and (torch.equal(v1, v2) if t == 1 else torch.allclose(v1, v2, atol=1e-6)), k1
    x = frames(2, 84, 84)
    # (pvr runs convs channels-last: the same sums in another order, equal to float precision)
    torch.testing.assert_close(enc(x), original_random_features(orig, x), rtol=1e-5, atol=1e-5)


def test_seed_changes_weights_and_fingerprint_same_seed_does_not():
    a, b, c = E.create("random5", seed=3), E.create("random5", seed=3), E.create("random5", seed=4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a.backbone[0].weight, b.backbone[0].weight)
    assert not torch.equal(a.backbone[0].weight, c.backbone[0].weight)
    assert E.create("random5").fingerprint == E.create("random5", seed=1).fingerprint  # default: pvr train's seed
    # the seed reaches random parts of a concatenation, and make_encoder passes it on
    assert E.create("concat:random2+random3", seed=3).fingerprint != E.create("concat:random2+random3", seed=4).fingerprint
    assert make_encoder("random4", seed=9).fingerprint == E.create("random4", seed=9).fingerprint


def test_pretrained_encoders_ignore_the_seed_random_init_follows_it():
    assert E.create("efficientnet_lite0", seed=5).fingerprint == E.create("efficientnet_lite0").fingerprint
    a = E.create("resnet18", pretrained=False, seed=5)
    assert a.fingerprint == E.create("resnet18", pretrained=False, seed=5).fingerprint
    assert a.fingerprint != E.create("resnet18", pretrained=False, seed=6).fingerprint


def test_random_tar_in_model_path_in_the_originals_layout_loads(tmp_path, monkeypatch):
    torch.manual_seed(123)
    orig = original_convnet(5)
    torch.save({"state_dict": orig.state_dict()}, tmp_path / "random5.tar")  # generic.py's __main__
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    x = frames(2, 64, 64)
    for name in ("random5", "random"):
        enc = E.create(name, seed=1)
        assert str(tmp_path / "random5.tar") in enc.weights_source
        torch.testing.assert_close(enc(x), original_random_features(orig, x), rtol=1e-5, atol=1e-5)
        assert torch.equal(enc.backbone[2].weight, orig[2].weight)
    assert "random init" in E.create("random3").weights_source  # no random3.tar: drawn from the seed
    # pvr's own save writes the same layout and reads back to the same fingerprint
    saved = E.create("random3", seed=4).save(tmp_path / "random3.tar")
    assert E.create("random3", seed=99).fingerprint == E.create("random3", seed=4, path=str(saved)).fingerprint


def test_untied_random_file_is_refused(tmp_path, monkeypatch):
    net = nn.Sequential(*[m for i in range(5) for m in (nn.Conv2d(3 if i == 0 else 32, 32, 3, 2, 1), nn.ELU())])
    torch.save({"state_dict": net.state_dict()}, tmp_path / "random5.tar")
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    with pytest.raises(PvrError, match="different weights for layers 2..5"):
        E.create("random5")


def test_make_encoder_takes_dim_from_the_datasets_frames():
    ds = SimpleNamespace(obs_shape=(84, 84, 6))  # two RGB views per frame (image-goal navigation)
    enc = make_encoder("random5", ds, seed=2)
    assert enc.dim == 288 and feature_dim(enc, ds) == 576
    assert make_encoder("concat:random5+random3", ds).dim == 288 + 32 * 11 * 11
    assert make_encoder("efficientnet_lite0", ds).dim == 1280


def test_cli_embed_seed_defaults_to_train_seed():
    p = build_parser()
    assert p.parse_args(["embed", "--env", "A", "--embedding_name", "random"]).seed == 1
    assert p.parse_args(["train", "--env", "A", "--embedding_name", "random"]).seed == 1
    assert p.parse_args(["embed", "--env", "A", "--embedding_name", "random", "--seed", "3"]).seed == 3


# -- resize, crop, normalisation -----------------------------------------------------------
SIZES = [(64, 64), (84, 84), (100, 120), (121, 87), (480, 640)]


def original_default(x):
    """embeddings.py's default transform (ResNets, MoCo, taps, demy), on a uint8 tensor."""
    t = nn.Sequential(T.Resize(256, antialias=False), T.CenterCrop(224), T.ConvertImageDtype(torch.float),
                      T.Normalize(*IMAGENET))
    return t(nchw(x))


def original_mae(x):
    t = nn.Sequential(T.Resize(256, interpolation=T.InterpolationMode.BICUBIC, antialias=False), T.CenterCrop(224),
                      T.ConvertImageDtype(torch.float), T.Normalize(*IMAGENET))
    return t(nchw(x))


def original_clip(x):
    t = nn.Sequential(T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(224),
                      T.ConvertImageDtype(torch.float),
                      T.Normalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]))
    return t(nchw(x))


@pytest.mark.parametrize("hw", SIZES)
def test_default_preprocessing_is_the_originals_uint8_resize(hw):
    x = frames(2, *hw)
    want = original_default(x)
    for name in ("resnet18", "moco_aug", "resnet50_l3", "demy"):
        got = E.create(name, pretrained=False).preprocess(x)
        assert got.shape == want.shape == (2, 3, 224, 224)
        assert torch.equal(got, want), name


@pytest.mark.parametrize("hw", SIZES)
def test_mae_is_bicubic_without_antialiasing(hw):
    x = frames(2, *hw)
    got = E.create("mae_base", pretrained=False).preprocess(x)
    assert torch.equal(got, original_mae(x))


@pytest.mark.parametrize("hw", SIZES)
def test_clip_is_antialiased_bicubic_on_uint8(hw):
    x = frames(2, *hw)
    got = E.create("clip_vit", pretrained=False).preprocess(x)
    assert torch.equal(got, original_clip(x))


@pytest.mark.parametrize("hw", [(84, 84), (480, 640)])
def test_maskrcnn_flips_channels_and_resizes_floats(hw):
    x = frames(2, *hw)
    tail = nn.Sequential(T.Resize(256, antialias=False), T.CenterCrop(224),
                         T.Normalize([103.530, 116.280, 123.675], [1.0, 1.0, 1.0]))
    # pvr: the intended RGB -> BGR flip; the original converts to float before resizing (no rounding)
    fixed = tail(nchw(x).flip(1).float())
    assert torch.equal(E.create("maskrcnn_l3", pretrained=False).preprocess(x), fixed)
    # original_swap=True: the original's assignment on an NCHW tensor, which swaps rows 0 and 2
    y = nchw(x).clone()
    y[:, :, [0, 1, 2]] = y[:, :, [2, 1, 0]]
    orig = tail(y.float())
    assert torch.equal(E.create("maskrcnn_l3", pretrained=False, original_swap=True).preprocess(x), orig)
    assert not torch.equal(orig, fixed)


def test_large_frames_differ_between_the_originals_resize_and_the_antialiased_one():
    x = frames(2, 480, 640)
    plain = E.create("resnet18", pretrained=False)
    smooth = E.create("antialias:resnet18", pretrained=False)
    want = nn.Sequential(T.Resize(256, antialias=True), T.CenterCrop(224), T.ConvertImageDtype(torch.float),
                         T.Normalize(*IMAGENET))(nchw(x))
    assert torch.allclose(smooth.preprocess(x), want, atol=1e-5)  # within one uint8 rounding step / std
    assert (smooth.preprocess(x) - plain.preprocess(x)).abs().mean() > 0.1
    assert smooth.fingerprint != plain.fingerprint and smooth.name == "antialias:resnet18"
    assert E.create("antialias:random3").preprocess == E.create("random3").preprocess  # nothing to resize


def test_preprocess_defaults_are_the_originals():
    p = Preprocess()
    assert (p.resize, p.crop, p.interpolation, p.antialias, p.uint8) == (256, 224, "bilinear", False, True)


# -- file names ------------------------------------------------------------------------------
def save_moco(path) -> None:
    """A ResNet-50 in MoCo's checkpoint layout (query encoder under module.encoder_q.)."""
    sd = torchvision.models.resnet50(weights=None).state_dict()
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in sd.items()}}, path)


def test_distributed_branch_file_names_are_found_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    save_moco(tmp_path / "moco_aug_habitat_64.pth")  # main's name
    assert E.info("moco_aug_habitat")["present"]
    assert E.create("moco_aug_habitat").weights_source.startswith(str(tmp_path / "moco_aug_habitat_64.pth"))
    save_moco(tmp_path / "moco_aug_habitat.pth")  # the distributed branch's name wins
    assert E.create("moco_aug_habitat").weights_source.startswith(str(tmp_path / "moco_aug_habitat.pth"))
    assert not E.info("moco_croponly_habitat")["present"]
    save_moco(tmp_path / "moco_croponly_habitat.pth")
    assert E.info("moco_croponly_habitat")["present"]
    for name in ("moco_aug_mujoco", "moco_aug_uber", "moco_croponly_mujoco", "moco_croponly_uber"):
        assert E.info(name)["weights"] == f"file:{name}.pth"  # the same in both branches


def test_demy_loads_demy_pth_as_a_moco_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    with pytest.raises(PvrError, match="demy.pth"):
        E.create("demy")
    save_moco(tmp_path / "demy.pth")
    enc = E.create("demy")
    assert enc.dim == 2048 and enc(frames(1, 84, 84)).shape == (1, 2048)
    assert E.info("demy")["family"] == "moco"
