"""``pvr collect``: run an expert in an environment and store its demonstrations.

Episodes go one by one into ``<data_path>/<env>.zarr`` (see :mod:`pvr.data`), so a
killed run loses at most the episodes in flight and a rerun continues where it
stopped. Attempt ``i`` (0-based, failures included) resets the env with seed
``seed + i`` (and the expert is re-seeded with it), which makes a dataset
reproducible from its meta alone; the number of attempts made so far is kept in
the store's meta (``collect_attempts``) so a resumed run keeps using the same seeds
as an uninterrupted one.

``workers=K`` runs attempts in K spawned processes (each with its own env and
expert; they die with the parent, even on SIGKILL). Only the parent writes: it
buffers results that arrive out of order and appends them in attempt order, so
the dataset is the same whatever K is — the first N kept attempts.
"""
from __future__ import annotations

import os
import pathlib
import queue
import time
import traceback
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from pvr.errors import PvrError
from pvr.utils import interrupt


def store_path(data_path: str | pathlib.Path, env: str) -> pathlib.Path:
    """Where :func:`collect` keeps the demonstrations of ``env``."""
    return pathlib.Path(data_path) / f"{env.replace('/', '_')}.zarr"


def run_episode(env: gym.Env, expert, seed: int) -> tuple[dict[str, np.ndarray], bool, float]:
    """One episode with ``expert``; returns (arrays for ``append_episode``, success, return).

    Each step records the frame the expert acted on, that frame's ``true_state``,
    the action, the reward it earned, and ``done`` (True on the last step only).
    """
    obs, info = env.reset(seed=seed)
    expert.seed(seed)
    expert.reset(obs, info)
    frames, states, actions, rewards = [], [], [], []
    success, ret = False, 0.0
    while True:
        action = expert.act(obs, info)
        frames.append(obs)
        states.append(info["true_state"])
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        ret += float(reward)
        success = success or bool(info.get("success", False))
        if terminated or truncated or getattr(expert, "gave_up", False):  # a stuck expert ends it
            break
    n = len(frames)
    done = np.zeros(n, dtype=bool)
    done[-1] = True
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    episode = {
        "obs": np.stack(frames).astype(np.uint8, copy=False),
        "action": np.asarray(actions, dtype=np.int64) if discrete else np.asarray(actions, dtype=np.float32).reshape(n, -1),
        "true_state": np.stack(states).astype(np.float32, copy=False),
        "reward": np.asarray(rewards, dtype=np.float32),
        "done": done,
    }
    return episode, success, ret


def collect(
    env: str,
    episodes: int,
    data_path: str | pathlib.Path,
    *,
    expert: str | None = None,
    seed: int = 0,
    keep_failures: bool = False,
    env_kwargs: dict | None = None,
    progress: bool = True,
    workers: int = 1,
    expert_kwargs: dict | None = None,
) -> pathlib.Path:
    """Collect ``episodes`` expert episodes of ``env`` into ``<data_path>/<env>.zarr``; return that path.

    Only successful episodes are kept unless ``keep_failures``. An existing store is
    appended to until it holds ``episodes`` episodes (a rerun after a kill resumes;
    a complete store is left alone). ``workers`` > 1 runs episodes in that many
    processes (same dataset as ``workers=1``). ``expert_kwargs`` go to the expert's
    constructor (e.g. a planner's sample count) and are recorded in meta.
    """
    import pvr.data
    import pvr.envs
    import pvr.experts

    if episodes < 1:
        raise PvrError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise PvrError(f"workers must be >= 1, got {workers}")
    env_kwargs = dict(env_kwargs or {})
    expert_kwargs = dict(expert_kwargs or {})
    path = store_path(data_path, env)
    ds = pvr.data.open(path, mode="a") if path.exists() else None
    started = time.time()
    try:
        if ds is not None and ds.num_episodes >= episodes:
            print(f"{path} already holds {ds.num_episodes} episodes (asked for {episodes}); nothing to collect")
            return path
        sim = pvr.envs.make(env, **env_kwargs)
        try:
            demo = pvr.experts.create(expert, sim, **expert_kwargs)
            obs_shape = list(sim.observation_space.shape or ())
            meta = {
                "env": env,
                "expert": demo.describe(),
                "expert_kwargs": expert_kwargs,
                "env_kwargs": env_kwargs,
                "seed": seed,
                "obs_shape": obs_shape,
                "action_space": str(sim.action_space),
                "keep_failures": keep_failures,
            }
            views = _views(obs_shape)
            if views > 1:
                meta["views"] = views  # (H, W, 3k) frames are k RGB views (ImageNav: current + goal)
            if ds is None:
                ds = pvr.data.create(path, env=env, meta=meta)
                attempt = 0
            else:
                _check_resume(path, ds.meta, meta)
                attempt = _resume_attempt(ds)
            if workers == 1:
                _collect_into(ds, sim, demo, env, episodes, seed, attempt, keep_failures, progress)
                return path
            kind = expert if expert is not None else demo.describe().get("name")
        finally:
            sim.close()  # workers build their own; the parent's is not needed while they run
        _collect_parallel(ds, env, env_kwargs, kind, expert_kwargs, workers, episodes, seed, attempt,
                          keep_failures, progress, demo.describe().get("name"))
    finally:
        if ds is not None:
            if hasattr(ds, "update_meta") and not getattr(ds, "read_only", True):  # the stage's time, for `pvr report`
                try:
                    ds.update_meta(collect_seconds=round(float(ds.meta.get("collect_seconds", 0))
                                                         + time.time() - started, 3))
                except Exception:  # noqa: BLE001 — never hide the collection's own error
                    pass
            ds.close()
    return path


def _views(obs_shape: list[int]) -> int:
    """RGB views per frame: k for (H, W, 3k) image observations, else 1."""
    if len(obs_shape) == 3 and obs_shape[-1] > 3 and obs_shape[-1] % 3 == 0:
        return obs_shape[-1] // 3
    return 1


def _check_resume(path: pathlib.Path, old: dict, new: dict) -> None:
    """Refuse to append episodes made under different settings to an existing store."""
    for key in ("env", "seed", "env_kwargs", "keep_failures", "expert_kwargs"):
        if key in old and old[key] != new[key]:
            raise PvrError(
                f"{path} was collected with {key}={old[key]!r}, not {new[key]!r}; rerun with the same "
                f"{key} to continue it, or pick another data_path for a new dataset"
            )
    old_expert = (old.get("expert") or {}).get("name")
    if old_expert is not None and old_expert != new["expert"]["name"]:
        raise PvrError(
            f"{path} was collected with expert {old_expert!r}, not {new['expert']['name']!r}; pass "
            f"expert={old_expert!r} to continue it, or pick another data_path"
        )


def _resume_attempt(ds: Any) -> int:
    """The next attempt index: attempts recorded in meta, plus one if the last append
    committed before its meta update did (a kill between the two)."""
    recorded = ds.meta.get("collect_attempts")
    kept = ds.meta.get("collect_episodes")
    if recorded is None or kept is None:
        return ds.num_episodes  # no record: assume every attempt was kept
    return int(recorded) + max(0, ds.num_episodes - int(kept))


def _record(ds: Any, attempts: int, successes: int) -> None:
    update = getattr(ds, "update_meta", None)
    if update is not None:
        update(collect_attempts=attempts, collect_episodes=ds.num_episodes, collect_successes=successes)


def _max_attempts(episodes: int) -> int:
    return 3 * episodes + 10


def _too_many_failures(ds, env: str, episodes: int, attempt: int, expert_name: str | None) -> PvrError:
    return PvrError(
        f"only {ds.num_episodes} of {episodes} episodes of {env} succeeded after {attempt} attempts "
        f"(expert {expert_name!r}); pass keep_failures=True (--keep-failures) to keep failed episodes, "
        "or use a stronger expert (`pvr experts`)"
    )


class _Tally:
    """Progress bar with the running success rate (over attempts) and mean return (over kept episodes)."""

    def __init__(self, ds, env: str, episodes: int, progress: bool):
        self.bar = tqdm(total=episodes, initial=ds.num_episodes, desc=f"collect {env}", unit="ep", disable=not progress)
        self.tried = self.successes = 0
        self.prior_successes = int(ds.meta.get("collect_successes", 0))  # from the runs this one continues
        self.returns: list[float] = []

    def add(self, ds, attempt: int, success: bool, ret: float, keep: bool, episode: dict) -> None:
        interrupt.check()  # before the episode is stored: a stop never half-writes one
        self.tried += 1
        self.successes += bool(success)
        if keep:
            ds.append_episode(**episode)
            self.returns.append(ret)
            self.bar.update(1)
        _record(ds, attempt + 1, self.prior_successes + self.successes)
        self.bar.set_postfix(success=f"{self.successes / self.tried:.2f}",
                             mean_return=f"{np.mean(self.returns) if self.returns else 0.0:.3f}")

    def close(self) -> None:
        self.bar.close()


def _collect_into(ds, sim, demo, env: str, episodes: int, seed: int, attempt: int, keep_failures: bool, progress: bool) -> None:
    tally = _Tally(ds, env, episodes, progress)
    try:
        while ds.num_episodes < episodes:
            if attempt >= _max_attempts(episodes):
                raise _too_many_failures(ds, env, episodes, attempt, demo.describe().get("name"))
            episode, success, ret = run_episode(sim, demo, seed + attempt)
            tally.add(ds, attempt, success, ret, success or keep_failures, episode)
            attempt += 1
    finally:
        tally.close()


# -- parallel collection ---------------------------------------------------------------------------
def _worker(env: str, env_kwargs: dict, expert: str | None, expert_kwargs: dict, plugins: list[str],
            tasks: Any, results: Any, parent_pid: int) -> None:
    """A worker process: build env + expert once, then run the attempts it is handed until ``None``."""
    from pvr.utils.procs import die_with_parent, thread_lock_for_progress_bars

    die_with_parent(parent_pid)
    thread_lock_for_progress_bars()
    try:
        import pvr.envs
        import pvr.experts
        import pvr.plugins

        pvr.plugins.load(plugins)
        sim = pvr.envs.make(env, **env_kwargs)
        try:
            demo = pvr.experts.create(expert, sim, **expert_kwargs)
            while True:
                task = tasks.get()
                if task is None:
                    return
                attempt, ep_seed = task
                try:
                    results.put(("ok", attempt, run_episode(sim, demo, ep_seed)))
                except Exception as exc:  # this attempt failed; the parent decides, the worker goes on
                    results.put(("error", attempt, _describe(exc)))
        finally:
            sim.close()
    except BaseException as exc:  # setup failed: report, never hang the parent
        results.put(("error", -1, _describe(exc)))


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PvrError) else f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _collect_parallel(ds, env: str, env_kwargs: dict, expert: str | None, expert_kwargs: dict, workers: int,
                      episodes: int, seed: int, attempt: int, keep_failures: bool, progress: bool,
                      expert_name: str | None) -> None:
    """Run attempts in ``workers`` processes; append kept episodes in attempt order (see module docstring).

    At most ``workers`` attempts run at once, and never more are outstanding than the
    episodes still missing, so an all-successful run makes no attempt it does not keep.
    """
    import multiprocessing as mp

    import pvr.plugins

    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, daemon=True, name=f"pvr-collect-{k}",
                         args=(env, env_kwargs, expert, expert_kwargs, pvr.plugins.loaded(), tasks, results, os.getpid()))
             for k in range(workers)]
    tally = _Tally(ds, env, episodes, progress)
    buffered: dict[int, tuple] = {}
    submitted = received = 0
    next_attempt = attempt
    limit = _max_attempts(episodes)
    try:
        for p in procs:
            p.start()
        while ds.num_episodes < episodes:
            missing = episodes - ds.num_episodes
            while (submitted - received < workers and next_attempt - attempt < missing
                   and next_attempt < limit):
                tasks.put((next_attempt, seed + next_attempt))
                next_attempt += 1
                submitted += 1
            if attempt >= limit:
                raise _too_many_failures(ds, env, episodes, attempt, expert_name)
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive()]
                if dead:
                    raise PvrError(f"collect worker {dead[0].name} died (exit code {dead[0].exitcode}) while "
                                   f"collecting {env}; rerun to continue (finished episodes are kept), or use --workers 1")
                continue
            received += 1
            if kind == "error" and index < 0:
                raise PvrError(f"collect worker failed to start: {payload}")
            buffered[index] = (kind, payload)
            # in attempt order: an error surfaces only after every earlier attempt is stored
            while attempt in buffered and ds.num_episodes < episodes:
                kind, payload = buffered.pop(attempt)
                if kind == "error":
                    raise PvrError(f"collect worker failed in attempt {attempt} (seed {seed + attempt}): {payload}; "
                                   "the episodes before it are stored, a rerun retries from there")
                episode, success, ret = payload
                tally.add(ds, attempt, success, ret, success or keep_failures, episode)
                attempt += 1
    finally:
        tally.close()
        for _ in procs:
            try:
                tasks.put_nowait(None)
            except Exception:
                pass
        for p in procs:
            p.join(timeout=0.5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for q in (tasks, results):
            q.cancel_join_thread()
            q.close()
