"""``pvr collect``: run an expert in an environment and store its demonstrations.

Episodes go one by one into ``<data_path>/<env>.zarr`` (see :mod:`pvr.data`), so a
killed run loses at most the episode in flight and a rerun continues where it
stopped. Attempt ``i`` (0-based, failures included) resets the env with seed
``seed + i``, which makes a dataset reproducible from its meta alone; the number
of attempts made so far is kept in the store's meta (``collect_attempts``) so a
resumed run keeps using the same seeds as an uninterrupted one.
"""
from __future__ import annotations

import pathlib
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from pvr.errors import PvrError


def store_path(data_path: str | pathlib.Path, env: str) -> pathlib.Path:
    """Where :func:`collect` keeps the demonstrations of ``env``."""
    return pathlib.Path(data_path) / f"{env.replace('/', '_')}.zarr"


def run_episode(env: gym.Env, expert, seed: int) -> tuple[dict[str, np.ndarray], bool, float]:
    """One episode with ``expert``; returns (arrays for ``append_episode``, success, return).

    Each step records the frame the expert acted on, that frame's ``true_state``,
    the action, the reward it earned, and ``done`` (True on the last step only).
    """
    obs, info = env.reset(seed=seed)
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
) -> pathlib.Path:
    """Collect ``episodes`` expert episodes of ``env`` into ``<data_path>/<env>.zarr``; return that path.

    Only successful episodes are kept unless ``keep_failures``. An existing store is
    appended to until it holds ``episodes`` episodes (a rerun after a kill resumes;
    a complete store is left alone).
    """
    import pvr.data
    import pvr.envs
    import pvr.experts

    if episodes < 1:
        raise PvrError(f"episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    path = store_path(data_path, env)
    ds = pvr.data.open(path, mode="a") if path.exists() else None
    try:
        if ds is not None and ds.num_episodes >= episodes:
            print(f"{path} already holds {ds.num_episodes} episodes (asked for {episodes}); nothing to collect")
            return path
        sim = pvr.envs.make(env, **env_kwargs)
        try:
            demo = pvr.experts.create(expert, sim)
            meta = {
                "env": env,
                "expert": demo.describe(),
                "env_kwargs": env_kwargs,
                "seed": seed,
                "obs_shape": list(sim.observation_space.shape or ()),
                "action_space": str(sim.action_space),
                "keep_failures": keep_failures,
            }
            if ds is None:
                ds = pvr.data.create(path, env=env, meta=meta)
                attempt = 0
            else:
                _check_resume(path, ds.meta, meta)
                attempt = _resume_attempt(ds)
            _collect_into(ds, sim, demo, env, episodes, seed, attempt, keep_failures, progress)
        finally:
            sim.close()
    finally:
        if ds is not None:
            ds.close()
    return path


def _check_resume(path: pathlib.Path, old: dict, new: dict) -> None:
    """Refuse to append episodes made under different settings to an existing store."""
    for key in ("env", "seed", "env_kwargs", "keep_failures"):
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


def _record(ds: Any, attempts: int) -> None:
    update = getattr(ds, "update_meta", None)
    if update is not None:
        update(collect_attempts=attempts, collect_episodes=ds.num_episodes)


def _collect_into(ds, sim, demo, env: str, episodes: int, seed: int, attempt: int, keep_failures: bool, progress: bool) -> None:
    max_attempts = 3 * episodes + 10
    tried = successes = 0
    returns: list[float] = []
    with tqdm(total=episodes, initial=ds.num_episodes, desc=f"collect {env}", unit="ep", disable=not progress) as bar:
        while ds.num_episodes < episodes:
            if attempt >= max_attempts:
                raise PvrError(
                    f"only {ds.num_episodes} of {episodes} episodes of {env} succeeded after {attempt} attempts "
                    f"(expert {demo.describe().get('name')!r}); pass keep_failures=True to keep failed episodes, "
                    "or use a stronger expert (`pvr experts`)"
                )
            episode, success, ret = run_episode(sim, demo, seed + attempt)
            attempt += 1
            tried += 1
            successes += success
            if success or keep_failures:
                ds.append_episode(**episode)
                returns.append(ret)
                bar.update(1)
            _record(ds, attempt)
            bar.set_postfix(success=f"{successes / tried:.2f}", mean_return=f"{np.mean(returns) if returns else 0.0:.3f}")
