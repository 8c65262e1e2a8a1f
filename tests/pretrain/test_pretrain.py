"""pvr pretrain: tiny MoCo ResNet-18 runs end to end, MoCo's own file layout, fingerprint, resume, bad input."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import pvr.data
import pvr.encoders as E
from pvr.errors import PvrError
from pvr.pretrain import PretrainConfig, pretrain
from pvr.pretrain.frames import held_out

MG = "MiniGrid-DoorKey-5x5-v0"


def synth_store(root: Path, env: str, episodes: int, length: int = 10, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with pvr.data.create(root / f"{env}.zarr", env=env) as ds:
        for _ in range(episodes):
            ds.append_episode(rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8), rng.integers(0, 3, length),
                              rng.normal(size=(length, 4)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth_store(root, "Synth-A", 4, seed=1)
    synth_store(root, "Synth-B", 3, seed=2)
    return root


@pytest.fixture
def models(tmp_path, monkeypatch):
    path = tmp_path / "models"
    monkeypatch.setenv("PVR_MODEL_PATH", str(path))
    return path


def tiny(data_path, tmp_path, **kw) -> PretrainConfig:
    base = dict(env="Synth-A,Synth-B", name="tiny_moco", method="moco", arch="resnet18", data_path=str(data_path),
                save_path=str(tmp_path / "runs"), epochs=1, batch_size=16, image_size=32, moco_k=32, num_workers=0,
                holdout=0.2, seed=3, checkpoint_every=3, quiet=True)
    base.update(kw)
    return PretrainConfig(**base)


# -- the whole loop: pre-train on MiniGrid frames, then embed and train a policy with it ---------------
@pytest.mark.slow  # ~45 s on a busy 2-core CPU
def test_pretrain_then_embed_and_train_a_policy(tmp_path, models):
    from pvr.bc import trainer
    from pvr.bc.config import TrainConfig
    from pvr.collect import collect
    from pvr.embed import embed, find_features, make_encoder, open_dataset

    data = tmp_path / "data"
    collect(MG, 6, data, seed=100, env_kwargs={"max_steps": 20}, progress=False)
    out = pretrain(PretrainConfig(env=MG, name="moco_mg", arch="resnet18", data_path=str(data),
                                  save_path=str(tmp_path / "runs"), epochs=1, batch_size=8, image_size=32,
                                  moco_k=16, num_workers=0, holdout=0.0, quiet=True))
    assert out == models / "moco_mg.pth" and (models / "moco_mg.pvr.json").is_file()
    enc = E.create("moco_mg")
    assert enc.dim == 512 and E.info("moco_mg")["family"] == "moco"
    with open_dataset(data, MG, mode="a") as ds:
        arr = embed(ds, make_encoder("moco_mg", ds), batch_size=16, progress=False)
        assert arr.shape == (ds.num_frames, 512) and np.isfinite(np.asarray(arr)).all()
        # the stored features are the named encoder's output on the raw frames: equal up to float rounding,
        # which differs with the batch, the layout (embedding runs channels-last micro-batches) and the
        # threads, so the tolerance is relative to the features' magnitude
        ref = enc(torch.from_numpy(ds["obs"][:5])).numpy()
        np.testing.assert_allclose(np.asarray(arr[:5]), ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
        assert find_features(ds, enc) is not None
    cfg = TrainConfig(env=MG, embedding_name="moco_mg", data_path=str(data), save_path=str(tmp_path / "bc"),
                      xpid="run", epochs=2, num_episodes_test=2, num_envs_test=1, hidden_size=16, batch_size=2,
                      unroll_length=8, learning_rate=1e-3, seed=3)
    run = trainer.train(cfg, progress=False)
    rows = [json.loads(line) for line in (Path(run) / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows][-1] == 2 and all(np.isfinite(r["training_loss"]) for r in rows[1:])
    assert (Path(run) / "policy.pt").is_file()


# -- the file is MoCo's own ----------------------------------------------------------------------------
def upstream_moco_keys(arch: str, dim: int, k: int) -> dict[str, tuple]:
    """MoCo v2's ``main_moco.py --mlp`` checkpoint under DataParallel, re-stated from moco/builder.py:
    encoder_q = torchvision ResNet with fc = Sequential(Linear(d, d), ReLU, Linear(d, dim)); encoder_k
    the same; buffers queue (dim, K) and queue_ptr (1,)."""
    net = getattr(torchvision.models, arch)(weights=None)
    d = net.fc.in_features
    keys = {n: tuple(t.shape) for n, t in net.state_dict().items() if not n.startswith("fc.")}
    keys.update({"fc.0.weight": (d, d), "fc.0.bias": (d,), "fc.2.weight": (dim, d), "fc.2.bias": (dim,)})
    out = {f"module.encoder_{w}.{n}": s for w in "qk" for n, s in keys.items()}
    out.update({"module.queue": (dim, k), "module.queue_ptr": (1,)})
    return out


def test_written_file_has_moco_v2_layout(synth, tmp_path, models):
    pretrain(tiny(synth, tmp_path, epochs=1))
    ckpt = torch.load(models / "tiny_moco.pth", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"epoch", "arch", "state_dict"} and ckpt["arch"] == "resnet18"
    got = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    assert got == upstream_moco_keys("resnet18", 128, 32)
    queue = ckpt["state_dict"]["module.queue"]
    torch.testing.assert_close(queue.norm(dim=0), torch.ones(32))  # keys enter the queue L2-normalised
    assert E.create("concat:tiny_moco+tiny_moco").dim == 1024  # the name joins concatenations like any other


def test_resnet50_file_loads_through_the_zoo_moco_loader(synth, tmp_path, models):
    """The same file, renamed to the original's moco_aug file, loads with pvr's existing MoCo loader."""
    pretrain(tiny(synth, tmp_path, name="r50", arch="resnet50", epochs=1, batch_size=4, max_steps=1))
    ckpt = torch.load(models / "r50.pth", map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()} == upstream_moco_keys("resnet50", 128, 32)
    shutil.copy(models / "r50.pth", models / "moco_aug.pth.tar")
    zoo, mine = E.create("moco_aug"), E.create("r50")
    frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    x = mine.preprocess(frames)  # same backbone weights: same features on the same input
    torch.testing.assert_close(zoo.backbone(x), mine.backbone(x))


# -- fingerprint ---------------------------------------------------------------------------------------------
def test_fingerprint_follows_method_datasets_and_weights_only(synth, tmp_path, models, monkeypatch):
    pretrain(tiny(synth, tmp_path, epochs=1))
    base = E.create("tiny_moco").fingerprint
    # the same run written elsewhere (another --out, another --save_path, other operational flags): same
    other = tmp_path / "elsewhere"
    pretrain(tiny(synth, tmp_path, epochs=1, out=str(other), save_path=str(tmp_path / "runs2"), checkpoint_every=1))
    assert (other / "tiny_moco.pth").read_bytes() == (models / "tiny_moco.pth").read_bytes()
    monkeypatch.setenv("PVR_MODEL_PATH", str(other))
    assert E.create("tiny_moco").fingerprint == base

    def variant(edit_json=None, edit_weights=None) -> str:
        folder = tmp_path / f"v{np.random.randint(1 << 30)}"
        shutil.copytree(other, folder)
        meta = folder / "tiny_moco.pvr.json"
        if edit_json:
            info = json.loads(meta.read_text())
            edit_json(info)
            meta.write_text(json.dumps(info))
        if edit_weights:
            ckpt = torch.load(folder / "tiny_moco.pth", weights_only=True)
            edit_weights(ckpt["state_dict"])
            torch.save(ckpt, folder / "tiny_moco.pth")
        monkeypatch.setenv("PVR_MODEL_PATH", str(folder))
        return E.create("tiny_moco").fingerprint

    assert variant() == base  # a plain copy
    assert variant(edit_json=lambda i: i.update(aug="croponly")) != base
    assert variant(edit_json=lambda i: i.update(method="mae_like")) != base
    assert variant(edit_json=lambda i: i["datasets"][0].update(fingerprint="0" * 16)) != base
    assert variant(edit_json=lambda i: i["datasets"].pop()) != base
    assert variant(edit_weights=lambda s: s["module.encoder_q.conv1.weight"].mul_(1.01)) != base
    # the key encoder and the queue are not part of the encoder: they do not change it
    assert variant(edit_weights=lambda s: s["module.queue"].mul_(2.0)) == base
    # and a different training set gives a different registry file (its datasets)
    monkeypatch.setenv("PVR_MODEL_PATH", str(models))
    pretrain(tiny(synth, tmp_path, env="Synth-A", name="tiny_a", epochs=1, save_path=str(tmp_path / "runs3")))
    info = json.loads((models / "tiny_a.pvr.json").read_text())
    assert [d["env"] for d in info["datasets"]] == ["Synth-A"]


# -- resume ------------------------------------------------------------------------------------------------------
def test_resumed_run_equals_uninterrupted_run(synth, tmp_path, models, monkeypatch):
    from pvr.utils import interrupt

    whole = pretrain(tiny(synth, tmp_path, name="whole", epochs=2, save_path=str(tmp_path / "a")))
    calls = {"n": 0}
    real = interrupt.check

    def stop_at_step_5():
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real()

    monkeypatch.setattr(interrupt, "check", stop_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(synth, tmp_path, name="cut", epochs=2, save_path=str(tmp_path / "b")))
    assert not (models / "cut.pth").exists()  # nothing is published before training ends
    saved = torch.load(tmp_path / "b" / "cut" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3  # the last checkpoint (end of epoch 1, 3 steps of 16 frames) before the stop
    monkeypatch.setattr(interrupt, "check", real)
    cut = pretrain(tiny(synth, tmp_path, name="cut", epochs=2, save_path=str(tmp_path / "b")))
    a = torch.load(whole, weights_only=True)["state_dict"]
    b = torch.load(cut, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    stats = [json.loads(line) for line in (tmp_path / "b" / "cut" / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in stats] == [1, 2]


def test_resume_with_other_settings_is_refused(synth, tmp_path, models):
    pretrain(tiny(synth, tmp_path, epochs=1))
    with pytest.raises(PvrError, match="other settings.*learning_rate"):
        pretrain(tiny(synth, tmp_path, epochs=1, learning_rate=0.1, force=True))


# -- the held-out split --------------------------------------------------------------------------------------
def test_held_out_split_is_fixed_and_recorded(synth, tmp_path, models):
    def independent(env, i, f):
        return int(hashlib.sha256(f"{env}/{i}".encode()).hexdigest()[:16], 16) < f * 2 ** 64

    for env in ("Synth-A", "DMC-walker-walk"):
        assert [held_out(env, i, 0.3) for i in range(200)] == [independent(env, i, 0.3) for i in range(200)]
    assert not any(held_out("x", i, 0.0) for i in range(50))
    pretrain(tiny(synth, tmp_path, epochs=1, holdout=0.5))
    info = json.loads((models / "tiny_moco.pvr.json").read_text())
    for d in info["datasets"]:
        assert d["held_out_episodes"] == [i for i in range(d["episodes"]) if independent(d["env"], i, 0.5)]


# -- bad input -----------------------------------------------------------------------------------------------------
def test_bad_input_is_a_pvr_error_and_writes_nothing(synth, tmp_path, models):
    with pytest.raises(PvrError, match="no dataset for Nope"):
        pretrain(tiny(synth, tmp_path, env="Nope"))
    empty = tmp_path / "empty"
    pvr.data.create(empty / "Empty-v0.zarr", env="Empty-v0").close()
    with pytest.raises(PvrError, match="no frames"):
        pretrain(tiny(empty, tmp_path, env="Empty-v0"))
    with pytest.raises(PvrError, match="already an encoder of pvr's zoo"):
        pretrain(tiny(synth, tmp_path, name="moco_aug"))
    with pytest.raises(PvrError, match="fewer than --batch_size"):
        pretrain(tiny(synth, tmp_path, batch_size=10_000))
    with pytest.raises(PvrError, match="--name"):
        pretrain(tiny(synth, tmp_path, name="a/b"))
    with pytest.raises(PvrError, match="--method moco trains"):
        pretrain(tiny(synth, tmp_path, arch="vit_small"))
    assert not models.exists() or not any(models.iterdir())
    models.mkdir(parents=True, exist_ok=True)
    (models / "tiny_moco.pth").write_bytes(b"the user's own file")
    with pytest.raises(PvrError, match="already exists.*--force"):
        pretrain(tiny(synth, tmp_path))
    assert (models / "tiny_moco.pth").read_bytes() == b"the user's own file"


def test_cli_reports_errors_in_one_line(synth, tmp_path, models, capsys):
    from pvr.cli import main

    rc = main(["pretrain", "--env", "Nope", "--name", "x", "--data_path", str(synth)])
    assert rc == 2 and "pvr pretrain: error: no dataset for Nope" in capsys.readouterr().err


# -- MAE ---------------------------------------------------------------------------------------------------------
def test_mae_writes_mae_layout_and_loads_by_name(synth, tmp_path, models):
    import timm

    from pvr.encoders.mae import load_mae

    pretrain(tiny(synth, tmp_path, name="tiny_mae", method="mae", arch="vit_small", decoder_depth=1, max_steps=2))
    ckpt = torch.load(models / "tiny_mae.pth", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "epoch"}
    # MAE's main_pretrain.py layout, re-stated: timm ViT encoder keys (no head) + MAE's decoder names
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, global_pool="token", img_size=32)
    enc_keys = set(vit.state_dict())
    dec = {k for k in ckpt["model"] if k not in enc_keys}
    assert enc_keys <= set(ckpt["model"])
    assert {k.split(".")[0] for k in dec} == {"mask_token", "decoder_embed", "decoder_pos_embed", "decoder_blocks",
                                              "decoder_norm", "decoder_pred"}
    assert tuple(ckpt["model"]["decoder_pred.weight"].shape) == (16 * 16 * 3, 512)
    load_mae(vit, models / "tiny_mae.pth")  # the zoo's MAE loader (strict, decoder ignored)
    enc = E.create("tiny_mae")
    assert enc.dim == 384 and E.info("tiny_mae")["family"] == "mae"
    frames = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    torch.testing.assert_close(enc(frames), vit.eval()(enc.preprocess(frames)))


# -- torchrun --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # two processes importing torch and lightly: ~40 s here
def test_torchrun_two_processes_gloo(synth, tmp_path, models):
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "pvr", "pretrain", "--env", "Synth-A",
           "--name", "ddp_tiny", "--arch", "resnet18", "--data_path", str(synth), "--save_path", str(tmp_path / "r"),
           "--epochs", "2", "--batch_size", "16", "--image_size", "32", "--moco_k", "32", "--num_workers", "0",
           "--quiet", "--max_steps", "3", "--disable_cuda"]
    env = dict(os.environ, PVR_MODEL_PATH=str(models), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(models / "ddp_tiny.pth", weights_only=True)["state_dict"]
    # each process holds 8 of the 16 frames (40 frames: 2 steps per epoch, 3 steps in all); the keys of
    # both enter the queue: 3 x 16 keys into 32 slots
    # leave the pointer at 16 (one process's keys alone would leave it at 24)
    assert int(state["module.queue_ptr"]) == 16
    assert E.create("ddp_tiny").dim == 512


# -- the paper's compressed-layer taps ---------------------------------------------------------------------
def upstream_tap_keys(tap: str, dim: int, k: int) -> dict[str, tuple]:
    """The original's l3 / l4 MoCo ResNet-50, re-stated: the tapped layer becomes Sequential(layer, compress,
    expand), each a torchvision BasicBlock whose shortcut is Conv2d(3x3, bias) + BatchNorm; 1024<->11 (l3)
    or 2048<->42 (l4); fc is MoCo v2's MLP head."""
    from torchvision.models.resnet import BasicBlock

    def block(i, o):
        return BasicBlock(i, o, downsample=torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1),
                                                               torch.nn.BatchNorm2d(o)))

    net = torchvision.models.resnet50(weights=None)
    layer, wide, narrow = ("layer3", 1024, 11) if tap == "l3" else ("layer4", 2048, 42)
    setattr(net, layer, torch.nn.Sequential(getattr(net, layer), block(wide, narrow), block(narrow, wide)))
    keys = {n: tuple(t.shape) for n, t in net.state_dict().items() if not n.startswith("fc.")}
    keys.update({"fc.0.weight": (2048, 2048), "fc.0.bias": (2048,), "fc.2.weight": (dim, 2048), "fc.2.bias": (dim,)})
    out = {f"module.encoder_{w}.{n}": s for w in "qk" for n, s in keys.items()}
    out.update({"module.queue": (dim, k), "module.queue_ptr": (1,)})
    return out


@pytest.mark.parametrize("tap,dim", [("l3", 11 * 4 * 4), ("l4", 42 * 2 * 2)])  # 64 px: layer3 4x4, layer4 2x2
def test_tap_model_has_the_original_nested_layout_and_loads_as_its_tap(synth, tmp_path, models, tap, dim):
    name = f"mine_{tap}"
    pretrain(tiny(synth, tmp_path, name=name, arch="resnet50", tap=tap, image_size=64, batch_size=4, max_steps=2))
    ckpt = torch.load(models / f"{name}.pth", map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()} == upstream_tap_keys(tap, 128, 32)
    assert json.loads((models / f"{name}.pvr.json").read_text())["tap"] == tap
    mine = E.create(name)
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    out = mine(frames)
    assert mine.dim == dim and out.shape == (2, dim)
    # the same file under the original's name loads through the zoo's l3 / l4 loader to the same network
    shutil.copy(models / f"{name}.pth", models / f"moco_aug_{tap}.pth")
    zoo = E.create(f"moco_aug_{tap}")
    x = mine.preprocess(frames)
    torch.testing.assert_close(zoo.backbone(x), mine.backbone(x))


def test_tap_needs_moco_resnet50(synth, tmp_path, models):
    with pytest.raises(PvrError, match="--tap"):
        pretrain(tiny(synth, tmp_path, tap="l3"))  # resnet18
    assert not models.exists() or not list(models.iterdir())


# -- submitted through submitit --------------------------------------------------------------------------------
def cli_args(synth, tmp_path, name: str) -> list[str]:
    return ["pretrain", "--env", "Synth-A", "--name", name, "--arch", "resnet18", "--data_path", str(synth),
            "--save_path", str(tmp_path / "runs"), "--epochs", "1", "--max_steps", "2", "--batch_size", "8",
            "--image_size", "32", "--moco_k", "16", "--num_workers", "0", "--quiet", "--disable_cuda"]


@pytest.mark.parametrize("cluster", ["debug", pytest.param("local", marks=pytest.mark.slow)])
def test_pretrain_submitted_through_submitit(synth, tmp_path, models, capsys, cluster):
    from pvr.cli import main

    name = f"sub_{cluster}"
    rc = main(cli_args(synth, tmp_path, name) + ["--cluster", cluster, "--wait", "--cpus_per_task", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "submitted job" in out and "finished" in out, out
    assert (models / f"{name}.pth").is_file() and E.create(name).dim == 512
    assert (tmp_path / "runs" / "submitit").is_dir()  # submitit's pickles and logs under <save_path>/submitit


def test_submitted_pretrain_is_checked_before_queueing_and_requeues_itself(synth, tmp_path, models, capsys):
    from pvr.cli import main
    from pvr.pretrain.job import PretrainJob

    rc = main(cli_args(synth, tmp_path, "a/b") + ["--cluster", "local"])
    assert rc == 2 and "--name" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "submitit").exists()  # nothing was queued
    cfg = tiny(synth, tmp_path)
    again = PretrainJob(str(tmp_path)).checkpoint(cfg)  # what submitit resubmits on SIGUSR2
    assert isinstance(again.function, PretrainJob) and again.function.cwd == str(tmp_path)
    assert again.args == (cfg,)  # the same run: the trainer resumes it from <save_path>/<name>/


def test_pvr_encoders_lists_models_pretrained_here(synth, tmp_path, models, capsys):
    from pvr.cli import main

    pretrain(tiny(synth, tmp_path, name="listed_moco", max_steps=1, aug="croponly"))
    shutil.copy(models / "listed_moco.pvr.json", models / "orphan.pvr.json")  # registry file without weights
    (models / "broken.pvr.json").write_text("{not json")
    assert main(["encoders", "--pattern", "*o*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if "pvr pretrain" in line)
    head, rows = lines[start + 1].split(), {line.split()[0]: line for line in lines[start + 3:] if line.strip()}
    assert head[:3] == ["name", "family", "method"] and set(rows) >= {"listed_moco", "orphan", "broken"}
    assert "moco" in rows["listed_moco"] and "croponly" in rows["listed_moco"] and "resnet18" in rows["listed_moco"]
    assert "Synth-A, Synth-B" in rows["listed_moco"] and rows["listed_moco"].rstrip().endswith("yes")
    assert "NAME.pth missing" in rows["orphan"] and "cannot read" in rows["broken"]
    assert main(["encoders", "--pattern", "listed_*"]) == 0  # only a pre-trained one matches: no error
    assert "listed_moco" in capsys.readouterr().out
