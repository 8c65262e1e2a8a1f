"""Run a policy in B environments at once with ONE batched encoder + policy call per step.

Episode i (0-based) of an evaluation is reset with seed ``seed + i``, so every
evaluation point, every encoder and every resumed run faces the same episodes.
An episode's course depends only on its seed and the policy, so which slot plays
it, and when, does not change its outcome; the means are taken in episode order,
so the figures are the same however the slots are stepped (one by one, in
parallel processes, or in two pipelined groups).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from pvr.bc.policy import Policy
from pvr.bc.stacking import OnlineStacker
from pvr.encoders import Encoder
from pvr.encoders.base import encode
from pvr.encoders.runtime import use_threads
from pvr.evaluation.vector import (ParallelSlots, SequentialSlots, SlotGroups, default_num_envs,  # noqa: F401
                                   make_eval_env, make_slots)
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


def apply_eval_runtime(encoder: Encoder, runtime: str, env_name: str, env_kwargs: dict | None = None,
                       threads: int | None = None) -> Encoder:
    """:func:`pvr.encoders.runtime.apply_runtime`, checked and timed at the size of ``env_name``'s frames."""
    from pvr.encoders.runtime import apply_runtime

    probe = make_eval_env(env_name, env_kwargs)
    try:
        shape = probe.observation_space.shape
    finally:
        probe.close()
    return apply_runtime(encoder, runtime, frame_shape=shape, threads=threads)


def pipeline_by_default(encoder: Encoder) -> bool:
    """Whether rendering and encoding overlap by default: when the encoder runs on a GPU.

    On a CPU the encoder's threads and the env processes render on the same cores, and
    each group's batch is half the size: on 2 cores (bench/bench_eval.py) the overlap
    cost 3-26 % with EfficientNet-Lite0 and ResNet-50. A GPU encodes while the cores render."""
    return module_device(encoder).type == "cuda"


class _Group:
    """One group of slots and the state of the episodes its environments are playing."""

    def __init__(self, slots, policy: Policy, num_input_frames: int, frame_stack_mode: str):
        b = self.b = slots.num_envs
        self.slots = slots
        self.stacker = OnlineStacker(b, num_input_frames, frame_stack_mode)
        self.state = policy.initial_state(b)
        self.active = np.zeros(b, dtype=bool)
        self.first = np.ones(b, dtype=bool)
        self.obs: list = [None] * b
        self.infos: list = [None] * b
        self.ep_ret = np.zeros(b)
        self.ep_len = np.zeros(b, dtype=int)
        self.ep_success = np.zeros(b, dtype=bool)
        self.episode_of = np.zeros(b, dtype=int)
        self.recording: dict[int, list] = {}  # slot → frames of an episode being recorded
        self.stepping = False


def evaluate(policy: Policy, encoder: Encoder, env_name: str, *, episodes: int, seed: int = 0,
             num_envs: int | None = None, env_kwargs: dict | None = None, num_input_frames: int = 1,
             frame_stack_mode: str = "cat", desc: str | None = None, progress: bool = True,
             envs: "list | SequentialSlots | ParallelSlots | SlotGroups | None" = None, videos: int = 0,
             video_dir: str | Path | None = None, frame_skips: int = 1, frame_skip_mode: str = "last",
             proprio_dims: int = 0, parallel: bool = True, pipeline: bool | None = None,
             threads: Callable[[], int] | None = None) -> dict:
    """Mean return, success rate and length over ``episodes`` episodes (deterministic actions).

    ``num_envs`` environments play at once (default: one per available core, at most
    ``episodes``); with ``parallel`` each runs in its own process, and with ``pipeline``
    the processes form two groups so that one renders while the other's frames are
    encoded (default: when the encoder is on a GPU, see :func:`pipeline_by_default`);
    all give the same results as stepping them here one after another.
    ``envs`` reuses environments built by the caller (a list, or slots from
    :func:`pvr.evaluation.vector.make_slots`).
    ``videos=N`` writes the first N episodes as GIFs (what the agent saw) to ``video_dir``.
    ``frame_skips``/``frame_skip_mode`` apply to the environments built here (not to ``envs``).
    ``proprio_dims`` > 0 appends that prefix of ``info["true_state"]`` to each observation, as in training.
    ``threads``, when given, is asked before each encoder call how many threads the encoder may
    use (:func:`pvr.encoders.runtime.use_threads`; the evaluation process's share, or all cores).
    Thread counts change speed, and features only in their last bits (floats summed in another order)."""
    if episodes <= 0:
        return {"return": float("nan"), "success": float("nan"), "length": float("nan"), "episodes": 0}
    own = envs is None
    b = min(num_envs or default_num_envs(episodes), episodes)
    if own:
        slots = make_slots(env_name, b, env_kwargs, frame_skips, frame_skip_mode, parallel=parallel,
                           pipeline=pipeline_by_default(encoder) if pipeline is None else pipeline)
    elif isinstance(envs, list):
        slots = SequentialSlots(envs[:b])
    else:
        slots = envs
        if slots.num_envs != b:
            raise ValueError(f"{slots.num_envs} prepared environments for {b} slots")
    policy.eval()
    encoder.eval()
    groups = [_Group(s, policy, num_input_frames, frame_stack_mode)
              for s in (slots.groups if isinstance(slots, SlotGroups) else [slots])]
    outcome: dict[int, tuple[float, bool, int]] = {}  # episode → (return, success, length)
    next_episode = 0
    bar = tqdm(total=episodes, desc=desc or env_name, leave=False, disable=not progress, dynamic_ncols=True)
    stopped = False
    try:
        def start(g: _Group, js: list[int]) -> None:
            """Slots ``js`` of ``g`` (in slot order) play the next episodes, episode i reset with seed ``seed + i``."""
            nonlocal next_episode
            js = js[:episodes - next_episode]
            if not js:
                return
            numbers = list(range(next_episode, next_episode + len(js)))
            next_episode += len(js)
            for j, n, (o, info) in zip(js, numbers, g.slots.reset(js, [seed + n for n in numbers])):
                g.episode_of[j], g.obs[j], g.infos[j] = n, o, info
                if n < videos:
                    g.recording[j] = [_viewable(o)]
                g.active[j], g.first[j] = True, True
                g.ep_ret[j], g.ep_len[j], g.ep_success[j] = 0.0, 0, bool(info.get("success", False))

        def act(g: _Group) -> None:
            """One batched encoder + policy call for ``g``'s slots; their environments start stepping."""
            if threads is not None:
                use_threads(encoder, threads())
            feats = _encode(encoder, g.obs, g.infos)  # inactive slots carry their last frame; results ignored
            dev = module_device(policy)
            proprio = np.stack([np.asarray(i["true_state"], np.float32)[:proprio_dims] for i in g.infos]) \
                if proprio_dims else None
            x = torch.from_numpy(g.stacker(feats, g.first.copy(), proprio).astype(np.float32)).to(dev)
            actions, g.state = policy.act(x, torch.from_numpy(g.first.copy()).to(dev), g.state)
            g.first[:] = False
            g.slots.step_async(actions.cpu().numpy(), g.active)
            g.stepping = True

        def collect(g: _Group) -> None:
            """``g``'s transitions: episodes that end are recorded and their slots start the next ones."""
            g.stepping = False
            done = []
            for j, (o, r, term, trunc, info) in sorted(g.slots.step_wait().items()):
                g.obs[j], g.infos[j] = o, info
                if j in g.recording:
                    g.recording[j].append(_viewable(o))
                g.ep_ret[j] += float(r)
                g.ep_len[j] += 1
                g.ep_success[j] |= bool(info.get("success", False))
                if term or trunc:
                    outcome[int(g.episode_of[j])] = (g.ep_ret[j], bool(g.ep_success[j]), int(g.ep_len[j]))
                    bar.update(1)
                    g.active[j] = False
                    done.append(j)
                    if j in g.recording:
                        _write_gif(g.recording.pop(j), Path(video_dir or ".") / f"{env_name}-episode{g.episode_of[j]}.gif")
            start(g, done)

        for g in groups:
            start(g, list(range(g.b)))
        for g in groups:  # while a group's environments step, the next group is encoded
            act(g)
        while any(g.stepping for g in groups):
            for g in groups:
                if g.stepping:
                    collect(g)
                    if g.active.any():
                        act(g)
    except BaseException:
        stopped = True
        raise
    finally:
        bar.close()
        if own and stopped and not isinstance(slots, SequentialSlots):
            slots.close(terminate=True)  # a stop (Ctrl-C, an error) does not wait for steps in flight
        elif own:
            slots.close()
    ordered = [outcome[n] for n in sorted(outcome)]
    return {"return": float(np.mean([o[0] for o in ordered])), "success": float(np.mean([o[1] for o in ordered])),
            "length": float(np.mean([o[2] for o in ordered])), "episodes": len(ordered)}
