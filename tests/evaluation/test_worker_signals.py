"""The evaluation process survives the signals meant for the trainer (Slurm's USR2, Ctrl-C's SIGINT)."""
import os
import signal
import subprocess
import sys
import time

import pytest

import pvr.encoders
from pvr.bc.policy import ActionSpec, Policy
from pvr.evaluation.worker import EvalWorker


def test_worker_ignores_slurm_usr2_and_sigint():
    import gymnasium as gym
    import pvr.envs

    # random3 sees frames at their native size: its dim is the evaluation env's
    encoder = pvr.encoders.create("random3").fit_frames(pvr.envs.make("MiniGrid-Empty-5x5-v0").observation_space.shape)

    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    policy_kwargs = {}
    policy = Policy(encoder.dim, action, **policy_kwargs)
    env = "MiniGrid-Empty-5x5-v0"
    spec = dict(plugins=[], embedding_name="random3", encoder_kwargs={}, fingerprint=encoder.fingerprint,
                obs_dim=encoder.dim, action=action.to_dict(), policy_kwargs=policy_kwargs, envs=[env],
                env_kwargs={env: {}}, device="cpu", episodes=1, num_envs=1, seed=0, num_input_frames=1,
                frame_stack_mode="cat", progress=False)
    with EvalWorker(spec) as worker:
        os.kill(worker.proc.pid, signal.SIGUSR2)
        os.kill(worker.proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert worker.proc.is_alive()
        worker.submit(0, {"policy": policy.state_dict()})
        epoch, out = worker.result()
        assert epoch == 0 and out[env]["episodes"] == 1


@pytest.mark.parametrize("num_envs", [1, 2])
def test_interrupting_an_evaluation_leaks_no_semaphore(tmp_path, num_envs):
    """Killing the worker mid-evaluation (Ctrl-C, SIGTERM) used to leave its tqdm lock, a named semaphore,
    registered: the resource tracker warned about "leaked semaphore objects" at exit. With env processes
    the worker's AsyncVectorEnvs hold semaphores too (their error queue, shared-memory locks): the worker
    now ends on SIGTERM by closing them."""
    import subprocess
    import sys

    script = tmp_path / "interrupt.py"
    script.write_text(
        "import time\n"
        "import gymnasium as gym\n"
        "import pvr.encoders\n"
        "from pvr.bc.policy import ActionSpec, Policy\n"
        "from pvr.evaluation.worker import EvalWorker\n"
        "if __name__ == '__main__':\n"
        "    import pvr.envs\n"
        "    env = 'MiniGrid-Empty-5x5-v0'\n"
        "    enc = pvr.encoders.create('random3').fit_frames(pvr.envs.make(env).observation_space.shape)\n"
        "    action = ActionSpec.from_space(gym.spaces.Discrete(7))\n"
        "    spec = dict(plugins=[], embedding_name='random3', encoder_kwargs={}, fingerprint=enc.fingerprint,\n"
        "                obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={}, envs=[env],\n"
        f"                env_kwargs={{env: {{}}}}, device='cpu', episodes=50, num_envs={num_envs}, seed=0,\n"
        "                num_input_frames=1, frame_stack_mode='cat', progress=True)\n"
        "    try:\n"
        "        with EvalWorker(spec) as w:\n"
        "            w.submit(0, {'policy': Policy(enc.dim, action).state_dict()})\n"
        "            time.sleep(6)  # the worker is drawing its progress bar\n"
        "            assert w.busy() and w.result(block=False) is None\n"
        "            raise KeyboardInterrupt\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted')\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "interrupted" in r.stdout, r.stderr[-2000:]
    assert "leaked semaphore" not in r.stderr


PARENT = """
import sys, time
import gymnasium as gym
import pvr.encoders
from pvr.bc.policy import ActionSpec, Policy
from pvr.evaluation.worker import EvalWorker
if __name__ == '__main__':
    import pvr.envs
    env = 'MiniGrid-Empty-5x5-v0'
    enc = pvr.encoders.create('random3').fit_frames(pvr.envs.make(env).observation_space.shape)
    action = ActionSpec.from_space(gym.spaces.Discrete(7))
    spec = dict(plugins=[], embedding_name='random3', encoder_kwargs={}, fingerprint=enc.fingerprint,
                obs_dim=enc.dim, action=action.to_dict(), policy_kwargs={}, envs=[env],
                env_kwargs={env: {}}, device='cpu', episodes=500, num_envs=2, seed=0,
                num_input_frames=1, frame_stack_mode='cat', progress=False, pipeline=True)
    w = EvalWorker(spec)
    w.submit(0, {'policy': Policy(enc.dim, action).state_dict()})
    print(w.proc.pid, flush=True)
    time.sleep(300)
"""


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


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_trainer_leaves_no_eval_or_env_process_and_no_leaked_semaphore(tmp_path, how):
    """The process that owns the evaluation worker dies (SIGKILL, SIGTERM, Ctrl-C) mid-evaluation with
    2 env processes in 2 pipelined groups: the worker (SIGTERM from Linux) closes its env processes and
    exits, and nothing is left for the resource tracker to warn about."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        deadline = time.time() + 60
        while len(envs := [p for p in _children(worker) if _alive(p)]) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(envs) >= 2
        time.sleep(1.0)  # mid-evaluation
        os.kill(proc.pid, how)
        _, err = proc.communicate(timeout=60)  # the resource tracker shares stderr: EOF once it has exited
        for pid in [worker] + envs:
            deadline = time.time() + 15
            while _alive(pid) and time.time() < deadline:
                time.sleep(0.1)
            assert not _alive(pid), pid
        assert "leaked semaphore" not in err, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
