"""Whole `pvr train` runs with fixed thread counts (the default) vs ``--adaptive_threads``, in one invocation.

    .venv/bin/python bench/bench_train_threads.py [--protocol quickstart] [--encoder efficientnet_lite0]
                                                  [--epochs 60] [--repeats 2] [--runtime torch]
                                                  [--demonstrations N] [--set key=value ...] [--root DIR]

The protocol's first task (default: the quickstart's DoorKey-6x6, 30 demonstrations, evaluation
points at epochs 0/15/30/45/60, 20 episodes each) is collected and embedded once, outside the timed
part; then the variants alternate ``--repeats`` times, each a fresh run in a fresh process:

- share:    every evaluation on the evaluation process's share of the cores (``thread_split``: a
            quarter, at least one; 1 of 2 here), training on the rest (pvr before 2026-12-07);
- fixed:    pvr's default: the same, except the final evaluation, which gets every core (nothing is
            left to train); thread counts never depend on timing, so runs reproduce bit for bit;
- adaptive: ``--adaptive_threads``: every core to the evaluation process while training waits for it,
            and to training while no evaluation runs.

``--set key=value`` changes a `pvr train` setting of the protocol's (e.g. ``--set hidden_size=256
--set unroll_length=100 --set batch_size=32`` where training weighs more).

Reported per variant (best repeat): the run's wall time, the training and evaluation seconds the run
recorded (``stage_times.jsonl``), and the ratios against ``share``. The evaluation rows of the runs are
compared too; with a discrete-action task they are equal (thread counts change features only in
their last bits), which the bench asserts.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _one(cfg, variant: str, out, owner: int) -> None:
    import signal

    from pvr.evaluation.vector import die_with_owner

    die_with_owner(owner, signal.SIGTERM)  # a killed bench stops its run too
    import pvr.bc.trainer as T
    from pvr.evaluation import timing

    if variant == "share":  # "all cores" becomes the share: the final evaluation gets no more
        share = T.thread_split()[1]
        T.available_cores = lambda: share
    if variant == "adaptive":
        cfg = dataclasses.replace(cfg, adaptive_threads=True)
    t0 = time.perf_counter()
    run_dir = T.train(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    evals = {r["epoch"]: {k: v for k, v in r.items() if k.startswith("test")} for r in rows
             if any(k.startswith("test") for k in r)}
    totals = timing.run_totals(run_dir)
    out.put((wall, totals.get("train", float("nan")), totals.get("evaluate", float("nan")), evals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="quickstart")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runtime", default="torch")
    ap.add_argument("--demonstrations", type=int, default=None, help="default: the protocol's")
    ap.add_argument("--root", default=None, help="work folder (default: a new temporary one); its data is reused")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a pvr train setting")
    a = ap.parse_args()

    import pvr.headless

    pvr.headless.configure()
    from pvr.bc.trainer import ensure_features
    from pvr.benchmark import load, plan
    from pvr.benchmark.runner import prepare
    from pvr.evaluation.vector import available_cores, thread_split

    root = Path(a.root) if a.root else Path(tempfile.mkdtemp(prefix="pvr-bench-threads-"))
    p = load(a.protocol)
    task = p.tasks[0]
    if a.demonstrations:
        task = dataclasses.replace(task, demonstrations=a.demonstrations)
    p = dataclasses.replace(p, tasks=[task])
    grid = plan(p, a.encoder, seeds="1", save_path=str(root), runtime=a.runtime)
    prepare(grid, echo=lambda *_: None)
    base = grid.runs[0].cfg
    if a.epochs:
        base = dataclasses.replace(base, epochs=a.epochs)
    for kv in a.set:
        key, value = kv.split("=", 1)
        base = dataclasses.replace(base, **{key: _value(value)})
    ensure_features(base)
    print(f"{base.env}, {a.encoder}, runtime {a.runtime}, {base.epochs} epochs, {base.num_episodes_test} "
          f"evaluation episodes per point; {available_cores()} cores, evaluation share "
          f"{thread_split()[1]} thread(s); load average {open('/proc/loadavg').read().split()[0]}")
    ctx = mp.get_context("spawn")
    best: dict[str, tuple[float, float, float]] = {}
    evals: dict[str, dict] = {}
    variants = ("share", "fixed", "adaptive")
    for r in range(a.repeats):
        for variant in variants:
            cfg = dataclasses.replace(base, save_path=str(root / f"runs-{variant}-{r}"))
            q = ctx.Queue()
            shutil.rmtree(cfg.save_path, ignore_errors=True)  # a fresh run, also with a reused --root
            proc = ctx.Process(target=_one, args=(cfg, variant, q, os.getpid()))
            proc.start()
            wall, tr, ev, rows = q.get()
            proc.join()
            print(f"  {variant} #{r}: wall {wall:.1f} s, training {tr:.1f} s, evaluation {ev:.1f} s", flush=True)
            best[variant] = min(best.get(variant, (wall, tr, ev)), (wall, tr, ev))
            evals.setdefault(variant, rows)
            assert rows == evals[variant] == evals["share"], "threads changed an evaluation's results"
    print("| task | encoder | settings | " + " | ".join(f"{v}: wall / train / evaluation (s)" for v in variants)
          + " | wall share / fixed | wall share / adaptive |")
    print("|---|---|---|" + "---|" * (len(variants) + 2))
    sw = best["share"][0]
    print(f"| {base.env} | {a.encoder} | {a.runtime}, {' '.join(a.set) or 'protocol'} | "
          + " | ".join("{:.1f} / {:.1f} / {:.1f}".format(*best[v]) for v in variants)
          + f" | ×{sw / best['fixed'][0]:.2f} | ×{sw / best['adaptive'][0]:.2f} |")


if __name__ == "__main__":
    main()
