"""``mppi``: a sampling planner (CEM-flavoured MPPI) on the simulator itself, for every MuJoCo suite.

No pretrained agent: each control step the planner copies the live physics state
(``mj_getState``, full physics), samples ``samples`` action sequences over
``horizon`` control steps around its current plan, simulates them all with
``mujoco.rollout`` (multi-threaded C, ~22x a Python loop of ``physics.step``),
scores them with the task's planning reward (:mod:`pvr.experts.planning`), refits
the plan to the ``elites`` best (``iterations`` times), executes the first action
and shifts the plan by one step (warm start). Noise is smooth: independent values
at knots every ``knot_every`` steps, linearly interpolated (white noise fails on
cartpole-swingup). Actions are held for the env's physics sub-steps.

Suites: DeepMind Control (``DMC-*``), Gymnasium MuJoCo (``HalfCheetah-v5``, ...),
Adroit (``HMS-*``) and Kitchen — anything whose ``env.unwrapped`` is a dm_control
env or a Gymnasium ``MujocoEnv``. ``pvr experts`` lists the tasks with a planning
reward; DMC tasks without one fall back to the task's own ``get_reward`` on every
sampled state (exact, ~20x slower).

The env is never stepped or changed: rollouts run on separate ``MjData`` copies of
the LIVE model (reacher moves its target by editing the model at reset). The
random generator is re-seeded per episode (:meth:`seed`), so an episode depends
on its seed alone.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pvr.errors import PvrError
from pvr.experts import rewards_adroit, rewards_dmc, rewards_gym, rewards_kitchen  # noqa: F401  (planning tasks)
from pvr.experts.base import Expert, register_expert
from pvr.experts.planning import TASKS, PlanningTask, Rollout

DEFAULTS = {"samples": 64, "horizon": 30, "iterations": 2, "elites": 16, "knot_every": 4, "noise": 0.5, "min_std": 0.05}


class Sim:
    """The live MuJoCo model/data behind an env, how an env action becomes ``ctrl``, and the task key."""

    def __init__(self, env: gym.Env):
        import mujoco

        u = env.unwrapped
        self.physics = None
        self.to_ctrl = self._identity  # env action -> MuJoCo ctrl, (N, H, A) -> (N, H, nu)
        if hasattr(u, "robot_env") and hasattr(u, "tasks_to_complete"):  # Franka Kitchen: the robot env simulates
            robot = u.robot_env
            self.model, self.data = robot.model, robot.data
            self.sub_steps = int(robot.frame_skip)
            self.key = "kitchen"
            self.to_ctrl = self._kitchen_ctrl
            self._robot = robot
        elif hasattr(u, "dm_env"):  # DeepMind Control (pvr.envs.dmc.DMCEnv)
            self.physics = u.physics
            self.model, self.data = u.physics.model.ptr, u.physics.data.ptr
            self.sub_steps = int(getattr(u.dm_env, "_n_sub_steps", 1))
            self.key = f"dmc:{u.domain}-{u.task}"
        elif isinstance(getattr(u, "model", None), mujoco.MjModel) and hasattr(u, "frame_skip"):
            self.model, self.data = u.model, u.data  # Gymnasium MujocoEnv (MuJoCo, Adroit, Kitchen)
            self.sub_steps = int(u.frame_skip)
            spec = getattr(u, "spec", None)
            base = (spec.id if spec is not None else type(u).__name__).split("/")[-1].rsplit("-v", 1)[0]
            self.key = f"gym:{base}"
            if hasattr(u, "act_mean") and hasattr(u, "act_rng"):  # Adroit: [-1, 1] onto the actuators' ranges
                self.to_ctrl = self._scaled_ctrl
        else:
            raise PvrError(f"the mppi expert plans on MuJoCo envs (DMC, Gymnasium MuJoCo, Adroit, Kitchen); "
                           f"{type(u).__name__} is not one — use another expert (`pvr experts`)")
        self.env = u
        self.low = u.action_space.low.astype(np.float64)
        self.high = u.action_space.high.astype(np.float64)
        self.dt = float(self.model.opt.timestep) * self.sub_steps
        self._scratch = None

    @staticmethod
    def _identity(actions: np.ndarray) -> np.ndarray:
        return actions

    def _scaled_ctrl(self, actions: np.ndarray) -> np.ndarray:
        return self.env.act_mean + np.clip(actions, -1.0, 1.0) * self.env.act_rng

    def _kitchen_ctrl(self, actions: np.ndarray) -> np.ndarray:
        """Franka Kitchen actions are joint velocities; its env turns each into a position target ``q_t +
        v_t·dt`` from the arm's current joints. Open-loop, with the arm tracking its targets, that is the
        running sum of the commanded steps from the live joints (then clipped to the joint ranges)."""
        robot = self._robot
        vel = np.clip(robot.act_mid + np.clip(actions, -1.0, 1.0) * robot.act_rng,
                      robot.robot_vel_bound[:9, 0], robot.robot_vel_bound[:9, 1])
        target = self.data.qpos[:9] + np.cumsum(vel * robot.dt, axis=-2)
        return np.clip(target, robot.robot_pos_bound[:9, 0], robot.robot_pos_bound[:9, 1])

    def scratch(self):
        """A spare ``MjData`` holding the live data's values (mocap, ...): for kinematics of sampled states."""
        import mujoco

        if self._scratch is None:
            self._scratch = mujoco.MjData(self.model)
        mujoco.mj_copyData(self._scratch, self.model, self.data)
        return self._scratch


def planning_task(sim: Sim) -> PlanningTask | None:
    return TASKS.get(sim.key)


@register_expert("mppi", suites=("DMC", "Gymnasium", "HMS", "Kitchen"),
                 description="sampling planner (MPPI/CEM) over action sequences on a copy of the physics, via mujoco.rollout")
class MPPI(Expert):
    name = "mppi"

    def __init__(self, env: gym.Env, *, samples: int | None = None, horizon: int | None = None,
                 iterations: int | None = None, elites: int | None = None, knot_every: int | None = None,
                 noise: float | None = None, min_std: float | None = None, shaping: float = 1.0, threads: int = 2):
        super().__init__(env)
        import mujoco

        self._mj = mujoco
        self.sim = sim = Sim(env)
        self.task = planning_task(sim)
        if self.task is None and sim.physics is None:
            known = ", ".join(sorted(k[4:] for k in TASKS if k.startswith("gym:")))
            raise PvrError(f"the mppi expert has no planning reward for {sim.key[4:]}; tasks it knows: {known}. "
                           "Add one with pvr.experts.planning.register_task (see its docstring), or use "
                           "--expert policy:<file>")
        given = {"samples": samples, "horizon": horizon, "iterations": iterations, "elites": elites,
                 "knot_every": knot_every, "noise": noise, "min_std": min_std}
        task_defaults = self.task.defaults if self.task else {}
        cfg = {**DEFAULTS, **task_defaults, **{k: v for k, v in given.items() if v is not None}}
        if elites is None:  # a default elite count never exceeds the samples asked for
            cfg["elites"] = min(cfg["elites"], cfg["samples"])
        samples, horizon, iterations, elites, knot_every, noise, min_std = (cfg[k] for k in given)
        self.samples, self.horizon, self.iterations = int(samples), int(horizon), int(iterations)
        self.elites, self.knot_every, self.noise = int(elites), max(1, int(knot_every)), float(noise)
        if not 1 <= self.elites <= self.samples:
            raise PvrError(f"mppi: elites ({self.elites}) must be between 1 and samples ({self.samples})")
        self.min_std, self.shaping, self.threads = float(min_std), float(shaping), max(1, int(threads))
        self.low, self.high = sim.low, sim.high
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._nstate = mujoco.mj_stateSize(sim.model, self._spec)
        self._datas = [mujoco.MjData(sim.model) for _ in range(self.threads)]
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
        return {"name": self.name, "task": self.sim.key, "samples": self.samples, "horizon": self.horizon,
                "iterations": self.iterations, "elites": self.elites, "knot_every": self.knot_every,
                "noise": self.noise, "min_std": self.min_std, "shaping": self.shaping,
                "reward": "numpy" if self.task else "task.get_reward"}

    # ------------------------------------------------------------------ planning
    def _smooth_noise(self, n: int) -> np.ndarray:
        knots = np.arange(0, self.horizon + self.knot_every, self.knot_every)
        values = self._rng.standard_normal((n, len(knots), len(self.low)))
        t = np.arange(self.horizon)
        idx = np.minimum(t // self.knot_every, len(knots) - 2)
        w = ((t - knots[idx]) / self.knot_every)[None, :, None]
        return values[:, idx] * (1 - w) + values[:, idx + 1] * w

    def _state(self) -> np.ndarray:
        state = np.empty(self._nstate)
        self._mj.mj_getState(self.sim.model, self.sim.data, state, self._spec)
        return state

    def simulate(self, state: np.ndarray, actions: np.ndarray) -> Rollout:
        """Roll action sequences (N, H, A) out from ``state`` (live data untouched)."""
        from mujoco import rollout

        sim, model = self.sim, self.sim.model
        n, k = actions.shape[0], sim.sub_steps
        ctrl = sim.to_ctrl(actions)
        control = np.repeat(ctrl, k, axis=1)  # held for the sub-steps
        states, sensors = rollout.rollout(model, self._datas, np.tile(state, (n, 1)), control)
        states = states[:, k - 1::k]
        sensors = sensors[:, k - 1::k] if model.nsensordata else None
        nq, nv = model.nq, model.nv
        return Rollout(sim, sim.data.qpos.copy(), sim.data.qvel.copy(), states[..., 1:1 + nq],
                       states[..., 1 + nq:1 + nq + nv], actions, ctrl, sensors)

    def _returns(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        r = self.simulate(state, actions)
        if self.task is None:
            return self._task_returns(r)
        rew = self.task.reward(r)
        if self.task.shaping is not None and self.shaping:
            rew = rew + self.shaping * self.task.shaping(r)
        if self.task.alive is not None:
            alive = np.cumprod(self.task.alive(r), axis=1)  # nothing counts after a rollout "terminates"
            rew = rew * alive
            return rew.sum(axis=1) - self.task.terminal_penalty * (1 - alive[:, -1])
        return rew.sum(axis=1)

    def _task_returns(self, r: Rollout) -> np.ndarray:
        """DMC tasks without a numpy reward: the task's own reward on every sampled state (exact, slow);
        the physics is restored afterwards."""
        physics, task = self.sim.physics, self.sim.env.dm_env.task
        saved = physics.get_state().copy()
        saved_ctrl = physics.data.ctrl.copy()
        out = np.zeros(r.qpos.shape[0])
        try:
            with physics.reset_context():
                pass
            for i in range(r.qpos.shape[0]):
                for t in range(r.qpos.shape[1]):
                    physics.data.qpos[:], physics.data.qvel[:] = r.qpos[i, t], r.qvel[i, t]
                    physics.data.ctrl[:] = r.ctrl[i, t]
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


__all__ = ["MPPI", "Sim", "planning_task"]
