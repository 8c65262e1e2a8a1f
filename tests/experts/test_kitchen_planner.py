import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

import pvr.envs  # noqa: E402
import pvr.experts  # noqa: E402
from pvr.experts.mppi import Sim  # noqa: E402
from pvr.experts.planning import TASKS, Rollout  # noqa: E402
from pvr.experts.rewards_kitchen import THRESHOLD, handle_site  # noqa: E402


@pytest.fixture
def kitchen():
    env = pvr.envs.make("Kitchen-microwave+slide_cabinet", image_size=8)
    env.reset(seed=0)
    yield env
    env.close()


def test_handle_sites_found_from_the_model(kitchen):
    sim = Sim(kitchen)
    assert handle_site(sim, "microwave") == "microhandle_site"
    assert handle_site(sim, "slide cabinet") == "slide_site"


def test_ctrl_mapping_matches_the_env(kitchen):
    sim = Sim(kitchen)
    a = np.random.default_rng(0).uniform(-1, 1, (1, 1, 9))
    predicted = sim.to_ctrl(a)[0, 0]
    kitchen.step(a[0, 0])
    # the env adds small observation noise to the joints it integrates from
    np.testing.assert_allclose(sim.data.ctrl[:9], predicted, atol=5e-3)


def test_reward_counts_what_the_env_counts_as_complete(kitchen):
    sim = Sim(kitchen)
    u = kitchen.unwrapped
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_INDICES

    qpos = sim.data.qpos.copy()
    qpos[OBS_ELEMENT_INDICES["microwave"]] = u.goal["microwave"] + 0.1  # within the threshold
    r = Rollout(sim, qpos, sim.data.qvel.copy(), qpos[None, None], sim.data.qvel.copy()[None, None],
                np.zeros((1, 1, 9)), np.zeros((1, 1, 9)))
    slide = np.linalg.norm(qpos[OBS_ELEMENT_INDICES["slide cabinet"]] - u.goal["slide cabinet"])
    assert slide > THRESHOLD
    assert TASKS["kitchen"].reward(r)[0, 0] == pytest.approx(1 - 0.1 - slide)
    u.tasks_to_complete.discard("microwave")  # a task the env has counted stops paying
    assert TASKS["kitchen"].reward(r)[0, 0] == pytest.approx(-slide)


def test_planner_moves_the_arm_towards_the_handle(kitchen):
    sim = Sim(kitchen)
    expert = pvr.experts.create(None, kitchen, samples=12, horizon=6, threads=1)
    obs, info = kitchen.reset(seed=0)
    expert.seed(0)
    expert.reset(obs, info)
    site = sim.data.site_xpos

    def gap():
        import mujoco

        return np.linalg.norm(site[mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_SITE, "end_effector")]
                              - site[mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_SITE, "microhandle_site")])

    start = gap()
    for _ in range(6):
        obs, *_ = kitchen.step(expert.act(obs, info))
    assert gap() < start - 0.05
