"""Embedding and evaluation throughput, each against the original's scheme in the same process.

    .venv/bin/python bench/bench_pipeline.py [--episodes 60] [--eval_episodes 16]

1. embed: pvr.embed (zarr store read lazily, batches of 32 run as channels-last
   micro-batches of 4, reads prefetched in a thread) vs the original
   save_embedded_obs (whole pickle loaded into RAM, one NCHW encoder call per
   trajectory). Both with efficientnet_lite0 on MiniGrid frames.
2. evaluate: pvr's evaluation (N environments stepped together, one batched
   encoder + policy call per step) vs one episode at a time with batch-1 inference
   (the original's per-environment test processes, minus process overhead, which
   would only favour pvr further). Untrained policy, so every episode runs to the
   step limit and both sides take exactly the same number of steps.
Prints one markdown row per measurement; copy them into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import pvr.data
from pvr.bc.policy import ActionSpec, Policy
from pvr.collect import collect
from pvr.embed import embed, make_encoder, open_dataset
from pvr.evaluation.rollout import evaluate

ENV = "MiniGrid-DoorKey-5x5-v0"


def bench_embed(data_path: Path, encoder_name: str) -> tuple[float, float, int]:
    with open_dataset(data_path, ENV) as ds:
        legacy = data_path / "legacy.pickle"
        pvr.data.convert(ds.path, legacy)
        n = ds.num_frames
    enc = make_encoder(encoder_name)
    original = make_encoder(encoder_name).set_layout(micro_batch=None, channels_last=False)
    # original scheme: load the whole pickle, one encoder call per trajectory, NCHW
    t = time.perf_counter()
    with open(legacy, "rb") as f:
        data = pickle.load(f)
    with torch.inference_mode():
        feats = [original(torch.from_numpy(o)).numpy() for o in data["obs"]]
    base = time.perf_counter() - t
    # pvr
    with open_dataset(data_path, ENV, mode="a") as ds:
        t = time.perf_counter()
        arr = embed(ds, enc, batch_size=32, progress=False)
        ours = time.perf_counter() - t
        np.testing.assert_allclose(np.asarray(arr[: len(feats[0])]), feats[0], rtol=1e-3, atol=1e-3)
    return base, ours, n


def bench_eval(encoder_name: str, episodes: int, max_steps: int) -> tuple[float, float, int]:
    enc = make_encoder(encoder_name)
    original = make_encoder(encoder_name).set_layout(micro_batch=None, channels_last=False)
    torch.manual_seed(0)
    policy = Policy(enc.dim, ActionSpec(True, 7), hidden_size=256, batch_norm=True)
    kw = dict(episodes=episodes, env_kwargs={"max_steps": max_steps}, progress=False)
    # warm up both paths (first-call allocations)
    evaluate(policy, original, ENV, episodes=1, num_envs=1, env_kwargs={"max_steps": 2}, progress=False)
    evaluate(policy, enc, ENV, episodes=1, num_envs=1, env_kwargs={"max_steps": 2}, progress=False)
    t = time.perf_counter()
    a = evaluate(policy, original, ENV, num_envs=1, **kw)
    base = time.perf_counter() - t
    t = time.perf_counter()
    b = evaluate(policy, enc, ENV, num_envs=episodes, **kw)
    ours = time.perf_counter() - t
    assert a["episodes"] == b["episodes"] and a["length"] == b["length"], (a, b)  # same work on both sides
    return base, ours, int(round(a["length"] * a["episodes"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--eval_episodes", type=int, default=16)
    ap.add_argument("--max_steps", type=int, default=40)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp)
        collect(ENV, a.episodes, data_path, seed=0, progress=False)
        base, ours, n = bench_embed(data_path, a.encoder)
        print(f"| embed {a.encoder}, {n} frames | original (pickle, per trajectory): {n / base:.1f} frames/s "
              f"| pvr: {n / ours:.1f} frames/s | ×{base / ours:.2f} |")
    base, ours, steps = bench_eval(a.encoder, a.eval_episodes, a.max_steps)
    print(f"| evaluate {a.encoder}, {a.eval_episodes} episodes, {steps} steps | batch-1, one env at a time: "
          f"{steps / base:.1f} steps/s | pvr, {a.eval_episodes} envs batched: {steps / ours:.1f} steps/s "
          f"| ×{base / ours:.2f} |")


if __name__ == "__main__":
    main()
