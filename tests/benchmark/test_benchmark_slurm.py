"""`pvr benchmark --cluster slurm`: collection is a Slurm job and each task's runs wait for it.

Slurm's client commands are replaced by small scripts on PATH that record every
submitted batch script and answer sacct with a chosen state, so what pvr would
hand to a real cluster (the sbatch lines, the dependency, the array) is checked
here without one.
"""
import json
import os
import re
import stat
import textwrap

import pytest

import pvr.collect
from pvr import cli

ENV = "MiniGrid-Empty-5x5-v0"
PROTOCOL = f"""
name: tinyslurm
seeds: [1, 2]
demonstrations: 2
epochs: 1
eval_every: 1
eval_episodes: 1
train: {{hidden_size: 8, batch_size: 2, unroll_length: 4, num_envs_test: 1}}
suites:
  grid:
    tasks: [{ENV}]
"""

SBATCH = """#!/bin/sh
n=$(cat "$FAKE_SLURM/count" 2>/dev/null || echo 100); n=$((n + 1)); echo $n > "$FAKE_SLURM/count"
for last; do :; done
cp "$last" "$FAKE_SLURM/sbatch-$n.sh"
echo "Submitted batch job $n"
"""
SACCT = """#!/bin/sh
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = "-j" ]; then echo "$2|$FAKE_SLURM_STATE|"; echo "$2_[0-99]|$FAKE_SLURM_STATE|"; fi
  shift
done
"""


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (("sbatch", SBATCH), ("sacct", SACCT), ("srun", "#!/bin/sh\nexit 1\n"),
                       ("scancel", "#!/bin/sh\n")):
        p = bin_dir / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(log))
    monkeypatch.setenv("FAKE_SLURM_STATE", "PENDING")
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(PROTOCOL))
    return path, tmp_path / "bench", log


def scripts(log):
    return {int(re.search(r"(\d+)", p.name).group(1)): p.read_text() for p in log.glob("sbatch-*.sh")}


def bench(path, save, *more):
    return cli.main(["benchmark", str(path), "--embedding_name", "true_state", "--save_path", str(save),
                     "--cluster", "slurm", "--cpus_per_task", "2", *more])


def test_collection_is_a_job_and_the_runs_depend_on_it(slurm, monkeypatch, capsys):
    path, save, log = slurm
    called = []
    monkeypatch.setattr(pvr.collect, "collect", lambda *a, **k: called.append(a))  # must not run here
    assert bench(path, save) == 0
    assert not called and not (save / "data" / f"{ENV}.zarr").exists()
    s = scripts(log)
    assert sorted(s) == [101, 102]
    collect, runs = s[101], s[102]
    assert "collect" in collect and "--gpus-per-node" not in collect.replace("--gpus-per-node=0", "")
    assert "--dependency=afterok:101" in runs and "--kill-on-invalid-dep=yes" in runs
    assert "--array=0-1" in runs and "dependency" not in collect
    out = capsys.readouterr().out
    assert f"collect {ENV}: submitted job 101" in out
    status = json.loads((save / "benchmark.json").read_text())["runs"]
    assert set(status.values()) == {"submitted: job 102_0", "submitted: job 102_1"}

    # rerun while Slurm reports both jobs pending: nothing is submitted again
    assert bench(path, save) == 0
    assert sorted(scripts(log)) == [101, 102]
    out = capsys.readouterr().out
    assert "queued or running as job 101, not resubmitted" in out and "queued or running as job 102_" in out

    # the collect job failed and Slurm cancelled the runs: a rerun submits both again, with the new dependency
    monkeypatch.setenv("FAKE_SLURM_STATE", "FAILED")
    assert bench(path, save) == 0
    s = scripts(log)
    assert sorted(s) == [101, 102, 103, 104]
    assert "collect" in s[103] and "--dependency=afterok:103" in s[104]


def test_runs_of_a_collected_task_are_submitted_without_dependency(slurm, capsys):
    path, save, log = slurm
    pvr.collect.collect(ENV, 2, save / "data", progress=False)
    assert bench(path, save, "--slurm", "exclude=node1") == 0
    s = scripts(log)
    assert list(s) == [101]
    assert "dependency" not in s[101] and "--exclude=node1" in s[101] and "--array=0-1" in s[101]
    assert f"collect {ENV}" not in capsys.readouterr().out
