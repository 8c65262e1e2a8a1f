"""Expert quality and cost: run the real ``pvr collect`` command, then read what it stored.

For each ``--env`` the script runs ``bin/pvr collect --env ENV --episodes N
--data_path <tmp> --keep-failures [extra args]`` as a subprocess (exactly what a
user runs), times the whole command, opens the dataset and prints one markdown row:
per-episode returns, success count (the suite's success rule, from the run's
progress record), and wall-clock seconds per episode. Failures are kept so the
success rate is measured over every attempt.

    .venv/bin/python bench/bench_experts.py --env DMC-walker-walk --episodes 2 \\
        [--expert_kwargs '{"threads": 1}'] [--env_kwargs '{"image_size": 64}']
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(env: str, episodes: int, extra: list[str], data_path: Path) -> dict:
    cmd = [str(ROOT / "bin" / "pvr"), "collect", "--env", env, "--episodes", str(episodes), "--data_path",
           str(data_path), "--keep-failures", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import pvr.data
    from pvr.collect import store_path

    ds = pvr.data.open(store_path(data_path, env))
    try:
        returns = [float(np.sum(ds.episode(i)["reward"])) for i in range(ds.num_episodes)]
        lengths = [int(ds.episode(i)["reward"].shape[0]) for i in range(ds.num_episodes)]
        meta = dict(ds.meta)
    finally:
        ds.close()
    shown = " ".join(a if a.startswith("-") or a.replace("-", "").isalnum() else shlex.quote(a) for a in cmd[1:])
    return {"env": env, "command": "pvr " + shown.replace(str(data_path), "D"), "returns": returns,
            "lengths": lengths, "successes": meta.get("collect_successes"), "wall_s": wall,
            "s_per_episode": wall / max(1, len(returns)), "expert": meta.get("expert")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", action="append", required=True)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--keep", default=None, help="keep the datasets under this folder (default: a temp dir)")
    a, extra = p.parse_known_args()
    for env in a.env:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(env, a.episodes, extra, Path(a.keep or tmp))
        rets = ", ".join(f"{x:.0f}" if abs(x) >= 10 else f"{x:.2f}" for x in r["returns"])
        no_success = env.startswith(("DMC-", "Atari-")) or env.split("-v")[0] in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer")
        succ = f"{r['successes']}/{len(r['returns'])} success; " if r["successes"] is not None and not no_success else ""
        print(f"| {env} | `{r['command']}` | {len(r['returns'])} | {succ}return {rets} (mean "
              f"{np.mean(r['returns']):.1f}) | {r['s_per_episode']:.1f} |", flush=True)
        print(json.dumps({k: r[k] for k in ("env", "returns", "lengths", "successes", "wall_s", "expert")}),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
