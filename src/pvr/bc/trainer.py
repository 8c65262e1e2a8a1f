"""Behavioural cloning with evaluation running in parallel, resumable at any kill.

Per epoch e (1..E): train on the demonstrations while the evaluation process tests
the policy of epoch e-1; then wait for that evaluation (as the original did),
append epoch e-1's row to ``stats.jsonl``, checkpoint epoch e atomically, and
hand epoch e's policy to the evaluator. Epoch 0 is the untrained policy.
Everything random depends only on (seed, epoch), so a run resumed from its last
checkpoint produces the same rows as an uninterrupted one.

Run directory ``<save_path>/<xpid>/``: ``config.json`` (resolved config),
``stats.jsonl`` (one row per epoch), ``checkpoint.pt`` (+ ``checkpoint.prev.pt``),
``policy.pt`` (final policy weights + what is needed to rebuild it), ``done``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import pvr
import pvr.envs
import pvr.plugins
from pvr.bc import checkpoint, distributed
from pvr.bc.config import TrainConfig
from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.stats import StatsLog
from pvr.bc.sampler import Demonstrations, batches, episode_starts
from pvr.bc.stacking import combine, stack_indices
from pvr.embed import embed, feature_dim, find_features, load_features, make_encoder, open_dataset
from pvr.encoders import ENCODERS
from pvr.encoders.base import encode
from pvr.errors import PvrError
from pvr.evaluation.worker import EvalWorker
from pvr.utils import default_device
from pvr.utils.io import write_json

FINAL_POLICY = "policy.pt"
DONE_MARKER = "done"
# settings that may differ when a run is resumed: they change how, not what, it computes
OPERATIONAL = {"debug", "disable_cuda", "disable_tensorboard", "wandb", "skip_eval_if_behind", "num_envs_test"}


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)
    sys.stdout.flush()


def ensure_features(cfg: TrainConfig) -> None:
    """Embed each training dataset that has no features for this encoder yet (what `pvr embed` does)."""
    if cfg.train_embedding:
        return
    for env in cfg.envs:
        with open_dataset(cfg.data_path, env) as ds:
            encoder = make_encoder(cfg.embedding_name, ds)
            missing = find_features(ds, encoder) is None
        if missing:
            _log(f"{env}: no {encoder.name} features yet; embedding the dataset first")
            with open_dataset(cfg.data_path, env, mode="a") as wds:
                embed(wds, encoder, wait=True)  # a concurrent run embedding the same data: wait, reuse


def load_demonstrations(cfg: TrainConfig) -> tuple[Demonstrations, dict]:
    """Inputs, actions and episode starts of every training env, plus facts about them.

    With a frozen encoder the inputs are its cached features, stacked; with
    ``--train_embedding`` they are the raw frames (or states) with stacking indices.
    """
    parts, facts = [], {"envs": {}}
    fingerprint = None
    k = cfg.num_input_frames
    for env in cfg.envs:
        with open_dataset(cfg.data_path, env) as ds:
            encoder = make_encoder(cfg.embedding_name, ds)
            ends = ds.episode_ends
            if cfg.num_trajectories_train:
                ends = ends[: cfg.num_trajectories_train]
            n = int(ends[-1]) if len(ends) else 0
            if n == 0:
                raise PvrError(f"dataset {ds.path} has no episodes; collect some with `pvr collect`")
            actions = np.asarray(ds["action"][:n])
            if cfg.train_embedding:
                raw = np.asarray(ds[encoder.input_key][:n])
                parts.append(Demonstrations(raw, actions, episode_starts(ends, n), stack_indices(ends, k), raw=True))
            else:  # stacked per batch (Demonstrations.observations): each embedding is held once
                feats = load_features(ds, encoder)[:n].astype(np.float32)
                parts.append(Demonstrations(feats, actions, episode_starts(ends, n),
                                            stack_indices(ends, k) if k > 1 else None,
                                            stack_mode=cfg.frame_stack_mode))
            facts["envs"][env] = {"episodes": len(ends), "frames": n, "dataset": str(ds.path),
                                  "env_kwargs": ds.meta.get("env_kwargs") or {}}
            if fingerprint not in (None, encoder.fingerprint):
                raise PvrError("environments were embedded with different encoder weights")
            fingerprint = encoder.fingerprint
            facts["encoder_kwargs"] = {"dim": encoder.dim} if encoder.input_key == "true_state" else {}
            facts["obs_dim"] = feature_dim(encoder, ds) * k
    shapes = {p.obs.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise PvrError(f"the environments' {'inputs' if cfg.train_embedding else 'features'} have different "
                       f"shapes {sorted(shapes)}: train them separately")
    facts["fingerprint"] = fingerprint
    return Demonstrations.concat(parts), facts


def _action_spec(cfg: TrainConfig, env_kwargs: dict[str, dict]) -> ActionSpec:
    specs = set()
    for env in cfg.envs:
        e = pvr.envs.make(env, **env_kwargs[env])
        try:
            specs.add(ActionSpec.from_space(e.action_space))
        finally:
            e.close()
    if len(specs) != 1:
        raise PvrError(f"environments {cfg.envs} have different action spaces; they cannot share a policy")
    return specs.pop()


def check_run_dir(cfg: TrainConfig) -> tuple[Path, bool]:
    """The run directory and whether it holds a finished run; refuses one with other settings. Writes nothing."""
    run_dir = Path(cfg.save_path) / cfg.run_id
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        return run_dir, False
    old = json.loads(cfg_path.read_text())
    mine = cfg.to_dict()
    diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k) and k not in OPERATIONAL)
    if diff:
        raise PvrError(f"{run_dir} already holds a run with different settings ({', '.join(diff)}); "
                       "pick another --xpid or --save_path, or delete that directory")
    return run_dir, (run_dir / DONE_MARKER).exists()


def _row(epoch: int, train: dict | None, test: dict, started: float) -> dict:
    return {"epoch": epoch, "training_loss": train["loss"] if train else None,
            "gradient_norm": train["norm"] if train else None, "samples": train["samples"] if train else 0,
            "test": test, "time": round(time.time() - started, 3)}


def _print_test(epoch: int, test: dict) -> None:
    for env, r in test.items():
        _log(f"   ___ {epoch} | {env} : return {r['return']}, success {r['success']}")


def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Train (or resume, or skip if finished) the run described by ``cfg``; return its directory."""
    cfg.validate()
    ENCODERS.get(cfg.embedding_name)  # unknown name: fail before touching anything
    world = distributed.init(cfg.disable_cuda)
    try:
        return _train(cfg, world, progress=progress and world.is_main)
    finally:
        distributed.shutdown(world)


def _train(cfg: TrainConfig, world: distributed.World, *, progress: bool) -> Path:
    run_dir, finished = check_run_dir(cfg)
    if finished:
        if world.is_main:
            _log(f"run {run_dir} is already finished; nothing to do")
        return run_dir
    device = world.device(cfg.disable_cuda)

    if world.is_main:
        ensure_features(cfg)  # rank 0 embeds what is missing; the others wait, then read
    world.barrier()
    data, facts = load_demonstrations(cfg)
    user_kwargs = cfg.env_kwargs_dict()
    env_kwargs = {env: (user_kwargs or facts["envs"][env]["env_kwargs"]) for env in cfg.envs}
    action = _action_spec(cfg, env_kwargs)
    if world.is_main and not (run_dir / "config.json").exists():  # only once the inputs are known to be good
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
    policy_kwargs = dict(hidden_size=cfg.hidden_size, batch_norm=cfg.batch_norm, lstm=not cfg.disable_lstm)
    torch.manual_seed(cfg.seed)
    policy = Policy(facts["obs_dim"], action, **policy_kwargs).to(device)
    encoder = None
    params = list(policy.parameters())
    if cfg.train_embedding:  # fine-tuning: the encoder trains with the policy, on raw frames
        encoder = make_encoder(cfg.embedding_name, train=True, **facts["encoder_kwargs"]).to(device)
        params += [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.alpha,
                                    eps=cfg.epsilon, momentum=cfg.momentum)
    steps_per_epoch = -(-(len(data) + cfg.unroll_length) // cfg.unroll_length) // cfg.batch_size + 1
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total_steps))

    world.barrier()  # rank 0 has created the run directory
    ckpt = checkpoint.load(run_dir)
    start_epoch, last_train = 0, None
    if ckpt is not None:
        policy.load_state_dict(ckpt["policy"])
        if encoder is not None:
            encoder.load_state_dict(ckpt["encoder"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, last_train = int(ckpt["epoch"]), ckpt["train"] or None
        if world.is_main:
            _log(f"resuming {run_dir} from epoch {start_epoch}")
    model, enc_model = policy, encoder
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        model = DDP(policy, device_ids=ids)
        if encoder is not None and any(p.requires_grad for p in encoder.parameters()):
            enc_model = DDP(encoder, device_ids=ids)

    def epochs_only() -> None:  # ranks > 0: train in step with rank 0, nothing else
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            train_epoch(model, optimizer, scheduler, data, cfg, epoch, device, enc_model, world)
        world.barrier()

    if not world.is_main:
        epochs_only()
        return run_dir

    log = StatsLog(run_dir, tensorboard=not cfg.disable_tensorboard, wandb_project=cfg.wandb, config=cfg.to_dict())
    log.truncate_after(start_epoch)  # rows past the checkpoint belong to a future we recompute
    write_json(run_dir / "run.json", {"facts": facts, "action": action.to_dict(), "policy_kwargs": policy_kwargs,
                                      "env_kwargs": env_kwargs, "pvr_version": pvr.__version__,
                                      "world_size": world.size, "command": " ".join(sys.argv)})
    eval_epochs = {e for e in range(cfg.epochs + 1) if e % cfg.eval_every == 0} | {cfg.epochs}
    # the worker imports what registered this encoder (a --plugin, or the user's own module)
    plugins = pvr.plugins.loaded() + [ENCODERS.get(cfg.embedding_name).factory.__module__]
    spec = dict(plugins=plugins, embedding_name=cfg.embedding_name, encoder_kwargs=facts["encoder_kwargs"],
                fingerprint=facts["fingerprint"], obs_dim=facts["obs_dim"], action=action.to_dict(),
                policy_kwargs=policy_kwargs, envs=cfg.envs, env_kwargs=env_kwargs, device=str(device),
                episodes=cfg.num_episodes_test, num_envs=cfg.num_envs_test, seed=cfg.seed * 1_000_003,
                num_input_frames=cfg.num_input_frames, frame_stack_mode=cfg.frame_stack_mode, progress=progress)
    started = time.time()
    pending_train: dict[int, dict | None] = {}
    try:
        with EvalWorker(spec) as worker:

            def record(epoch: int, test: dict) -> None:
                _print_test(epoch, test)
                log.write(_row(epoch, pending_train.pop(epoch), test, started))

            def weights() -> dict:
                return {"policy": policy.state_dict(), **({"encoder": encoder.state_dict()} if encoder else {})}

            def save_ckpt(epoch: int, train_stats: dict | None) -> None:
                checkpoint.save(run_dir, {"epoch": epoch, **weights(), "optimizer": optimizer.state_dict(),
                                          "scheduler": scheduler.state_dict(), "train": train_stats or {}})

            def after_epoch(epoch: int, train_stats: dict | None, skip_eval: bool = False) -> None:
                if epoch in log:
                    return
                if epoch in eval_epochs and not skip_eval:
                    pending_train[epoch] = train_stats
                    worker.submit(epoch, weights())
                else:
                    row = _row(epoch, train_stats, {}, started)
                    if skip_eval:
                        row["eval_skipped"] = True
                    log.write(row)

            if ckpt is None:
                save_ckpt(0, None)
            after_epoch(start_epoch, last_train)
            bar = tqdm(range(start_epoch + 1, cfg.epochs + 1), desc="epoch", disable=not progress,
                       dynamic_ncols=True, initial=start_epoch, total=cfg.epochs)
            for epoch in bar:
                stats = train_epoch(model, optimizer, scheduler, data, cfg, epoch, device, enc_model, world)
                _log(f"   ### {epoch} | loss {stats['loss']}, norm {stats['norm']}")
                skip = False
                if worker.busy():
                    done = worker.result(block=False) if cfg.skip_eval_if_behind else None
                    if done is not None:
                        record(*done)
                    elif cfg.skip_eval_if_behind and epoch != cfg.epochs and epoch in eval_epochs:
                        skip = True  # evaluation is behind: this point is skipped, training goes on
                    else:
                        record(*worker.result())  # training waits for the evaluation, as in the original
                save_ckpt(epoch, stats)
                after_epoch(epoch, stats, skip_eval=skip)
            if worker.busy():
                record(*worker.result())
    finally:
        log.close()
    _save_final(run_dir, policy, cfg, facts, action, policy_kwargs, encoder)
    world.barrier()
    return run_dir


def train_epoch(policy, optimizer, scheduler, data: Demonstrations, cfg: TrainConfig, epoch: int,
                device: torch.device, encoder=None, world: distributed.World = distributed.World()) -> dict:
    """One pass over the demonstrations; ``policy``/``encoder`` may be DDP-wrapped."""
    core = getattr(policy, "module", policy)
    policy.train()
    if encoder is not None:
        encoder.train()
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    losses, norms, samples = [], [], 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for batch in batches(data, unroll=cfg.unroll_length, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
                         rank=world.rank, world_size=world.size):
        obs = batch["obs"].to(device) if "obs" in batch else _encode_window(encoder, data, batch["index"], cfg, device)
        batch = {k: v.to(device) for k, v in batch.items() if k != "obs"}
        out, _ = policy(obs, batch["first"], core.initial_state(obs.shape[1]))
        loss = core.loss(out, batch["actions"], batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        if world.distributed:
            # weight each rank's mean by its share of the global batch's steps, so the
            # averaged gradient (and the logged loss) are those of the global batch
            n = batch["mask"].sum().to(torch.float64)
            totals = torch.stack([n, loss.detach().to(torch.float64) * n]).cpu()
            torch.distributed.all_reduce(totals)
            (loss * (n * world.size / totals[0].clamp(min=1)).to(loss.dtype)).backward()
            loss = totals[1] / totals[0].clamp(min=1)
        else:
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        norms.append(float(norm))
        samples += int(batch["mask"].sum())
    return {"loss": float(np.mean(losses)), "norm": float(np.mean(norms)), "samples": samples}


def _encode_window(encoder, data: Demonstrations, index: torch.Tensor, cfg: TrainConfig,
                   device: torch.device) -> torch.Tensor:
    """Fine-tuning: encode the K stacked raw inputs of every (t, b) with gradients → (T, B, K*D)."""
    T, B = index.shape
    idx = data.stack_index[index.numpy()]  # (T, B, K)
    raw = torch.from_numpy(data.obs[idx.reshape(-1)]).to(device)
    feats = encode(encoder, raw).view(T, B, idx.shape[-1], -1)
    return combine(feats, cfg.frame_stack_mode)


def _save_final(run_dir: Path, policy: Policy, cfg: TrainConfig, facts: dict, action: ActionSpec,
                policy_kwargs: dict, encoder=None) -> None:
    from pvr.utils.io import atomic_path

    with atomic_path(run_dir / FINAL_POLICY) as tmp:
        torch.save({"policy": policy.state_dict(), "obs_dim": facts["obs_dim"], "action": action.to_dict(),
                    "policy_kwargs": policy_kwargs, "embedding_name": cfg.embedding_name,
                    "encoder_kwargs": facts["encoder_kwargs"], "fingerprint": facts["fingerprint"],
                    **({"encoder": encoder.state_dict()} if encoder is not None else {})}, tmp)
    (run_dir / DONE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
