"""`pvr benchmark` end to end on a tiny user protocol: collect, embed, train, evaluate, report, resume."""
import json
import textwrap
import time

import pytest

import pvr.collect
import pvr.data
from pvr import cli

ENV, OTHER = "MiniGrid-Empty-5x5-v0", "MiniGrid-DoorKey-5x5-v0"
PROTOCOL = f"""
name: tiny
description: a tiny MiniGrid check
seeds: [1, 2]
metric: final
demonstrations: 3
epochs: 2
eval_every: 1
eval_episodes: 2
train: {{hidden_size: 16, batch_size: 2, unroll_length: 8, num_envs_test: 2}}
suites:
  grid:
    tasks: [{ENV}]
    env_kwargs: {{max_steps: 20}}
  broken:
    tasks: [{OTHER}]
    demonstrations: 2
"""


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """The protocol file, and a collector that fails on OTHER as a simulator broken on this machine would."""
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(PROTOCOL))
    real = pvr.collect.collect

    def collect(env, *a, **kw):
        if env == OTHER:
            raise RuntimeError("reset failed (simulated broken simulator)")
        return real(env, *a, **kw)

    monkeypatch.setattr(pvr.collect, "collect", collect)
    return path, tmp_path / "bench"


def args(path, save, *more):
    return ["benchmark", str(path), "--embedding_name", "random,true_state", "--save_path", str(save), *more]


@pytest.mark.slow
def test_tiny_benchmark_runs_reports_and_a_rerun_only_skips(setup, capsys):
    path, save = setup
    assert cli.main(args(path, save)) == 0
    out = capsys.readouterr().out
    assert f"{OTHER}: CANNOT RUN HERE, skipped (collecting failed: RuntimeError: reset failed" in out

    m = json.loads((save / "benchmark.json").read_text())
    assert {k: m[k] for k in ("protocol", "tasks", "encoders", "seeds", "metric")} == {
        "protocol": "tiny", "tasks": [ENV, OTHER], "encoders": ["random", "true_state"], "seeds": [1, 2],
        "metric": "final"}
    assert m["suites"] == {ENV: "grid", OTHER: "broken"}
    assert "reset failed" in m["unavailable"][OTHER]
    runs = {f"{ENV}-{e}-s{s}" for e in ("random", "true_state") for s in (1, 2)}
    assert {k for k, v in m["runs"].items() if v == "done"} == runs
    for r in runs:
        d = save / "runs" / r
        assert (d / "done").exists()
        cfg = json.loads((d / "config.json").read_text())
        assert (cfg["epochs"], cfg["num_episodes_test"], cfg["num_trajectories_train"]) == (2, 2, 3)
        assert cfg["data_path"] == str(save / "data")
        rows = [json.loads(x) for x in (d / "stats.jsonl").read_text().splitlines()]
        assert [row["epoch"] for row in rows if row["test"]] == [0, 1, 2]  # eval_every 1
    assert pvr.collect.store_path(m["data_path"], ENV).is_dir()  # the dataset is where the manifest says
    timings = [json.loads((save / "runs" / r / "timings.json").read_text()) for r in sorted(runs)]
    assert all("embed" in t for t in timings)
    assert sum(t["collect"] > 0 for t in timings) == 1  # collected once: counted once

    # the report reads the manifest: the broken task is listed as missing, the grid task scored
    assert cli.main(["report", str(save)]) == 0
    capsys.readouterr()
    report = json.loads((save / "report.json").read_text())
    assert report["protocol"] == "tiny"
    status = {(r["task"], r["encoder"], r["seed"]): r["status"] for r in report["runs"]}
    assert all(status[(ENV, e, s)] == "done" for e in ("random", "true_state") for s in (1, 2))
    assert all(status[(OTHER, e, s)].startswith("missing") for e in ("random", "true_state") for s in (1, 2))
    assert (save / "report.md").read_text().count("tiny") >= 1

    # rerun: nothing is trained again, the stats are untouched
    before = {r: (save / "runs" / r / "stats.jsonl").stat().st_mtime_ns for r in runs}
    t0 = time.time()
    assert cli.main(args(path, save)) == 0
    out = capsys.readouterr().out
    assert out.count("finished, skipped") == 4 and "train + evaluate" not in out
    assert time.time() - t0 < 60
    assert before == {r: (save / "runs" / r / "stats.jsonl").stat().st_mtime_ns for r in runs}

    # a run lost (killed before its first checkpoint, directory removed): only that one runs again
    import shutil

    shutil.rmtree(save / "runs" / f"{ENV}-random-s2")
    assert cli.main(args(path, save)) == 0
    out = capsys.readouterr().out
    assert out.count("finished, skipped") == 3 and out.count("train + evaluate") == 1
    assert (save / "runs" / f"{ENV}-random-s2" / "done").exists()


@pytest.mark.slow
def test_jobs_train_runs_at_once_on_disjoint_cores(setup, capsys):
    import os
    import re

    path, save = setup
    more = ["--embedding_name", "true_state", "--jobs", "2"]
    assert cli.main(["benchmark", str(path), "--save_path", str(save), *more]) == 0
    out = capsys.readouterr().out
    cores = len(os.sched_getaffinity(0))
    assert f"training 2 run(s), {min(2, cores)} at a time" in out
    runs = [save / "runs" / f"{ENV}-true_state-s{s}" for s in (1, 2)]
    assert all((r / "done").exists() for r in runs)
    used = [set(m.split(",")) for m in re.findall(r": done \(on core\(s\) ([\d,]+)\)", out)]
    assert len(used) == 2
    if cores >= 2:  # each worker was pinned to its own share
        assert not used[0] & used[1]
    m = json.loads((save / "benchmark.json").read_text())
    assert all(m["runs"][r.name] == "done" for r in runs)
    assert cli.main(["benchmark", str(path), "--save_path", str(save), *more]) == 0
    assert capsys.readouterr().out.count("finished, skipped") == 2
    assert cli.main(["benchmark", str(path), "--save_path", str(save), "--embedding_name", "true_state",
                     "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_cluster_debug_goes_through_the_submission_machinery(setup, capsys):
    path, save = setup
    base = ["benchmark", str(path), "--embedding_name", "true_state", "--seeds", "1", "--save_path", str(save),
            "--cluster", "debug", "--timeout_min", "5"]
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert "submitted job" in out and "1 job(s) submitted to debug" in out
    run = save / "runs" / f"{ENV}-true_state-s1"
    assert (run / "done").exists()
    assert json.loads((save / "runs" / "submitit" / "submitted.json").read_text())[run.name]["cluster"] == "debug"
    assert json.loads((save / "benchmark.json").read_text())["runs"][run.name] == "done"
    assert cli.main(base) == 0
    assert "nothing to submit: 1 run(s) finished" in capsys.readouterr().out


def test_a_dataset_collected_with_other_settings_is_refused_and_kept(setup, tmp_path, capsys):
    path, save = setup
    data = tmp_path / "data"
    pvr.collect.collect(ENV, 3, data, env_kwargs={"max_steps": 30}, progress=False)
    assert cli.main([*args(path, save), "--data_path", str(data)]) == 2
    err = capsys.readouterr().err
    assert "collected with env_kwargs {'max_steps': 30}" in err and "another --data_path" in err
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        assert ds.num_episodes == 3


@pytest.mark.slow
def test_cortexbench_mujoco_settings_run_one_metaworld_and_one_dmc_task_end_to_end(tmp_path, capsys):
    """cortexbench-mujoco's recipe, metric, normaliser and seeds on one MetaWorld and one DMC task, tiny sizes."""
    from pvr.benchmark import protocol as P

    ref = P.load("cortexbench-mujoco")
    mw, dmc = "MetaWorld-drawer-open-v3", "DMC-reacher-easy"
    assert {mw, dmc} <= {t.env for t in ref.tasks}
    path = tmp_path / "cb-tiny.yaml"
    path.write_text(textwrap.dedent(f"""
        name: cb-tiny
        seeds: [{ref.seeds[0]}]
        metric: {ref.metric}
        normaliser: {json.dumps(ref.normaliser)}
        recipe: {ref.recipe}
        demonstrations: 2
        epochs: 2
        eval_every: 1
        eval_episodes: 1
        image_size: 64
        train: {{num_envs_test: 1}}
        suites:
          MetaWorld:
            tasks: [{mw}]
            env_kwargs: {{max_episode_steps: 150}}
          DMC:
            tasks: [{dmc}]
            env_kwargs: {{task_kwargs: {{time_limit: 2}}}}
            keep_failures: true       # 100 steps are too few for DMC's success rule; any episode will do
    """))
    save = tmp_path / "bench"
    assert cli.main(["benchmark", str(path), "--embedding_name", "true_state,random", "--save_path", str(save)]) == 0
    out = capsys.readouterr().out
    assert "CANNOT RUN HERE" not in out, out
    for env in (mw, dmc):
        for enc in ("true_state", "random"):
            d = save / "runs" / f"{env}-{enc}-s{ref.seeds[0]}"
            assert (d / "done").exists(), out
            cfg = json.loads((d / "config.json").read_text())
            assert (cfg["recipe"], cfg["num_input_frames"], cfg["frame_stack_mode"]) == ("cortexbench", 3, "diff")
    assert cli.main(["report", str(save)]) == 0
    report = json.loads((save / "report.json").read_text())
    assert report["metric"] == "best" and report["protocol"] == "cb-tiny"
    assert {r["status"] for r in report["runs"]} == {"done"}


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    import os

    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_a_jobs_benchmark_leaves_no_training_process(tmp_path):
    """SIGKILL of `pvr benchmark --jobs 2`: its pool workers (each a trainer with an evaluation process
    and environment processes) stop too, instead of training on unowned."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "long.yaml"  # long enough to be training when killed
    path.write_text(textwrap.dedent(PROTOCOL).replace("epochs: 2", "epochs: 100000")
                    .split("  broken:")[0])
    save = tmp_path / "bench"
    below: list[int] = []
    proc = subprocess.Popen([sys.executable, "-m", "pvr", "benchmark", str(path), "--embedding_name", "true_state",
                             "--save_path", str(save), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(save.glob("runs/*/stats.jsonl")):
            time.sleep(0.5)
        assert list(save.glob("runs/*/stats.jsonl")), "no run started training"
        below = _descendants(proc.pid)
        assert below
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.time() + 30  # the trainers stop on SIGTERM; their evaluation processes follow
        while any(_alive(p) for p in below) and time.time() < deadline:
            time.sleep(0.2)
        assert not [p for p in below if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in below + _descendants(proc.pid):  # orphans are no longer below proc
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
