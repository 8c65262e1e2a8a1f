"""What the ``mppi`` planner needs to know about one MuJoCo task: its reward on sampled rollouts.

A planning task is registered under a key — ``dmc:<domain>-<task>`` for DeepMind
Control, ``gym:<Gymnasium id without version>`` for Gymnasium MuJoCo, Adroit
(``gym:AdroitHandDoor``) and Kitchen — with

- ``reward(r)``: the task's reward, a numpy re-implementation evaluated on a whole
  batch of rollouts at once (``r`` is a :class:`Rollout`; returns ``(N, H)``);
- ``shaping(r)`` (optional): a dense term added for planning only, where the
  reward is sparse or flat far from the goal (reacher: minus the finger-target
  distance; finger-spin: the spin velocity);
- ``alive(r)`` (optional): ``(N, H)`` booleans, False from the step a rollout would
  terminate (a fallen hopper): later rewards count zero, and ``terminal_penalty``
  is charged once (otherwise a short horizon trades a fall for a burst of speed);
- ``defaults``: planner settings that differ from the generic ones (horizon, ...).

Rewards read positions either straight from ``qpos`` (slide / hinge roots), from
``sensor`` (the model's sensors, as ``mujoco.rollout`` records them: one physics
sub-step behind the state) or from :meth:`Rollout.kinematics` (exact world
positions of sites / bodies, by ``mj_kinematics`` per sampled state; costs
~10–30 µs per state).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pvr.errors import PvrError


@dataclass
class Rollout:
    """A batch of simulated action sequences: ``N`` candidates × ``H`` control steps."""

    sim: Any  # the planner's Sim (model, data, names, dt)
    qpos0: np.ndarray  # (nq,) the state planning starts from
    qvel0: np.ndarray  # (nv,)
    qpos: np.ndarray  # (N, H, nq) after each control step
    qvel: np.ndarray  # (N, H, nv)
    act: np.ndarray  # (N, H, A) the env's actions
    ctrl: np.ndarray  # (N, H, nu) what they set as MuJoCo controls
    sensor: np.ndarray | None = None  # (N, H, nsensordata), one physics sub-step behind qpos/qvel
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def prev_qpos(self) -> np.ndarray:
        """``qpos`` before each control step (N, H, nq)."""
        first = np.broadcast_to(self.qpos0, (self.qpos.shape[0], 1, self.qpos.shape[2]))
        return np.concatenate([first, self.qpos[:, :-1]], axis=1)

    def joint(self, name: str, *, vel: bool = False) -> np.ndarray:
        """(N, H) position (or velocity) of the 1-dof joint ``name``."""
        import mujoco

        model = self.sim.model
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if j < 0:
            raise PvrError(f"planning reward: the model has no joint {name!r}")
        return self.qvel[..., model.jnt_dofadr[j]] if vel else self.qpos[..., model.jnt_qposadr[j]]

    def sensor_data(self, name: str) -> np.ndarray:
        """(N, H, dim) of sensor ``name`` (one physics sub-step behind the state)."""
        import mujoco

        model = self.sim.model
        s = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        if s < 0 or self.sensor is None:
            raise PvrError(f"planning reward: the model has no sensor {name!r}")
        a = model.sensor_adr[s]
        return self.sensor[..., a:a + model.sensor_dim[s]]

    def kinematics(self, *, sites: tuple[str, ...] = (), bodies: tuple[str, ...] = (),
                   xmat: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """World positions ``(N, H, 3)`` of ``sites`` and ``bodies`` and rotation matrices ``(N, H, 9)``
        of the bodies in ``xmat``, for every sampled state (cached per rollout)."""
        import mujoco

        key = (sites, bodies, xmat)
        if key in self._cache:
            return self._cache[key]
        model = self.sim.model
        ids = []
        for kind, names in ((mujoco.mjtObj.mjOBJ_SITE, sites), (mujoco.mjtObj.mjOBJ_BODY, bodies + xmat)):
            for name in names:
                i = mujoco.mj_name2id(model, kind, name)
                if i < 0:
                    raise PvrError(f"planning reward: the model has no {'site' if kind == mujoco.mjtObj.mjOBJ_SITE else 'body'} {name!r}")
                ids.append(i)
        site_ids, body_ids, mat_ids = ids[:len(sites)], ids[len(sites):len(sites) + len(bodies)], ids[len(sites) + len(bodies):]
        data = self.sim.scratch()
        n, h = self.qpos.shape[:2]
        flat = self.qpos.reshape(n * h, -1)
        spos = np.empty((n * h, len(site_ids), 3))
        bpos = np.empty((n * h, len(body_ids), 3))
        bmat = np.empty((n * h, len(mat_ids), 9))
        for k in range(n * h):
            data.qpos[:] = flat[k]
            mujoco.mj_kinematics(model, data)
            if site_ids:
                spos[k] = data.site_xpos[site_ids]
            if body_ids:
                bpos[k] = data.xpos[body_ids]
            if mat_ids:
                bmat[k] = data.xmat[mat_ids]
        out = {name: spos[:, i].reshape(n, h, 3) for i, name in enumerate(sites)}
        out.update({name: bpos[:, i].reshape(n, h, 3) for i, name in enumerate(bodies)})
        out.update({f"{name}.xmat": bmat[:, i].reshape(n, h, 9) for i, name in enumerate(xmat)})
        self._cache[key] = out
        return out


RewardFn = Callable[[Rollout], np.ndarray]


@dataclass
class PlanningTask:
    key: str
    reward: RewardFn
    shaping: RewardFn | None = None
    alive: Callable[[Rollout], np.ndarray] | None = None
    defaults: dict = field(default_factory=dict)
    note: str = ""
    terminal_penalty: float = 0.0


TASKS: dict[str, PlanningTask] = {}


def register_task(key: str, reward: RewardFn, *, shaping: RewardFn | None = None,
                  alive: Callable[[Rollout], np.ndarray] | None = None, defaults: dict | None = None,
                  note: str = "", terminal_penalty: float = 0.0) -> PlanningTask:
    """Register (or replace) the planning reward of task ``key`` (see module docstring)."""
    task = PlanningTask(key, reward, shaping, alive, dict(defaults or {}), note, float(terminal_penalty))
    TASKS[key] = task
    return task


def tolerance(x, bounds=(0.0, 0.0), margin=0.0, sigmoid="gaussian", value_at_margin=0.1):
    """dm_control's ``rewards.tolerance`` (gaussian / linear / quadratic sigmoids) in numpy, so rewards of
    Gymnasium-side tasks do not need dm_control installed; a test checks it equals dm_control's."""
    x = np.asarray(x, dtype=np.float64)
    lower, upper = bounds
    in_bounds = (lower <= x) & (x <= upper)
    if margin == 0:
        return np.where(in_bounds, 1.0, 0.0)
    d = np.where(x < lower, lower - x, x - upper) / margin
    if sigmoid == "gaussian":
        scale = np.sqrt(-2 * np.log(value_at_margin))
        v = np.exp(-0.5 * (d * scale) ** 2)
    elif sigmoid == "linear":
        scale = 1 - value_at_margin
        s = d * scale
        v = np.where(np.abs(s) < 1, 1 - s, 0.0)
    elif sigmoid == "quadratic":
        scale = np.sqrt(1 - value_at_margin)
        s = d * scale
        v = np.where(np.abs(s) < 1, 1 - s * s, 0.0)
    else:
        raise PvrError(f"tolerance: sigmoid {sigmoid!r} not implemented here")
    return np.where(in_bounds, 1.0, v)


__all__ = ["PlanningTask", "Rollout", "TASKS", "register_task", "tolerance"]
