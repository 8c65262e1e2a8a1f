"""pvr train end to end on tiny data: the dataset/env precheck, evaluation points and waits, --disable_save,
--debug, and what reaches the evaluation process."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pvr.data
from pvr.bc import trainer
from pvr.bc.config import TrainConfig
from pvr.collect import collect
from pvr.errors import PvrError

ENV = "MiniGrid-DoorKey-5x5-v0"  # 56x56x3 frames, 81-value true_state, 7 actions at max_steps 16


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    collect(ENV, 22, d, seed=3, env_kwargs={"max_steps": 16}, progress=False)
    return d


def tiny(data_path, save_path, **kw):
    base = dict(env=ENV, embedding_name="true_state", data_path=str(data_path), save_path=str(save_path),
                xpid="run", epochs=10, num_episodes_test=2, num_envs_test=2, hidden_size=16, batch_size=2,
                unroll_length=8, learning_rate=1e-3, seed=3, disable_tensorboard=True)
    base.update(kw)
    return TrainConfig(**base)


def synthetic(path: Path, *, frame=(56, 56, 3), state=81, episodes=2, n=5):
    """A dataset claiming to be ENV, with frames or a state of another size."""
    rng = np.random.default_rng(0)
    ds = pvr.data.create(path, env=ENV, meta={"env_kwargs": {"max_steps": 16}})
    for _ in range(episodes):
        ds.append_episode(obs=rng.integers(0, 255, (n, *frame), dtype=np.uint8),
                          action=rng.integers(0, 7, n).astype(np.int64),
                          true_state=rng.normal(size=(n, state)).astype(np.float32))
    ds.close()


@pytest.mark.parametrize("embedding, kw, message", [
    ("true_state", dict(state=4), r"has true_state of shape \(4,\) but MiniGrid-DoorKey-5x5-v0 built with "
                                  r"env_kwargs \{\"max_steps\": 16\} gives \(81,\)"),
    ("random", dict(frame=(32, 32, 3)), r"has frames of shape \(32, 32, 3\) \(1 view\) but .* renders \(56, 56, 3\)"),
])
def test_a_dataset_that_does_not_fit_its_env_fails_in_one_line_before_any_write(tmp_path, embedding, kw, message):
    data = tmp_path / "data"
    data.mkdir()
    synthetic(data / f"{ENV}.zarr", **kw)
    save = tmp_path / "runs"
    with pytest.raises(PvrError, match=message) as err:
        trainer.train(tiny(data, save, embedding_name=embedding), progress=False)
    assert "\n" not in str(err.value) and "--env_kwargs" in str(err.value)
    assert not save.exists()  # no run directory
    with pvr.data.open(data / f"{ENV}.zarr") as ds:
        assert "features" not in ds.group  # and no features were embedded


def test_the_cli_prints_the_mismatch_and_exits_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    synthetic(data / f"{ENV}.zarr", state=4)
    r = subprocess.run([sys.executable, "-m", "pvr", "train", "--env", ENV, "--embedding_name", "true_state",
                        "--data_path", str(data), "--save_path", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "has true_state of shape (4,)" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_wrong_action_count_is_found_too(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    ds = pvr.data.create(data / f"{ENV}.zarr", env=ENV, meta={"env_kwargs": {"max_steps": 16}})
    ds.append_episode(obs=np.zeros((3, 56, 56, 3), np.uint8), action=np.array([0, 9, 1]),
                      true_state=np.zeros((3, 81), np.float32))
    ds.close()
    with pytest.raises(PvrError, match="has action 9 but .* has only 7 actions"):
        trainer.train(tiny(data, tmp_path / "runs"), progress=False)


class FakeWorker:
    """Stands in for the evaluation process: an evaluation finishes only when waited for, so the test sees
    exactly where training waits."""

    log: list = []
    specs: list = []
    instances: list = []
    threads: dict = {}
    done_when_polled = False

    def __init__(self, spec, run_dir=None):
        FakeWorker.specs.append(spec)
        FakeWorker.instances.append(self)
        self.in_flight = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def submit(self, epoch, weights, threads=None):
        assert self.in_flight is None
        FakeWorker.log.append(("submit", epoch))
        FakeWorker.threads[epoch] = threads
        self.in_flight = epoch

    def busy(self):
        return self.in_flight is not None

    def evaluating(self):
        return self.in_flight is not None

    def result(self, block=True):
        if not block and not FakeWorker.done_when_polled:
            return None  # still running
        FakeWorker.log.append(("wait", self.in_flight))
        epoch, self.in_flight = self.in_flight, None
        return epoch, {ENV: {"return": float(epoch), "success": 0.0}}


@pytest.fixture
def fake_worker(monkeypatch):
    FakeWorker.log, FakeWorker.specs, FakeWorker.instances, FakeWorker.threads = [], [], [], {}
    FakeWorker.done_when_polled = False
    monkeypatch.setattr(trainer, "EvalWorker", FakeWorker)
    trained = []
    real = trainer.train_epoch

    def recording(policy, opt, sched, data, cfg, epoch, *rest, **kw):
        FakeWorker.log.append(("train", epoch))
        trained.append(epoch)
        return real(policy, opt, sched, data, cfg, epoch, *rest, **kw)

    monkeypatch.setattr(trainer, "train_epoch", recording)
    return FakeWorker


def rows(run_dir):
    out = [json.loads(line) for line in (Path(run_dir) / "stats.jsonl").read_text().splitlines()]
    for r in out:
        r.pop("time")
    return out


def test_training_waits_only_at_evaluation_points(data_path, tmp_path, fake_worker):
    run = trainer.train(tiny(data_path, tmp_path), progress=False)
    # --epochs 10: the original evaluates at 0, 1, 2, 3, 4, 5, 6, 8, 10 (is_essential_save)
    assert fake_worker.log == [
        ("submit", 0), ("train", 1), ("wait", 0), ("submit", 1), ("train", 2), ("wait", 1), ("submit", 2),
        ("train", 3), ("wait", 2), ("submit", 3), ("train", 4), ("wait", 3), ("submit", 4),
        ("train", 5), ("wait", 4), ("submit", 5), ("train", 6), ("wait", 5), ("submit", 6),
        ("train", 7), ("train", 8), ("wait", 6), ("submit", 8), ("train", 9), ("train", 10), ("wait", 8),
        ("submit", 10), ("wait", 10)]
    r = rows(run)
    assert [x["epoch"] for x in r] == list(range(11))  # one row per epoch, in order
    assert [x["epoch"] for x in r if x["test"]] == [0, 1, 2, 3, 4, 5, 6, 8, 10]


def test_a_run_killed_while_an_evaluation_is_in_flight_loses_no_evaluation(data_path, tmp_path, fake_worker,
                                                                           monkeypatch):
    ref = rows(trainer.train(tiny(data_path, tmp_path / "ref"), progress=False))
    real = trainer.train_epoch

    def dies_at_8(policy, opt, sched, data, cfg, epoch, *rest, **kw):
        if epoch == 8:  # epoch 6 is being evaluated, epoch 7 is checkpointed
            raise KeyboardInterrupt
        return real(policy, opt, sched, data, cfg, epoch, *rest, **kw)

    monkeypatch.setattr(trainer, "train_epoch", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny(data_path, tmp_path / "b"), progress=False)
    assert 6 not in {x["epoch"] for x in rows(tmp_path / "b" / "run")}
    monkeypatch.setattr(trainer, "train_epoch", real)
    fake_worker.log = []
    again = rows(trainer.train(tiny(data_path, tmp_path / "b"), progress=False))
    assert fake_worker.log[0] == ("submit", 6)  # the lost evaluation, from the checkpoint
    assert again == ref


def test_the_evaluation_process_gets_the_seed_and_frame_skip(data_path, tmp_path, fake_worker):
    trainer.train(tiny(data_path, tmp_path, epochs=1, frame_skips=2, frame_skip_mode="max", seed=5),
                  progress=False)
    spec = fake_worker.specs[-1]
    assert (spec["encoder_seed"], spec["frame_skips"], spec["frame_skip_mode"]) == (5, 2, "max")
    assert spec["policy_kwargs"]["activation"] == "relu" and spec["policy_kwargs"]["batch_norm"] is False


def _threads_seen(fake_worker, monkeypatch) -> list:
    """(evaluation in flight, threads training may use or None) before each epoch, with 8 cores."""
    import pvr.evaluation.vector as V

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(V, "available_cores", lambda: 8)  # what thread_split reads
    monkeypatch.setattr(trainer, "available_cores", lambda: 8)
    seen = []
    real = trainer.train_epoch

    def recording(policy, opt, sched, data, cfg, epoch, *rest, threads=None, **kw):
        worker = fake_worker.instances[-1]
        seen.append((worker.in_flight is not None, threads() if threads else None))
        return real(policy, opt, sched, data, cfg, epoch, *rest, threads=threads, **kw)

    monkeypatch.setattr(trainer, "train_epoch", recording)
    fake_worker.done_when_polled = True  # an evaluation ends during the epoch after its submission
    return seen


def test_threads_are_fixed_by_default_and_the_final_evaluation_gets_every_core(data_path, tmp_path, fake_worker,
                                                                                monkeypatch):
    seen = _threads_seen(fake_worker, monkeypatch)
    before = torch.get_num_threads()
    trainer.train(tiny(data_path, tmp_path, epochs=8, eval_every=4), progress=False)
    spec = fake_worker.specs[-1]
    assert (spec["threads"], spec["threads_waited"]) == (2, None)  # a quarter of 8, never more
    assert [t for _, t in seen] == [None] * 8  # training keeps its 6 threads throughout (set once)
    assert fake_worker.threads == {0: None, 4: None, 8: 8}  # only the final evaluation: all cores
    assert torch.get_num_threads() == before  # given back when train() returns


def test_adaptive_threads_follow_the_evaluation(data_path, tmp_path, fake_worker, monkeypatch):
    seen = _threads_seen(fake_worker, monkeypatch)
    trainer.train(tiny(data_path, tmp_path, epochs=8, eval_every=4, adaptive_threads=True), progress=False)
    spec = fake_worker.specs[-1]
    assert (spec["threads"], spec["threads_waited"]) == (2, 8)  # a quarter while training; all while waiting
    # training takes the other 6 while an evaluation runs, all 8 while none does
    assert seen == [(True, 6), (False, 8), (False, 8), (False, 8), (True, 6), (False, 8), (False, 8), (False, 8)]


def test_disable_save_writes_nothing(data_path, tmp_path, fake_worker, capsys):
    save = tmp_path / "runs"
    trainer.train(tiny(data_path, save, epochs=2, disable_save=True), progress=False)
    assert not save.exists()
    out = capsys.readouterr().out
    assert f"   ___ 2 | {ENV} : return 2.0" in out and "nothing was written" in out


def test_debug_trains_on_20_trajectories(data_path, tmp_path):
    cfg = tiny(data_path, tmp_path, debug=True).validate()
    _, facts = trainer.load_demonstrations(cfg)
    assert facts["envs"][ENV]["episodes"] == 20  # of the 22 collected


def test_warnings_are_printed(data_path, tmp_path, fake_worker, capsys):
    trainer.train(tiny(data_path, tmp_path, epochs=1, num_input_frames=2), progress=False)
    assert "WARN: You are stacking frames but still using a LSTM." in capsys.readouterr().err
