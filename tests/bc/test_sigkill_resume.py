"""20 runs, each SIGKILLed at a random moment, resume and end with the stats of an uninterrupted run."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvr.collect import collect

ENV = "MiniGrid-DoorKey-5x5-v0"


def rows(run_dir: Path) -> list[dict]:
    out = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    for r in out:
        r.pop("time")
    return out


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_twenty_random_sigkills_resume_to_identical_stats(tmp_path):
    data = tmp_path / "data"
    collect(ENV, 6, data, seed=3, env_kwargs={"max_steps": 16}, progress=False)

    def args(save):
        return [sys.executable, "-m", "pvr", "train", "--env", ENV, "--embedding_name", "true_state",
                "--data_path", str(data), "--save_path", str(save), "--xpid", "run", "--epochs", "5",
                "--num_episodes_test", "2", "--num_envs_test", "2", "--hidden_size", "16", "--batch_size", "2",
                "--unroll_length", "8", "--learning_rate", "1e-3", "--seed", "4", "--disable_tensorboard"]

    t = time.time()
    ref = subprocess.run(args(tmp_path / "ref"), capture_output=True, text=True, timeout=600)
    duration = time.time() - t
    assert ref.returncode == 0, ref.stderr[-2000:]
    expected = rows(tmp_path / "ref" / "run")
    assert [r["epoch"] for r in expected] == [0, 1, 2, 3, 4, 5]

    rng = random.Random(12345)
    for i in range(20):
        save = tmp_path / f"k{i}"
        proc = subprocess.Popen(args(save), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, duration))
        proc.send_signal(signal.SIGKILL)  # the parent only: its evaluation process must die with it
        proc.wait()
        again = subprocess.run(args(save), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, (i, again.stderr[-2000:])
        assert rows(save / "run") == expected, f"run {i} (killed at a random moment) diverged"
        assert (save / "run" / "done").exists()
    # no process of ours outlived its parent
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert [p for p in left if int(p) != os.getpid()] == []
