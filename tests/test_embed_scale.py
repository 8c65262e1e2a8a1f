"""Embedding at scale: sharded writers, a real SIGKILL then resume, the lock against a second embed."""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pvr.data
from pvr.embed import (PROGRESS_SUFFIX, embed, features_key, find_features, load_features, open_features,
                       parse_shard)
from pvr.errors import PvrError

ENV = "Scale-v0"
N_EPISODES, EP_LEN = 8, 50  # 400 frames; a 4096-d encoder makes 64-frame chunks: 7 chunks
PLUGIN = '''
import os, time
import torch
from torch import nn
from pvr.encoders import Encoder, register_encoder

class Proj(nn.Module):
    """Row-wise only (no batch-size-dependent reductions): features are bit-identical however batched."""
    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.arange(4096) % 192)
        self.register_buffer("phase", torch.arange(4096, dtype=torch.float32) * 1e-3)
    def forward(self, x):
        time.sleep(float(os.environ.get("SLOWPROJ_SLEEP", "0")))
        flat = x.reshape(x.shape[0], -1)
        return torch.sin(flat[:, self.idx] * 0.37 + self.phase)

@register_encoder("slowproj", family="test", dim=4096, input_size=8)
def slowproj(**kw):
    return Encoder("slowproj", Proj(), None, dim=4096, micro_batch=None)
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugin")
    (d / "slowproj_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(d))
    importlib.import_module("slowproj_plugin")
    yield d
    sys.path.remove(str(d))


def make_data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with pvr.data.create(path / f"{ENV}.zarr", env=ENV) as ds:
        for _ in range(N_EPISODES):
            ds.append_episode(obs=rng.integers(0, 256, (EP_LEN, 8, 8, 3), dtype=np.uint8),
                              action=rng.integers(0, 3, EP_LEN), true_state=rng.standard_normal((EP_LEN, 2)))
    return path


def encoder():
    return pvr.encoders.create("slowproj")


def expected(data: Path) -> np.ndarray:
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        return encoder()(torch.from_numpy(ds["obs"][:])).numpy()


def cli(data: Path, plugin: Path, *extra: str, sleep: float = 0.0, popen: bool = False):
    env = dict(os.environ, PYTHONPATH=f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               SLOWPROJ_SLEEP=str(sleep), PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "pvr", "--plugin", "slowproj_plugin", "embed", "--env", ENV,
            "--embedding_name", "slowproj", "--data_path", str(data), "--batch_size", "8", "--quiet", *extra]
    if popen:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def feature_attrs(data: Path) -> dict:
    p = data / f"{ENV}.zarr" / "features" / features_key(encoder()) / "zarr.json"
    try:
        return json.loads(p.read_text()).get("attributes", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_for(cond, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_shards_in_process_complete_only_together(tmp_path, plugin_dir):
    data = make_data(tmp_path)
    want = expected(data)
    with pvr.data.open(data / f"{ENV}.zarr", mode="a") as ds:
        enc = encoder()
        for i in range(3):
            arr = embed(ds, enc, batch_size=7, progress=False, shard=f"{i}/3")
            assert (find_features(ds, enc) is None) == (i < 2)
        np.testing.assert_array_equal(np.asarray(arr), want)
        assert arr.attrs["frames_done"] == 400 and arr.chunks[0] == 64
        prog = ds.group["features"][features_key(enc) + PROGRESS_SUFFIX][:]
        assert prog.tolist() == [64] * 6 + [16]
        np.testing.assert_array_equal(load_features(ds, enc), want)
        lazy = open_features(ds, enc)
        np.testing.assert_array_equal(lazy[[399, 3]], want[[399, 3]])
        # growing the dataset embeds only the new frames, resuming inside the last chunk
        ds.append_episode(obs=np.zeros((30, 8, 8, 3), np.uint8), action=np.zeros(30, np.int64),
                          true_state=np.zeros((30, 2)))
        assert find_features(ds, enc) is None
        arr = embed(ds, enc, batch_size=16, progress=False)
        np.testing.assert_array_equal(np.asarray(arr)[:400], want)
        assert arr.shape == (430, 4096) and find_features(ds, enc) is not None


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) is None
    for bad in ("5/5", "-1/2", "a/b", "3"):
        with pytest.raises(PvrError, match="--shard"):
            parse_shard(bad)


def test_sigkill_then_rerun_gives_identical_features(tmp_path, plugin_dir):
    data = make_data(tmp_path)
    proc = cli(data, plugin_dir, sleep=0.05, popen=True)
    try:
        wait_for(lambda: feature_attrs(data).get("frames_done", 0) >= 80 or proc.poll() is not None)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = feature_attrs(data)["frames_done"]
    assert 80 <= done < 400  # killed half-way
    r = cli(data, plugin_dir)
    assert r.returncode == 0, r.stderr
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        np.testing.assert_array_equal(load_features(ds, encoder()), expected(data))


def test_concurrent_shards_and_a_second_embed(tmp_path, plugin_dir, monkeypatch):
    data = make_data(tmp_path)
    procs = [cli(data, plugin_dir, "--shard", f"{i}/2", sleep=0.15, popen=True) for i in range(2)]
    try:
        prog = data / f"{ENV}.zarr" / "features" / (features_key(encoder()) + PROGRESS_SUFFIX) / "c"
        wait_for(lambda: prog.exists() and len(list(prog.iterdir())) >= 2 or any(p.poll() is not None for p in procs))
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        with pvr.data.open(data / f"{ENV}.zarr", mode="a") as ds:
            enc = encoder()
            # an unsharded embed and an overlapping shard refuse while shards run; nothing is corrupted
            with pytest.raises(PvrError, match="another process is embedding slowproj-.* or pass --wait"):
                embed(ds, enc, progress=False)
            with pytest.raises(PvrError, match="shard 0/4 of slowproj-.* overlaps one another process is embedding"):
                embed(ds, enc, progress=False, shard="0/4")
            # --wait blocks until they are done, then reuses their result instead of embedding again
            monkeypatch.setattr(type(enc), "forward", lambda self, x: (_ for _ in ()).throw(AssertionError("re-embedded")))
            outs = []
            for p in procs:
                out, err = p.communicate(timeout=120)
                outs.append(out)
                assert p.returncode == 0, err
            arr = embed(ds, enc, progress=False, wait=True)
            monkeypatch.undo()
            np.testing.assert_array_equal(np.asarray(arr), expected(data))
            assert find_features(ds, enc) is not None
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert any("shard" in o for o in outs)


def test_cli_bad_shard_is_one_line(tmp_path, plugin_dir, capsys):
    from pvr.cli import main

    data = make_data(tmp_path)
    rc = main(["embed", "--env", ENV, "--embedding_name", "slowproj", "--data_path", str(data), "--shard", "2/2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--shard 2/2 is out of range" in err
    assert not (data / f"{ENV}.zarr" / "features").exists()
    assert main(["embed", "--env", ENV, "--embedding_name", "slowproj", "--data_path", str(data), "--shard", "0/1",
                 "--quiet"]) == 0
    assert "400 frames x 4096" in capsys.readouterr().out
