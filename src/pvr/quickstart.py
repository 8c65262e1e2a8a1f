"""The whole pipeline on one small MiniGrid level, in minutes on a laptop CPU.

collect (optimal BFS expert) → embed with each encoder → train a BC policy per
encoder while evaluation runs in parallel → table + plot. Everything lands under
``--out`` (default ``pvr_quickstart/``); rerunning reuses what is finished there.

The training settings are the original's scaled to a tiny level, where ~1,200
frames make few gradient steps per epoch: short episodes (≤ ~15 optimal steps)
make its 100-step unroll and 1024-wide LSTM needlessly slow on a CPU, so the
quickstart uses unroll 10, batch 4, width 256, learning rate 1e-3 and BatchNorm
over the embedding (without it the random convnet's features did not train:
success 0.0 vs 1.0 with it, measured). Evaluation episodes are capped at
``max_steps`` = 40 (about 3× the longest demonstration) so that failing early
policies do not stall the run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pvr.bc.config import TrainConfig
from pvr.errors import PvrError


@dataclass
class QuickstartConfig:
    out: str = "pvr_quickstart"
    env: str = "MiniGrid-DoorKey-5x5-v0"
    episodes: int | None = None   # default 120
    epochs: int | None = None     # default 40
    encoders: list[str] = field(default_factory=lambda: ["random", "efficientnet_lite0", "true_state"])
    seed: int = 1
    max_steps: int = 40
    num_episodes_test: int = 20


def run(q: QuickstartConfig) -> dict:
    import pvr.encoders
    from pvr.bc.trainer import train
    from pvr.collect import collect
    from pvr.embed import embed, make_encoder, open_dataset
    from pvr.report import report

    for name in q.encoders:
        pvr.encoders.info(name)  # unknown names fail now, not after collecting
    t0 = time.time()
    out = Path(q.out)
    data_path, save_path = out / "data", out / "runs"
    episodes, epochs = q.episodes or 120, q.epochs or 40
    print(f"[1/4] collecting {episodes} expert demonstrations of {q.env} (optimal BFS planner)", flush=True)
    collect(q.env, episodes, data_path, seed=q.seed * 10_000, env_kwargs={"max_steps": q.max_steps})

    print(f"[2/4] embedding every frame with {', '.join(q.encoders)}", flush=True)
    with open_dataset(data_path, q.env, mode="a") as ds:
        for name in q.encoders:
            embed(ds, make_encoder(name, ds, seed=q.seed), batch_size=32)

    runs = []
    for i, name in enumerate(q.encoders):
        print(f"[3/4] training a BC policy on {name} features ({i + 1}/{len(q.encoders)}), "
              "evaluation in parallel", flush=True)
        cfg = TrainConfig(env=q.env, embedding_name=name, data_path=str(data_path), save_path=str(save_path),
                          xpid=f"{q.env}-{name}-s{q.seed}", seed=q.seed, epochs=epochs,
                          num_episodes_test=q.num_episodes_test, eval_every=10,
                          batch_norm=True, hidden_size=256, batch_size=4, unroll_length=10, learning_rate=1e-3)
        runs.append(train(cfg))

    print("[4/4] report", flush=True)
    text, png, summary = report([str(r) for r in runs], out)
    print()
    print(text)
    print()
    print("run directories:")
    for r in runs:
        print(f"  {r}")
    print(f"plot: {png}")
    print(f"total time: {time.time() - t0:.0f} s")
    if not summary:
        raise PvrError("no evaluation results were produced")
    return {"runs": runs, "plot": png, "summary": summary}
