"""Training and evaluation throughput, each against the original's scheme in the same invocation.

    .venv/bin/python bench/bench_training.py [--steps 6] [--eval_envs 8]

1. training: samples/s of one optimisation step (forward, backward, RMSprop) of the
   original's policy size (1024-wide MLP + 2-layer LSTM, unroll 100, batch 32,
   2048-d ResNet-50 features), pvr's fused-LSTM stretches vs the original's
   step-by-step LSTM loop, on long episodes (200 steps, Habitat/DMC-like) and short
   ones (10 steps, MiniGrid-like); plus pvr's MLP policy (--disable_lstm).
2. evaluation with ResNet-50 (random weights: speed only) in the loop: pvr's one
   process stepping N MiniGrid envs with one batched encoder + policy call per step
   vs the original's scheme, N processes each with its own model copy and batch-1
   inference. Untrained policy, so every episode runs to the step limit and both
   sides take exactly the same number of steps.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch

from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.sampler import Demonstrations, batches, episode_starts

ENV = "MiniGrid-DoorKey-5x5-v0"


class StepByStep(Policy):
    """The original's LSTM unroll: one LSTM call per time step."""

    def forward(self, obs, first, state=()):
        T, B = obs.shape[:2]
        x = self.fc(obs.reshape(T * B, -1)).view(T, B, -1)
        outs = []
        for t in range(T):
            m = (~first[t]).float().view(1, B, 1)
            state = tuple(m * s for s in state)
            out, state = self.core(x[t : t + 1], state)
            outs.append(out)
        return self.head(torch.cat(outs)), state


def train_rate(policy: Policy, data: Demonstrations, steps: int) -> float:
    opt = torch.optim.RMSprop(policy.parameters(), lr=1e-4, alpha=0.99, eps=1e-5)
    it = batches(data, unroll=100, batch_size=32, seed=0, epoch=0)
    samples, t = 0, None
    for i in range(steps + 1):
        b = next(it)
        out, _ = policy(b["obs"], b["first"], policy.initial_state(b["obs"].shape[1]))
        loss = policy.loss(out, b["actions"], b["mask"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 40.0)
        opt.step()
        if i == 0:
            t = time.perf_counter()  # first step warms up
        else:
            samples += int(b["mask"].sum())
    return samples / (time.perf_counter() - t)


def bench_training(steps: int) -> None:
    rng = np.random.default_rng(0)
    n, d = 100 * 32 * (steps + 2), 2048
    for ep_len in (200, 10):
        # lengths vary (±50 %) so episode starts fall at different times in different windows
        lengths = rng.integers(ep_len // 2, ep_len * 3 // 2 + 1, size=2 * n // ep_len)
        ends = np.cumsum(lengths)
        ends = np.append(ends[ends < n], n)
        data = Demonstrations(rng.standard_normal((n, d), dtype=np.float32), rng.integers(0, 4, n),
                              episode_starts(ends, n))
        rates = {}
        for name, cls, lstm in (("original step-by-step LSTM", StepByStep, True), ("pvr fused LSTM", Policy, True),
                                ("pvr MLP (--disable_lstm)", Policy, False)):
            torch.manual_seed(0)
            rates[name] = train_rate(cls(d, ActionSpec(True, 4), hidden_size=1024, lstm=lstm), data, steps)
        base = rates["original step-by-step LSTM"]
        for name, r in rates.items():
            print(f"| train, episodes of ~{ep_len} steps | {name} | {r:.0f} samples/s | ×{r / base:.2f} |")


_barrier = None


def _init(barrier) -> None:
    global _barrier
    _barrier = barrier


def _one_env_process(args) -> tuple[int, float, float]:
    """The original's scheme: a process per environment, its own model copy, batch-1 inference.
    Model building is excluded: all processes start stepping together, after a barrier."""
    seed, episodes, max_steps, state = args
    torch.set_num_threads(1)
    import pvr.encoders
    from pvr.evaluation.rollout import evaluate

    enc = pvr.encoders.create("resnet50", pretrained=False).set_layout(micro_batch=None, channels_last=False)
    policy = Policy(enc.dim, ActionSpec(True, 7), hidden_size=1024)
    policy.load_state_dict(state)
    _barrier.wait()
    t0 = time.time()
    r = evaluate(policy, enc, ENV, episodes=episodes, num_envs=1, seed=seed, env_kwargs={"max_steps": max_steps},
                 progress=False)
    return int(round(r["length"] * r["episodes"])), t0, time.time()


def bench_eval(n_envs: int, max_steps: int) -> None:
    import pvr.encoders
    from pvr.evaluation.rollout import evaluate

    torch.manual_seed(0)
    enc = pvr.encoders.create("resnet50", pretrained=False)
    policy = Policy(enc.dim, ActionSpec(True, 7), hidden_size=1024)
    state = policy.state_dict()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n_envs)
    with ctx.Pool(n_envs, initializer=_init, initargs=(barrier,)) as pool:
        out = pool.map(_one_env_process, [(i, 1, max_steps, state) for i in range(n_envs)])
    steps_base = sum(o[0] for o in out)
    base = max(o[2] for o in out) - min(o[1] for o in out)
    t = time.perf_counter()
    r = evaluate(policy, enc, ENV, episodes=n_envs, num_envs=n_envs, env_kwargs={"max_steps": max_steps},
                 progress=False)
    ours = time.perf_counter() - t
    steps = int(round(r["length"] * r["episodes"]))
    assert steps == steps_base, (steps, steps_base)
    print(f"| evaluate resnet50, {n_envs} envs, {steps} steps | original: {n_envs} processes, batch-1, "
          f"{n_envs} model copies: {steps / base:.1f} steps/s | pvr: 1 process, batched: {steps / ours:.1f} "
          f"steps/s | ×{base / ours:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--eval_envs", type=int, default=8)
    ap.add_argument("--max_steps", type=int, default=25)
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    bench_training(a.steps)
    if a.eval_envs:
        bench_eval(a.eval_envs, a.max_steps)


if __name__ == "__main__":
    main()
