"""Whole `pvr train` runs: the evaluation process on its share of the cores only, vs also taking every
core while the trainer waits for it (pvr's default), in one invocation.

    .venv/bin/python bench/bench_train_threads.py [--protocol quickstart] [--encoder efficientnet_lite0]
                                                  [--epochs 60] [--repeats 2] [--runtime torch]

The protocol's first task (default: the quickstart's DoorKey-6x6, 30 demonstrations, evaluation
points at epochs 0/15/30/45/60, 20 episodes each) is collected and embedded once, outside the timed
part; then the two variants alternate ``--repeats`` times, each a fresh run in a fresh process:

- share:  the evaluation process's encoder always runs on its share of the cores
          (``thread_split``: a quarter, at least one; 1 of 2 here);
- waited: the same, plus all cores whenever the trainer is blocked waiting for an evaluation
          (at an evaluation point whose previous evaluation is still running, and at the end).

Reported per variant (best repeat): the run's wall time, the evaluation seconds the run recorded
(``stage_times.jsonl``: the sum over evaluation points), and the ratio share / waited. The runs'
evaluation rows are compared too: they must be equal (threads change speed, not results).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path


def _one(cfg, variant: str, out) -> None:
    import pvr.bc.trainer as T
    from pvr.evaluation import timing

    if variant == "share":  # the waited setting equals the share: nothing changes while the trainer waits
        share = T.thread_split()[1]
        T.available_cores = lambda: share
    t0 = time.perf_counter()
    run_dir = T.train(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    evals = {r["epoch"]: {k: v for k, v in r.items() if k.startswith("test")} for r in rows
             if any(k.startswith("test") for k in r)}
    out.put((wall, timing.run_totals(run_dir).get("evaluate", float("nan")), evals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="quickstart")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runtime", default="torch")
    a = ap.parse_args()

    import pvr.headless

    pvr.headless.configure()
    from pvr.bc.trainer import ensure_features
    from pvr.benchmark import load, plan
    from pvr.benchmark.runner import prepare
    from pvr.evaluation.vector import available_cores, thread_split

    root = Path(tempfile.mkdtemp(prefix="pvr-bench-threads-"))
    p = load(a.protocol)
    p = dataclasses.replace(p, tasks=p.tasks[:1])
    grid = plan(p, a.encoder, seeds="1", save_path=str(root), runtime=a.runtime)
    prepare(grid, echo=lambda *_: None)
    base = grid.runs[0].cfg
    if a.epochs:
        base = dataclasses.replace(base, epochs=a.epochs)
    ensure_features(base)
    print(f"{base.env}, {a.encoder}, runtime {a.runtime}, {base.epochs} epochs, {base.num_episodes_test} "
          f"evaluation episodes per point; {available_cores()} cores, evaluation share "
          f"{thread_split()[1]} thread(s); load average {open('/proc/loadavg').read().split()[0]}")
    ctx = mp.get_context("spawn")
    best: dict[str, tuple[float, float]] = {}
    evals: dict[str, dict] = {}
    for r in range(a.repeats):
        for variant in ("share", "waited"):
            cfg = dataclasses.replace(base, save_path=str(root / f"runs-{variant}-{r}"))
            q = ctx.Queue()
            proc = ctx.Process(target=_one, args=(cfg, variant, q))
            proc.start()
            wall, ev, rows = q.get()
            proc.join()
            print(f"  {variant} #{r}: wall {wall:.1f} s, evaluation {ev:.1f} s", flush=True)
            best[variant] = min(best.get(variant, (wall, ev)), (wall, ev))
            evals.setdefault(variant, rows)
            assert rows == evals[variant] == evals["share"], "threads changed an evaluation's results"
    (sw, se), (ww, we) = best["share"], best["waited"]
    print("| task | encoder | runtime | share: wall / evaluation (s) | waited: wall / evaluation (s) "
          "| wall share / waited | evaluation share / waited |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {base.env} | {a.encoder} | {a.runtime} | {sw:.1f} / {se:.1f} | {ww:.1f} / {we:.1f} "
          f"| ×{sw / ww:.2f} | ×{se / we:.2f} |")


if __name__ == "__main__":
    main()
