"""Behavioural cloning with evaluation running in parallel, resumable at any kill.

Evaluation points are the recipe's (the original's ``is_essential_save``: epoch 0,
then 1-5%, 10-60% by tenths, 80% and 100% of the epochs, or every ``--eval_every``
epochs; CortexBench's: after epochs 6, 11, ..., 96 and 100). The loss, optimiser,
schedule and default settings are the recipe's too (:mod:`pvr.bc.recipes`).
At an evaluation point the policy goes to the evaluation process and training
goes on; training waits only at the next evaluation point, for the previous
evaluation to finish (as the original did). Each epoch is checkpointed
atomically, with the weights of any evaluation still in flight, so a killed run
loses no evaluation. Everything random depends only on (seed, epoch), so a run
resumed from its last checkpoint produces the same rows as an uninterrupted one.
Before anything is written, every dataset is checked against one reset of its
evaluation environment (:mod:`pvr.bc.precheck`).

Run directory ``<save_path>/<xpid>/``: ``config.json`` (resolved config),
``stats.jsonl`` (one row per epoch), ``checkpoint.pt`` (+ ``checkpoint.prev.pt``),
``policy.pt`` (final policy weights + what is needed to rebuild it), ``done``.
"""
from __future__ import annotations

import contextlib
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
from pvr.bc import checkpoint, distributed, recipes
from pvr.bc.config import TrainConfig
from pvr.bc.policy import ActionSpec, Policy
from pvr.bc.precheck import check_datasets
from pvr.bc.stats import StatsLog
from pvr.bc.sampler import Demonstrations, batches, episode_starts
from pvr.bc.stacking import fuse, proprio_dims, stack_indices
from pvr.embed import embed, feature_dim, find_features, load_features, make_encoder, open_dataset
from pvr.encoders import ENCODERS
from pvr.encoders.base import encode
from pvr.errors import PvrError
from pvr.evaluation import timing
from pvr.evaluation.vector import available_cores, thread_split
from pvr.evaluation.worker import EvalWorker
from pvr.utils import default_device
from pvr.utils.io import write_json
from pvr.utils import interrupt

FINAL_POLICY = "policy.pt"
DONE_MARKER = "done"
# settings that may differ when a run is resumed: they change how, not what, it computes
OPERATIONAL = {"disable_cuda", "disable_tensorboard", "wandb", "skip_eval_if_behind", "num_envs_test", "runtime",
               "adaptive_threads"}
ESSENTIAL_PROGRESS = recipes.ESSENTIAL_PROGRESS
eval_epochs = recipes.original_eval_epochs  # the original recipe's points; each recipe has its own


def _make_encoder(cfg: TrainConfig, ds=None, **kw):
    """The run's encoder: seeded by --seed (random weights follow it); random init when asked to."""
    if cfg.train_embedding and cfg.disable_pretrained_embedding:
        kw["pretrained"] = False
    try:
        return make_encoder(cfg.embedding_name, ds, seed=cfg.seed, **kw)
    except TypeError as e:
        if "pretrained" in kw and "pretrained" in str(e):
            raise PvrError(f"encoder {cfg.embedding_name} has no pretrained weights to disable; "
                           "drop --disable_pretrained_embedding") from None
        raise


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stdout)
    sys.stdout.flush()


def ensure_features(cfg: TrainConfig) -> None:
    """Embed each training dataset that has no features for this encoder yet (what `pvr embed` does)."""
    if cfg.train_embedding:
        return
    for env in cfg.envs:
        with open_dataset(cfg.data_path, env) as ds:
            encoder = _make_encoder(cfg, ds)
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
    parts, facts = [], {"envs": {}, "proprio_dims": {}}
    fingerprint = None
    k = cfg.num_input_frames
    obs_dims = {}
    for env in cfg.envs:
        with open_dataset(cfg.data_path, env) as ds:
            encoder = _make_encoder(cfg, ds)
            ends = ds.episode_ends
            if cfg.num_trajectories_train:
                ends = ends[: cfg.num_trajectories_train]
            n = int(ends[-1]) if len(ends) else 0
            if n == 0:
                raise PvrError(f"dataset {ds.path} has no episodes; collect some with `pvr collect`")
            actions = np.asarray(ds["action"][:n])
            proprio = _proprio(cfg, env, ds, n)
            if cfg.train_embedding:
                raw = np.asarray(ds[encoder.input_key][:n])
                parts.append(Demonstrations(raw, actions, episode_starts(ends, n), stack_indices(ends, k), raw=True,
                                            stack_mode=cfg.frame_stack_mode, proprio=proprio))
            else:  # stacked per batch (Demonstrations.observations): each embedding is held once
                feats = load_features(ds, encoder)[:n].astype(np.float32)
                parts.append(Demonstrations(feats, actions, episode_starts(ends, n),
                                            stack_indices(ends, k) if k > 1 else None,
                                            stack_mode=cfg.frame_stack_mode, proprio=proprio))
            facts["envs"][env] = {"episodes": len(ends), "frames": n, "dataset": str(ds.path),
                                  "env_kwargs": ds.meta.get("env_kwargs") or {}}
            if fingerprint not in (None, encoder.fingerprint):
                raise PvrError("environments were embedded with different encoder weights")
            fingerprint = encoder.fingerprint
            facts["encoder_kwargs"] = {"dim": encoder.dim} if encoder.input_key == "true_state" else {}
            if cfg.train_embedding and cfg.disable_pretrained_embedding:
                facts["encoder_kwargs"]["pretrained"] = False
            facts["proprio_dims"][env] = 0 if proprio is None else proprio.shape[1]
            obs_dims[env] = facts["obs_dim"] = feature_dim(encoder, ds) * k + facts["proprio_dims"][env]
    shapes = {p.obs.shape[1:] for p in parts}
    if len(set(obs_dims.values())) > 1 or len({p.proprio is None for p in parts}) > 1:
        raise PvrError(f"the environments' observations differ in size with their proprioception "
                       f"({', '.join(f'{e}: {d}' for e, d in obs_dims.items())}): train them separately, "
                       "or pass --no_proprio")
    if len(shapes) != 1:
        raise PvrError(f"the environments' {'inputs' if cfg.train_embedding else 'features'} have different "
                       f"shapes {sorted(shapes)}: train them separately")
    facts["fingerprint"] = fingerprint
    return Demonstrations.concat(parts), facts


def _proprio(cfg: TrainConfig, env: str, ds, n: int) -> np.ndarray | None:
    """The first n steps' proprioception of ``env`` (a prefix of the recorded true_state), when the run
    uses it and the env has one."""
    dims = proprio_dims(env) if cfg.proprio else 0
    if not dims:
        return None
    if "true_state" not in ds:
        raise PvrError(f"dataset {ds.path} has no true_state to take {env}'s proprioception from; "
                       "pass --no_proprio, or collect the data with `pvr collect`")
    state = np.asarray(ds["true_state"][:n], dtype=np.float32)
    if state.ndim != 2 or state.shape[1] < dims:
        raise PvrError(f"dataset {ds.path}: true_state of shape {state.shape[1:]} is too short for {env}'s "
                       f"{dims} proprioception values; pass --no_proprio")
    return state[:, :dims].copy()


def precheck(cfg: TrainConfig) -> tuple[ActionSpec, dict[str, dict]]:
    """The evaluation env_kwargs of every env, and the action spec they share, once each dataset has been
    checked against one reset of its environment (raises PvrError before anything is written)."""
    user_kwargs = cfg.env_kwargs_dict()
    with contextlib.ExitStack() as stack:
        datasets = {env: stack.enter_context(open_dataset(cfg.data_path, env)) for env in cfg.envs}
        env_kwargs = {env: (user_kwargs or ds.meta.get("env_kwargs") or {}) for env, ds in datasets.items()}
        action = check_datasets(cfg, datasets, env_kwargs)
    return action, env_kwargs


def check_run_dir(cfg: TrainConfig) -> tuple[Path, bool]:
    """The run directory and whether it holds a finished run; refuses one with other settings. Writes nothing."""
    run_dir = Path(cfg.save_path) / cfg.run_id
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        return run_dir, False
    old = json.loads(cfg_path.read_text())
    mine = cfg.to_dict()
    # a setting added to pvr after that run was made matches when it is off (it did not exist then)
    diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k) and k not in OPERATIONAL
                  and not (k not in old and mine.get(k) in (None, False)))
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
    threads = torch.get_num_threads()
    try:
        return _train(cfg, world, progress=progress and world.is_main)
    finally:
        torch.set_num_threads(threads)  # a caller's later work (the next run's embedding) gets them back
        distributed.shutdown(world)


def _warn(msg: str) -> None:
    print(f"\033[33mWARN: {msg}\033[m" if sys.stderr.isatty() else f"WARN: {msg}", file=sys.stderr, flush=True)


def _train(cfg: TrainConfig, world: distributed.World, *, progress: bool) -> Path:
    save = not cfg.disable_save
    run_dir = Path(cfg.save_path) / cfg.run_id
    if save:
        run_dir, finished = check_run_dir(cfg)
        if finished:
            if world.is_main:
                _log(f"run {run_dir} is already finished; nothing to do")
            return run_dir
    device = world.device(cfg.disable_cuda)
    train_threads, eval_threads = thread_split()  # training and evaluation share the cores (documented there)
    cores = available_cores()  # the final evaluation's (and, adaptive, the waiting side's) threads
    action, env_kwargs = precheck(cfg)  # a dataset that does not fit its environment: fail before any write
    if world.is_main:
        for msg in cfg.warnings():
            _warn(msg)
        ensure_features(cfg)  # rank 0 embeds what is missing; the others wait, then read
    world.barrier()
    if train_threads:  # embedding (above) had every core; from here on evaluation runs beside training
        torch.set_num_threads(train_threads)
    data, facts = load_demonstrations(cfg)
    if save and world.is_main and not (run_dir / "config.json").exists():  # only once the inputs are good
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
    recipe = recipes.get(cfg.recipe)
    policy_kwargs = recipe.policy_kwargs(cfg, action)
    torch.manual_seed(cfg.seed)
    policy = recipe.policy(facts["obs_dim"], action, policy_kwargs).to(device)
    encoder = None
    params = list(policy.parameters())
    if cfg.train_embedding:  # fine-tuning: the encoder trains with the policy, on raw frames
        encoder = _make_encoder(cfg, train=True, **{k: v for k, v in facts["encoder_kwargs"].items()
                                                    if k != "pretrained"}).to(device)
        params += [p for p in encoder.parameters() if p.requires_grad]
    optimizer = recipe.optimizer(params, cfg)
    steps_per_epoch = -(-(len(data) + cfg.unroll_length) // cfg.unroll_length) // cfg.batch_size + 1
    scheduler, per_update = recipe.scheduler(optimizer, cfg, steps_per_epoch)

    world.barrier()  # rank 0 has created the run directory
    ckpt = checkpoint.load(run_dir) if save else None
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

    threads_now = None  # set once the evaluation process runs (a single process, threads not set by the user)

    def run_epoch(epoch: int) -> dict:
        t0 = time.time()
        out = train_epoch(model, optimizer, scheduler, data, cfg, epoch, device, enc_model, world, per_update,
                          recipe.loss, threads=threads_now)
        if save and world.is_main:  # the stage's wall time, for `pvr report`
            timing.record(run_dir, "train", epoch, time.time() - t0)
        return out

    if not world.is_main:  # ranks > 0: train in step with rank 0, nothing else
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            run_epoch(epoch)
        world.barrier()
        return run_dir

    log = StatsLog(run_dir if save else None, tensorboard=save and not cfg.disable_tensorboard,
                   wandb_project=cfg.wandb, config=cfg.to_dict())
    log.truncate_after(start_epoch)  # rows past the checkpoint belong to a future we recompute
    if save:
        write_json(run_dir / "run.json", {"facts": facts, "action": action.to_dict(), "policy_kwargs": policy_kwargs,
                                          "env_kwargs": env_kwargs, "pvr_version": pvr.__version__,
                                          "world_size": world.size, "command": " ".join(sys.argv)})
    points = set(recipe.eval_epochs(cfg.epochs, cfg.eval_every))
    # the worker imports what registered this encoder (a --plugin, or the user's own module)
    plugins = pvr.plugins.loaded() + [ENCODERS.get(cfg.embedding_name).factory.__module__]
    spec = dict(plugins=plugins, embedding_name=cfg.embedding_name, encoder_kwargs=facts["encoder_kwargs"],
                encoder_seed=cfg.seed, fingerprint=facts["fingerprint"], obs_dim=facts["obs_dim"],
                action=action.to_dict(), policy_kwargs=policy_kwargs, envs=cfg.envs, env_kwargs=env_kwargs,
                device=str(device), episodes=cfg.num_episodes_test, num_envs=cfg.num_envs_test,
                seed=cfg.seed * 1_000_003, num_input_frames=cfg.num_input_frames,
                frame_stack_mode=cfg.frame_stack_mode, proprio=bool(cfg.proprio), frame_skips=cfg.frame_skips,
                frame_skip_mode=cfg.frame_skip_mode, progress=progress, threads=eval_threads,
                # --adaptive_threads: every core while training waits for an evaluation (timing decides when)
                threads_waited=cores if cfg.adaptive_threads else None,
                runtime=cfg.runtime)
    started = time.time()
    pending_train: dict[int, dict | None] = {}
    in_flight: dict | None = None  # what the evaluator is testing: kept in checkpoints until its row is written
    try:
        with EvalWorker(spec, run_dir if save else None) as worker:
            if train_threads and not world.distributed and cfg.adaptive_threads:

                def threads_now() -> int:
                    """The trainer's share while an evaluation runs beside it, every core while none does."""
                    return train_threads if worker.evaluating() else cores

            def record(epoch: int, test: dict) -> None:
                nonlocal in_flight
                _print_test(epoch, test)
                log.write(_row(epoch, pending_train.pop(epoch, None), test, started))
                in_flight = None

            def weights() -> dict:
                return {"policy": policy.state_dict(), **({"encoder": encoder.state_dict()} if encoder else {})}

            def submit(epoch: int, train_stats: dict | None, w: dict) -> None:
                nonlocal in_flight
                if worker.busy():  # one evaluation at a time: the previous one is recorded first
                    record(*worker.result())
                pending_train[epoch] = train_stats
                # the final evaluation has the machine to itself: nothing is left to train
                worker.submit(epoch, w, threads=cores if epoch == cfg.epochs else None)
                in_flight = {"epoch": epoch, "train": train_stats or {},
                             "weights": {k: {n: t.detach().cpu().clone() for n, t in sd.items()}
                                         for k, sd in w.items()}}

            def save_ckpt(epoch: int, train_stats: dict | None) -> None:
                if save:
                    checkpoint.save(run_dir, {"epoch": epoch, **weights(), "optimizer": optimizer.state_dict(),
                                              "scheduler": scheduler.state_dict(), "train": train_stats or {},
                                              "in_flight": in_flight or {}})

            def after_epoch(epoch: int, train_stats: dict | None, skip_eval: bool = False) -> None:
                if epoch in log:
                    return
                if epoch in points and not skip_eval:
                    submit(epoch, train_stats, weights())
                else:
                    row = _row(epoch, train_stats, {}, started)
                    if skip_eval:
                        row["eval_skipped"] = True
                    log.write(row)

            if ckpt is None:
                save_ckpt(0, None)
            elif ckpt.get("in_flight") and ckpt["in_flight"]["epoch"] not in log:  # killed while it was tested
                lost = ckpt["in_flight"]
                submit(int(lost["epoch"]), lost["train"] or None, lost["weights"])
            after_epoch(start_epoch, last_train)
            bar = tqdm(range(start_epoch + 1, cfg.epochs + 1), desc="epoch", disable=not progress,
                       dynamic_ncols=True, initial=start_epoch, total=cfg.epochs)
            for epoch in bar:
                stats = run_epoch(epoch)
                _log(f"   ### {epoch} | loss {stats['loss']}, norm {stats['norm']}")
                skip = False
                if worker.busy():
                    done = worker.result(block=False)  # a finished evaluation is recorded at once
                    if done is not None:
                        record(*done)
                    elif epoch in points:  # training waits only here, as in the original
                        if cfg.skip_eval_if_behind and epoch != cfg.epochs:
                            skip = True  # evaluation is behind: this point is skipped, training goes on
                        else:
                            record(*worker.result())
                save_ckpt(epoch, stats)
                after_epoch(epoch, stats, skip_eval=skip)
            if worker.busy():
                record(*worker.result())
    finally:
        log.close()
    if save:
        _save_final(run_dir, policy, cfg, facts, action, policy_kwargs, encoder)
    else:
        _log("--disable_save: nothing was written")
    world.barrier()
    return run_dir


def train_epoch(policy, optimizer, scheduler, data: Demonstrations, cfg: TrainConfig, epoch: int,
                device: torch.device, encoder=None, world: distributed.World = distributed.World(),
                per_update: bool = False, loss_fn=None, threads=None) -> dict:
    """One pass over the demonstrations; ``policy``/``encoder`` may be DDP-wrapped. The scheduler steps
    after every update (``per_update``) or once at the end of the epoch (the original). ``loss_fn`` is
    the recipe's (default: the policy's own NLL, the original's). ``threads``, when given, is asked
    before each update how many torch threads training may use (all cores while no evaluation runs)."""
    loss_fn = loss_fn or recipes.get(cfg.recipe).loss
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm else float("inf")  # 0: no clipping, norm still logged
    core = getattr(policy, "module", policy)
    policy.train()
    if encoder is not None:
        encoder.train()
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    losses, norms, samples = [], [], 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for batch in batches(data, unroll=cfg.unroll_length, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
                         rank=world.rank, world_size=world.size):
        interrupt.check()
        if threads is not None and torch.get_num_threads() != (n := threads()):
            torch.set_num_threads(n)
        obs = batch["obs"].to(device) if "obs" in batch else _encode_window(encoder, data, batch["index"], cfg, device)
        batch = {k: v.to(device) for k, v in batch.items() if k != "obs"}
        out, _ = policy(obs, batch["first"], core.initial_state(obs.shape[1]))
        loss = loss_fn(core, out, batch["actions"], batch["mask"])
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
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
        if per_update:
            scheduler.step()
        losses.append(loss.item())
        norms.append(float(norm))
        samples += int(batch["mask"].sum())
    if not per_update:
        scheduler.step()
    return {"loss": float(np.mean(losses)), "norm": float(np.mean(norms)), "samples": samples}


def _encode_window(encoder, data: Demonstrations, index: torch.Tensor, cfg: TrainConfig,
                   device: torch.device) -> torch.Tensor:
    """Fine-tuning: encode the K stacked raw inputs of every (t, b) with gradients → (T, B, K*D [+ P])."""
    T, B = index.shape
    idx = data.stack_index[index.numpy()]  # (T, B, K)
    raw = torch.from_numpy(data.obs[idx.reshape(-1)]).to(device)
    feats = encode(encoder, raw).view(T, B, idx.shape[-1], -1)
    proprio = None if data.proprio is None else torch.from_numpy(data.proprio[index.numpy()]).to(device)
    return fuse(feats, cfg.frame_stack_mode, proprio)


def _save_final(run_dir: Path, policy: Policy, cfg: TrainConfig, facts: dict, action: ActionSpec,
                policy_kwargs: dict, encoder=None) -> None:
    from pvr.utils.io import atomic_path

    with atomic_path(run_dir / FINAL_POLICY) as tmp:
        torch.save({"policy": policy.state_dict(), "obs_dim": facts["obs_dim"], "action": action.to_dict(),
                    "policy_kwargs": policy_kwargs, "embedding_name": cfg.embedding_name,
                    "encoder_kwargs": facts["encoder_kwargs"], "fingerprint": facts["fingerprint"],
                    **({"encoder": encoder.state_dict()} if encoder is not None else {})}, tmp)
    (run_dir / DONE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
