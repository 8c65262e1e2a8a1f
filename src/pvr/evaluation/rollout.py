"""Run a policy in B environments at once with ONE batched encoder + policy call per step.

Episode i (0-based) of an evaluation is reset with seed ``seed + i``, so every
evaluation point, every encoder and every resumed run faces the same episodes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import pvr.envs
from pvr.bc.policy import Policy
from pvr.bc.stacking import OnlineStacker
from pvr.encoders import Encoder
from pvr.encoders.base import encode
from pvr.evaluation.vector import ParallelSlots, SequentialSlots, default_num_envs, make_slots
from pvr.utils import module_device


def _viewable(frame: np.ndarray) -> np.ndarray:
    """An RGB image of an observation; stacked views (H, W, 3k) are laid side by side."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[-1] > 3 and frame.shape[-1] % 3 == 0:
        frame = np.concatenate(np.split(frame, frame.shape[-1] // 3, axis=-1), axis=1)
    return frame.astype(np.uint8)


def _write_gif(frames: list[np.ndarray], path: Path, fps: int = 10) -> None:
    from PIL import Image

    from pvr.utils.io import atomic_path

    scale = max(1, 256 // max(frames[0].shape[:2]))  # small frames (MiniGrid's 56 px) are enlarged
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def _encode(encoder: Encoder, obs: list, infos: list) -> np.ndarray:
    if encoder.input_key == "true_state":
        batch = torch.as_tensor(np.stack([i["true_state"] for i in infos]), dtype=torch.float32)
    else:
        batch = torch.as_tensor(np.stack(obs))
    with torch.inference_mode():
        return encode(encoder, batch.to(module_device(encoder))).cpu().numpy()


def make_eval_env(env_name: str, env_kwargs: dict | None = None, frame_skips: int = 1,
                  frame_skip_mode: str = "last"):
    """One evaluation environment: the suite's env, wrapped in ``FrameSkip`` when ``frame_skips > 1``.

    As in the original's testing, the policy acts once per ``frame_skips`` simulator
    steps; frame skipping sits below frame stacking and the encoder."""
    env = pvr.envs.make(env_name, **(env_kwargs or {}))
    return pvr.envs.FrameSkip(env, frame_skips, frame_skip_mode) if frame_skips > 1 else env


def evaluate(policy: Policy, encoder: Encoder, env_name: str, *, episodes: int, seed: int = 0,
             num_envs: int | None = None, env_kwargs: dict | None = None, num_input_frames: int = 1,
             frame_stack_mode: str = "cat", desc: str | None = None, progress: bool = True,
             envs: "list | SequentialSlots | ParallelSlots | None" = None, videos: int = 0,
             video_dir: str | Path | None = None, frame_skips: int = 1, frame_skip_mode: str = "last",
             proprio_dims: int = 0, parallel: bool = True) -> dict:
    """Mean return, success rate and length over ``episodes`` episodes (deterministic actions).

    ``num_envs`` environments play at once (default: one per available core, at most
    ``episodes``); with ``parallel`` each runs in its own process, which gives the same
    results as stepping them here one after another. ``envs`` reuses environments built
    by the caller (a list, or slots from :func:`pvr.evaluation.vector.make_slots`).
    ``videos=N`` writes the first N episodes as GIFs (what the agent saw) to ``video_dir``.
    ``frame_skips``/``frame_skip_mode`` apply to the environments built here (not to ``envs``).
    ``proprio_dims`` > 0 appends that prefix of ``info["true_state"]`` to each observation, as in training."""
    if episodes <= 0:
        return {"return": float("nan"), "success": float("nan"), "length": float("nan"), "episodes": 0}
    own = envs is None
    b = min(num_envs or default_num_envs(episodes), episodes)
    if own:
        slots = make_slots(env_name, b, env_kwargs, frame_skips, frame_skip_mode, parallel=parallel)
    elif isinstance(envs, list):
        slots = SequentialSlots(envs[:b])
    else:
        slots = envs
        if slots.num_envs != b:
            raise ValueError(f"{slots.num_envs} prepared environments for {b} slots")
    policy.eval()
    encoder.eval()
    stacker = OnlineStacker(b, num_input_frames, frame_stack_mode)
    state = policy.initial_state(b)
    returns, successes, lengths = [], [], []
    next_episode = 0
    active = np.zeros(b, dtype=bool)
    obs: list = [None] * b
    infos: list = [None] * b
    ep_ret = np.zeros(b)
    ep_len = np.zeros(b, dtype=int)
    ep_success = np.zeros(b, dtype=bool)
    first = np.ones(b, dtype=bool)
    bar = tqdm(total=episodes, desc=desc or env_name, leave=False, disable=not progress, dynamic_ncols=True)
    try:
        recording: dict[int, list] = {}  # env slot → frames of an episode being recorded
        episode_of = np.zeros(b, dtype=int)

        def start(js: list[int]) -> None:
            """Slots ``js`` (in slot order) play the next episodes, episode i reset with seed ``seed + i``."""
            nonlocal next_episode
            js = js[:episodes - next_episode]
            if not js:
                return
            numbers = list(range(next_episode, next_episode + len(js)))
            next_episode += len(js)
            for j, n, (o, info) in zip(js, numbers, slots.reset(js, [seed + n for n in numbers])):
                episode_of[j], obs[j], infos[j] = n, o, info
                if n < videos:
                    recording[j] = [_viewable(o)]
                active[j], first[j] = True, True
                ep_ret[j], ep_len[j], ep_success[j] = 0.0, 0, bool(info.get("success", False))

        start(list(range(b)))
        while active.any():
            feats = _encode(encoder, obs, infos)  # inactive slots carry their last frame; results ignored
            dev = module_device(policy)
            proprio = np.stack([np.asarray(i["true_state"], np.float32)[:proprio_dims] for i in infos]) \
                if proprio_dims else None
            x = torch.from_numpy(stacker(feats, first.copy(), proprio).astype(np.float32)).to(dev)
            actions, state = policy.act(x, torch.from_numpy(first.copy()).to(dev), state)
            actions = actions.cpu().numpy()
            first[:] = False
            done = []
            for j, (o, r, term, trunc, info) in sorted(slots.step(actions, active).items()):
                obs[j], infos[j] = o, info
                if j in recording:
                    recording[j].append(_viewable(o))
                ep_ret[j] += float(r)
                ep_len[j] += 1
                ep_success[j] |= bool(info.get("success", False))
                if term or trunc:
                    returns.append(ep_ret[j]); successes.append(ep_success[j]); lengths.append(ep_len[j])
                    bar.update(1)
                    active[j] = False
                    done.append(j)
                    if j in recording:
                        _write_gif(recording.pop(j), Path(video_dir or ".") / f"{env_name}-episode{episode_of[j]}.gif")
            start(done)
    finally:
        bar.close()
        if own:
            slots.close()
    return {"return": float(np.mean(returns)), "success": float(np.mean(successes)),
            "length": float(np.mean(lengths)), "episodes": len(returns)}
