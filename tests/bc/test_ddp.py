"""2-process distributed data-parallel training on the CPU (gloo) matches one process."""
import json
import subprocess
import sys

import pytest

from pvr.collect import collect

ENV = "MiniGrid-DoorKey-5x5-v0"


def curve(run_dir):
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    return [(r["training_loss"], r["gradient_norm"]) for r in rows if r["training_loss"] is not None]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    data = tmp_path / "data"
    collect(ENV, 10, data, seed=7, env_kwargs={"max_steps": 20}, progress=False)
    args = ["train", "--env", ENV, "--embedding_name", "true_state", "--data_path", str(data), "--save_path",
            str(tmp_path / "runs"), "--epochs", "3", "--num_episodes_test", "2", "--num_envs_test", "2",
            "--hidden_size", "32", "--batch_size", "8", "--unroll_length", "10", "--learning_rate", "1e-3",
            "--disable_tensorboard"]  # (with --batch_norm each rank normalises by its own share: ~1e-3 apart)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "pvr", *args, "--xpid", "ddp"], capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "pvr", *args, "--xpid", "single"], capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = curve(tmp_path / "runs" / "ddp"), curve(tmp_path / "runs" / "single")
    assert len(a) == len(b) == 3
    # same global batch, gradients weighted by each rank's share: equal up to float reduction order
    for (la, na), (lb, nb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-4) and na == pytest.approx(nb, rel=1e-3)
    assert (tmp_path / "runs" / "ddp" / "done").exists()
    assert json.loads((tmp_path / "runs" / "ddp" / "run.json").read_text())["world_size"] == 2
    # only rank 0 wrote: one row per epoch, no duplicates
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "runs" / "ddp" / "stats.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]
