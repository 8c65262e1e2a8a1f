"""Evaluation environments as "slots": stepped one after another, or in parallel processes.

The rollout loop (:func:`pvr.evaluation.rollout.evaluate`) asks a slot set to reset
some slots with given seeds and to step the active ones; both implementations give
the same observations, rewards and infos for the same seeds, so results do not
depend on which one runs.

:class:`ParallelSlots` runs each environment in its own process through Gymnasium's
``AsyncVectorEnv`` (shared-memory observations, no autoreset: pvr decides which
episode, and which seed, a slot plays next). A slot whose episode ended and has no
episode left idles: its process answers ``step`` with the last transition without
touching the environment. Env processes ignore the signals meant for the trainer
(Ctrl-C, Slurm's USR2) and are SIGKILLed by Linux when the process that owns them
dies, SIGKILL included, so none outlives an evaluation.

Env processes never import torch (about 770 MB of resident memory each): this
module, the env factories and what the processes unpickle stay torch-free, and the
processes are started without re-running the owner's main script.

:class:`SlotGroups` pipelines rendering and encoding: the slots are split into two
groups, each its own ``AsyncVectorEnv``; while one group's processes step and
render, the evaluation process encodes and acts for the other.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import types
import warnings
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from pvr.utils.cores import available_cores  # noqa: F401  (re-exported)

Transition = tuple[Any, float, bool, bool, dict]


def thread_split(cores: int | None = None) -> tuple[int | None, int]:
    """(trainer's, evaluation process's) torch threads when training and evaluation share ``cores``
    (default: :func:`available_cores`).

    The evaluation process's encoder gets a quarter of the cores, at least one; the
    trainer gets the rest, at least one. Their OpenMP threads then never outnumber the
    cores (threads that wait for a core spin, and a loaded 2-core machine ran 4x slower
    with 2 threads than with 1). The env processes render single-threaded and import no
    torch; they time-share the cores with the two. When the user set ``OMP_NUM_THREADS``
    the trainer keeps torch's own setting (None)."""
    c = max(1, cores or available_cores())
    evaluation = max(1, c // 4)
    trainer = None if os.environ.get("OMP_NUM_THREADS") else max(1, c - evaluation)
    return trainer, evaluation


def default_num_envs(episodes: int) -> int:
    """One environment per available core, never more than there are episodes to play."""
    return max(1, min(available_cores(), max(episodes, 1)))


def make_eval_env(env_name: str, env_kwargs: dict | None = None, frame_skips: int = 1,
                  frame_skip_mode: str = "last"):
    """One evaluation environment: the suite's env, wrapped in ``FrameSkip`` when ``frame_skips > 1``.

    As in the original's testing, the policy acts once per ``frame_skips`` simulator
    steps; frame skipping sits below frame stacking and the encoder."""
    import pvr.envs

    env = pvr.envs.make(env_name, **(env_kwargs or {}))
    return pvr.envs.FrameSkip(env, frame_skips, frame_skip_mode) if frame_skips > 1 else env


class SequentialSlots:
    """Environments in this process, stepped one after another (the baseline, and ``num_envs == 1``)."""

    def __init__(self, envs: list):
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self, slots: list[int], seeds: list[int]) -> list[tuple[Any, dict]]:
        return [self.envs[j].reset(seed=s) for j, s in zip(slots, seeds)]

    def step_async(self, actions: np.ndarray, active: np.ndarray) -> None:
        self._pending = (np.asarray(actions), np.asarray(active).copy())

    def step_wait(self) -> dict[int, Transition]:
        actions, active = self._pending
        self._pending = None
        return {int(j): self.envs[j].step(actions[j]) for j in np.flatnonzero(active)}

    def step(self, actions: np.ndarray, active: np.ndarray) -> dict[int, Transition]:
        self.step_async(actions, active)
        return self.step_wait()

    def close(self) -> None:
        for e in self.envs:
            e.close()


class HoldWhenDone(gym.Wrapper):
    """After its episode ends, ``step`` repeats the last transition and leaves the environment alone.

    Lets a vector of environments be stepped as a whole while the slots that have no
    episode left idle (stepping a finished episode is an error in some suites)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._last: Transition | None = None

    def reset(self, **kwargs):
        self._last = None
        return self.env.reset(**kwargs)

    def step(self, action):
        if self._last is not None:
            obs, _, term, trunc, info = self._last
            return obs, 0.0, term, trunc, info
        out = self.env.step(action)
        if out[2] or out[3]:
            self._last = out
        return out


def _make_held(env_name: str, env_kwargs: dict | None, frame_skips: int, frame_skip_mode: str) -> gym.Env:
    return HoldWhenDone(make_eval_env(env_name, env_kwargs, frame_skips, frame_skip_mode))


def die_with_owner(owner_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have Linux send ``sig`` to this process when its owner dies (PR_SET_PDEATHSIG), as
    :func:`pvr.utils.procs.die_with_parent` does with SIGKILL; restated here because importing
    :mod:`pvr.utils` imports torch, and because the evaluation process wants SIGTERM."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # 1: PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != owner_pid:  # the owner is already gone
        os._exit(1)


@contextlib.contextmanager
def _without_main_script() -> Iterator[None]:
    """Start processes without re-running this process's main script in them.

    A "spawn" child imports the parent's main module first; that is ``pvr``'s CLI (and
    with it torch) or a user's script, neither of which an env process needs: env
    factories come from this module and plugins are loaded explicitly."""
    main = sys.modules.get("__main__")
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = None
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _env_process(owner_pid: int, plugins: list[str], *args) -> None:
    """Entry point of one env process: tied to its owner, quiet on the trainer's signals, then Gymnasium's worker."""
    from gymnasium.vector.async_vector_env import _async_worker

    die_with_owner(owner_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides when an evaluation stops
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if "torch" in sys.modules:  # rendering needs no intra-op threads; the owner's encoder does
        import torch

        torch.set_num_threads(1)
    import pvr.plugins  # (headless rendering settings come with the owner's environment variables)

    # pvr's own modules (e.g. the encoder's, which the owner lists as a plugin) register nothing an env needs
    pvr.plugins.load([m for m in plugins if m != "pvr" and not m.startswith("pvr.")])
    _async_worker(*args)


def _unbatch_info(infos: dict, j: int) -> dict:
    """Slot ``j``'s info dict from Gymnasium's batched infos (arrays with ``_key`` presence masks)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if isinstance(value, dict):
            if mask is None or mask[j]:
                out[key] = _unbatch_info(value, j)
        elif mask is not None and mask[j]:
            out[key] = value[j]
    return out


class ParallelSlots:
    """``num_envs`` evaluation environments, each in its own process (Gymnasium's ``AsyncVectorEnv``)."""

    def __init__(self, env_name: str, num_envs: int, env_kwargs: dict | None = None, frame_skips: int = 1,
                 frame_skip_mode: str = "last", plugins: list[str] | None = None, context: str = "spawn"):
        import pvr.plugins

        factory = functools.partial(_make_held, env_name, dict(env_kwargs or {}), int(frame_skips), frame_skip_mode)
        worker = functools.partial(_env_process, os.getpid(), list(plugins if plugins is not None
                                                                     else pvr.plugins.loaded()))
        self.num_envs = num_envs
        self._active: np.ndarray | None = None
        with _without_main_script():
            self.vec = gym.vector.AsyncVectorEnv([factory] * num_envs, shared_memory=True, copy=True,
                                                 context=context, daemon=True, worker=worker,
                                                 autoreset_mode=gym.vector.AutoresetMode.DISABLED)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.vec.processes]

    def reset(self, slots: list[int], seeds: list[int]) -> list[tuple[Any, dict]]:
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[slots] = True
        seed_of: list[int | None] = [None] * self.num_envs
        for j, s in zip(slots, seeds):
            seed_of[j] = int(s)
        obs, infos = self.vec.reset(seed=seed_of, options={"reset_mask": mask})
        return [(obs[j], _unbatch_info(infos, j)) for j in slots]

    def step_async(self, actions: np.ndarray, active: np.ndarray) -> None:
        """Send the actions; every process steps (the idle ones answer at once from HoldWhenDone), in parallel."""
        self._active = np.asarray(active).copy()
        self.vec.step_async(np.asarray(actions))

    def step_wait(self) -> dict[int, Transition]:
        obs, rew, term, trunc, infos = self.vec.step_wait()
        active, self._active = self._active, None
        return {int(j): (obs[j], float(rew[j]), bool(term[j]), bool(trunc[j]), _unbatch_info(infos, j))
                for j in np.flatnonzero(active)}

    def step(self, actions: np.ndarray, active: np.ndarray) -> dict[int, Transition]:
        self.step_async(actions, active)
        return self.step_wait()

    def close(self, terminate: bool = False) -> None:
        """Close the env processes (at once with ``terminate``, e.g. when the evaluation is being stopped)."""
        try:
            self.vec.close(terminate=terminate)
        except Exception:  # a dead env process: make sure none is left
            self.vec.close(terminate=True)


class SlotGroups:
    """Slots split into groups stepped independently, so rendering and encoding overlap.

    The rollout loop sends one group's actions, then encodes and acts for the next
    group while the first one's processes step and render. Slot ``j`` of the whole is
    slot ``j - offset`` of its group; the groups' sizes differ by at most one."""

    def __init__(self, groups: list):
        self.groups = list(groups)
        self.num_envs = sum(g.num_envs for g in self.groups)

    @property
    def pids(self) -> list[int]:
        return [p for g in self.groups for p in getattr(g, "pids", [])]

    def close(self, terminate: bool = False) -> None:
        for g in self.groups:
            if isinstance(g, ParallelSlots):
                g.close(terminate)
            else:
                g.close()


def make_slots(env_name: str, num_envs: int, env_kwargs: dict | None = None, frame_skips: int = 1,
               frame_skip_mode: str = "last", parallel: bool = True, plugins: list[str] | None = None,
               pipeline: bool = False):
    """Parallel slots when ``parallel`` and ``num_envs > 1`` (two pipelined groups with ``pipeline``);
    environments in this process otherwise, or (with a warning) when the environments cannot run in
    processes of their own."""
    if parallel and num_envs > 1:
        try:
            if pipeline:
                first = ParallelSlots(env_name, -(-num_envs // 2), env_kwargs, frame_skips, frame_skip_mode, plugins)
                try:
                    second = ParallelSlots(env_name, num_envs // 2, env_kwargs, frame_skips, frame_skip_mode,
                                           plugins)
                except BaseException:
                    first.close(terminate=True)
                    raise
                return SlotGroups([first, second])
            return ParallelSlots(env_name, num_envs, env_kwargs, frame_skips, frame_skip_mode, plugins)
        except Exception as e:  # noqa: BLE001 — the sequential path reports a genuine env error itself
            warnings.warn(f"{env_name}: evaluation environments cannot run in parallel processes ({e}); "
                          "stepping them one after another", stacklevel=2)
    return SequentialSlots([make_eval_env(env_name, env_kwargs, frame_skips, frame_skip_mode)
                            for _ in range(num_envs)])
