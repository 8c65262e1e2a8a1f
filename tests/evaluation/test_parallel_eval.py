"""Evaluation environments stepped in parallel processes give exactly the results of stepping them one by one."""
from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import pvr.encoders
import pvr.envs
from pvr.bc.policy import ActionSpec, Policy
from pvr.evaluation.rollout import evaluate, make_eval_env
from pvr.evaluation.vector import (ParallelSlots, SequentialSlots, SlotGroups, available_cores,
                                  default_num_envs, make_slots)

MG, MG_KW = "MiniGrid-Empty-Random-5x5-v0", {"max_steps": 10}
DMC, DMC_KW = "DMC-reacher-easy", {"image_size": 24, "task_kwargs": {"time_limit": 0.2}}


def _setup(env_name: str, kw: dict, proprio: int = 0, seed: int = 1):
    env = make_eval_env(env_name, kw)
    try:
        shape, action = env.observation_space.shape, ActionSpec.from_space(env.action_space)
    finally:
        env.close()
    torch.manual_seed(seed)
    enc = pvr.encoders.create("random3").fit_frames(shape)
    policy = Policy(enc.dim + proprio, action, hidden_size=16, batch_norm=False)
    with torch.no_grad():  # large random weights: actions change with what the agent sees
        for p in policy.parameters():
            p.mul_(8.0)
    return policy, enc


def _per_episode(policy, enc, env_name, kw, episodes, seed, proprio=0):
    """Independent re-statement of the protocol: episode i alone in one env, reset with seed + i."""
    out = [evaluate(policy, enc, env_name, episodes=1, seed=seed + i, num_envs=1, env_kwargs=kw,
                    progress=False, proprio_dims=proprio) for i in range(episodes)]
    return {k: float(np.mean([o[k] for o in out])) for k in ("return", "success", "length")}


@pytest.mark.parametrize("pipeline", [True, False])
@pytest.mark.parametrize("env_name,kw,proprio", [(MG, MG_KW, 4),
                                                  pytest.param(DMC, DMC_KW, 0, marks=pytest.mark.slow)])
def test_parallel_results_equal_sequential_ones(env_name, kw, proprio, pipeline):
    policy, enc = _setup(env_name, kw, proprio)
    episodes, b, seed = 7, 3, 11  # more episodes than slots: slots replay, then idle at the end
    slots = make_slots(env_name, b, kw, pipeline=pipeline)
    try:
        if pipeline:  # two groups (2 + 1 slots), each its own set of processes, stepped in turn
            assert isinstance(slots, SlotGroups) and [g.num_envs for g in slots.groups] == [2, 1]
            assert all(isinstance(g, ParallelSlots) for g in slots.groups)
        else:
            assert isinstance(slots, ParallelSlots)
        assert len(set(slots.pids)) == b
        par = evaluate(policy, enc, env_name, episodes=episodes, seed=seed, envs=slots, num_envs=b,
                       progress=False, proprio_dims=proprio)
        again = evaluate(policy, enc, env_name, episodes=episodes, seed=seed, envs=slots, num_envs=b,
                         progress=False, proprio_dims=proprio)  # slots are reused across evaluation points
    finally:
        slots.close()
    seq = evaluate(policy, enc, env_name, episodes=episodes, seed=seed, num_envs=b, env_kwargs=kw,
                   progress=False, parallel=False, proprio_dims=proprio)
    assert par == seq == again
    assert par["episodes"] == episodes
    alone = _per_episode(policy, enc, env_name, kw, episodes, seed, proprio)
    for k in ("return", "success", "length"):
        assert par[k] == pytest.approx(alone[k], abs=1e-9), k


def test_pipelined_groups_overlap_stepping_and_encoding():
    """While one group's environments step, the other group is encoded: a group's step_wait follows the
    other group's step_async, never its own step_async directly."""
    policy, enc = _setup(MG, MG_KW, 0)
    events = []

    class Logged(SequentialSlots):
        def __init__(self, tag, envs):
            super().__init__(envs)
            self.tag = tag

        def step_async(self, actions, active):
            events.append(("send", self.tag))
            super().step_async(actions, active)

        def step_wait(self):
            events.append(("wait", self.tag))
            return super().step_wait()

    groups = SlotGroups([Logged("A", [make_eval_env(MG, MG_KW) for _ in range(2)]),
                         Logged("B", [make_eval_env(MG, MG_KW) for _ in range(2)])])
    out = evaluate(policy, enc, MG, episodes=4, seed=3, envs=groups, num_envs=4, progress=False)
    ref = evaluate(policy, enc, MG, episodes=4, seed=3, num_envs=4, env_kwargs=MG_KW, progress=False,
                   parallel=False)
    groups.close()
    assert out == ref
    assert events[:4] == [("send", "A"), ("send", "B"), ("wait", "A"), ("send", "A")]
    for i, (kind, tag) in enumerate(events):
        if kind == "wait":  # the last thing before a group's wait is not that group's own send
            assert events[i - 1] != ("send", tag) or all(t == tag for _, t in events[i:]), events[i - 3:i + 1]


def test_minigrid_episodes_differ_so_the_comparison_means_something():
    policy, enc = _setup(MG, MG_KW, 4)
    lengths = {evaluate(policy, enc, MG, episodes=1, seed=11 + i, num_envs=1, env_kwargs=MG_KW, progress=False,
                        proprio_dims=4)["length"] for i in range(4)}
    assert len(lengths) > 1


def test_default_num_envs_follows_cores_and_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert available_cores() == cores
    assert default_num_envs(1000) == cores and default_num_envs(1) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert available_cores() == 1 and default_num_envs(50) == 1


def test_one_slot_or_parallel_off_stays_in_this_process():
    assert isinstance(make_slots(MG, 1, MG_KW), SequentialSlots)
    s = make_slots(MG, 2, MG_KW, parallel=False)
    assert isinstance(s, SequentialSlots)
    s.close()


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_killing_the_eval_worker_leaves_no_env_process(how):
    from pvr.evaluation.worker import EvalWorker

    enc = pvr.encoders.create("random3").fit_frames(pvr.envs.make(MG).observation_space.shape)
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    spec = dict(plugins=[], embedding_name="random3", encoder_kwargs={}, fingerprint=enc.fingerprint,
                obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={}, envs=[MG], env_kwargs={MG: {}},
                device="cpu", episodes=50, num_envs=2, seed=0, num_input_frames=1, frame_stack_mode="cat",
                progress=False)
    with EvalWorker(spec) as worker:
        envs = _children(worker.proc.pid)  # the env processes (one per slot)
        assert len(envs) >= 2 and all(_alive(p) for p in envs)
        os.kill(envs[0], signal.SIGINT)  # Ctrl-C reaches the whole process group: env processes ignore it
        worker.submit(0, {"policy": Policy(enc.dim, action).state_dict()})
        time.sleep(1.0)
        os.kill(worker.proc.pid, how)
        worker.proc.join(timeout=10)
        deadline = time.time() + 10
        while any(_alive(p) for p in envs) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in envs)


@pytest.mark.parametrize("cores,expected", [(1, (1, 1)), (2, (1, 1)), (3, (2, 1)), (8, (6, 2)), (16, (12, 4))])
def test_thread_split_never_gives_torch_more_threads_than_cores_beyond_one_each(monkeypatch, cores, expected):
    from pvr.evaluation.vector import thread_split

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_split(cores) == expected
    trainer, evaluation = thread_split(cores)
    assert trainer + evaluation <= max(cores, 2) and evaluation == max(1, cores // 4)


def test_thread_split_follows_slurm_and_leaves_a_user_omp_setting(monkeypatch):
    from pvr.evaluation.vector import thread_split

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert thread_split() == (1, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_split(8) == (None, 2)


def test_env_processes_import_no_torch(monkeypatch):
    """An env process costs ~140 MB, not the ~770 MB of one that imports torch (bench/bench_memory.py)."""
    import pvr.plugins

    # env processes import the loaded plug-ins; one an earlier test loaded may import torch itself
    monkeypatch.setattr(pvr.plugins, "_loaded", [])
    slots = make_slots(MG, 2, MG_KW, pipeline=True)
    try:
        slots.groups[0].reset([0], [0])
        for pid in slots.pids:
            with open(f"/proc/{pid}/maps") as f:
                assert "libtorch" not in f.read(), pid
    finally:
        slots.close()


def test_overlap_is_on_by_default_only_for_an_encoder_on_a_gpu():
    from pvr.evaluation.rollout import pipeline_by_default

    assert not pipeline_by_default(pvr.encoders.create("random3"))
