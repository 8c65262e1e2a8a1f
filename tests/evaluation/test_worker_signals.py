"""The evaluation process survives the signals meant for the trainer (Slurm's USR2, Ctrl-C's SIGINT)."""
import os
import signal
import time

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


def test_interrupting_an_evaluation_leaks_no_semaphore(tmp_path):
    """Killing the worker mid-evaluation (Ctrl-C, SIGTERM) used to leave its tqdm lock, a named semaphore,
    registered: the resource tracker warned about "leaked semaphore objects" at exit."""
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
        "                env_kwargs={env: {}}, device='cpu', episodes=50, num_envs=1, seed=0,\n"
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
