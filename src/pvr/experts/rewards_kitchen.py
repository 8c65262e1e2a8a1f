"""Planning reward for Franka Kitchen (``Kitchen-<task>``): open / move the requested objects.

For every requested task the env has not yet counted as done (``tasks_to_complete``),
the reward is minus the distance of the object's joints to their goal
(gymnasium-robotics' ``OBS_ELEMENT_INDICES`` / ``goal``), plus 1 once within the
env's completion threshold (its own reward: one per completed task); planning-only
shaping pulls the end effector towards the object's handle site. Which site belongs
to which object is found from the model, not hard-coded: the site that moves most
when the object's first joint moves.
"""
from __future__ import annotations

import numpy as np

from pvr.experts.planning import Rollout, register_task

THRESHOLD = 0.3  # gymnasium-robotics' BONUS_THRESH: a task is complete below this joint distance


def _indices():
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_INDICES

    return OBS_ELEMENT_INDICES


def _open_tasks(r: Rollout) -> list[str]:
    env = r.sim.env
    return [t for t in env.goal if t in env.tasks_to_complete]


def handle_site(sim, task: str) -> str:
    """The site attached to ``task``'s object (cached on the sim)."""
    import mujoco

    cache = sim.__dict__.setdefault("_kitchen_sites", {})
    if task not in cache:
        model = sim.model
        data = sim.scratch()
        mujoco.mj_kinematics(model, data)
        before = data.site_xpos.copy()
        data.qpos[_indices()[task][0]] += 0.3
        mujoco.mj_kinematics(model, data)
        moved = np.linalg.norm(data.site_xpos - before, axis=1)
        cache[task] = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SITE, int(np.argmax(moved)))
    return cache[task]


def _distances(r: Rollout) -> dict[str, np.ndarray]:
    env = r.sim.env
    return {t: np.linalg.norm(r.qpos[..., _indices()[t]] - env.goal[t], axis=-1) for t in _open_tasks(r)}


def kitchen(r: Rollout) -> np.ndarray:
    out = np.zeros(r.qpos.shape[:2])
    for dist in _distances(r).values():
        out += (dist < THRESHOLD) - dist
    return out


def kitchen_shaping(r: Rollout) -> np.ndarray:
    tasks = _open_tasks(r)
    if not tasks:
        return np.zeros(r.qpos.shape[:2])
    sites = tuple(dict.fromkeys(handle_site(r.sim, t) for t in tasks))
    pos = r.kinematics(sites=("end_effector", *sites))
    near = min((np.linalg.norm(pos["end_effector"] - pos[s], axis=-1) for s in sites), key=lambda d: d.mean())
    return -near


register_task("kitchen", kitchen, shaping=kitchen_shaping,
              defaults={"samples": 32, "horizon": 10, "knot_every": 2, "elites": 6})
