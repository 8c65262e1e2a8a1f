"""``mppi``: a sampling planner (CEM-flavoured MPPI) on the simulator itself, for DeepMind Control.

No pretrained agent: each control step the planner copies the live physics state
(``mj_getState``, full physics), samples ``samples`` action sequences over
``horizon`` control steps around its current plan, simulates them all with
``mujoco.rollout`` (multi-threaded C, ~22x a Python loop of ``physics.step``),
scores them with a numpy re-implementation of the task's reward, refits the plan to
the ``elites`` best (``iterations`` times), executes the first action and shifts
the plan by one step (warm start). Noise is smooth: independent values at knots
every ``knot_every`` steps, linearly interpolated (white noise fails on
cartpole-swingup). Actions are held for the task's physics sub-steps.

The env is never stepped or changed: rollouts run on separate ``MjData`` copies of
the LIVE model (reacher moves its target by editing the model at reset). The
random generator is re-seeded per episode (:meth:`seed`), so an episode depends
on its seed alone.

Rewards known here (``REWARDS``) are exact copies of dm_control's; tasks with a
sparse reward get a dense shaping term for planning only (reacher: minus the
finger-target distance). Other DMC tasks fall back to calling the task's own
``get_reward`` on every sampled state (exact, ~20x slower).
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts.base import Expert, register_expert

RewardFn = Callable[[Any, np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (physics, qpos, qvel, ctrl) -> (N, T)


def _tol(x, bounds=(0.0, 0.0), margin=0.0, sigmoid="gaussian", value_at_margin=0.1):
    from dm_control.utils import rewards

    return rewards.tolerance(x, bounds=bounds, margin=margin, sigmoid=sigmoid, value_at_margin=value_at_margin)


def cartpole_reward(physics, qpos, qvel, ctrl):
    """dm_control cartpole ``_get_reward`` (smooth variant: swingup / balance)."""
    upright = (np.cos(qpos[..., 1]) + 1) / 2
    centered = (1 + _tol(qpos[..., 0], margin=2)) / 2
    small_control = (4 + _tol(ctrl[..., 0], margin=1, value_at_margin=0, sigmoid="quadratic")) / 5
    small_velocity = (1 + _tol(qvel[..., 1], margin=5)) / 2
    return upright * centered * small_control * small_velocity


def _reacher_finger(physics, qpos):
    """Finger (x, y) by forward kinematics of the 2-link arm (body offsets read from the live model)."""
    m = physics.named.model
    base = m.body_pos["arm", :2]
    l1, l2 = float(m.body_pos["hand", 0]), float(m.body_pos["finger", 0])
    a, b = qpos[..., 0], qpos[..., 0] + qpos[..., 1]
    return np.stack([base[0] + l1 * np.cos(a) + l2 * np.cos(b), base[1] + l1 * np.sin(a) + l2 * np.sin(b)], -1)


def reacher_reward(physics, qpos, qvel, ctrl):
    m = physics.named.model
    radii = float(m.geom_size["target", 0] + m.geom_size["finger", 0])
    dist = np.linalg.norm(m.geom_pos["target", :2] - _reacher_finger(physics, qpos), axis=-1)
    return _tol(dist, bounds=(0, radii))


def reacher_shaping(physics, qpos, qvel, ctrl):
    return -np.linalg.norm(physics.named.model.geom_pos["target", :2] - _reacher_finger(physics, qpos), axis=-1)


# (domain, task) -> (reward, planning-only shaping or None)
REWARDS: dict[tuple[str, str], tuple[RewardFn, RewardFn | None]] = {
    ("cartpole", "swingup"): (cartpole_reward, None),
    ("cartpole", "balance"): (cartpole_reward, None),
    ("reacher", "easy"): (reacher_reward, reacher_shaping),
    ("reacher", "hard"): (reacher_reward, reacher_shaping),
}


# per-domain settings that differ from the defaults (cartpole-swingup needs ~1 s of look-ahead)
TASK_DEFAULTS: dict[str, dict] = {"cartpole": {"horizon": 100, "knot_every": 5}}
DEFAULTS = {"samples": 64, "horizon": 30, "iterations": 2, "elites": 16, "knot_every": 4, "noise": 0.5}


@register_expert("mppi", suites=("DMC",),
                 description="sampling planner (MPPI/CEM) over action sequences on a copy of the physics, via mujoco.rollout")
class MPPI(Expert):
    name = "mppi"

    def __init__(self, env: gym.Env, *, samples: int | None = None, horizon: int | None = None,
                 iterations: int | None = None, elites: int | None = None, knot_every: int | None = None,
                 noise: float | None = None, min_std: float = 0.05, shaping: float = 1.0, threads: int = 2):
        super().__init__(env)
        import mujoco

        u = env.unwrapped
        if not hasattr(u, "dm_env"):
            raise PvrError(f"the mppi expert plans on DeepMind Control envs (DMC-*) here, got {type(u).__name__}; "
                           "Gymnasium MuJoCo / Adroit / Kitchen planning is not implemented yet — use "
                           "--expert policy:<file> for those")
        self._mj = mujoco
        self.physics = u.physics
        self.task_key = (u.domain, u.task)
        self.sub_steps = int(getattr(u.dm_env, "_n_sub_steps", 1))
        given = {"samples": samples, "horizon": horizon, "iterations": iterations, "elites": elites,
                 "knot_every": knot_every, "noise": noise}
        cfg = {**DEFAULTS, **TASK_DEFAULTS.get(u.domain, {}), **{k: v for k, v in given.items() if v is not None}}
        samples, horizon, iterations, elites, knot_every, noise = (cfg[k] for k in given)
        self.samples, self.horizon, self.iterations = int(samples), int(horizon), int(iterations)
        self.elites, self.knot_every, self.noise = int(elites), max(1, int(knot_every)), float(noise)
        self.min_std, self.shaping, self.threads = float(min_std), float(shaping), max(1, int(threads))
        self.low, self.high = u.action_space.low.astype(np.float64), u.action_space.high.astype(np.float64)
        self.reward_fn, self.shaping_fn = REWARDS.get(self.task_key, (None, None))
        model = self.physics.model.ptr
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._nstate = mujoco.mj_stateSize(model, self._spec)
        self._datas = [mujoco.MjData(model) for _ in range(self.threads)]
        self._rng = np.random.default_rng(0)
        self._plan = np.zeros((self.horizon, len(self.low)))

    # ------------------------------------------------------------------ interface
    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, obs: Any, info: dict) -> None:
        self._plan = np.tile((self.low + self.high) / 2, (self.horizon, 1))

    def act(self, obs: Any, info: dict) -> np.ndarray:
        action = self.plan()
        self._plan = np.vstack([self._plan[1:], self._plan[-1:]])  # warm start: shift
        return action.astype(np.float32)

    def describe(self) -> dict:
        return {"name": self.name, "samples": self.samples, "horizon": self.horizon, "iterations": self.iterations,
                "elites": self.elites, "knot_every": self.knot_every, "noise": self.noise, "min_std": self.min_std,
                "shaping": self.shaping, "reward": "numpy" if self.reward_fn else "task.get_reward"}

    # ------------------------------------------------------------------ planning
    def _smooth_noise(self, n: int) -> np.ndarray:
        knots = np.arange(0, self.horizon + self.knot_every, self.knot_every)
        values = self._rng.standard_normal((n, len(knots), len(self.low)))
        t = np.arange(self.horizon)
        idx = np.minimum(t // self.knot_every, len(knots) - 2)
        w = ((t - knots[idx]) / self.knot_every)[None, :, None]
        return values[:, idx] * (1 - w) + values[:, idx + 1] * w

    def _state(self) -> np.ndarray:
        mj, model, data = self._mj, self.physics.model.ptr, self.physics.data.ptr
        state = np.empty(self._nstate)
        mj.mj_getState(model, data, state, self._spec)
        return state

    def _simulate(self, state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """qpos, qvel (N, H, ·) after each control step for action sequences (N, H, A)."""
        from mujoco import rollout

        model = self.physics.model.ptr
        n = actions.shape[0]
        control = np.repeat(actions, self.sub_steps, axis=1)  # hold for the sub-steps
        states, _ = rollout.rollout(model, self._datas, np.tile(state, (n, 1)), control)
        states = states[:, self.sub_steps - 1::self.sub_steps]
        nq, nv = model.nq, model.nv
        return states[..., 1:1 + nq], states[..., 1 + nq:1 + nq + nv]

    def _returns(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        qpos, qvel = self._simulate(state, actions)
        if self.reward_fn is not None:
            r = self.reward_fn(self.physics, qpos, qvel, actions)
            if self.shaping_fn is not None and self.shaping:
                r = r + self.shaping * self.shaping_fn(self.physics, qpos, qvel, actions)
            return r.sum(axis=1)
        return self._task_returns(qpos, qvel, actions)

    def _task_returns(self, qpos, qvel, actions) -> np.ndarray:
        """Exact but slow: the task's own reward on every sampled state (physics restored afterwards)."""
        physics, task = self.physics, self.env.unwrapped.dm_env.task
        saved = physics.get_state().copy()
        saved_ctrl = physics.data.ctrl.copy()
        out = np.zeros(qpos.shape[0])
        try:
            with physics.reset_context():
                pass
            for i in range(qpos.shape[0]):
                for t in range(qpos.shape[1]):
                    physics.data.qpos[:], physics.data.qvel[:], physics.data.ctrl[:] = qpos[i, t], qvel[i, t], actions[i, t]
                    self._mj.mj_forward(physics.model.ptr, physics.data.ptr)
                    out[i] += float(task.get_reward(physics))
        finally:
            with physics.reset_context():
                physics.set_state(saved)
            physics.data.ctrl[:] = saved_ctrl
        return out

    def plan(self) -> np.ndarray:
        """The first action of the best plan from the env's current state."""
        state = self._state()
        mean = self._plan
        std = np.full_like(mean, self.noise * (self.high - self.low) / 2)
        for _ in range(self.iterations):
            eps = self._smooth_noise(self.samples - 1)
            cand = np.clip(mean[None] + std[None] * eps, self.low, self.high)
            cand = np.concatenate([mean[None], cand])  # keep the warm-started plan among the candidates
            ret = self._returns(state, cand)
            elite = cand[np.argsort(ret)[-self.elites:]]
            mean = elite.mean(axis=0)
            std = np.maximum(elite.std(axis=0), self.min_std)
        self._plan = mean
        return np.clip(mean[0], self.low, self.high)


__all__ = ["MPPI", "REWARDS", "cartpole_reward", "reacher_reward"]
