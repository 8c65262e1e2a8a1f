"""``classic``: analytic controllers for Gymnasium's classic-control tasks.

Each reads the simulator's exact state (``env.unwrapped.state``), never steps it:

- CartPole: a linear state-feedback law (push towards ``k · (x, ẋ, θ, θ̇) > 0``), an
  LQR-like gain that keeps the pole up for the whole 500 steps.
- Pendulum: energy pumping then a PD catch. With θ = 0 upright, θ̈ = 15 sin θ + 3u, so
  E = ½θ̇² + 15(cos θ − 1) changes as Ė = 3uθ̇: full torque along θ̇ raises E to 0
  (the upright rest energy); near the top a clipped PD on (θ, θ̇) holds it.
- MountainCar / MountainCarContinuous: push along the velocity (pumps energy every
  half swing; the classic energy strategy reaches the flag in ~100–120 steps).
- Acrobot: torque at the elbow along the elbow's own angular velocity (pumps energy);
  reaches the line in ~85 steps (10/10 seeds; the random policy needs ~500).
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert


def _base_id(env: gym.Env) -> str:
    spec = getattr(env.unwrapped, "spec", None)
    name = spec.id if spec is not None else type(env.unwrapped).__name__
    return name.rsplit("-v", 1)[0]


def cartpole(s) -> int:
    x, x_dot, th, th_dot = (float(v) for v in s)
    return int(0.1 * x + 0.5 * x_dot + 10.0 * th + 2.0 * th_dot > 0)


def pendulum(s) -> np.ndarray:
    th, th_dot = float(s[0]), float(s[1])
    th = (th + math.pi) % (2 * math.pi) - math.pi
    if math.cos(th) > 0.85:  # near the top: PD catch
        u = -(12.0 * th + 2.5 * th_dot)
    else:  # pump energy towards the upright rest energy
        energy = 0.5 * th_dot ** 2 + 15.0 * (math.cos(th) - 1.0)
        u = 2.0 * (1.0 if th_dot >= 0 else -1.0) if energy < 0 else -0.5 * th_dot
        if abs(th_dot) < 1e-3:
            u = 2.0  # at rest at the bottom: kick
    return np.array([np.clip(u, -2.0, 2.0)], np.float32)


def mountain_car(s) -> int:
    return 2 if float(s[1]) >= 0 else 0


def mountain_car_continuous(s) -> np.ndarray:
    return np.array([1.0 if float(s[1]) >= 0 else -1.0], np.float32)


def acrobot(s) -> int:
    return 2 if float(s[3]) > 0 else 0  # +1 torque along the elbow's velocity, else -1


CONTROLLERS = {
    "CartPole": cartpole,
    "Pendulum": pendulum,
    "MountainCar": mountain_car,
    "MountainCarContinuous": mountain_car_continuous,
    "Acrobot": acrobot,
}


@register_expert("classic", suites=("Gymnasium",),
                 description="analytic controllers for classic control: CartPole, Pendulum, MountainCar(Continuous), Acrobot")
class ClassicControl(Expert):
    name = "classic"

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.task = _base_id(env)
        if self.task not in CONTROLLERS:
            raise PvrError(f"the classic expert knows {', '.join(CONTROLLERS)}, not {self.task}; for MuJoCo ids "
                           "use --expert mppi, or --expert policy:<file> for a saved policy")
        self._law = CONTROLLERS[self.task]

    def act(self, obs: Any, info: dict):
        return self._law(np.asarray(self.env.unwrapped.state))

    def describe(self) -> dict:
        return {"name": self.name, "task": self.task}


def gymnasium_default(env: gym.Env, **kwargs: Any) -> Expert:
    """Classic control → :class:`ClassicControl`; MuJoCo → the MPPI planner."""
    if _base_id(env) in CONTROLLERS:
        return ClassicControl(env, **kwargs)
    from pvr.experts.mppi import MPPI

    return MPPI(env, **kwargs)


register_expert("control", suites=("Gymnasium",),
                description="the Gymnasium suite's default: `classic` for classic control, `mppi` for MuJoCo ids")(gymnasium_default)

__all__ = ["CONTROLLERS", "ClassicControl", "gymnasium_default"]
