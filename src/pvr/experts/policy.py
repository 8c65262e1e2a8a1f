"""``policy:<path>``: any saved policy as the expert, loaded without executing pickled code.

- TorchScript (``torch.jit.save``): loaded with ``torch.jit.load`` — a TorchScript
  archive holds compiled code and tensors, not arbitrary pickled Python objects.
- A state dict (``torch.save(module.state_dict())``) plus ``factory="pkg.mod:fn"``:
  the tensors are read with ``torch.load(weights_only=True)`` and loaded into the
  module ``fn()`` builds (your code, imported by name, not unpickled).
- A Stable-Baselines3 ``.zip``: ``PPO/SAC/...load`` when stable-baselines3 is
  installed (it is not part of pvr's dependencies; the error says so).

The policy sees ``input="true_state"`` (default: the simulator's low-dimensional
state, what most saved controllers were trained on) or ``input="obs"`` (the uint8
frame, batched as (1, H, W, C)). Its output becomes the action: argmax over logits
for a discrete action space (or the integer it returns), the vector clipped to the
bounds for a continuous one.
"""
from __future__ import annotations

import importlib
import pathlib
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert

SB3_ALGOS = ("PPO", "SAC", "TD3", "A2C", "DQN", "DDPG")


def _import(ref: str):
    mod, _, attr = ref.partition(":")
    if not mod or not attr:
        raise PvrError(f"factory must look like 'package.module:function', got {ref!r}")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as exc:
        raise PvrError(f"cannot import factory {ref!r} ({exc}); is its package on PYTHONPATH?") from None


def load_torch_policy(path: pathlib.Path, factory: str | None = None):
    """A callable module from a TorchScript file, or from a state dict + ``factory``."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as jit_error:
        if factory is None:
            raise PvrError(f"{path} is not a TorchScript file ({str(jit_error).splitlines()[0][:120]}); save the policy "
                           "with torch.jit.save(torch.jit.script(module), path), or pass a state dict with "
                           "--expert_kwargs '{\"factory\": \"pkg.module:make_policy\"}'") from None
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise PvrError(f"{path}: cannot read it as a state dict with weights_only=True ({exc}); pvr never "
                           "unpickles arbitrary objects — save module.state_dict() or a TorchScript file") from None
        module = _import(factory)()
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            module.load_state_dict(state)
        except Exception as exc:
            raise PvrError(f"{path} does not fit the module built by {factory} ({exc})") from None
    module.eval()
    return module


def load_sb3(path: pathlib.Path, algo: str | None = None):
    try:
        import stable_baselines3 as sb3
    except ImportError:
        raise PvrError(f"{path} looks like a Stable-Baselines3 model; pip install stable-baselines3 to use it, "
                       "or export the policy with torch.jit.save and pass that file") from None
    for name in ([algo] if algo else SB3_ALGOS):
        try:
            return getattr(sb3, name).load(str(path), device="cpu")
        except Exception:
            continue
    raise PvrError(f"{path}: none of {', '.join(SB3_ALGOS)} could load it; pass --expert_kwargs '{{\"algo\": \"SAC\"}}'")


@register_expert("policy", suites=(), description="a saved policy: --expert policy:<file> (TorchScript, state dict + factory, SB3 zip)")
class SavedPolicy(Expert):
    name = "policy"

    def __init__(self, env: gym.Env, *, path: str | None = None, input: str = "true_state",  # noqa: A002
                 factory: str | None = None, algo: str | None = None):
        super().__init__(env)
        if not path:
            raise PvrError("the policy expert needs a file: --expert policy:<path to a TorchScript / state dict / SB3 zip>")
        self.path = pathlib.Path(path).expanduser()
        if not self.path.is_file():
            raise PvrError(f"no policy file at {self.path}; check the path in --expert policy:<path>")
        if input not in ("true_state", "obs"):
            raise PvrError(f"input must be 'true_state' or 'obs', got {input!r}")
        self.input, self.factory, self.algo = input, factory, algo
        self.kind = "sb3" if self.path.suffix.lower() == ".zip" else "torch"
        self._model = load_sb3(self.path, algo) if self.kind == "sb3" else load_torch_policy(self.path, factory)
        self._discrete = isinstance(env.action_space, gym.spaces.Discrete)

    def act(self, obs: Any, info: dict):
        x = np.asarray(info["true_state"] if self.input == "true_state" else obs)
        if self.kind == "sb3":
            action, _ = self._model.predict(x, deterministic=True)
            return self._to_action(np.asarray(action))
        import torch

        with torch.inference_mode():
            t = torch.as_tensor(x[None])
            out = self._model(t.float() if self.input == "true_state" else t)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return self._to_action(np.asarray(out.detach().cpu().numpy())[0])

    def _to_action(self, out: np.ndarray):
        space = self.env.action_space
        if self._discrete:
            out = np.asarray(out)
            return int(out.argmax()) if out.ndim >= 1 and out.size == space.n else int(out.reshape(-1)[0])
        return np.clip(np.asarray(out, np.float32).reshape(space.shape), space.low, space.high)

    def describe(self) -> dict:
        import hashlib

        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        return {"name": self.name, "path": str(self.path), "sha256": digest, "format": self.kind, "input": self.input,
                "factory": self.factory}


__all__ = ["SavedPolicy", "load_torch_policy", "load_sb3"]
