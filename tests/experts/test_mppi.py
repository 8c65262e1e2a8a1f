from contextlib import closing

import numpy as np
import pytest

pytest.importorskip("dm_control")

import pvr.data  # noqa: E402
import pvr.envs  # noqa: E402
import pvr.experts  # noqa: E402
from pvr.collect import collect  # noqa: E402
from pvr.errors import PvrError  # noqa: E402
from pvr.experts.mppi import Sim  # noqa: E402
from pvr.experts.planning import TASKS, Rollout, tolerance  # noqa: E402


def _rollout_from_live(sim, action, qpos0, qvel0, sensor=True):
    """A 1x1 Rollout holding the sim's current (post-step) state, as the planner would see it."""
    d = sim.data
    return Rollout(sim, qpos0, qvel0, d.qpos.copy()[None, None], d.qvel.copy()[None, None],
                   np.asarray(action, float)[None, None], sim.to_ctrl(np.asarray(action, float))[None, None],
                   d.sensordata.copy()[None, None] if sensor else None)


@pytest.mark.parametrize("name", ["DMC-cartpole-swingup", "DMC-reacher-easy", "DMC-finger-spin", "DMC-walker-stand",
                                  "DMC-walker-walk", "DMC-cheetah-run"])
def test_numpy_rewards_equal_dm_control(name):
    with closing(pvr.envs.make(name, image_size=8)) as env:
        env.reset(seed=0)
        sim = Sim(env)
        task = TASKS[sim.key]
        rng = np.random.default_rng(0)
        hits = []
        for _ in range(40):
            a = rng.uniform(sim.low, sim.high)
            q0, v0 = sim.data.qpos.copy(), sim.data.qvel.copy()
            _, reward, *_ = env.step(a)
            r = _rollout_from_live(sim, a, q0, v0)
            mine = task.reward(r)[0, 0]
            assert abs(mine - reward) < 1e-9, (name, mine, reward)
            hits.append(reward)
            if name == "DMC-reacher-easy":  # sparse: check the quantity the shaping uses too
                assert abs(-task.shaping(r)[0, 0] - sim.physics.finger_to_target_dist()) < 1e-9
            if name == "DMC-finger-spin":
                assert abs(r.joint("hinge", vel=True)[0, 0] - sim.physics.hinge_velocity()) < 1e-9
        if name not in ("DMC-finger-spin", "DMC-reacher-easy"):  # sparse rewards: 0 under random actions
            assert np.ptp(hits) > 0  # the comparison saw varying rewards, not one constant


def test_tolerance_equals_dm_control():
    from dm_control.utils import rewards

    x = np.linspace(-3, 3, 101)
    for kw in ({"bounds": (0, 0), "margin": 2}, {"bounds": (1, np.inf), "margin": 0.5, "sigmoid": "linear",
                                                 "value_at_margin": 0.5},
               {"bounds": (0, 0), "margin": 1, "sigmoid": "quadratic", "value_at_margin": 0}, {"bounds": (-1, 1)}):
        np.testing.assert_allclose(tolerance(x, **kw), rewards.tolerance(x, **kw), atol=1e-12)


@pytest.mark.parametrize("name", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5",
                                  "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5"])
def test_numpy_rewards_equal_gymnasium(name):
    with closing(pvr.envs.make(name, image_size=8)) as env:
        env.reset(seed=0)
        sim = Sim(env)
        task = TASKS[sim.key]
        rng = np.random.default_rng(1)
        contact_cost = 0.0
        for _ in range(10):
            a = rng.uniform(sim.low, sim.high) * 0.3
            q0, v0 = sim.data.qpos.copy(), sim.data.qvel.copy()
            _, reward, terminated, _, info = env.step(a)
            r = _rollout_from_live(sim, a, q0, v0)
            mine = task.reward(r)[0, 0]
            if name.startswith("Ant"):  # the planner leaves Ant's contact cost out
                contact_cost = -info["reward_contact"]
            # Ant, Reacher and InvertedDoublePendulum read xpos / site_xpos, which after mj_step lag the state
            # by one physics sub-step; the planner evaluates positions of the state itself: equal up to that lag
            tol = {"Ant-v5": 5e-3, "Reacher-v5": 1e-5, "InvertedDoublePendulum-v5": 1e-5}.get(name, 1e-9)
            if task.alive is not None:
                assert bool(task.alive(r)[0, 0]) == (not terminated)
            if terminated:  # the planner counts nothing from a terminating step on
                break
            assert abs(mine - contact_cost - reward) < tol, (name, mine, reward)


def test_alive_masks_rewards_after_termination():
    with closing(pvr.envs.make("Hopper-v5", image_size=8)) as env:
        obs, info = env.reset(seed=0)
        expert = pvr.experts.create("mppi", env, samples=8, horizon=40)
        state = expert._state()
        falls = np.tile(np.array([1.0, -1.0, 1.0]), (1, 40, 1))  # full torque: the hopper falls early
        r = expert.simulate(state, falls)
        alive = TASKS["gym:Hopper"].alive(r)
        assert not alive[0, -1]  # it did fall
        task = TASKS["gym:Hopper"]
        rewards = task.reward(r)[0]
        kept = rewards[: int(np.argmin(alive[0]))].sum()  # up to the step it falls
        assert task.terminal_penalty > 0
        # rewards after the fall do not count, and the fall costs the penalty once
        assert expert._returns(state, falls)[0] == pytest.approx(kept - task.terminal_penalty)


def test_unknown_gymnasium_task_is_a_clear_error():
    with closing(pvr.envs.make("Pusher-v5", image_size=8)) as env:
        env.reset(seed=0)
        with pytest.raises(PvrError, match="no planning reward for Pusher.*register_task"):
            pvr.experts.create("mppi", env)


def test_planner_leaves_physics_alone_and_is_seeded():
    with closing(pvr.envs.make("DMC-reacher-easy", image_size=16)) as env:
        obs, info = env.reset(seed=1)
        expert = pvr.experts.create(None, env, samples=16, horizon=10)
        before = env.unwrapped.physics.get_state().copy()
        expert.seed(1)
        expert.reset(obs, info)
        a1 = expert.act(obs, info)
        np.testing.assert_array_equal(env.unwrapped.physics.get_state(), before)
        expert.seed(1)
        expert.reset(obs, info)
        np.testing.assert_array_equal(expert.act(obs, info), a1)


def test_collect_dmc_short_episodes(tmp_path):
    kw = {"image_size": 16, "task_kwargs": {"time_limit": 0.5}}  # reacher: 25 control steps of 0.02 s
    path = collect("DMC-reacher-easy", 2, tmp_path, env_kwargs=kw, expert_kwargs={"samples": 32, "horizon": 15},
                   keep_failures=True, progress=False)  # DMC has no success notion: keep every episode
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 2 and ds.meta["expert"]["name"] == "mppi"
        ep = ds.episode(0)
        assert ep["obs"].shape == (25, 16, 16, 3) and ep["action"].shape == (25, 2)
        assert ep["action"].dtype == np.float32 and np.abs(ep["action"]).max() <= 1
        assert ep["done"][-1] and ep["true_state"].shape[0] == 25
    finally:
        ds.close()
