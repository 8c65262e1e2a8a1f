"""Dataset against environment, before a run writes anything.

A dataset whose frames, state or actions do not match what the evaluation
environment produces used to be found only at the first evaluation, as a
traceback from deep inside the policy. Here each training environment is built
once, with the env_kwargs and frame settings evaluation will use, and reset once;
what the dataset holds is compared with that observation and action space, and
the first difference is reported in one line with what to do. Only what the
dataset has is checked (a dataset of imported features may have no frames).
"""
from __future__ import annotations

import json

import numpy as np

import pvr.envs
from pvr.bc.config import TrainConfig
from pvr.bc.policy import ActionSpec
from pvr.encoders import ENCODERS
from pvr.errors import PvrError


def reads_state(embedding_name: str) -> bool:
    """Whether the encoder is fed the simulator's state rather than frames."""
    return ENCODERS.get(embedding_name).meta.get("family") == "true_state"


def _shape(x) -> tuple[int, ...]:
    return tuple(int(s) for s in x)


def check_datasets(cfg: TrainConfig, datasets: dict, env_kwargs: dict[str, dict]) -> ActionSpec:
    """Compare each env's dataset (``datasets[env]``, open) with one reset of that env; return the shared
    action spec. Raises PvrError naming the first mismatch."""
    specs: dict[ActionSpec, str] = {}
    state = reads_state(cfg.embedding_name)
    for env_name in cfg.envs:
        ds, kw = datasets[env_name], env_kwargs[env_name]
        built = f"{env_name} built with env_kwargs {json.dumps(kw, sort_keys=True)}" + (
            f", frame_skips {cfg.frame_skips} ({cfg.frame_skip_mode})" if cfg.frame_skips > 1 else "")
        recorded = json.dumps(ds.meta.get("env_kwargs") or {}, sort_keys=True)
        fix = (f"collect the data again with these settings, or evaluate with the settings it was collected with "
               f"(it records env_kwargs {recorded}; pass them with --env_kwargs)")
        env = pvr.envs.make(env_name, **kw)
        try:
            if cfg.frame_skips > 1:
                env = pvr.envs.FrameSkip(env, cfg.frame_skips, cfg.frame_skip_mode)
            obs, info = env.reset(seed=cfg.seed)
            action = ActionSpec.from_space(env.action_space)
        finally:
            env.close()
        where = f"{env_name}: dataset {ds.path}"
        if state:
            if "true_state" not in info:
                raise PvrError(f"{where}: {env_name} reports no info['true_state'], so --embedding_name true_state "
                               "cannot be evaluated there; pick a vision encoder")
            if "true_state" in ds:
                want, have = np.asarray(info["true_state"]).shape, _shape(ds["true_state"].shape[1:])
                if have != want:
                    raise PvrError(f"{where} has true_state of shape {have} but {built} gives {want}: the policy "
                                   f"would see other inputs at evaluation; {fix}, or train on frames with a vision "
                                   "encoder")
        elif "obs" in ds:
            obs = np.asarray(obs)
            have, want = _shape(ds["obs"].shape[1:]), _shape(obs.shape)
            views = int(ds.meta.get("views") or 1)
            if have != want:
                raise PvrError(f"{where} has frames of shape {have} ({views} view{'s' * (views > 1)}) but {built} "
                               f"renders {want}: {fix}")
            if np.dtype(ds["obs"].dtype) != obs.dtype:
                raise PvrError(f"{where} has {ds['obs'].dtype} frames but {built} renders {obs.dtype} ones: {fix}")
        if "action" in ds:
            acts = ds["action"]
            discrete = np.dtype(acts.dtype).kind in "iu"
            if discrete != action.discrete:
                kind = "discrete" if discrete else "continuous"
                raise PvrError(f"{where} has {kind} actions but {built} takes "
                               f"{'discrete' if action.discrete else 'continuous'} ones: {fix}")
            if discrete:
                top = int(np.asarray(acts[:]).max()) if len(acts) else -1
                if top >= action.n:
                    raise PvrError(f"{where} has action {top} but {built} has only {action.n} actions "
                                   f"(0..{action.n - 1}): {fix}")
            elif _shape(acts.shape[1:]) != (action.n,):
                raise PvrError(f"{where} has actions of shape {_shape(acts.shape[1:])} but {built} takes "
                               f"({action.n},): {fix}")
        specs.setdefault(action, env_name)
    if len(specs) != 1:
        raise PvrError(f"environments {', '.join(specs.values())} have different action spaces; "
                       "they cannot share a policy: train them separately")
    return next(iter(specs))
