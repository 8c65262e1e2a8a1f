"""Encoder throughput on this machine: pvr's batched encoders vs a naive per-image fp32 loop, per runtime.

    .venv/bin/python bench/bench_encoders.py [--seconds 6] [--names resnet18,...]
    .venv/bin/python bench/bench_encoders.py --names resnet50,efficientnet_lite0 --seconds 3 \
        --runtime torch,onnxruntime,openvino

For each encoder (its real weights when they are installed, else random-init
weights: speed does not depend on their values) it measures, in the same process
and on the same 224 px frames:

- naive: one frame at a time, NCHW, fp32, the preprocessing + backbone called per image;
- pvr:   ``encoder(frames)`` on a batch of 32, with the encoder's own micro-batch /
         channels-last settings (and, with ``--sweep``, every micro-batch × layout);
- each ``--runtime`` (pvr.encoders.runtime): the same call with the backbone run by
  ONNX Runtime / OpenVINO (exported once, checked against torch), threads = cores;

and reports images/s, the speed-up, and the fraction of the CPU's peak fp32 rate
that each figure represents: forward FLOPs per image (counted with
``torch.utils.flop_counter``, an FMA = 2 FLOP) × images/s ÷ peak. Peak = cores ×
clock × fp32 FLOP/cycle/core, all three printed: the clock is the largest "cpu MHz"
in /proc/cpuinfo, read when the bench starts (boost clocks above it would lower the
fractions); FLOP/cycle follows /proc/cpuinfo: 64 for AMD family 0x1A (Zen 5: two
full-width 512-bit FMA pipes, 2 × 16 lanes × 2), 32 for other AMD CPUs (Zen 2–4:
two 256-bit FMA pipes; Zen 4 runs AVX-512 at half width), 64 for Intel CPUs with
avx512f (two 512-bit FMA ports on server parts), 32 with avx2+fma, 16 otherwise.
"""
from __future__ import annotations

import argparse
import re
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import pvr.encoders as E
from pvr.encoders import runtime as R
from pvr.errors import PvrError

NAMES = ["resnet18", "resnet50", "clip_vit", "mae_base", "efficientnet_lite0"]


def flop_per_cycle(cpuinfo: str) -> tuple[int, str]:
    """fp32 FLOP per cycle per core, and the reason, from /proc/cpuinfo's vendor, family and flags."""
    first = cpuinfo.split("\n\n")[0]
    field = lambda k: (re.search(rf"^{k}\s*:\s*(.*)$", first, re.M) or [None, ""])[1].strip()
    flags, vendor = set(field("flags").split()), field("vendor_id")
    family = int(field("cpu family") or 0)
    if vendor == "AuthenticAMD":
        if family >= 0x1A and "avx512f" in flags:
            return 64, f"AMD family {family:#x} (Zen 5): 2 FMA pipes x 16 fp32 lanes (512-bit) x 2"
        return 32, f"AMD family {family:#x}: 2 FMA pipes x 8 fp32 lanes (256-bit datapath) x 2"
    if "avx512f" in flags:
        return 64, "avx512f: 2 FMA ports x 16 fp32 lanes x 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "avx2+fma: 2 FMA ports x 8 fp32 lanes x 2"
    return 16, "no avx2/fma: 4-lane SSE, 2 ports x 4 x 2"


def cpu_peak_gflops(cores: int) -> tuple[float, float, int, str]:
    info = open("/proc/cpuinfo").read()
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    ghz = (max(mhz) if mhz else 2600.0) / 1000
    fpc, why = flop_per_cycle(info)
    return cores * ghz * fpc, ghz, fpc, why


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


def create(name: str):
    """The encoder with its real weights when they are installed here, else random-init ones."""
    try:
        return E.create(name), "real"
    except PvrError:
        return E.create(name, pretrained=False), "random"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--names", default=",".join(NAMES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sweep", action="store_true", help="also try micro-batches 1/2/4/8/32 × NCHW/channels-last "
                                                         "(and 1/4/8/32 for each other runtime)")
    ap.add_argument("--runtime", default="torch",
                    help="runtimes to compare, comma-separated, from torch,onnxruntime,openvino (pvr --runtime)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every variant this many times, interleaved, and keep each one's best")
    a = ap.parse_args()
    runtimes = [r for r in a.runtime.split(",") if r and r != "torch"]
    for r in runtimes:
        if r not in R.RUNTIMES:
            raise SystemExit(f"unknown runtime {r!r}; choose from {', '.join(R.RUNTIMES)}")
        if not R.is_available(r):
            raise SystemExit(f"runtime {r} is not installed: pip install 'pvr[runtime]'")
    threads = torch.get_num_threads()
    peak, ghz, fpc, why = cpu_peak_gflops(threads)
    print(f"torch {torch.__version__}, {threads} threads (runtimes: {R.available_cores()}); peak = {threads} cores x "
          f"{ghz:.3f} GHz (/proc/cpuinfo cpu MHz) x {fpc} FLOP/cycle [{why}] = {peak:.0f} GFLOP/s")
    frames = torch.randint(0, 256, (a.batch, 224, 224, 3), dtype=torch.uint8)
    rt_cols = "".join(f" {r} (img/s) | % of peak ({r}) | max rel. err ({r}) |" for r in runtimes)
    print(f"| encoder | weights | GFLOP/img | naive per-image fp32 (img/s) | pvr torch (img/s) | speed-up | "
          f"% of peak (pvr torch) | pvr setting |{rt_cols}")
    print("|---" * (8 + 3 * len(runtimes)) + "|")
    for name in a.names.split(","):
        enc, weights = create(name)
        gflop = flops_per_image(enc, frames[:1]) / 1e9
        layout = (enc.micro_batch, enc.channels_last)
        naive_enc, _ = create(name)
        naive_net = naive_enc.backbone.to(memory_format=torch.contiguous_format)

        def naive():
            with torch.no_grad():
                for f in frames[:8]:
                    naive_net(naive_enc.preprocess(f[None]))

        def batched(e):
            def run():
                with torch.inference_mode():
                    e(frames)
            return run

        variants = {"naive": (naive, 8), "torch": (batched(enc), a.batch)}
        errors, encs = {}, {}
        for rt in runtimes:  # one encoder per runtime, so the rounds can interleave them
            e, _ = create(name)
            R.apply_runtime(e, rt)
            errors[rt] = max(R.runtime_info(e).max_rel_error.values())
            variants[rt], encs[rt] = (batched(e), a.batch), e
        # rounds interleave every variant, and each keeps its best round: on a shared machine the
        # ratios then compare quiet moments with quiet moments
        best_rate = {k: 0.0 for k in variants}
        for _ in range(a.rounds):
            for k, (fn, n) in variants.items():
                best_rate[k] = max(best_rate[k], rate(fn, n, a.seconds))
        tag = f"micro-batch {layout[0] or a.batch}, {'channels-last' if layout[1] else 'NCHW'}"
        sweep = ""
        if a.sweep:
            found = []
            for mb, cl in [(m, c) for m in (1, 2, 4, 8, None) for c in (False, True)]:
                enc.set_layout(micro_batch=mb, channels_last=cl)
                r = rate(batched(enc), a.batch, a.seconds)
                t = f"micro-batch {mb or a.batch}, {'channels-last' if cl else 'NCHW'}"
                print(f"  {name}: torch, {t}: {r:.1f} img/s", flush=True)
                found.append((r, t))
            for rt in runtimes:
                e = encs[rt]
                for mb in (1, 4, 8, None):
                    e.micro_batch = mb
                    print(f"  {name}: {rt}, micro-batch {mb or a.batch}: {rate(batched(e), a.batch, a.seconds):.1f} "
                          "img/s", flush=True)
            sweep = f" (best torch: {max(found)[1]}, {max(found)[0]:.1f})"
        r_naive, r_pvr = best_rate["naive"], best_rate["torch"]
        cells = "".join(f" {best_rate[rt]:.1f} | {100 * gflop * best_rate[rt] / peak:.0f}% | {errors[rt]:.1e} |"
                        for rt in runtimes)
        print(f"| {name} | {weights} | {gflop:.2f} | {r_naive:.1f} | {r_pvr:.1f} | x{r_pvr / r_naive:.2f} | "
              f"{100 * gflop * r_pvr / peak:.0f}% | {tag}{sweep} |{cells}", flush=True)


if __name__ == "__main__":
    main()
