"""Adroit planning rewards (pvr.experts.rewards_adroit) against the envs' own quantities, and the planner on HMS."""
import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

import mujoco  # noqa: E402

import pvr.data  # noqa: E402
import pvr.envs  # noqa: E402
from pvr.collect import collect  # noqa: E402
from pvr.experts import rewards_adroit as ra  # noqa: E402
from pvr.experts.mppi import MPPI, Sim  # noqa: E402
from pvr.experts.planning import TASKS, Rollout  # noqa: E402

TASK_NAMES = ("door", "hammer", "pen", "relocate")
# the gymnasium-robotics dense reward minus the original's: the palm term's sign (0.1·d became +0.1·d)
SIGN_FLIP = {"door": "palm_handle", "hammer": "palm_hammer", "relocate": "palm_ball", "pen": None}


def _make(task):
    return pvr.envs.make(f"HMS-{task}-v0", image_size=16)


def _rollout(sim: Sim, action: np.ndarray) -> Rollout:
    """A one-candidate, one-step rollout holding the env's current state."""
    d = sim.data
    a = np.asarray(action, dtype=np.float64)[None, None]
    return Rollout(sim, d.qpos.copy(), d.qvel.copy(), d.qpos.copy()[None, None], d.qvel.copy()[None, None],
                   a, sim.to_ctrl(a))


def _env_terms(task, u) -> dict:
    """The env's own quantities, read from its data (after mj_forward, so positions match qpos)."""
    d = u.data
    if task == "door":
        return {"palm_handle": np.linalg.norm(d.site_xpos[u.grasp_site_id] - d.site_xpos[u.handle_site_id]),
                "hinge": d.qpos[u.door_hinge_addrs]}
    if task == "hammer":
        return {"palm_hammer": np.linalg.norm(d.site_xpos[u.S_grasp_site_id] - d.xpos[u.obj_body_id]),
                "head_nail": np.linalg.norm(d.site_xpos[u.tool_site_id] - d.site_xpos[u.target_obj_site_id]),
                "nail_goal": np.linalg.norm(d.site_xpos[u.target_obj_site_id] - d.site_xpos[u.goal_site_id])}
    if task == "pen":
        orien = (d.site_xpos[u.obj_t_site_id] - d.site_xpos[u.obj_b_site_id]) / u.pen_length
        desired = (d.site_xpos[u.tar_t_site_id] - d.site_xpos[u.tar_b_site_id]) / u.tar_length
        return {"goal_distance": np.linalg.norm(d.xpos[u.obj_body_id] - d.site_xpos[u.eps_ball_site_id]),
                "similarity": float(orien @ desired)}
    return {"palm_ball": np.linalg.norm(d.site_xpos[u.S_grasp_site_id] - d.xpos[u.obj_body_id]),
            "ball_target": np.linalg.norm(d.xpos[u.obj_body_id] - d.site_xpos[u.target_obj_site_id])}


def _check_step(task, env, sim, action, tol_reward=1e-2):
    """Step the env; the numpy reward/goal on the new state agree with the env's reward, info and data."""
    _, rew, _, _, info = env.step(action)
    u = sim.env
    r = _rollout(sim, action)
    mine = float(TASKS[f"gym:AdroitHand{task.capitalize()}"].reward(r)[0, 0])
    goal = bool(ra.GOALS[task](r)[0, 0])
    terms = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in ra.TERMS[task](r).items() if np.ndim(v) == 2}
    flip = 0.2 * terms[SIGN_FLIP[task]] if SIGN_FLIP[task] else 0.0
    # the env reads site_xpos one physics sub-step behind its state: equal up to that lag
    assert mine + flip == pytest.approx(rew, abs=tol_reward)
    assert goal == bool(info["goal_achieved"])  # Adroit's per-step success (the suite's info["success"] counts them)
    mujoco.mj_forward(u.model, u.data)  # positions of the current state (env steps them lagging)
    for k, v in _env_terms(task, u).items():
        assert terms[k] == pytest.approx(float(v), abs=1e-9), k
    return goal


def _set(env, qpos_fn):
    u = env.unwrapped
    qpos, qvel = u.data.qpos.copy(), np.zeros_like(u.data.qvel)
    qpos_fn(u, qpos)
    u.set_state(qpos, qvel)


def _joint(u, name):
    return u.model.jnt_qposadr[u._model_names.joint_name2id[name]]


def _goal_state(task, env, near_miss=False):
    """Put the env in a state with its goal achieved (or, with ``near_miss``, just not: a wrong threshold shows)."""
    u = env.unwrapped
    if task == "door":  # goal: hinge >= 1.35
        _set(env, lambda u, q: q.__setitem__(_joint(u, "door_hinge"), 1.28 if near_miss else 1.45))
    elif task == "hammer":  # goal: nail within 1 cm of its goal (nail_dir 0.091 at the goal)
        _set(env, lambda u, q: q.__setitem__(_joint(u, "nail_dir"), 0.076 if near_miss else 0.088))
    elif task == "relocate":  # goal: ball within 10 cm of the target
        target = u.data.site_xpos[u.target_obj_site_id].copy() + [0.0, 0.0, 0.13 if near_miss else 0.07]
        base = u.model.body_pos[u.obj_body_id].copy()
        _set(env, lambda u, q: q.__setitem__(slice(-6, -3), target - base))
    else:  # pen: the pen back at its start (on the goal ball), the target turned to the pen's orientation
        _set(env, lambda u, q: q.__setitem__(slice(-6, None), 0.0))
        u.model.body_quat[u.target_obj_body_id] = u.data.xquat[u.obj_body_id]  # same site layout, world parent
        _set(env, lambda u, q: None)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_reward_and_goal_match_env(task):
    env = _make(task)
    try:
        env.reset(seed=3)
        sim = Sim(env)
        assert sim.key in TASKS
        rng = np.random.default_rng(0)
        goals = [_check_step(task, env, sim, rng.uniform(-0.5, 0.5, env.action_space.shape).astype(np.float32))
                 for _ in range(6)]
        if task != "pen":  # pen may start with its target orientation within reach
            assert not any(goals)
        zero = np.zeros(env.action_space.shape, np.float32)
        if task != "pen":
            _goal_state(task, env, near_miss=True)
            assert not _check_step(task, env, sim, zero)
        _goal_state(task, env)
        assert _check_step(task, env, sim, zero)  # and the env agrees (info["goal_achieved"])
    finally:
        env.close()


def test_shaping_is_finite_and_batched():
    for task in TASK_NAMES:
        env = _make(task)
        try:
            obs, info = env.reset(seed=0)
            ex = MPPI(env, samples=4, horizon=3, threads=1)
            rng = np.random.default_rng(1)
            r = ex.simulate(ex._state(), rng.uniform(-1, 1, (4, 3) + env.action_space.shape))
            t = TASKS[ex.sim.key]
            for fn in (t.reward, t.shaping):
                v = fn(r)
                assert v.shape == (4, 3) and np.isfinite(v).all()
        finally:
            env.close()


def test_planning_moves_the_palm_to_the_door_handle():
    def palm_handle(env, actions):
        obs, info = env.reset(seed=0)
        for a in actions(obs, info):
            obs, _, _, _, info = env.step(a)
        u = env.unwrapped
        mujoco.mj_forward(u.model, u.data)
        return np.linalg.norm(u.data.site_xpos[u.grasp_site_id] - u.data.site_xpos[u.handle_site_id])

    env = _make("door")
    try:
        zero = np.zeros(env.action_space.shape, np.float32)
        idle = palm_handle(env, lambda obs, info: [zero] * 12)
        ex = MPPI(env, samples=16, horizon=8, threads=1)

        def planned(obs, info):
            ex.seed(0)
            ex.reset(obs, info)
            for _ in range(12):
                yield ex.act(obs, info)

        moved = palm_handle(env, planned)
        assert moved < 0.8 * idle, (moved, idle)
    finally:
        env.close()


def test_collect_hms_door_short_episode(tmp_path):
    path = collect("HMS-door-v0", 1, tmp_path, env_kwargs={"image_size": 16, "max_episode_steps": 5},
                   expert_kwargs={"samples": 8, "horizon": 4}, keep_failures=True, progress=False)
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 1
        meta = ds.meta["expert"]
        assert meta["name"] == "mppi" and meta["task"] == "gym:AdroitHandDoor" and meta["reward"] == "numpy"
        assert meta["samples"] == 8 and meta["horizon"] == 4
        ep = ds.episode(0)
        assert ep["obs"].shape == (5, 16, 16, 3) and ep["obs"].dtype == np.uint8
        assert ep["action"].shape == (5, 28) and ep["action"].dtype == np.float32
        assert np.abs(ep["action"]).max() <= 1
        assert ep["true_state"].shape[0] == 5 and ep["reward"].shape == (5,)
        assert ep["done"][-1] and not ep["done"][:-1].any()
    finally:
        ds.close()
