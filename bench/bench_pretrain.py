"""Images/s of MoCo ResNet-18 pre-training (``pvr pretrain``) at 64 and 224 px, against a baseline.

Baseline, in the same invocation: a plain supervised step of the same network (one
view, cross-entropy on random labels, SGD) — what one forward/backward of ResNet-18
costs here. Then the MoCo v2 step alone (lightly's parts: query forward/backward,
momentum update, key forward, InfoNCE against the queue; two views per frame), and
the whole ``pvr pretrain`` loop on a synthetic store (lazy reads, lightly's MoCo v2
augmentations on the CPU, checkpoints), whose rate is what a user sees. Rates are
frames per second (a MoCo frame is two views).

    .venv/bin/python bench/bench_pretrain.py [--steps 6] [--sizes 64,224] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision


def timed(step, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def supervised(size: int, batch: int, steps: int, device) -> float:
    net = torchvision.models.resnet18(weights=None, num_classes=10).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return batch / timed(step, steps)


def moco_step(size: int, batch: int, steps: int, device) -> float:
    from pvr.pretrain.moco import MoCo

    model = MoCo("resnet18", k=4096).to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9)
    q = torch.randn(batch, 3, size, size, device=device)
    k = torch.randn(batch, 3, size, size, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        model(q, k).backward()
        opt.step()

    return batch / timed(step, steps)


def full_loop(size: int, batch: int, steps: int) -> float:
    import pvr.data
    from pvr.pretrain import PretrainConfig, pretrain
    from pvr.utils.io import read_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PVR_MODEL_PATH"] = str(tmp / "models")
        rng = np.random.default_rng(0)
        with pvr.data.create(tmp / "data" / "Bench-v0.zarr", env="Bench-v0") as ds:
            for _ in range(steps):  # one epoch of `steps` batches
                ds.append_episode(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                                  np.zeros(batch, np.int64), np.zeros((batch, 2), np.float32))
        cfg = PretrainConfig(env="Bench-v0", name="bench", arch="resnet18", data_path=str(tmp / "data"),
                             batch_size=batch, image_size=size, moco_k=4096, holdout=0.0, quiet=True, epochs=1,
                             disable_tensorboard=True, save_path=str(tmp / "r"), out=str(tmp / "r"))
        pretrain(cfg)
        # the loop's own rate (frames from the first batch's request to the last step, workers' start included)
        return float(read_jsonl(tmp / "r" / "bench" / "stats.jsonl")[-1]["images_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--sizes", default="64,224")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {a.batch}, {a.steps} timed steps")
    print("size | supervised fwd/bwd img/s | MoCo step frames/s (ratio) | pvr pretrain loop frames/s (ratio)")
    for size in (int(s) for s in a.sizes.split(",")):
        base = supervised(size, a.batch, a.steps, device)
        moco = moco_step(size, a.batch, a.steps, device)
        loop = full_loop(size, a.batch, a.steps)
        print(f"{size} | {base:.1f} | {moco:.1f} ({moco / base:.2f}x) | {loop:.1f} ({loop / base:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
