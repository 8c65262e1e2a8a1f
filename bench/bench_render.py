"""Rendered frames per second per environment suite at 224 px: MuJoCo's default rendering vs pvr's fast preset.

Each row times ``env.step`` with random actions (one rendered frame per step, as
collection and evaluation see it; physics included). MuJoCo-based suites are timed
twice in the same run — ``fast_render=False`` (MuJoCo's default: shadows,
reflections, 4x MSAA) and the default fast preset — alternating short rounds so
that machine load hits both alike. Other suites have one renderer and one figure.

    .venv/bin/python bench/bench_render.py [--seconds 2] [--rounds 3] [--size 224]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import pvr.envs

MUJOCO = [("Gymnasium MuJoCo", "HalfCheetah-v5", {}), ("DMC", "DMC-cheetah-run", {}),
          ("HMS (Adroit)", "HMS-relocate-v0", {}), ("HMS (Adroit)", "HMS-pen-v0", {}),
          ("Kitchen", "Kitchen-microwave", {})]
OTHERS = [("Gymnasium classic control", "CartPole-v1", {}), ("Atari", "Atari-BreakoutDeterministic-v4", {}),
          ("MiniGrid", "MiniGrid-DoorKey-8x8-v0", {"tile_size": 32}),  # 7x32 = 224 px
          ("ImageNav (MiniWorld)", "ImageNav-apartment_0", {})]


def steps_per_second(env, seconds: float) -> float:
    env.action_space.seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def size_kw(name: str, size: int, kw: dict) -> dict:
    return kw if name.startswith("MiniGrid") else {"image_size": size, **kw}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="per round and mode")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {a.size} px, {a.rounds} rounds x {a.seconds} s per mode")
    print("| suite | env | MuJoCo default (frames/s) | fast preset (frames/s) | speed-up |")
    print("|---|---|---|---|---|")
    for suite, name, kw in MUJOCO:
        envs = {fast: pvr.envs.make(name, fast_render=fast, **size_kw(name, a.size, kw)) for fast in (False, True)}
        for env in envs.values():
            env.reset(seed=0)
            steps_per_second(env, 0.3)  # warm-up (contexts, caches)
        rates = {False: [], True: []}
        for _ in range(a.rounds):
            for fast, env in envs.items():
                rates[fast].append(steps_per_second(env, a.seconds))
        slow, fast = float(np.median(rates[False])), float(np.median(rates[True]))
        print(f"| {suite} | {name} | {slow:.1f} | {fast:.1f} | x{fast / slow:.1f} |", flush=True)
        for env in envs.values():
            env.close()
    for suite, name, kw in OTHERS:
        env = pvr.envs.make(name, **size_kw(name, a.size, kw))
        obs, _ = env.reset(seed=0)
        steps_per_second(env, 0.3)
        rate = float(np.median([steps_per_second(env, a.seconds) for _ in range(a.rounds)]))
        print(f"| {suite} | {name} ({obs.shape[0]}x{obs.shape[1]}) | — | {rate:.1f} (one renderer) | — |", flush=True)
        env.close()


if __name__ == "__main__":
    main()
