"""``pvr benchmark``: every (task, encoder, seed) of a protocol, from demonstrations to a report.

For each task: collect the demonstrations with pvr's default expert if the
dataset lacks them; for each encoder and seed: embed (features are cached by the
encoder's fingerprint), then train and evaluate (``pvr train``; a finished run is
skipped, an unfinished one resumes from its last checkpoint). Runs go one after
another in this process (``--cluster local``) or, through ``pvr sweep``'s
submission machinery, as submitit job arrays (``--cluster slurm``), where the
collecting is a job too and each task's runs wait for it (``pvr.benchmark.cluster``).

Layout under ``--save_path`` (default ``pvr_benchmark/<protocol>``)::

    benchmark.json   the manifest `pvr report` reads (written first, updated as runs finish)
    runs/<env>-<encoder>-s<seed>/   one `pvr train` run directory each
    data/<env>.zarr  the demonstrations (unless --data_path points elsewhere)

A task that cannot run on this machine (its simulator is missing, or collecting
fails) is reported and recorded in the manifest under ``unavailable``; the other
tasks go on.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pvr.bc.config import TrainConfig
from pvr.benchmark.protocol import Protocol, Task
from pvr.errors import PvrError
from pvr.report.runs import MANIFEST, TIMINGS
from pvr.utils.io import write_json

# Rough per-frame costs on this project's 2-core CPU machines (NOTES.md), for the --dry-run estimate only.
# Collecting is dominated by the expert: MPPI planners on MuJoCo suites need ~0.2-0.9 s per control step.
COLLECT_S_PER_FRAME = {"MiniGrid": 0.005, "DMC": 0.5, "HMS": 0.5, "Kitchen": 0.5, "ImageNav": 0.03,
                       "HabitatImageNav": 0.03, "MetaWorld": 0.02, "Atari": 0.01, "Gymnasium": 0.05}
EPISODE_FRAMES = {"MiniGrid": 15, "DMC": 1000, "HMS": 200, "Kitchen": 280, "ImageNav": 60,
                  "HabitatImageNav": 60, "MetaWorld": 500, "Atari": 1000, "Gymnasium": 200}
COLLECT_S_PER_FRAME_TASK = {"DMC-reacher-easy": 0.025, "DMC-cheetah-run": 0.05, "DMC-cartpole-swingup": 0.07}
EMBED_S_PER_FRAME = {"true_state": 0.0, "random": 0.002}  # others: PRETRAINED_S_PER_FRAME
PRETRAINED_S_PER_FRAME = 0.05  # ~20 img/s at 224 px (EfficientNet-Lite0 ~30, ResNet-50 ~12)
TRAIN_S_PER_FRAME_EPOCH = 0.0005
EVAL_RENDER_S_PER_FRAME = 0.02


@dataclass
class Run:
    task: Task
    cfg: TrainConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.save_path) / self.cfg.run_id


@dataclass
class Plan:
    protocol: Protocol
    encoders: list[str]
    seeds: list[int]
    save_path: Path
    data_path: Path
    runs: list[Run]
    unavailable: dict[str, str] = field(default_factory=dict)  # task env -> why it cannot run here

    @property
    def manifest_path(self) -> Path:
        return self.save_path / MANIFEST


def _csv(text: str | None, what: str) -> list[str]:
    vals = [v.strip() for v in (text or "").split(",") if v.strip()]
    if not vals:
        raise PvrError(f"--{what} needs at least one value, comma-separated, e.g. random,true_state")
    if len(set(vals)) != len(vals):
        raise PvrError(f"--{what} lists a value twice: {text!r}")
    return vals


def make_config(task: Task, encoder: str, seed: int, protocol: Protocol, data_path: Path,
                save_path: Path) -> TrainConfig:
    """The `pvr train` settings of one run of the protocol."""
    cfg = TrainConfig(env=task.env, embedding_name=encoder, seed=seed, data_path=str(data_path),
                      save_path=str(save_path / "runs"), epochs=task.epochs, eval_every=task.eval_every,
                      num_episodes_test=task.eval_episodes, num_input_frames=task.frame_stack,
                      frame_stack_mode=task.frame_stack_mode, recipe=protocol.recipe,
                      num_trajectories_train=task.demonstrations)
    return dataclasses.replace(cfg, **task.train)


def plan(protocol: Protocol, embedding_names: str, *, seeds: str | None = None, save_path: str | None = None,
         data_path: str | None = None, runtime: str = "torch") -> Plan:
    """The grid of a benchmark; checks encoder names and the run directories' settings, writes nothing.

    ``runtime``: ``pvr train --runtime`` of every run (what runs frozen encoders in evaluation on a CPU)."""
    import pvr.encoders
    from pvr.bc.trainer import check_run_dir
    from pvr.launch.submission import _seeds

    protocol.check_recipe()
    encoders = _csv(embedding_names, "embedding_name")
    for name in encoders:
        pvr.encoders.ENCODERS.get(name)  # unknown names fail now, with the list
    try:
        seed_list = _seeds(seeds) if seeds else list(protocol.seeds)
    except PvrError as e:
        raise PvrError(str(e).replace("--seed ", "--seeds ")) from None
    root = Path(save_path or Path("pvr_benchmark") / protocol.name)
    data = Path(data_path) if data_path else root / "data"
    runs = []
    for task in protocol.tasks:
        for enc in encoders:
            for seed in seed_list:
                cfg = make_config(task, enc, seed, protocol, data, root)
                if runtime != "torch" and enc != "true_state":
                    cfg.runtime = runtime
                try:
                    cfg.validate()
                except (PvrError, TypeError, ValueError) as e:  # e.g. train: {batch_size: "x"}
                    raise PvrError(f"protocol {protocol.name} ({protocol.source}), task {task.env}: {e}; "
                                   "fix the protocol file") from None
                check_run_dir(cfg)  # a directory holding other settings: refuse before any work
                runs.append(Run(task, cfg))
    return Plan(protocol, encoders, seed_list, root, data, runs)


# -- what exists already ---------------------------------------------------------------------
def _suite(env: str) -> str:
    import pvr.envs

    return pvr.envs.suite_for(env).name


@functools.lru_cache(maxsize=1)
def _probes() -> dict[str, str | None]:
    """Suite → why it cannot run here (None: it can); probed once per process."""
    import pvr.envs

    return {s.name: None if s.works else s.reason for s in pvr.envs.suites()}


def unavailable_here(env: str) -> str | None:
    """Why the suite of ``env`` cannot run on this machine, or None."""
    suite = _suite(env)
    reason = _probes().get(suite)
    return None if reason is None else f"the {suite} suite cannot run here: {reason}"


def dataset_state(data_path: Path, env: str) -> tuple[int, int, dict | None]:
    """(episodes, frames, env_kwargs recorded) of the dataset of ``env``; (0, 0, None) if there is none."""
    from pvr.collect import store_path

    path = store_path(data_path, env)
    if not path.exists():
        return 0, 0, None
    import pvr.data

    ds = pvr.data.open(path)
    try:
        return int(ds.num_episodes), int(ds.num_frames), dict(ds.meta.get("env_kwargs") or {})
    finally:
        ds.close()


def _check_dataset(plan: Plan, task: Task, env: str) -> None:
    _, _, kw = dataset_state(plan.data_path, env)
    if kw is not None and kw != task.env_kwargs:
        raise PvrError(f"the dataset {plan.data_path}/{env}.zarr was collected with env_kwargs {kw}, but protocol "
                       f"{plan.protocol.name} needs {task.env_kwargs}; give another --data_path (nothing was changed)")


# -- the manifest ------------------------------------------------------------------------
def manifest(plan: Plan, status: dict[str, str] | None = None) -> dict:
    """The ``benchmark.json`` that `pvr report` reads, plus what this runner records (ignored there)."""
    p = plan.protocol
    out = {"protocol": p.name, "tasks": [t.env for t in p.tasks], "encoders": plan.encoders, "seeds": plan.seeds,
           "metric": p.metric, "normaliser": p.normaliser, "suites": p.suites,
           "protocol_file": str(p.source), "recipe": p.recipe, "data_path": str(plan.data_path),
           "unavailable": dict(plan.unavailable), "runs": dict(status or {}),
           "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return out


def _merge_previous(plan: Plan) -> dict[str, str]:
    """Keep the encoders and seeds of earlier invocations on this save_path in the expected grid."""
    path = plan.manifest_path
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PvrError(f"cannot read {path} ({e}); fix or remove it") from None
    if old.get("protocol") not in (None, plan.protocol.name):
        raise PvrError(f"{plan.save_path} holds the benchmark {old.get('protocol')!r}, not "
                       f"{plan.protocol.name!r}; give another --save_path")
    plan.encoders = list(dict.fromkeys([*(old.get("encoders") or []), *plan.encoders]))
    plan.seeds = list(dict.fromkeys([*(old.get("seeds") or []), *plan.seeds]))
    return {k: v for k, v in (old.get("runs") or {}).items() if isinstance(v, str)}


def _write(plan: Plan, status: dict[str, str]) -> None:
    write_json(plan.manifest_path, manifest(plan, status))


# -- --dry-run ----------------------------------------------------------------------------
def _hms(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h} h {rem // 60:02d} min" if h else f"{rem // 60} min {rem % 60:02d} s"


def _features_cached(data_path: Path, env: str, encoder: str) -> bool:
    """Whether some features of ``encoder`` exist in the dataset (by name; the fingerprint is not checked)."""
    from pvr.collect import store_path

    d = store_path(data_path, env) / "features"
    return d.is_dir() and any(p.name.startswith(f"{encoder}-") for p in d.iterdir())


def _episode_frames(suite: str, task: Task) -> float:
    """A guess at a demonstration's length before any exists: the suite's typical length, capped by the
    protocol's own time limit (MiniGrid max_steps, max_episode_steps, DMC time_limit at ~50 steps/s)."""
    n = EPISODE_FRAMES.get(suite, 200)
    kw = task.env_kwargs
    for key in ("max_steps", "max_episode_steps"):
        if isinstance(kw.get(key), int):
            n = min(n, kw[key])
    limit = (kw.get("task_kwargs") or {}).get("time_limit") if isinstance(kw.get("task_kwargs"), dict) else None
    if isinstance(limit, (int, float)):
        n = min(n, int(limit * 50))
    return n


def _points(cfg: TrainConfig) -> int:
    """How many evaluations a run makes (each recipe has its own schedule)."""
    from pvr.bc import recipes, trainer

    recipe = recipes.RECIPES.get(cfg.recipe)
    schedule = getattr(recipe, "eval_epochs", None) or trainer.eval_epochs
    return len(schedule(cfg.epochs, cfg.eval_every))


def estimate(plan: Plan) -> dict:
    """Counts of what a benchmark will do, and a time from the rough per-frame constants above."""
    import pvr.encoders
    from pvr.bc.trainer import check_run_dir

    datasets, frames_of, ep_len = [], {}, {}
    for task in plan.protocol.tasks:
        for env in task.envs:
            suite = _suite(env)
            have, frames, _ = dataset_state(plan.data_path, env)
            per_ep = frames / have if have else _episode_frames(suite, task)
            need = max(0, task.demonstrations - have)
            frames_of[env] = int(per_ep * max(have, task.demonstrations))
            ep_len[env] = per_ep
            if need:
                datasets.append({"env": env, "suite": suite, "episodes": need, "frames": int(need * per_ep),
                                 "existing": have, "why_not": unavailable_here(env)})
    blocked = {t.env for t in plan.protocol.tasks if any(map(unavailable_here, t.envs))}
    datasets = [d for d in datasets if not d["why_not"]]
    runnable = [r for r in plan.runs if r.task.env not in blocked]
    todo = [r for r in runnable if not check_run_dir(r.cfg)[1]]
    embeds, seen = [], set()
    for r in todo:
        seeded = bool(pvr.encoders.info(r.cfg.embedding_name).get("seeded"))
        for env in r.task.envs:
            key = (env, r.cfg.embedding_name, r.cfg.seed if seeded else None)
            if r.cfg.embedding_name == "true_state" or key in seen or (
                    not seeded and _features_cached(plan.data_path, env, r.cfg.embedding_name)):
                continue
            seen.add(key)
            embeds.append((r.cfg.embedding_name, frames_of[env]))
    epochs = sum(r.cfg.epochs for r in todo)
    train_frames = sum(r.cfg.epochs * sum(frames_of[e] for e in r.task.envs) for r in todo)
    eval_frames = int(sum(_points(r.cfg) * r.cfg.num_episodes_test * ep_len[e]
                      for r in todo for e in r.task.envs))

    def embed_cost(name: str) -> float:
        fam = "random" if name.startswith("random") else name
        return EMBED_S_PER_FRAME.get(fam, PRETRAINED_S_PER_FRAME)

    seconds = {
        "collect": sum(d["frames"] * COLLECT_S_PER_FRAME_TASK.get(d["env"], COLLECT_S_PER_FRAME.get(d["suite"], 0.05))
                       for d in datasets),
        "embed": sum(n * embed_cost(name) for name, n in embeds),
        "train": train_frames * TRAIN_S_PER_FRAME_EPOCH,
        "evaluate": sum(_points(r.cfg) * r.cfg.num_episodes_test * ep_len[e]
                        * (EVAL_RENDER_S_PER_FRAME + embed_cost(r.cfg.embedding_name))
                        for r in todo for e in r.task.envs),
    }
    return {"runs": len(plan.runs), "finished": len(runnable) - len(todo), "to_run": len(todo),
            "cannot_run_here": len(plan.runs) - len(runnable), "unavailable_tasks": sorted(blocked),
            "datasets": datasets, "demo_frames": sum(d["frames"] for d in datasets),
            "embed_frames": sum(n for _, n in embeds), "epochs": epochs, "eval_frames": eval_frames,
            "seconds": seconds}


def dry_run(plan: Plan, echo=print) -> dict:
    p = plan.protocol
    est = estimate(plan)
    echo(f"protocol {p.name} ({p.source}): {p.description}")
    echo(f"grid: {len(p.tasks)} task(s) x {len(plan.encoders)} encoder(s) x {len(plan.seeds)} seed(s) = "
         f"{est['runs']} runs; recipe {p.recipe}; metric {p.metric}; seeds {','.join(map(str, plan.seeds))}")
    echo(f"encoders: {', '.join(plan.encoders)}")
    for t in p.tasks:
        why = next((w for w in map(unavailable_here, t.envs) if w), None)
        c = next(r.cfg for r in plan.runs if r.task is t)  # resolved: the recipe filled what the protocol left
        echo(f"  [{t.suite}] {t.env}: {t.demonstrations} demos, {c.epochs} epochs, {_points(c)} evaluations "
             f"x {c.num_episodes_test} episodes, frame stack {c.num_input_frames} ({c.frame_stack_mode})"
             + (f"  -- CANNOT RUN HERE, will be skipped: {why.split('. ')[0]}" if why else ""))
    echo(f"datasets to create or extend under {plan.data_path}:" if est["datasets"] else
         f"datasets: all present under {plan.data_path}")
    for d in est["datasets"]:
        echo(f"  {d['env']}: {d['episodes']} episode(s) (~{d['frames']} frames; {d['existing']} present)")
    blocked = f", {est['cannot_run_here']} cannot run here" if est["cannot_run_here"] else ""
    echo(f"to do: {est['to_run']} run(s) ({est['finished']} finished, skipped{blocked}); ~{est['demo_frames']} demo frames "
         f"to render, ~{est['embed_frames']} frames to embed, {est['epochs']} epochs, ~{est['eval_frames']} "
         "evaluation frames")
    s = est["seconds"]
    echo("time, single process on a 2-core CPU (rough per-frame constants in pvr.benchmark.runner, not a "
         f"measurement): collect {_hms(s['collect'])}, embed {_hms(s['embed'])}, train {_hms(s['train'])}, "
         f"evaluate {_hms(s['evaluate'])}; total {_hms(sum(s.values()))}")
    echo(f"results: {plan.save_path}  (manifest {plan.manifest_path}; nothing was written)")
    return est


# -- running ------------------------------------------------------------------------------
def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip().rstrip(":")


def collect_task(plan: Plan, task: Task, echo=print) -> float:
    """Collect what the task's datasets lack; return the seconds it took. Raises on failure."""
    from pvr.collect import collect

    t0 = time.time()
    for env in task.envs:
        _check_dataset(plan, task, env)
        have, _, _ = dataset_state(plan.data_path, env)
        if have >= task.demonstrations:
            continue
        echo(f"collect {env}: {task.demonstrations - have} more episode(s) with the default expert "
             f"-> {plan.data_path}")
        collect(env, task.demonstrations, plan.data_path, expert=task.expert, env_kwargs=task.env_kwargs,
                expert_kwargs=task.expert_kwargs, keep_failures=task.keep_failures, progress=True)
    return time.time() - t0


def needs_collecting(plan: Plan, task: Task) -> bool:
    """Whether a dataset of the task lacks demonstrations (refusing one collected with other settings)."""
    for env in task.envs:
        _check_dataset(plan, task, env)
    return any(dataset_state(plan.data_path, env)[0] < task.demonstrations for env in task.envs)


def prepare(plan: Plan, echo=print, *, collect: bool = True) -> dict[str, float]:
    """Collect every available task's data; fill ``plan.unavailable``; return collect seconds per task.

    ``collect=False`` (Slurm: collecting is a job) only checks what can run here and the datasets' settings.
    """
    seconds = {}
    for i, task in enumerate(plan.protocol.tasks):
        why = next((w for w in map(unavailable_here, task.envs) if w), None)
        if why is None and not collect:
            needs_collecting(plan, task)
        elif why is None:
            try:
                seconds[task.env] = collect_task(plan, task, echo)
            except PvrError as e:
                if "give another --data_path" in str(e):
                    raise
                why = f"collecting failed: {e}"
            except Exception as e:  # a simulator that breaks on this machine must not stop the other tasks
                why = f"collecting failed: {_reason(e)}"
                traceback.print_exc()
        if why:
            plan.unavailable[task.env] = why
            echo(f"[task {i + 1}/{len(plan.protocol.tasks)}] {task.env}: CANNOT RUN HERE, skipped ({why})")
    return seconds


def embed_run(cfg: TrainConfig) -> float:
    """Embed the run's datasets with its encoder unless cached; return the seconds it took."""
    from pvr.launch.job import embed_first

    if cfg.train_embedding:
        return 0.0
    t0 = time.time()
    embed_first(cfg, progress=True)
    return time.time() - t0


def _record_timings(run_dir: Path, timings: dict[str, float]) -> None:
    path = run_dir / TIMINGS
    old = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    write_json(path, {**old, **{k: round(v, 3) for k, v in timings.items() if v > 0 or k not in old}})


def _pin(cores: "multiprocessing.Queue", plugins: list[str], owner: int | None = None) -> None:
    """Pool worker start: die with ``owner`` (the benchmark's process: a pool worker would otherwise
    train on after it was killed, even with SIGKILL); take one disjoint set of cores (the trainer and
    its evaluation size their threads and environment processes from the affinity mask); load the
    user's plug-ins."""
    import signal

    import pvr.plugins
    from pvr.evaluation.vector import die_with_owner

    if owner is not None:
        # SIGTERM: the run stops as on `kill` (its last checkpoint stands, its evaluation process and
        # environment processes follow it)
        die_with_owner(owner, signal.SIGTERM)
    mine = cores.get()
    if mine and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, mine)
    pvr.plugins.load(plugins)


def _train_quietly(cfg: TrainConfig) -> tuple[str, list[int]]:
    """Train in a pool worker; return the run directory and the cores it ran on."""
    from pvr.bc.trainer import train

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return str(train(cfg, progress=False)), cores


def core_sets(jobs: int) -> list[set[int]]:
    """This process's cores split into ``jobs`` disjoint, near-equal sets (fewer when cores are fewer)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    n = max(1, min(jobs, len(cores)))
    return [set(cores[i::n]) for i in range(n)]


def _unfinished(plan: Plan, status: dict[str, str], echo=print):
    """(progress label, run) of each available run that is not finished; finished ones are marked done."""
    from pvr.bc.trainer import check_run_dir

    runs = [r for r in plan.runs if r.task.env not in plan.unavailable]
    for i, r in enumerate(runs):
        head = f"[run {i + 1}/{len(runs)}] {r.cfg.run_id}"
        if check_run_dir(r.cfg)[1]:
            echo(f"{head}: finished, skipped")
            status[r.cfg.run_id] = "done"
            continue
        yield head, r


def run_parallel(plan: Plan, status: dict[str, str], collect_s: dict[str, float], jobs: int,
                 plugins: list[str] = (), echo=print) -> list[str]:
    """``--jobs N``: embed here (all cores), then train N runs at once, each in a process pinned to its
    share of the cores; return the failures."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    todo, failed, embed_s = [], [], {}
    for head, r in _unfinished(plan, status, echo):
        try:
            echo(f"{head}: embed (cached by fingerprint)")
            embed_s[r.cfg.run_id] = embed_run(r.cfg)
            todo.append((head, r))
        except Exception as e:
            status[r.cfg.run_id] = f"failed: {_reason(e)}"
            failed.append(f"{r.cfg.run_id}: {_reason(e)}")
            echo(f"{head}: FAILED ({_reason(e)})")
    _write(plan, status)
    if not todo:
        return failed
    sets = core_sets(jobs)
    ctx = multiprocessing.get_context("spawn")  # no forked copies of this process's torch threads or locks
    queue = ctx.Queue()
    for c in sets:
        queue.put(c)
    echo(f"training {len(todo)} run(s), {len(sets)} at a time, each on {len(sets[0])} core(s)")
    pool = ProcessPoolExecutor(max_workers=len(sets), mp_context=ctx, initializer=_pin,
                               initargs=(queue, list(plugins), os.getpid()))
    pending = {}
    try:
        for head, r in todo:
            pending[pool.submit(_train_quietly, r.cfg)] = (head, r)
            status[r.cfg.run_id] = "running"
        _write(plan, status)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                head, r = pending.pop(fut)
                try:
                    run_dir, cores = fut.result()
                    _record_timings(Path(run_dir), {"collect": collect_s.pop(r.task.env, 0.0),
                                                    "embed": embed_s.get(r.cfg.run_id, 0.0)})
                    status[r.cfg.run_id] = "done"
                    echo(f"{head}: done (on core(s) {','.join(map(str, cores))})")
                except Exception as e:
                    status[r.cfg.run_id] = f"failed: {_reason(e)}"
                    failed.append(f"{r.cfg.run_id}: {_reason(e)}")
                    echo(f"{head}: FAILED ({_reason(e)})")
                _write(plan, status)
    except KeyboardInterrupt:
        for head, r in pending.values():
            status[r.cfg.run_id] = "interrupted"
        _write(plan, status)
        pool.shutdown(wait=True, cancel_futures=True)  # the workers got the same Ctrl-C and checkpoint
        raise
    pool.shutdown(wait=True)
    return failed


def run_local(plan: Plan, status: dict[str, str], collect_s: dict[str, float], echo=print) -> list[str]:
    """Every run, one after another in this process; return the failures."""
    from pvr.bc.trainer import train

    failed = []
    for head, r in _unfinished(plan, status, echo):
        try:
            echo(f"{head}: embed (cached by fingerprint)")
            embed_s = embed_run(r.cfg)
            echo(f"{head}: train + evaluate ({r.cfg.epochs} epochs"
                 + (", resuming" if (r.run_dir / "config.json").exists() else "") + ")")
            run_dir = train(r.cfg)
            # the task's collection time goes to the first run that needed it, so that sums over runs hold
            _record_timings(run_dir, {"collect": collect_s.pop(r.task.env, 0.0), "embed": embed_s})
            status[r.cfg.run_id] = "done"
        except KeyboardInterrupt:
            status[r.cfg.run_id] = "interrupted"
            _write(plan, status)
            raise
        except Exception as e:  # one broken run must not cost the rest of the grid
            status[r.cfg.run_id] = f"failed: {_reason(e)}"
            failed.append(f"{r.cfg.run_id}: {_reason(e)}")
            echo(f"{head}: FAILED ({_reason(e)})")
            if not isinstance(e, PvrError):
                traceback.print_exc()
        _write(plan, status)
    return failed


def run_submitit(plan: Plan, ns: argparse.Namespace, status: dict[str, str], plugins: list[str],
                 echo=print) -> list[str]:
    """Submit the runs that are neither finished nor queued as one job array (``pvr sweep``'s machinery)."""
    from pvr.benchmark import cluster as slurm
    from pvr.launch.options import submitit_folder
    from pvr.launch.submission import submit, wait

    runs = [r for r in plan.runs if r.task.env not in plan.unavailable]
    if not runs:
        return []
    name = f"pvr-bench-{plan.protocol.name}"
    if ns.cluster != "slurm":  # the datasets were collected in this process (prepare)
        pairs = submit([r.cfg for r in runs], ns, name=name, plugins=plugins, echo=echo)
    else:  # one collect job per task lacking data; that task's runs wait for it (pvr.benchmark.cluster)
        folder = submitit_folder(ns, str(plan.save_path / "runs"))
        tasks = [t for t in plan.protocol.tasks if t.env not in plan.unavailable and needs_collecting(plan, t)]
        collecting = slurm.submit_collection(tasks, plan.data_path, ns, folder, name=name, plugins=plugins,
                                             echo=echo)
        pairs = []
        for task in plan.protocol.tasks:
            cfgs = [r.cfg for r in runs if r.task.env == task.env]
            if cfgs:
                job = collecting.get(task.env)
                pairs += submit(cfgs, slurm.after(ns, job), name=name, plugins=plugins, echo=echo,
                                check_data=job is None)
    for cfg, job in pairs:
        status[cfg.run_id] = f"submitted: job {job.job_id}"
    _write(plan, status)
    if pairs and (ns.wait or ns.cluster == "debug"):  # debug jobs run in this process, on result()
        try:
            wait(pairs, echo)
        except PvrError as e:
            return [str(e)]
        finally:
            from pvr.bc.trainer import check_run_dir

            for cfg, _ in pairs:
                if check_run_dir(cfg)[1]:
                    status[cfg.run_id] = "done"
            _write(plan, status)
    return []


def _report(plan: Plan, echo=print) -> None:
    """Write the report next to the manifest (what `pvr report SAVE_PATH` writes) and print its table."""
    from pvr.report import report

    try:
        text, _, _ = report([plan.save_path], plan.save_path)
    except PvrError as e:  # e.g. no evaluation yet: the benchmark itself still succeeded
        echo(f"no report yet: {e}")
        return
    echo("")
    echo(text)
    echo(f"\nreport: {plan.save_path / 'report.md'}, {plan.save_path / 'report.html'}")


def resolve_cluster(cluster: str) -> str:
    if cluster == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return cluster


def run(plan: Plan, ns: argparse.Namespace | None = None, *, cluster: str = "local", plugins: list[str] = (),
        echo=print, jobs: int = 1) -> dict:
    """Run the benchmark; return its manifest. Raises PvrError at the end if some runs failed."""
    t0 = time.time()
    cluster = resolve_cluster(cluster)
    if cluster != "local" and ns is None:
        raise PvrError("--cluster slurm needs the submitit options (use the CLI, or pass its namespace)")
    if cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise PvrError("--cluster slurm needs Slurm's sbatch and srun on this machine; run from a login node, "
                       "or use --cluster local")
    plan.protocol.check_recipe()
    status = _merge_previous(plan)
    _write(plan, status)
    p = plan.protocol
    echo(f"benchmark {p.name}: {len(p.tasks)} task(s) x {len(plan.encoders)} encoder(s) x {len(plan.seeds)} "
         f"seed(s) -> {plan.save_path} (manifest {plan.manifest_path})")
    if cluster == "debug":
        echo("datasets are collected on this machine first; the runs then go to submitit")
    elif cluster == "slurm":
        echo("datasets that lack demonstrations are collected by Slurm jobs; each task's runs wait for its job")
    collect_s = prepare(plan, echo, collect=cluster != "slurm")
    _write(plan, status)
    if jobs < 1:
        raise PvrError(f"--jobs must be at least 1, got {jobs}")
    if cluster == "local" and jobs > 1:
        failed = run_parallel(plan, status, collect_s, jobs, plugins, echo)
    elif cluster == "local":
        failed = run_local(plan, status, collect_s, echo)
    else:
        ns = argparse.Namespace(**{**vars(ns), "cluster": cluster})
        failed = run_submitit(plan, ns, status, list(plugins), echo)
    _write(plan, status)
    done = sum(1 for r in plan.runs if status.get(r.cfg.run_id) == "done")
    echo(f"benchmark {p.name}: {done} of {len(plan.runs)} run(s) done"
         + (f"; {len(plan.unavailable)} task(s) cannot run here: {', '.join(plan.unavailable)}"
            if plan.unavailable else "")
         + f"; {time.time() - t0:.0f} s. Report: pvr report {plan.save_path}")
    if cluster == "local" and done:
        _report(plan, echo)
    if failed:
        raise PvrError(f"{len(failed)} run(s) failed (rerun the same command to retry them; finished runs are "
                       f"kept). First: {failed[0]}")
    return manifest(plan, status)
