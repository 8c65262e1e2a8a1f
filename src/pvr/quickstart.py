"""The whole pipeline on one small MiniGrid level, two seeds, in minutes on a laptop CPU.

``pvr quickstart`` is ``pvr benchmark quickstart`` (the shipped protocol
``pvr/benchmark/protocols/quickstart.yaml``) with three encoders: collect (optimal
BFS expert) → embed with each encoder → train a BC policy per encoder and seed
while evaluation runs in parallel → report with intervals (bootstrap over seeds,
Wilson over episodes) + plots. Everything lands under ``--out`` (default
``pvr_quickstart/``); rerunning reuses what is finished there.

The training settings are the original's scaled to a tiny level, where a few
hundred frames make few gradient steps per epoch: short episodes (≤ ~20 optimal
steps) make its 100-step unroll and 1024-wide LSTM needlessly slow on a CPU, so
the protocol uses unroll 10, batch 4, width 256, learning rate 1e-3 and BatchNorm
over the embedding (without it the random convnet's features did not train:
success 0.0 vs 1.0 with it, measured). Evaluation episodes are capped at
``max_steps`` = 60 (about 3× the longest demonstration) so that failing early
policies do not stall the run.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from pvr.errors import PvrError

PROTOCOL = "quickstart"


@dataclass
class QuickstartConfig:
    out: str = "pvr_quickstart"
    encoders: list[str] = field(default_factory=lambda: ["random", "efficientnet_lite0", "true_state"])
    seeds: str | None = None      # default: the protocol's (1,2)
    env: str | None = None        # default: the protocol's level (MiniGrid-DoorKey-6x6-v0)
    episodes: int | None = None   # demonstrations; default: the protocol's (30)
    epochs: int | None = None     # default: the protocol's (60)


def protocol(q: QuickstartConfig):
    """The shipped quickstart protocol with the user's overrides applied."""
    from pvr.benchmark import load

    p = load(PROTOCOL)
    (task,) = p.tasks
    change = {k: v for k, v in (("env", q.env), ("demonstrations", q.episodes), ("epochs", q.epochs))
              if v is not None}
    if q.env is not None and not q.env.startswith("MiniGrid-"):
        raise PvrError(f"--env {q.env}: the quickstart runs MiniGrid levels (e.g. MiniGrid-DoorKey-8x8-v0); "
                       "for other suites use `pvr benchmark` with a protocol")
    if any(v < 1 for k, v in change.items() if k != "env"):
        raise PvrError("--episodes and --epochs must be at least 1")
    if change:
        task = dataclasses.replace(task, **change)
        if task.eval_every and task.epochs < task.eval_every:
            task = dataclasses.replace(task, eval_every=task.epochs)
    return dataclasses.replace(p, tasks=[task])


def run(q: QuickstartConfig) -> dict:
    import json

    from pvr import benchmark

    t0 = time.time()
    out = Path(q.out)
    plan = benchmark.plan(protocol(q), ",".join(q.encoders), seeds=q.seeds, save_path=str(out))
    manifest = benchmark.run(plan)  # prints progress, then the report's table with intervals
    png, summary_file = out / "success.png", out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else []
    print()
    print("run directories:")
    for r in plan.runs:
        print(f"  {r.run_dir}")
    print(f"plot: {png}")
    print(f"report: {out / 'report.md'} (and report.html)")
    print(f"total time: {time.time() - t0:.0f} s")
    if not summary:
        raise PvrError("no evaluation results were produced")
    return {"runs": [r.run_dir for r in plan.runs], "plot": png, "summary": summary, "manifest": manifest}
