"""Planning rewards for Gymnasium MuJoCo tasks: numpy copies of the v5 envs' step rewards.

Each reads the env's own weights (``_ctrl_cost_weight``, ``_healthy_z_range``, ...)
so ``--env_kwargs`` that change them change the planner's reward too; tests check
each against the env's reward on the same transitions. Two planning-side
differences, both deliberate: a rollout earns nothing from the step it would
terminate (a fallen Hopper), and Ant's contact cost (5e-4 × clipped contact
forces, which ``mj_kinematics`` does not give) is left out.
"""
from __future__ import annotations

import numpy as np

from pvr.experts.planning import Rollout, register_task


def _w(r: Rollout, name: str, default: float):
    return getattr(r.sim.env, name, default)


def _ctrl_cost(r: Rollout, default: float) -> np.ndarray:
    return _w(r, "_ctrl_cost_weight", default) * np.square(r.act).sum(-1)


def _x_velocity(r: Rollout, index: int = 0) -> np.ndarray:
    return (r.qpos[..., index] - r.prev_qpos[..., index]) / r.sim.dt


def _forward(default_ctrl: float, healthy: bool):
    def reward(r: Rollout) -> np.ndarray:
        out = _w(r, "_forward_reward_weight", 1.0) * _x_velocity(r) - _ctrl_cost(r, default_ctrl)
        if healthy:
            out = out + _w(r, "_healthy_reward", 1.0)
        return out
    return reward


def hopper_alive(r: Rollout) -> np.ndarray:
    z, angle = r.qpos[..., 1], r.qpos[..., 2]
    lo, hi = _w(r, "_healthy_state_range", (-100.0, 100.0))
    state = np.concatenate([r.qpos[..., 2:], r.qvel], axis=-1)
    zl, zh = _w(r, "_healthy_z_range", (0.7, float("inf")))
    al, ah = _w(r, "_healthy_angle_range", (-0.2, 0.2))
    return ((lo < state) & (state < hi)).all(-1) & (zl < z) & (z < zh) & (al < angle) & (angle < ah)


def walker2d_alive(r: Rollout) -> np.ndarray:
    z, angle = r.qpos[..., 1], r.qpos[..., 2]
    zl, zh = _w(r, "_healthy_z_range", (0.8, 2.0))
    al, ah = _w(r, "_healthy_angle_range", (-1.0, 1.0))
    return (zl < z) & (z < zh) & (al < angle) & (angle < ah)


def ant_alive(r: Rollout) -> np.ndarray:
    zl, zh = _w(r, "_healthy_z_range", (0.2, 1.0))
    z = r.qpos[..., 2]
    return np.isfinite(r.qpos).all(-1) & np.isfinite(r.qvel).all(-1) & (zl <= z) & (z <= zh)


def inverted_pendulum(r: Rollout) -> np.ndarray:
    return np.ones(r.qpos.shape[:2])


def inverted_pendulum_alive(r: Rollout) -> np.ndarray:
    return np.abs(r.qpos[..., 1]) <= 0.2


def _double_tip(r: Rollout) -> np.ndarray:
    import mujoco

    name = mujoco.mj_id2name(r.sim.model, mujoco.mjtObj.mjOBJ_SITE, 0)
    return r.kinematics(sites=(name,))[name]


def inverted_double_pendulum(r: Rollout) -> np.ndarray:
    tip = _double_tip(r)
    x, y = tip[..., 0], tip[..., 2]
    v1, v2 = r.qvel[..., 1], r.qvel[..., 2]
    return _w(r, "_healthy_reward", 10.0) - (0.01 * x ** 2 + (y - 2) ** 2) - (1e-3 * v1 ** 2 + 5e-3 * v2 ** 2)


def inverted_double_pendulum_alive(r: Rollout) -> np.ndarray:
    return _double_tip(r)[..., 2] > 1


def reacher(r: Rollout) -> np.ndarray:
    k = r.kinematics(bodies=("fingertip", "target"))
    dist = np.linalg.norm(k["fingertip"] - k["target"], axis=-1)
    return -_w(r, "_reward_dist_weight", 1.0) * dist - _w(r, "_reward_control_weight", 0.1) * np.square(r.act).sum(-1)


register_task("gym:HalfCheetah", _forward(0.1, healthy=False))
register_task("gym:Swimmer", _forward(1e-4, healthy=False))
# falling ends the episode: a planning-only penalty, worth more than any burst of speed within the horizon
register_task("gym:Hopper", _forward(1e-3, healthy=True), alive=hopper_alive, terminal_penalty=100.0)
register_task("gym:Walker2d", _forward(1e-3, healthy=True), alive=walker2d_alive, terminal_penalty=100.0)
register_task("gym:Ant", _forward(0.5, healthy=True), alive=ant_alive, note="contact cost left out",
              terminal_penalty=100.0)
register_task("gym:InvertedPendulum", inverted_pendulum, alive=inverted_pendulum_alive, terminal_penalty=100.0)
register_task("gym:InvertedDoublePendulum", inverted_double_pendulum, alive=inverted_double_pendulum_alive,
              terminal_penalty=1000.0)
register_task("gym:Reacher", reacher)
