"""``metaworld_scripted``: MetaWorld's own scripted policies (``metaworld.policies.ENV_POLICY_MAP``).

Each task has a hand-written policy that maps the 39-d state observation to an
action (move the end effector towards a waypoint, open / close the gripper). The
expert feeds it the env's last float64 observation (what the policies were written
for; ``info["true_state"]`` is its float32 copy) and clips the action to the action
space, so the stored demonstrations are the actions the env actually applied.
The policies are deterministic: an episode depends on the env's seed only.
"""
from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert


@register_expert("metaworld_scripted", suites=("MetaWorld",),
                 description="MetaWorld's scripted per-task policies (metaworld.policies), on the state observation")
class MetaWorldScripted(Expert):
    name = "metaworld_scripted"

    def __init__(self, env: gym.Env):
        super().__init__(env)
        from metaworld.policies import ENV_POLICY_MAP

        self.task = env.get_wrapper_attr("metaworld_task")
        if self.task not in ENV_POLICY_MAP:
            raise PvrError(f"metaworld has no scripted policy for {self.task}; collect it with --expert policy:<file>")
        self.policy = ENV_POLICY_MAP[self.task]()
        space = env.action_space
        self._low, self._high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)

    def act(self, obs: Any, info: dict) -> np.ndarray:
        state = self.env.get_wrapper_attr("metaworld_obs")
        if state.size == 0:
            state = np.asarray(info["true_state"], np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high": the env clips, so does this expert
            action = self.policy.get_action(state)
        return np.clip(np.asarray(action, np.float32), self._low, self._high)

    def describe(self) -> dict:
        return {"name": self.name, "task": self.task, "policy": type(self.policy).__name__}


__all__ = ["MetaWorldScripted"]
