"""Peak resident memory of embedding and of training-data loading vs dataset size, against the original.

    .venv/bin/python bench/bench_memory.py --sizes 1,8 --baseline_sizes 1,2 --work /tmp/pvr_bench_mem

For each size S (GB of raw 224x224 RGB frames) it writes a synthetic store
(compressible frames: a random 28x28 image per episode, upsampled, plus a moving
stripe), then measures, each in a fresh process (peak RSS from ``wait4``):

- ``pvr embed`` (the CLI, a cheap 8x8 average-pool encoder so the run measures
  the data path, not a convnet);
- training-data loading: ``pvr.bc.trainer.load_demonstrations`` (features + actions);
- the original's scheme (for the baseline sizes): ``pickle.load`` of the whole
  legacy pickle (what the original did before embedding), then the same
  encoder over its trajectories.

Everything it writes lives under ``--work`` and is deleted at the end.

``--eval_envs 1,2,4`` (with ``--sizes '' --baseline_sizes ''`` to skip the above) measures
the evaluation process instead: an :class:`pvr.evaluation.worker.EvalWorker` with
``--eval_encoder`` (random init) evaluating on MiniGrid with N env processes; resident
(RSS) and proportional (PSS) memory of the evaluation process and of each env process,
sampled during the evaluation, and whether an env process mapped libtorch. One model
copy: the evaluation process's memory does not grow with N.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAME = (224, 224, 3)
EP_LEN = 500
ENV = "Bench-v0"
PLUGIN = '''
import torch
from torch import nn
from pvr.encoders import Encoder, register_encoder

class Pool(nn.Module):
    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x, 8)

@register_encoder("avgpool8", family="bench", dim=192, input_size=224)
def avgpool8(**kw):
    return Encoder("avgpool8", Pool(), None, dim=192, micro_batch=None)
'''

LOAD = '''
import sys
import pvr.plugins
pvr.plugins.load(["bench_plugin"])
from pvr.bc.config import TrainConfig
from pvr.bc.trainer import load_demonstrations
demos, facts = load_demonstrations(TrainConfig(env=sys.argv[1], embedding_name="avgpool8", data_path=sys.argv[2]))
print(facts["envs"])
'''

BASELINE = '''
import pickle, sys
import numpy as np, torch
import pvr.plugins
pvr.plugins.load(["bench_plugin"])
import pvr.encoders
enc = pvr.encoders.create("avgpool8")
with open(sys.argv[1], "rb") as f:
    data = pickle.load(f)          # the original: the whole pickle in RAM
feats = []
with torch.inference_mode():
    for obs in data["obs"]:        # then every trajectory through the encoder
        for a in range(0, len(obs), 64):
            feats.append(enc(torch.from_numpy(obs[a:a + 64])).numpy())
print(sum(len(f) for f in feats))
'''


def frames_for(ep: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(ep)
    base = np.repeat(np.repeat(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), 8, 0), 8, 1)
    out = np.broadcast_to(base, (n,) + FRAME).copy()
    for t in range(n):  # a moving stripe: every frame differs
        out[t, :, (t * 3) % 224] = 255
    return out


def episodes_for(gb: float) -> int:
    return max(1, int(round(gb * 1e9 / (EP_LEN * np.prod(FRAME)))))


def make_store(path: Path, gb: float) -> int:
    import pvr.data

    rng = np.random.default_rng(0)
    with pvr.data.create(path, env=ENV) as ds:
        for ep in range(episodes_for(gb)):
            ds.append_episode(obs=frames_for(ep, EP_LEN), action=rng.integers(0, 4, EP_LEN),
                              true_state=rng.standard_normal((EP_LEN, 4)))
        return ds.num_frames


def make_pickle(path: Path, gb: float) -> None:
    rng = np.random.default_rng(0)
    n = episodes_for(gb)
    data = {"obs": [], "action": [], "done": [], "true_state": []}
    for ep in range(n):
        data["obs"].append(frames_for(ep, EP_LEN))
        data["action"].append(rng.integers(0, 4, EP_LEN))
        data["done"].append(np.r_[np.zeros(EP_LEN - 1, bool), True])
        data["true_state"].append(rng.standard_normal((EP_LEN, 4)).astype(np.float32))
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=4)


def peak_rss(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one child process."""
    t = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.time() - t


def _memory(pid: int) -> tuple[float, float, bool]:
    """(RSS MB, PSS MB, libtorch mapped) of a live process."""
    rss = pss = 0
    for line in open(f"/proc/{pid}/smaps_rollup"):
        k, *v = line.split()
        if k == "Rss:":
            rss = int(v[0])
        elif k == "Pss:":
            pss = int(v[0])
    return rss / 1024, pss / 1024, "libtorch" in open(f"/proc/{pid}/maps").read()


def eval_memory(encoder: str, counts: list[int], env: str = "MiniGrid-Empty-8x8-v0") -> list[tuple]:
    """Peak memory of the evaluation process and its env processes, for each number of envs."""
    import gymnasium as gym

    import pvr.headless

    pvr.headless.configure()
    from pvr.bc.policy import ActionSpec, Policy
    from pvr.embed import make_encoder
    from pvr.evaluation.worker import EvalWorker

    enc = make_encoder(encoder, pretrained=False)
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    policy = Policy(enc.dim, action)
    rows = []
    for n in counts:
        spec = dict(plugins=[], embedding_name=encoder, encoder_kwargs={"pretrained": False},
                    fingerprint=enc.fingerprint, obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={},
                    envs=[env], env_kwargs={env: {"max_steps": 10}}, device="cpu", episodes=2 * n, num_envs=n,
                    seed=0, num_input_frames=1, frame_stack_mode="cat", progress=False)
        with EvalWorker(spec) as w:
            w.submit(0, {"policy": policy.state_dict()})
            peak_w, peak_env, torch_in_env = (0.0, 0.0), (0.0, 0.0), False
            kids: list[int] = []
            while w.result(block=False) is None:
                try:
                    kids = [int(c) for t in os.listdir(f"/proc/{w.proc.pid}/task")
                            for c in open(f"/proc/{w.proc.pid}/task/{t}/children").read().split()] or kids
                    rss, pss, _ = _memory(w.proc.pid)
                    peak_w = max(peak_w, (rss, pss))
                    for k in kids:
                        rss, pss, has_torch = _memory(k)
                        peak_env, torch_in_env = max(peak_env, (rss, pss)), torch_in_env or has_torch
                except (FileNotFoundError, ProcessLookupError):
                    pass
                time.sleep(0.2)
        rows.append((encoder, n, len(kids), peak_w, peak_env, torch_in_env))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1,8")
    p.add_argument("--baseline_sizes", default="1,2")
    p.add_argument("--work", default="/tmp/pvr_bench_mem")
    p.add_argument("--eval_envs", default="", help="e.g. 1,2,4: memory of the evaluation process per env count")
    p.add_argument("--eval_encoder", default="resnet50")
    a = p.parse_args()
    if a.eval_envs:
        rows = eval_memory(a.eval_encoder, [int(x) for x in a.eval_envs.split(",") if x])
        print("\n| encoder | envs | env processes | evaluation process RSS / PSS (MB) "
              "| one env process RSS / PSS (MB) | env process maps libtorch |\n|---|---|---|---|---|---|")
        for enc, n, k, (wr, wp), (er, ep), t in rows:
            print(f"| {enc} | {n} | {k} | {wr:.0f} / {wp:.0f} | {er:.0f} / {ep:.0f} | {'yes' if t else 'no'} |")
        if not a.sizes and not a.baseline_sizes:
            return
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "bench_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    py = sys.executable
    rows = []
    try:
        for gb in [float(s) for s in a.sizes.split(",") if s]:
            data = work / f"d{gb:g}"
            t = time.time()
            n = make_store(data / f"{ENV}.zarr", gb)
            disk = sum(f.stat().st_size for f in (data / f"{ENV}.zarr").rglob("*") if f.is_file()) / 1e9
            print(f"{gb:g} GB: {n} frames, store {disk:.2f} GB on disk, written in {time.time() - t:.0f} s", flush=True)
            rss, sec = peak_rss([py, "-m", "pvr", "--plugin", "bench_plugin", "embed", "--env", ENV, "--embedding_name",
                                 "avgpool8", "--data_path", str(data), "--batch_size", "64", "--quiet"], env)
            rows.append(("pvr embed", gb, n, rss, sec))
            print(rows[-1], flush=True)
            rss, sec = peak_rss([py, "-c", LOAD, ENV, str(data)], env)
            rows.append(("pvr training-data loading", gb, n, rss, sec))
            print(rows[-1], flush=True)
            shutil.rmtree(data)
        for gb in [float(s) for s in a.baseline_sizes.split(",") if s]:
            pk = work / f"b{gb:g}.pickle"
            make_pickle(pk, gb)
            rss, sec = peak_rss([py, "-c", BASELINE, str(pk)], env)
            rows.append(("original: whole pickle + embed", gb, episodes_for(gb) * EP_LEN, rss, sec))
            print(rows[-1], flush=True)
            pk.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| what | frames (GB raw) | frames | peak RSS (MB) | wall (s) |\n|---|---|---|---|---|")
    for what, gb, n, rss, sec in rows:
        print(f"| {what} | {gb:g} | {n} | {rss:.0f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
