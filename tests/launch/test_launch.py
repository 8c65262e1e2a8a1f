"""``pvr launch`` / ``pvr sweep`` through submitit's local executor, and requeue on preemption.

Each local job is a real process (plus its evaluation process), so runs are tiny.
"""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import submitit

from pvr import cli
from pvr.bc.config import TrainConfig
from pvr.collect import collect
from pvr.launch import TrainJob
from pvr.launch.submission import grid, launch

ENVS = ("MiniGrid-DoorKey-5x5-v0", "MiniGrid-Empty-5x5-v0")
TINY = ["--epochs", "2", "--num_episodes_test", "2", "--num_envs_test", "2", "--hidden_size", "16",
        "--batch_size", "2", "--unroll_length", "8"]
LOCAL = ["--cluster", "local", "--timeout_min", "10", "--wait"]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    for env in ENVS:
        collect(env, 4, path, env_kwargs={"max_steps": 20}, progress=False)
    return path


@pytest.fixture(autouse=True)
def _one_thread_per_job(monkeypatch):
    # several local jobs share two cores: keep torch from oversubscribing them
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def rows_without_time(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "stats.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time")
    return rows


def test_launch_runs_one_job_to_completion_and_never_submits_it_twice(data_path, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["launch", "--cluster", "local", "--timeout_min", "10", "--", "--env", ENVS[0],
            "--embedding_name", "true_state", "--data_path", str(data_path), "--save_path", str(runs), *TINY]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    run_dir = runs / f"{ENVS[0]}-true_state-s1"
    assert "submitted job" in out and str(run_dir) in out
    job_id = out.split("submitted job ", 1)[1].split(":", 1)[0]
    assert json.loads((runs / "submitit" / "submitted.json").read_text())[run_dir.name]["job_id"] == job_id
    assert cli.main(args) == 0  # still queued or running: not submitted again
    assert f"queued or running as job {job_id}" in capsys.readouterr().out
    deadline = time.time() + 240
    while not (run_dir / "done").exists():
        assert time.time() < deadline, (runs / "submitit" / f"{job_id}_0_log.err").read_text()
        time.sleep(0.5)
    assert len(rows_without_time(run_dir)) == 3
    assert cli.main(args) == 0
    assert "nothing to submit: 1 run(s) finished" in capsys.readouterr().out


def test_launch_refuses_bad_input_before_queueing_anything(data_path, tmp_path, capsys):
    base = ["launch", "--cluster", "local", "--", "--data_path", str(data_path), "--save_path", str(tmp_path)]
    assert cli.main([*base, "--env", ENVS[0], "--embedding_name", "no_such_encoder"]) == 2
    assert "unknown encoder" in capsys.readouterr().err
    assert cli.main([*base, "--env", "MiniGrid-Empty-8x8-v0", "--embedding_name", "true_state"]) == 2
    assert "pvr collect" in capsys.readouterr().err
    assert not (tmp_path / "submitit").exists()


def test_grid_joins_environments_with_plus_and_names_runs_like_train():
    base = TrainConfig(env="", embedding_name="")
    cfgs = grid(base, "true_state,random1", "A+B,C", "1-2")
    assert len(cfgs) == 8
    assert cfgs[0].envs == ["A", "B"] and cfgs[0].run_id == "A+B-true_state-s1"
    assert {c.run_id for c in cfgs} >= {"C-random1-s2", "A+B-random1-s1"}


def test_sweep_of_two_seeds_then_a_rerun_submits_nothing(data_path, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["sweep", *LOCAL, "--embedding_name", "true_state", "--env", ENVS[1], "--seed", "1,2",
            "--data_path", str(data_path), "--save_path", str(runs), *TINY]
    assert cli.main(args) == 0
    assert "2 job(s) submitted" in capsys.readouterr().out
    assert all((runs / f"{ENVS[1]}-true_state-s{s}" / "done").exists() for s in (1, 2))
    assert cli.main([*args[:-len(TINY)], *TINY]) == 0
    assert "nothing to submit: 2 run(s) finished" in capsys.readouterr().out
    # the same grid with other settings is refused before anything is queued
    assert cli.main([*args, "--learning_rate", "0.5"]) == 2
    assert "different settings" in capsys.readouterr().err


@pytest.mark.slow  # 8 jobs, 16 processes: about a minute on two free cores
def test_sweep_2x2x2_completes_as_one_array_and_rerunning_submits_nothing(data_path, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["sweep", *LOCAL, "--embedding_name", "true_state,random1", "--env", ",".join(ENVS), "--seed", "1,2",
            "--data_path", str(data_path), "--save_path", str(runs), *TINY]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "8 job(s) submitted" in out
    dirs = sorted(p for p in runs.iterdir() if p.name != "submitit")
    assert [d.name for d in dirs] == sorted(f"{e}-{n}-s{s}" for e in ENVS for n in ("true_state", "random1")
                                            for s in (1, 2))
    assert all((d / "done").exists() for d in dirs)
    registry = json.loads((runs / "submitit" / "submitted.json").read_text())
    assert len(registry) == 8
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "nothing to submit: 8 run(s) finished" in out and "submitted job" not in out


def test_checkpoint_resubmits_the_same_call():
    cfg = TrainConfig(env=ENVS[0], embedding_name="true_state")
    job = TrainJob(["my_plugin"], "/somewhere")
    delayed = job.checkpoint(cfg)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, TrainJob) and delayed.args == (cfg,) and delayed.kwargs == {}
    assert (delayed.function.plugins, delayed.function.cwd) == (["my_plugin"], "/somewhere")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_preempted_job_is_requeued_and_resumes_to_the_same_stats(data_path, tmp_path, monkeypatch):
    from pvr.bc.trainer import train

    monkeypatch.chdir(tmp_path)
    kw = dict(env=ENVS[0], embedding_name="true_state", data_path=str(data_path), epochs=4, num_episodes_test=2,
              num_envs_test=2, hidden_size=16, batch_size=2, unroll_length=8, learning_rate=1e-3, seed=3)
    ns = cli.build_parser().parse_args(["launch", "--cluster", "local", "--timeout_min", "10"])
    job = launch(TrainConfig(save_path="preempted", **kw), ns, echo=lambda *_: None)
    stats = tmp_path / "preempted" / f"{ENVS[0]}-true_state-s3" / "stats.jsonl"
    deadline = time.time() + 240
    while not (stats.exists() and len(stats.read_text().splitlines()) >= 2):
        assert time.time() < deadline and job.state == "RUNNING", job.stderr()
        time.sleep(0.2)
    # what the local controller (and Slurm, via submitit) sends before a time limit or preemption
    (task,) = _children(int(job.job_id))
    os.kill(task, signal.SIGUSR2)
    run_dir = Path(job.result())
    log = job.stdout()
    assert "Requeued job" in job.stderr() + log and "resuming" in log
    reference = train(TrainConfig(save_path="straight", **kw), progress=False)
    assert rows_without_time(tmp_path / run_dir) == rows_without_time(reference)
