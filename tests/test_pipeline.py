"""End to end on a tiny MiniGrid dataset: embed → train ⇄ evaluate → resume → report, and the CLI."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pvr.data
from pvr.bc.config import TrainConfig
from pvr.collect import collect
from pvr.embed import embed, find_features, make_encoder, open_dataset

ENV = "MiniGrid-DoorKey-5x5-v0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    collect(ENV, 8, path, seed=100, env_kwargs={"max_steps": 20}, progress=False)
    return path


def tiny_config(data_path, save_path, **kw):
    base = dict(env=ENV, embedding_name="true_state", data_path=str(data_path), save_path=str(save_path),
                xpid="run", epochs=4, num_episodes_test=3, num_envs_test=3, hidden_size=16, batch_size=2,
                unroll_length=8, learning_rate=1e-3, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def rows_without_time(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "stats.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time")
    return rows


def pvr_cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pvr", *args], capture_output=True, text=True, env=env,
                          timeout=kw.pop("timeout", 300), **kw)


def test_embed_is_cached_by_fingerprint_and_matches_direct_encoding(data_path):
    with open_dataset(data_path, ENV, mode="a") as ds:
        enc = make_encoder("random", ds, seed=5)
        arr = embed(ds, enc, batch_size=7, progress=False)
        assert arr.shape == (ds.num_frames, enc.dim)
        import torch

        direct = enc(torch.from_numpy(ds["obs"][:10])).numpy()
        np.testing.assert_allclose(arr[:10], direct, rtol=1e-5, atol=1e-5)
        assert find_features(ds, enc) is not None
        other = make_encoder("random", ds, seed=6)
        assert find_features(ds, other) is None  # other weights → other cache entry


def test_embed_resumes_after_interruption(data_path, monkeypatch):
    import pvr.embed as E

    with open_dataset(data_path, ENV, mode="a") as ds:
        enc = make_encoder("random3", ds)
        full = np.asarray(E.embed(ds, make_encoder("random3", ds, seed=9), batch_size=5, progress=False))
        calls = {"n": 0}
        real = type(enc).forward

        def flaky(self, x):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return real(self, x)

        enc9 = make_encoder("random3", ds, seed=11)
        monkeypatch.setattr(type(enc9), "forward", flaky)
        with pytest.raises(KeyboardInterrupt):
            E.embed(ds, enc9, batch_size=5, progress=False)
        monkeypatch.setattr(type(enc9), "forward", real)
        part = ds.group["features"][E.features_key(enc9)]
        assert part.attrs["frames_done"] == 15
        resumed = np.asarray(E.embed(ds, enc9, batch_size=5, progress=False))
        fresh = enc9(__import__("torch").from_numpy(np.asarray(ds["obs"][:]))).numpy()
        np.testing.assert_allclose(resumed, fresh, rtol=1e-5, atol=1e-5)
        assert not np.allclose(full, resumed)  # seed 9 vs 11: a different cache entry


def test_train_writes_run_dir_and_resumes_identically(data_path, tmp_path, monkeypatch, capsys):
    from pvr.bc import trainer

    run_a = trainer.train(tiny_config(data_path, tmp_path / "a"), progress=False)
    out = capsys.readouterr().out
    assert "   ### 1 | loss " in out and f"   ___ 0 | {ENV} : return " in out
    for name in ("config.json", "stats.jsonl", "checkpoint.pt", "policy.pt", "done", "run.json"):
        assert (run_a / name).exists(), name
    rows = rows_without_time(run_a)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["training_loss"] is None and rows[1]["training_loss"] > 0 and rows[1]["gradient_norm"] > 0
    assert set(rows[2]["test"][ENV]) >= {"return", "success"}

    real = trainer.train_epoch
    def dies_at_3(policy, opt, sched, data, cfg, epoch, *rest, **kw):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(policy, opt, sched, data, cfg, epoch, *rest, **kw)

    monkeypatch.setattr(trainer, "train_epoch", dies_at_3)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_config(data_path, tmp_path / "b"), progress=False)
    assert not (tmp_path / "b" / "run" / "done").exists()
    monkeypatch.setattr(trainer, "train_epoch", real)
    run_b = trainer.train(tiny_config(data_path, tmp_path / "b"), progress=False)
    assert "resuming" in capsys.readouterr().out
    assert rows_without_time(run_b) == rows
    # a finished run is not retrained; a different config in the same dir is refused
    trainer.train(tiny_config(data_path, tmp_path / "b"), progress=False)
    assert rows_without_time(run_b) == rows
    from pvr.errors import PvrError

    with pytest.raises(PvrError, match="different settings.*epochs"):
        trainer.train(tiny_config(data_path, tmp_path / "b", epochs=5), progress=False)


def test_lstm_free_policy_with_stacked_frames_and_evaluate_saved_run(data_path, tmp_path):
    from pvr.bc import trainer
    from pvr.evaluation.saved import evaluate_run

    cfg = tiny_config(data_path, tmp_path, disable_lstm=True, num_input_frames=3, frame_stack_mode="diff",
                      batch_norm=True, epochs=2, embedding_name="random")
    run = trainer.train(cfg, progress=False)
    last = rows_without_time(run)[-1]["test"][ENV]
    again = evaluate_run(run, episodes=3, num_envs=3, progress=False, videos=1)[ENV]
    assert again["success"] == last["success"] and again["return"] == pytest.approx(last["return"])
    gifs = sorted((run / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == [f"{ENV}-episode0.gif"]
    from PIL import Image

    with Image.open(gifs[0]) as im:  # PIL merges identical consecutive frames, adding their durations
        total_ms = 0
        for i in range(im.n_frames):
            im.seek(i)
            total_ms += im.info["duration"]
        assert im.size[0] >= 56 and total_ms >= 200  # reset frame + at least one step, 100 ms each


def test_sigkill_leaves_no_process_and_resume_matches(data_path, tmp_path):
    cfg = tiny_config(data_path, tmp_path / "ref", epochs=6)
    from pvr.bc import trainer

    ref = rows_without_time(trainer.train(cfg, progress=False))
    args = ["train", "--env", ENV, "--embedding_name", "true_state", "--data_path", str(data_path),
            "--save_path", str(tmp_path / "k"), "--xpid", "run", "--epochs", "6", "--num_episodes_test", "3",
            "--num_envs_test", "3", "--hidden_size", "16", "--batch_size", "2", "--unroll_length", "8",
            "--learning_rate", "1e-3", "--seed", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "pvr", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    stats = tmp_path / "k" / "run" / "stats.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not stats.exists() or len(stats.read_text().splitlines()) < 2):
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the evaluation process should be running beside training"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def alive():
        return [c for c in children if Path(f"/proc/{c}").exists()
                and "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]]

    # the evaluation process stops on the SIGTERM Linux sends it (closing its env processes), within its grace
    from pvr.evaluation.worker import STOP_GRACE

    deadline = time.time() + STOP_GRACE + 5
    while alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(), f"evaluation processes survived their parent: {alive()}"
    r = pvr_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert rows_without_time(tmp_path / "k" / "run") == ref


def test_report_table_and_plot(data_path, tmp_path):
    from pvr.bc import trainer
    from pvr.report import report

    for enc in ("true_state", "random"):
        trainer.train(tiny_config(data_path, tmp_path / "runs", xpid=enc, embedding_name=enc, epochs=1),
                      progress=False)
    text, png, summary = report([tmp_path / "runs"], tmp_path / "out")
    assert {s["encoder"] for s in summary} == {"true_state", "random"}
    assert "true_state" in text and "random" in text and ENV in text
    assert png.exists() and png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_unknown_encoder_is_one_line_and_nonzero(data_path, tmp_path):
    r = pvr_cli("train", "--env", ENV, "--embedding_name", "nonexistent", "--data_path", str(data_path),
                "--save_path", str(tmp_path))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "nonexistent" in lines[0] and "efficientnet_lite0" in lines[0] and "true_state" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_missing_data_and_unknown_env(tmp_path):
    r = pvr_cli("embed", "--env", ENV, "--embedding_name", "random", "--data_path", str(tmp_path))
    assert r.returncode != 0 and "pvr collect" in r.stderr and "Traceback" not in r.stderr
    r = pvr_cli("train", "--env", ENV, "--embedding_name", "random", "--data_path", str(tmp_path / "d"),
                "--save_path", str(tmp_path / "runs"))
    assert r.returncode == 2 and "pvr collect" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # no half-made run directory
    r = pvr_cli("collect", "--env", "MiniGrid-DoorKey-5x5-v9", "--episodes", "1", "--data_path", str(tmp_path))
    assert r.returncode != 0 and "MiniGrid-DoorKey-5x5-v0" in r.stderr and "Traceback" not in r.stderr


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cli_convert_refuses_code_running_pickle(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"obs": [_Evil(marker)], "action": [], "done": [], "true_state": []}))
    r = pvr_cli("convert", str(evil), str(tmp_path / "out.zarr"))
    assert r.returncode != 0 and "refusing" in r.stderr and "os" in r.stderr
    assert not marker.exists() and not (tmp_path / "out.zarr").exists()


def test_cli_convert_round_trip_legacy_pickle(data_path, tmp_path):
    src = data_path / f"{ENV}.zarr"
    r = pvr_cli("convert", str(src), str(tmp_path / f"{ENV}.pickle"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / f"{ENV}.pickle", "rb") as f:
        legacy = pickle.load(f)
    assert set(legacy) >= {"obs", "action", "done", "true_state"} and isinstance(legacy["obs"], list)
    r = pvr_cli("convert", str(tmp_path / f"{ENV}.pickle"), str(tmp_path / "back.zarr"))
    assert r.returncode == 0, r.stderr
    a, b = pvr.data.open(src), pvr.data.open(tmp_path / "back.zarr")
    assert a.num_episodes == b.num_episodes == len(legacy["obs"])
    np.testing.assert_array_equal(a["obs"][:], b["obs"][:])
    np.testing.assert_array_equal(a["action"][:], b["action"][:])


def test_cli_listings():
    r = pvr_cli("encoders")
    assert r.returncode == 0
    for name in ("random", "efficientnet_lite0", "true_state", "resnet50"):
        assert name in r.stdout
    assert "efficientnet_lite0" in pvr_cli("encoders", "--pattern", "eff*").stdout
    assert "resnet50" not in pvr_cli("encoders", "--pattern", "eff*").stdout
    r = pvr_cli("envs")
    assert r.returncode == 0 and "MiniGrid" in r.stdout
    r = pvr_cli("experts")
    assert r.returncode == 0
    rows = {line.split()[0]: line for line in r.stdout.split("\n\n")[0].splitlines() if line.strip()}
    assert "MiniGrid" in rows["bfs"] and "DMC" in rows["mppi"] and "dmc:walker-walk" in r.stdout
    only_dmc = pvr_cli("experts", "--suite", "DMC").stdout
    assert "mppi" in only_dmc and "bfs" not in only_dmc


def test_cli_listing_into_a_closed_pipe_is_quiet():
    """`pvr experts | head -1`: the reader leaves early (here: before pvr has even started writing);
    no BrokenPipeError traceback."""
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m pvr experts | true", shell=True, capture_output=True, text=True,
                       timeout=300)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_cli_plugin_registers_user_encoder_and_trains_with_it(data_path, tmp_path):
    (tmp_path / "my_plugin.py").write_text(
        "import torch\n"
        "from pvr.encoders import Encoder, Preprocess, register_encoder\n"
        "@register_encoder('tiny_pool', family='mine', dim=3, input_size=16)\n"
        "def tiny_pool(train=False, **kw):\n"
        "    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
        "    return Encoder('tiny_pool', net, Preprocess(resize=16, crop=16), trainable=train)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "pvr", "--plugin", "my_plugin", "encoders", "--pattern", "tiny*"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "tiny_pool" in r.stdout and "mine" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pvr", "--plugin", "my_plugin", "train", "--env", ENV,
                        "--embedding_name", "tiny_pool", "--data_path", str(data_path), "--save_path",
                        str(tmp_path / "runs"), "--xpid", "t", "--epochs", "1", "--num_episodes_test", "2",
                        "--hidden_size", "8", "--unroll_length", "8"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "runs" / "t" / "done").exists()
    r = pvr_cli("--plugin", "no_such_module_xyz", "encoders")
    assert r.returncode == 2 and "no_such_module_xyz" in r.stderr and "Traceback" not in r.stderr


def test_train_embedding_fine_tunes_the_encoder_and_evaluates_it(data_path, tmp_path):
    import torch

    from pvr.bc import trainer
    from pvr.embed import make_encoder, open_dataset
    from pvr.evaluation.saved import evaluate_run

    cfg = tiny_config(data_path, tmp_path, embedding_name="random2", train_embedding=True, epochs=2,
                      num_input_frames=2, frame_stack_mode="diff", unroll_length=4, batch_size=4)
    run = trainer.train(cfg, progress=False)
    saved = torch.load(run / "policy.pt", weights_only=True)
    with open_dataset(data_path, ENV) as ds:  # the run's seed draws the net; its size follows the frames
        fresh = make_encoder("random2", ds, seed=cfg.seed)
    init = fresh.state_dict()
    tuned = saved["encoder"]
    assert set(tuned) == set(init)
    assert any(not torch.equal(tuned[k], init[k]) for k in init), "the encoder did not train"
    assert saved["obs_dim"] == 2 * fresh.dim
    rows = rows_without_time(run)
    assert rows[-1]["epoch"] == 2 and rows[-1]["training_loss"] > 0
    again = evaluate_run(run, episodes=3, num_envs=3, progress=False)[ENV]
    assert again["success"] == rows[-1]["test"][ENV]["success"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_quickly_and_leaves_no_process(data_path, tmp_path, sig):
    args = ["train", "--env", ENV, "--embedding_name", "true_state", "--data_path", str(data_path),
            "--save_path", str(tmp_path), "--xpid", "run", "--epochs", "500", "--num_episodes_test", "3",
            "--num_envs_test", "3", "--hidden_size", "16", "--batch_size", "2", "--unroll_length", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "pvr", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stats = tmp_path / "run" / "stats.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not stats.exists() or len(stats.read_text().splitlines()) < 2):
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children
    t = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.time() - t < 5, "the run took more than 5 s to stop"
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    # the evaluation worker is killed at once; multiprocessing's resource tracker follows within ~1.5 s
    while time.time() - t < 5 and [c for c in children if Path(f"/proc/{c}").exists()]:
        time.sleep(0.1)
    assert not [c for c in children if Path(f"/proc/{c}").exists()], "a child outlived the run by 5 s"
    from pvr.bc import checkpoint

    assert checkpoint.load(tmp_path / "run")["epoch"] >= 1  # the last completed epoch is saved
