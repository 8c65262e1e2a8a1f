"""Frame skipping at evaluation (the original's --frame_skips): the policy acts once per k simulator steps."""
from __future__ import annotations

import numpy as np
import torch

import pvr.encoders
from pvr.bc.policy import ActionSpec, Policy
from pvr.evaluation.rollout import evaluate, make_eval_env

ENV, KW = "MiniGrid-Empty-5x5-v0", {"max_steps": 12}


def _policy_and_encoder():
    torch.manual_seed(0)
    enc = pvr.encoders.create("true_state", dim=81)
    env = make_eval_env(ENV, KW)
    try:
        action = ActionSpec.from_space(env.action_space)
    finally:
        env.close()
    policy = Policy(81, action, hidden_size=8, batch_norm=False, lstm=False)
    with torch.no_grad():  # always "turn left": the episode lasts until max_steps
        policy.head.weight.zero_()
        policy.head.bias.copy_(torch.tensor([10.0] + [0.0] * (action.n - 1)))
    return policy, enc


def test_frame_skips_divide_the_policy_steps_of_an_episode():
    policy, enc = _policy_and_encoder()
    one = evaluate(policy, enc, ENV, episodes=2, num_envs=2, env_kwargs=KW, progress=False)
    three = evaluate(policy, enc, ENV, episodes=2, num_envs=2, env_kwargs=KW, progress=False, frame_skips=3)
    assert one["length"] == 12  # a policy step per simulator step
    assert three["length"] == 4  # 12 simulator steps in 4 policy steps of 3


def test_make_eval_env_wraps_only_when_skipping():
    plain, skipped = make_eval_env(ENV, KW), make_eval_env(ENV, KW, 2, "max")
    try:
        assert not isinstance(plain, pvr.envs.FrameSkip)
        assert isinstance(skipped, pvr.envs.FrameSkip) and (skipped.k, skipped.mode) == (2, "max")
        obs, _ = skipped.reset(seed=0)
        assert obs.dtype == np.uint8
    finally:
        plain.close()
        skipped.close()
