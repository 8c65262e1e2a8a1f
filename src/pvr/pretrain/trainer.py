"""The pre-training loop: frames → two augmented views → lightly's method → ``NAME.pth``.

Read top to bottom: check the name and the run directory, index the frames, build
the method, restore the newest checkpoint, then one gradient step per planned batch.
Every random draw is a function of (seed, epoch, batch), so a run resumed from
any checkpoint takes the same steps as one never stopped (tested). Checkpoints
(``<save_path>/<name>/checkpoint.pt``, previous one kept) are written atomically
every ``--checkpoint_every`` steps and at each epoch's end; the weights file and its
registry file only when training is finished.
"""
from __future__ import annotations

import io
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pvr.bc import checkpoint, distributed
from pvr.encoders import weights
from pvr.errors import PvrError
from pvr.pretrain import registered
from pvr.pretrain.config import OPERATIONAL, PretrainConfig
from pvr.pretrain.frames import FrameSource
from pvr.utils import interrupt
from pvr.utils.io import append_jsonl, atomic_path, read_jsonl, write_json

DONE = "done"
PRETRAINED_BY = "made here by `pvr pretrain`"


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)


# -- checks before anything is written -----------------------------------------------
def out_files(cfg: PretrainConfig) -> tuple[Path, Path]:
    return registered.files(cfg.name, Path(cfg.out).expanduser() if cfg.out else weights.model_dir())


def check_name(cfg: PretrainConfig) -> None:
    """Refuse a name the zoo already resolves, and files the user has (unless ``--force``)."""
    from pvr.encoders.registry import ENCODERS

    try:
        entry = ENCODERS.get(cfg.name)
    except PvrError:
        entry = None
    if entry is not None and entry.meta.get("published") != PRETRAINED_BY:
        raise PvrError(f"--name {cfg.name!r} is already an encoder of pvr's zoo ({entry.meta.get('family')}); "
                       f"pick another name, e.g. {cfg.name}_{cfg.envs[0].split('-')[0].lower()}")
    if not cfg.force:
        for p in out_files(cfg):
            if p.exists():
                raise PvrError(f"{p} already exists; pick another --name, or pass --force to replace it")


def check_run_dir(cfg: PretrainConfig) -> Path:
    run_dir = Path(cfg.save_path) / cfg.name
    path = run_dir / "config.json"
    if path.exists():
        old, mine = json.loads(path.read_text()), cfg.to_dict()
        diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k) and k not in OPERATIONAL)
        if diff:
            raise PvrError(f"{run_dir} already holds a pre-training run with other settings ({', '.join(diff)}); "
                           "pick another --name or --save_path, or delete that directory")
    return run_dir


# -- batches --------------------------------------------------------------------------
class Views(torch.utils.data.Dataset):
    """Batch ``start + i`` of one epoch's plan as two augmented views (this process's share)."""

    def __init__(self, source: FrameSource, order: np.ndarray, cfg: PretrainConfig, epoch: int, start: int,
                 steps: int, transform, world: distributed.World):
        self.source, self.order, self.cfg, self.epoch = source, order, cfg, epoch
        self.start, self.steps, self.transform, self.world = start, steps, transform, world

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int):
        from PIL import Image

        b = self.start + i
        B = self.cfg.batch_size
        ids = self.order[b * B:(b + 1) * B][self.world.rank::self.world.size]
        frames = self.source.read(ids)
        seed = [self.cfg.seed, self.epoch, b, self.world.rank]
        # torchvision draws from torch's RNG, lightly's blur from numpy's: both seeded per batch,
        # and restored, so a run in one process leaves its own generators as they were
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
            np.random.seed(np.random.SeedSequence(seed).generate_state(1)[0])
            views = []
            for j, f in zip(ids, frames):
                k = f.shape[-1] // 3  # a k-view store (current + goal view) lends view j mod k
                v = int(j) % k
                views.append(self.transform(Image.fromarray(np.ascontiguousarray(f[..., 3 * v:3 * v + 3]))))
        np.random.set_state(np_state)
        random.setstate(py_state)
        return tuple(torch.stack([v[i] for v in views]) for i in range(len(views[0])))  # MoCo 2 views, MAE 1


def default_workers() -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


# -- the method -------------------------------------------------------------------------
def build_method(cfg: PretrainConfig, world: distributed.World):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.method == "moco":
            from pvr.pretrain.moco import MoCo, transform

            model = MoCo(cfg.arch, dim=cfg.moco_dim, k=cfg.moco_k, m=cfg.moco_m, t=cfg.moco_t,
                         distributed=world.distributed, tap=cfg.tap)
            return model, transform(cfg.aug, cfg.image_size)
        from pvr.pretrain.mae import MAE, transform

        return (MAE(cfg.arch, cfg.image_size, mask_ratio=cfg.mask_ratio, decoder_depth=cfg.decoder_depth),
                transform(cfg.image_size))


def learning_rate(cfg: PretrainConfig, epoch: int) -> float:
    """MoCo's ``--cos`` schedule (MAE's cosine, without its warm-up): set once per epoch."""
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def make_optimizer(cfg: PretrainConfig, model) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.method == "mae":  # MAE's AdamW (betas 0.9, 0.95, weight decay 0.05)
        return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.95), weight_decay=0.05)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# -- entry point ----------------------------------------------------------------------------
def pretrain(cfg: PretrainConfig, *, progress: bool | None = None) -> Path:
    """Pre-train ``cfg.name``; returns the path of ``NAME.pth`` (resumes a stopped run)."""
    cfg.validate()
    world = distributed.init(cfg.disable_cuda)
    try:
        return _pretrain(cfg, world, progress=(not cfg.quiet) if progress is None else progress)
    finally:
        distributed.shutdown(world)


def _pretrain(cfg: PretrainConfig, world: distributed.World, *, progress: bool) -> Path:
    check_name(cfg)
    run_dir = check_run_dir(cfg)
    pth, meta = out_files(cfg)
    if cfg.batch_size % world.size:
        raise PvrError(f"--batch_size {cfg.batch_size} does not split over {world.size} processes; "
                       f"use a multiple of {world.size}")
    source = FrameSource(cfg.data_path, cfg.envs, holdout=cfg.holdout, progress=progress and world.is_main)
    steps_per_epoch = source.num_frames // cfg.batch_size
    if steps_per_epoch == 0:
        raise PvrError(f"only {source.num_frames} training frames in {cfg.env}, fewer than --batch_size "
                       f"{cfg.batch_size}; lower --batch_size or collect more episodes")
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)

    device = world.device(cfg.disable_cuda)
    model, transform = build_method(cfg, world)
    model.to(device)
    optimizer = make_optimizer(cfg, model)
    step, sums = 0, {"loss": 0.0, "n": 0}
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
    world.barrier()
    ckpt = checkpoint.load(run_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if "bank" in ckpt:
            model.load_bank_state(ckpt["bank"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, sums = int(ckpt["step"]), dict(ckpt["sums"])
        if world.is_main:
            _log(f"resuming {run_dir} at step {step} of {total}")

    tb = None
    if world.is_main and not cfg.disable_tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step)
        except ImportError:  # tensorboard is optional for pre-training: stats.jsonl has the curve
            tb = None
    ddp = _parallel(model, world, device)

    def save() -> None:
        if world.is_main:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "sums": sums}
            if hasattr(model, "bank_state"):
                state["bank"] = model.bank_state()
            checkpoint.save(run_dir, state)

    workers = default_workers() if cfg.num_workers is None else cfg.num_workers
    bar = tqdm(total=total, initial=step, desc=f"pretrain {cfg.name}", unit="step", disable=not (progress and
                                                                                                 world.is_main))
    try:
        model.train()
        if hasattr(model, "encoder_k"):
            model.encoder_k.train()
        while step < total:
            epoch, start = divmod(step, steps_per_epoch)
            for g in optimizer.param_groups:
                g["lr"] = learning_rate(cfg, epoch)
            order = source.epoch_order(cfg.seed, epoch)
            stop = min(steps_per_epoch, start + total - step)
            loader = torch.utils.data.DataLoader(
                Views(source, order, cfg, epoch, start, stop, transform, world), batch_size=None, shuffle=False,
                num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False,
                prefetch_factor=4 if workers else None)
            t0, seen = time.perf_counter(), 0
            for views in loader:
                interrupt.check()
                views = [v.to(device, non_blocking=True) for v in views]
                if cfg.method == "moco":
                    loss = model(views[0], views[1], encoder_q=ddp)
                else:
                    loss = (ddp or model)(views[0])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                sums["loss"] += value
                sums["n"] += 1
                seen += views[0].shape[0] * world.size
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{value:.3f}", img_s=f"{rate:.0f}")
                if tb is not None:
                    tb.add_scalar("pretrain/loss", value, step)
                    tb.add_scalar("pretrain/learning_rate", optimizer.param_groups[0]["lr"], step)
                    tb.add_scalar("pretrain/images_per_s", rate, step)
                end_of_epoch = step % steps_per_epoch == 0
                if end_of_epoch and world.is_main:
                    append_jsonl(run_dir / "stats.jsonl", {
                        "epoch": epoch + 1, "step": step, "loss": sums["loss"] / max(sums["n"], 1),
                        "learning_rate": optimizer.param_groups[0]["lr"], "images_per_s": rate})
                if end_of_epoch:
                    sums = {"loss": 0.0, "n": 0}
                if end_of_epoch or step % cfg.checkpoint_every == 0 or step == total:
                    save()
            del loader
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    world.barrier()
    if world.is_main:
        write_outputs(cfg, model, source, pth, meta, step=step, steps_per_epoch=steps_per_epoch)
        (run_dir / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        _log(f"wrote {pth} and {meta}: use --embedding_name {cfg.name}"
             + ("" if cfg.out is None else f" with PVR_MODEL_PATH={pth.parent}"))
    world.barrier()
    return pth


def _parallel(model, world: distributed.World, device: torch.device):
    """Under torchrun, what is trained in DistributedDataParallel: MoCo's query encoder (its momentum copy
    is not trained, and the queue is filled from every process by lightly), MAE's whole model."""
    if not world.distributed:
        return None
    from torch.nn.parallel import DistributedDataParallel as DDP

    net = model.encoder_q if hasattr(model, "encoder_q") else model
    return DDP(net, device_ids=[device.index] if device.type == "cuda" else None)


def registry_info(cfg: PretrainConfig, model, source: FrameSource, *, step: int, steps_per_epoch: int) -> dict:
    """``NAME.pvr.json`` (no paths, no times: see :mod:`pvr.pretrain.registered`)."""
    from dataclasses import asdict
    from importlib.metadata import version

    from pvr.encoders.base import Preprocess

    # frames are resized (antialiased, as PIL did during training) to the training crop size
    pre = Preprocess(resize=cfg.image_size, crop=cfg.image_size, interpolation="bilinear", antialias=True,
                     uint8=True)
    info = {"format": registered.FORMAT, "family": cfg.method, "method": cfg.method, "arch": cfg.arch,
            "image_size": cfg.image_size, "preprocess": asdict(pre), "datasets": source.datasets(),
            "holdout": {"fraction": cfg.holdout, "rule": "sha256('<env>/<episode>')[:8] / 2**64 < fraction"},
            "library": f"lightly=={version('lightly')}",
            "training": {"epochs": cfg.epochs, "steps": step, "steps_per_epoch": steps_per_epoch,
                         "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "seed": cfg.seed}}
    if cfg.method == "moco":
        from pvr.pretrain.moco import encoder_dim

        info.update(aug=cfg.aug, dim=encoder_dim(cfg.arch))
        if cfg.tap is not None:
            from pvr.pretrain.registered import tap_dim

            info.update(tap=cfg.tap, dim=tap_dim(cfg.tap, cfg.image_size))
        info["training"].update(momentum=cfg.momentum, weight_decay=cfg.weight_decay, moco_dim=cfg.moco_dim,
                                moco_k=cfg.moco_k, moco_m=cfg.moco_m, moco_t=cfg.moco_t)
    else:
        info.update(aug=None, dim=model.width, micro_batch=8)
        info["training"].update(mask_ratio=cfg.mask_ratio, decoder_depth=cfg.decoder_depth)
    return info


def write_outputs(cfg: PretrainConfig, model, source: FrameSource, pth: Path, meta: Path, *, step: int,
                  steps_per_epoch: int) -> None:
    check_name(cfg)  # again: someone may have made the files while this ran
    epoch = math.ceil(step / steps_per_epoch)
    buf = io.BytesIO()  # not the temp file: torch.save names the archive after the file, and the bytes
    torch.save(model.upstream_checkpoint(epoch), buf)  # (so weights_sha256, so the fingerprint) must not vary
    with atomic_path(pth) as tmp:
        tmp.write_bytes(buf.getvalue())
    info = registry_info(cfg, model, source, step=step, steps_per_epoch=steps_per_epoch)
    import hashlib

    info["weights_sha256"] = hashlib.sha256(pth.read_bytes()).hexdigest()
    write_json(meta, info)


def stats(run_dir: Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "stats.jsonl")
