"""Evaluation steps/s with an encoder in the loop: the original's scheme vs pvr, in one invocation.

    .venv/bin/python bench/bench_eval.py [--encoders efficientnet_lite0,resnet50] [--num_envs N]
                                          [--episodes_per_env 2] [--envs DMC-reacher-easy,MiniGrid-Empty-8x8-v0]
                                          [--repeats 1]

For each environment (DMC at 224 px, MiniGrid at its native 56 px; episodes shortened
to --length policy steps so a run takes seconds) it measures, on the same episodes
(episode i reset with seed i), random-init weights (speed does not depend on them):

- original: the original's test process as written (src/testing.py, main_bc.py: one process
            per task, its episodes one after another, batch-1 inference, torch's default
            threads, i.e. all cores);
- original ×N: that scheme scaled to N processes (one per environment, each with its own
            encoder + policy copy and one torch thread): stronger than what the original runs
            for one task, kept as the harder baseline;
- sequential: pvr's ``evaluate`` with the N environments in this process, stepped one
            after another, one batched encoder + policy call per step;
- parallel: pvr's ``evaluate`` with the N environments in N processes (one AsyncVectorEnv),
            the same batched call, rendering and encoding one after the other;
- pipelined: pvr's default, the N processes in two groups (two AsyncVectorEnvs): one group
            renders while the other's frames are encoded (``pipelined / parallel`` is the
            overlap's gain).

With ``--repeats R`` the pvr parallel and pipelined runs alternate R times and the best
rate of each is kept (a loaded machine slows single runs at random).

With ``--runtime onnxruntime|openvino|auto`` one more column: pvr parallel with the
encoder's backbone run by that runtime (``pvr train --runtime``), on the same
threads. The last two columns compare the best pvr column with each original.

Env and model set-up is outside the timed part in all three (pvr's evaluation worker
builds its env processes once per run). Steps/s counts policy steps of all envs.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch

import pvr.headless

pvr.headless.configure()

import pvr.encoders as E  # noqa: E402
from pvr.bc.policy import ActionSpec, Policy  # noqa: E402
from pvr.encoders.base import encode  # noqa: E402
from pvr.evaluation.rollout import evaluate, make_eval_env  # noqa: E402
from pvr.evaluation.vector import available_cores, make_slots  # noqa: E402


def env_kwargs(name: str, length: int) -> dict:
    if name.startswith("DMC-"):  # reacher's control step is 0.02 s
        return {"image_size": 224, "task_kwargs": {"time_limit": length * 0.02 - 1e-6}}
    if name.startswith("MiniGrid-"):
        return {"max_steps": length}
    return {}


def build(encoder: str, name: str, kw: dict):
    env = make_eval_env(name, kw)
    action = ActionSpec.from_space(env.action_space)
    env.close()
    torch.manual_seed(0)
    enc = E.create(encoder, pretrained=False)
    return enc, Policy(enc.dim, action, hidden_size=256), action


def _original_actor(encoder: str, name: str, kw: dict, episodes: list[int], barrier, out,
                    threads: int | None = 1) -> None:
    """One actor of the original's scheme: its own env, encoder and policy, one frame at a time
    (``threads=None``: torch's default, as the original's test process)."""
    if threads:
        torch.set_num_threads(threads)
    enc, policy, _ = build(encoder, name, kw)
    env = make_eval_env(name, kw)
    enc.eval(), policy.eval()
    with torch.inference_mode():  # warm-up, as pvr's timed part follows one
        encode(enc, torch.as_tensor(env.reset(seed=0)[0])[None])
    barrier.wait()
    steps = 0
    with torch.inference_mode():
        for ep in episodes:
            obs, _ = env.reset(seed=ep)
            state, first, done = policy.initial_state(1), torch.ones(1, dtype=torch.bool), False
            while not done:
                feat = encode(enc, torch.as_tensor(obs)[None])
                action, state = policy.act(feat.float(), first, state)
                first = torch.zeros(1, dtype=torch.bool)
                obs, _, term, trunc, _ = env.step(action.numpy()[0])
                done, steps = term or trunc, steps + 1
    env.close()
    out.put((steps, time.perf_counter()))


def original(encoder: str, name: str, kw: dict, n: int, episodes: int, threads: int | None = 1) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=_original_actor, args=(encoder, name, kw, list(range(i, episodes, n)), barrier, out,
                                                       threads), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(s for s, _ in results) / (max(t for _, t in results) - t0)


def pvr_rate(enc, policy, name: str, kw: dict, n: int, episodes: int, parallel: bool,
             pipeline: bool = False) -> float:
    slots = make_slots(name, n, kw, parallel=parallel, pipeline=pipeline)
    try:
        evaluate(policy, enc, name, episodes=n, seed=10**6, num_envs=n, envs=slots, progress=False)  # warm-up
        t0 = time.perf_counter()
        r = evaluate(policy, enc, name, episodes=episodes, seed=0, num_envs=n, envs=slots, progress=False)
        dt = time.perf_counter() - t0
    finally:
        slots.close()
    return r["length"] * r["episodes"] / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", "--encoder", default="efficientnet_lite0,resnet50")
    ap.add_argument("--envs", default="DMC-reacher-easy,MiniGrid-Empty-8x8-v0")
    ap.add_argument("--num_envs", type=int, default=None, help="default: one per available core")
    ap.add_argument("--episodes_per_env", type=int, default=2)
    ap.add_argument("--length", type=int, default=20, help="policy steps per episode")
    ap.add_argument("--repeats", type=int, default=1, help="alternating pvr parallel / pipelined runs; best kept")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of pvr's process (default 1, as its evaluation worker)")
    ap.add_argument("--runtime", default="torch", help="also measure pvr parallel with this runtime (pvr train --runtime)")
    a = ap.parse_args()
    n = a.num_envs or available_cores()
    torch.set_num_threads(a.threads)
    load = open("/proc/loadavg").read().split()[0]
    print(f"{n} envs, {a.episodes_per_env * n} episodes of {a.length} steps; {available_cores()} cores, "
          f"load average {load}; torch {torch.get_num_threads()} threads in pvr's process")
    rt = a.runtime if a.runtime != "torch" else None
    print("| encoder | env | original as written: 1 proc, batch-1, default threads (steps/s) "
          "| original ×N: N procs, batch-1, 1 thread each (steps/s) | pvr sequential (steps/s) "
          "| pvr parallel (steps/s) | pvr pipelined (steps/s) | pipelined / parallel |"
          + (f" pvr parallel, {rt} (steps/s) |" if rt else "") + " best pvr / original | best pvr / original ×N |")
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if rt else ""))
    for encoder in a.encoders.split(","):
        for name in a.envs.split(","):
            kw = env_kwargs(name, a.length)
            episodes = a.episodes_per_env * n
            enc, policy, _ = build(encoder, name, kw)
            r_written = original(encoder, name, kw, 1, episodes, threads=None)
            r_orig = original(encoder, name, kw, n, episodes)
            r_seq = pvr_rate(enc, policy, name, kw, n, episodes, parallel=False)
            r_par = r_pipe = 0.0
            for _ in range(max(1, a.repeats)):
                r_par = max(r_par, pvr_rate(enc, policy, name, kw, n, episodes, parallel=True, pipeline=False))
                r_pipe = max(r_pipe, pvr_rate(enc, policy, name, kw, n, episodes, parallel=True, pipeline=True))
            extra, best = "", max(r_seq, r_par, r_pipe)
            if rt:
                from pvr.encoders.runtime import remove_runtime, runtime_info
                from pvr.evaluation.rollout import apply_eval_runtime

                apply_eval_runtime(enc, rt, name, kw, threads=a.threads)
                used = runtime_info(enc).runtime
                r_rt = 0.0
                for _ in range(max(1, a.repeats)):
                    r_rt = max(r_rt, pvr_rate(enc, policy, name, kw, n, episodes, parallel=True, pipeline=False))
                remove_runtime(enc)
                best = max(best, r_rt)
                extra = f" {r_rt:.1f} ({used}) |"
            print(f"| {encoder} | {name} | {r_written:.1f} | {r_orig:.1f} | {r_seq:.1f} | {r_par:.1f} | {r_pipe:.1f} "
                  f"| ×{r_pipe / r_par:.2f} |" + extra + f" ×{best / r_written:.2f} | ×{best / r_orig:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
