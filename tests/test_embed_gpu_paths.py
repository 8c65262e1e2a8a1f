"""Embedding's device paths, exercised on CPU: prefetching reader, measured batch size, several devices.

Pinned-memory transfer only exists with CUDA (that test skips without it); every other path runs here
and is pinned against the plain path: same features, to the bit where the batching is the same.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pvr.data
import pvr.embed as E
import pvr.plugins
from pvr.errors import PvrError

ENV = "GpuPaths-v0"
PLUGIN = '''
import os
import time
import torch
from torch import nn
from pvr.encoders import Encoder, register_encoder

class TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(16, 3, 3, 3, generator=g) * 0.1)
    def forward(self, x):
        time.sleep(float(os.environ.get("TINYCONV_SLEEP", "0")))
        x = x.permute(0, 3, 1, 2).float() / 255
        return torch.nn.functional.conv2d(x, self.w, stride=2).relu().mean((2, 3))

@register_encoder("tinyconv", family="test", dim=16, input_size=16)
def tinyconv(**kw):
    return Encoder("tinyconv", TinyConv(), None, dim=16, micro_batch=None)
'''


@pytest.fixture(scope="module")
def plugin():
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="pvr-gpu-paths-"))
    (d / "tinyconv_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(d))
    before = pvr.plugins.loaded()
    pvr.plugins.load(["tinyconv_plugin"], entry_points=False)
    yield d
    # later tests' child processes import every loaded plug-in: this one must not outlive its folder
    pvr.plugins._loaded[:] = before
    sys.path.remove(str(d))


def make_data(path: Path, episodes=6, length=30) -> Path:
    rng = np.random.default_rng(0)
    with pvr.data.create(path / f"{ENV}.zarr", env=ENV) as ds:
        for _ in range(episodes):
            ds.append_episode(obs=rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8),
                              action=rng.integers(0, 3, length), true_state=rng.standard_normal((length, 2)))
    return path


def features(data: Path, **kw) -> np.ndarray:
    with pvr.data.open(data / f"{ENV}.zarr", mode="a") as ds:
        enc = E.make_encoder("tinyconv", ds)
        return np.asarray(E.embed(ds, enc, progress=False, **kw)[:])


def reference(data: Path) -> np.ndarray:
    """Frame by frame, no batching, no prefetch: what every path must reproduce."""
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        enc = E.make_encoder("tinyconv", ds)
        with torch.no_grad():
            return np.concatenate([enc(torch.from_numpy(ds["obs"][i:i + 1])).numpy() for i in range(ds.num_frames)])


def test_prefetch_gives_exactly_the_features_without_it(tmp_path, plugin):
    a, b = make_data(tmp_path / "a"), make_data(tmp_path / "b")
    off = features(a, batch_size=16, prefetch=0)
    on = features(b, batch_size=16, prefetch=3)
    assert off.shape == (180, 16)
    np.testing.assert_array_equal(on, off)
    np.testing.assert_allclose(on, reference(a), rtol=1e-5, atol=1e-6)


def test_auto_batch_size_gives_the_fixed_batch_features(tmp_path, plugin, capsys):
    a, b = make_data(tmp_path / "a"), make_data(tmp_path / "b")
    fixed = features(a, batch_size=8)
    with pvr.data.open(b / f"{ENV}.zarr", mode="a") as ds:
        auto = np.asarray(E.embed(ds, E.make_encoder("tinyconv", ds), batch_size="auto", progress=True)[:])
    chosen = capsys.readouterr().err
    assert "batch size" in chosen and "measured on cpu" in chosen
    np.testing.assert_allclose(auto, fixed, rtol=1e-6, atol=1e-7)


class _Timed(torch.nn.Module):
    """A stand-in encoder whose time per call is fixed (per_frame=0) or grows with the batch."""

    def __init__(self, per_call: float, per_frame: float, oom_at: int | None = None):
        super().__init__()
        self.per_call, self.per_frame, self.oom_at, self.input_key = per_call, per_frame, oom_at, "obs"
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        if self.oom_at is not None and x.shape[0] >= self.oom_at:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        time.sleep(self.per_call + self.per_frame * x.shape[0])
        return torch.zeros(x.shape[0], 4)


def test_auto_batch_size_doubles_while_throughput_grows_and_stops_at_oom():
    frames = np.zeros((5, 4, 4, 3), np.uint8)  # fewer frames than the sizes tried: repeated
    fixed_cost = _Timed(0.01, 0.0, oom_at=64)  # images/s double with every doubling until memory runs out
    assert E.auto_batch_size(fixed_cost, frames, torch.device("cpu"), seconds=0.05) == 32
    assert max(fixed_cost.sizes) == 64
    linear = _Timed(0.0, 0.002)  # no gain from batching: the first size stays
    assert E.auto_batch_size(linear, frames, torch.device("cpu"), seconds=0.05) == 8
    assert set(linear.sizes) == {8, 16}


def test_ctrl_c_with_prefetch_stops_cleanly_and_resume_completes(tmp_path, plugin, monkeypatch):
    data = make_data(tmp_path)
    want = features(make_data(tmp_path / "ref"), batch_size=8, prefetch=0)
    before = threading.active_count()
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(E.interrupt, "check", check)
    with pytest.raises(KeyboardInterrupt):
        features(data, batch_size=8, prefetch=4)
    assert threading.active_count() == before  # the reader thread is gone
    monkeypatch.setattr(E.interrupt, "check", lambda: None)
    with pvr.data.open(data / f"{ENV}.zarr", mode="a") as ds:
        arr = ds.group[E.FEATURES_GROUP][E.features_key(E.make_encoder("tinyconv", ds))]
        assert arr.attrs["frames_done"] == 24  # three batches committed, nothing after
    np.testing.assert_array_equal(features(data, batch_size=8, prefetch=4), want)


def test_two_cpu_devices_embed_one_shard_each(tmp_path, plugin):
    data = make_data(tmp_path)
    arr = E.embed_on_devices(data, ENV, "tinyconv", ["cpu", "cpu"], batch_size=16)
    np.testing.assert_array_equal(np.asarray(arr[:]), features(make_data(tmp_path / "ref"), batch_size=16))
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        assert E.find_features(ds, E.make_encoder("tinyconv", ds)) is not None


@pytest.mark.slow
def test_cli_devices_and_auto_batch(tmp_path, plugin):
    data = make_data(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    base = [sys.executable, "-m", "pvr", "--plugin", "tinyconv_plugin", "embed", "--env", ENV,
            "--embedding_name", "tinyconv", "--data_path", str(data), "--quiet"]
    r = subprocess.run(base + ["--devices", "cpu,cpu", "--batch_size", "auto"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "180 frames x 16" in r.stdout and "2 devices" in r.stdout
    r = subprocess.run(base + ["--devices", "cpu", "--shard", "0/2"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "drop --shard" in r.stderr


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_ctrl_c_stops_every_device_process_and_rerun_completes(tmp_path, plugin):
    import signal

    data = make_data(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TINYCONV_SLEEP="0.5")
    args = [sys.executable, "-m", "pvr", "--plugin", "tinyconv_plugin", "embed", "--env", ENV, "--embedding_name",
            "tinyconv", "--data_path", str(data), "--quiet", "--devices", "cpu,cpu", "--batch_size", "8"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    end = time.time() + 120
    while len(children_of(p.pid)) < 2 and time.time() < end:
        time.sleep(0.1)
    children = children_of(p.pid)
    assert len(children) >= 2
    time.sleep(8)  # both device processes are importing torch / embedding
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    end = time.time() + 30
    while any(Path(f"/proc/{c}").exists() for c in children) and time.time() < end:
        time.sleep(0.1)
    assert not [c for c in children if Path(f"/proc/{c}").exists()], "a device process outlived Ctrl-C"
    env["TINYCONV_SLEEP"] = "0"
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(features(data, batch_size=8), features(make_data(tmp_path / "ref"), batch_size=8))


def test_flag_errors():
    with pytest.raises(PvrError, match="--batch_size auto"):
        E.parse_batch_size("big")
    with pytest.raises(PvrError, match="at least 1"):
        E.parse_batch_size(0)
    assert E.parse_batch_size("AUTO") == "auto" and E.parse_batch_size("32") == 32
    assert E.parse_devices("cpu, cpu") == ["cpu", "cpu"]
    with pytest.raises(PvrError, match="not a device"):
        E.parse_devices("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(PvrError, match="found no GPU"):
            E.parse_devices("all")
        with pytest.raises(PvrError, match="does not exist"):
            E.parse_devices("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned-memory transfer needs CUDA (none on this machine)")
def test_pinned_non_blocking_transfer_and_device_preprocessing(tmp_path, plugin):
    frames = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    x = E._to_device(frames, torch.device("cuda"))
    assert x.is_cuda and x.dtype == torch.uint8
    np.testing.assert_array_equal(x.cpu().numpy(), frames)
    data = make_data(tmp_path)
    np.testing.assert_allclose(features(data, batch_size=16, device="cuda"), reference(data), rtol=1e-4, atol=1e-5)
