"""The evaluation process survives the signals meant for the trainer (Slurm's USR2, Ctrl-C's SIGINT)."""
import os
import signal
import time

import pvr.encoders
from pvr.bc.policy import ActionSpec, Policy
from pvr.evaluation.worker import EvalWorker


def test_worker_ignores_slurm_usr2_and_sigint():
    encoder = pvr.encoders.create("random3")
    import gymnasium as gym

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
