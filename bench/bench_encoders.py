"""Encoder throughput on this machine: pvr's batched encoders vs a naive per-image fp32 loop.

    .venv/bin/python bench/bench_encoders.py [--seconds 6] [--names resnet18,...]

For each encoder (random-init weights: speed does not depend on their values) it
measures, in the same process and on the same 224 px-ready frames:

- naive: one frame at a time, NCHW, fp32, the preprocessing + backbone called per image;
- pvr:   ``encoder(frames)`` on a batch of 32, with the encoder's own micro-batch /
         channels-last settings (and, with ``--sweep``, every micro-batch × layout);

and reports images/s, the speed-up, and the fraction of the CPU's peak fp32 rate
that the pvr figure represents: forward FLOPs per image (counted with
``torch.utils.flop_counter``) × images/s ÷ peak. Peak = cores × clock × 32 fp32
FLOP/cycle (Zen 3: two 256-bit FMA pipes = 2 × 8 lanes × 2 FLOP). The clock is
read from /proc/cpuinfo (the nominal "cpu MHz"); boost clocks would lower the
fractions.
"""
from __future__ import annotations

import argparse
import re
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import pvr.encoders as E

NAMES = ["resnet18", "resnet50", "clip_vit", "mae_base", "efficientnet_lite0"]


def cpu_peak_gflops(cores: int) -> tuple[float, float]:
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", open("/proc/cpuinfo").read())]
    ghz = (max(mhz) if mhz else 2600.0) / 1000
    return cores * ghz * 32, ghz


def rate(fn, n_images: int, seconds: float) -> float:
    fn()  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        done += n_images
    return done / (time.perf_counter() - t0)


def flops_per_image(enc, frame) -> float:
    x = enc.preprocess(frame)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        enc.backbone(x)
    return fc.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--names", default=",".join(NAMES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sweep", action="store_true", help="also try micro-batches 1/2/4/8/32 × NCHW/channels-last")
    a = ap.parse_args()
    threads = torch.get_num_threads()
    peak, ghz = cpu_peak_gflops(threads)
    print(f"torch {torch.__version__}, {threads} threads; peak = {threads} cores x {ghz:.2f} GHz x 32 = {peak:.0f} GFLOP/s")
    frames = torch.randint(0, 256, (a.batch, 224, 224, 3), dtype=torch.uint8)
    print("| encoder | GFLOP/img | naive per-image fp32 (img/s) | pvr (img/s) | speed-up | % of peak (pvr) | pvr setting |")
    print("|---|---|---|---|---|---|---|")
    for name in a.names.split(","):
        enc = E.create(name, pretrained=False)
        gflop = flops_per_image(enc, frames[:1]) / 1e9

        naive_net = enc.backbone.to(memory_format=torch.contiguous_format)

        def naive():
            with torch.no_grad():
                for f in frames[:8]:
                    naive_net(enc.preprocess(f[None]))

        r_naive = rate(naive, 8, a.seconds)
        settings = [(enc.micro_batch, enc.channels_last)]
        if a.sweep:
            settings += [(m, cl) for m in (1, 2, 4, 8, None) for cl in (False, True)]
        best = None
        for mb, cl in dict.fromkeys(settings):
            enc.set_layout(micro_batch=mb, channels_last=cl)
            with torch.inference_mode():
                r = rate(lambda: enc(frames), a.batch, a.seconds)
            tag = f"micro-batch {mb or a.batch}, {'channels-last' if cl else 'NCHW'}"
            if a.sweep:
                print(f"  {name}: {tag}: {r:.1f} img/s", flush=True)
            if best is None or (mb, cl) == settings[0]:
                default = (r, tag)
            best = max(best or (0, ""), (r, tag))
        r_pvr, tag = default
        print(f"| {name} | {gflop:.2f} | {r_naive:.1f} | {r_pvr:.1f} | x{r_pvr / r_naive:.2f} | "
              f"{100 * gflop * r_pvr / peak:.0f}% | {tag}{f' (best: {best[1]}, {best[0]:.1f})' if a.sweep else ''} |",
              flush=True)


if __name__ == "__main__":
    main()
