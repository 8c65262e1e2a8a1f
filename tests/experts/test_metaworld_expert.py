"""``metaworld_scripted``: the MetaWorld suite's default expert, and a short `pvr collect` with it."""
import warnings

import numpy as np
import pytest

import pvr.envs
import pvr.experts
from pvr.errors import PvrError

metaworld = pytest.importorskip("metaworld", reason="metaworld not installed (scripts/bootstrap.sh installs it)")
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402

from pvr.experts.metaworld import MetaWorldScripted  # noqa: E402

SMALL = 16


@pytest.fixture
def env():
    e = pvr.envs.make("MetaWorld-assembly-v3", image_size=SMALL, max_episode_steps=40)
    yield e
    e.close()


def test_default_expert_is_the_tasks_scripted_policy(env):
    expert = pvr.experts.create(None, env)
    assert isinstance(expert, MetaWorldScripted)
    assert expert.describe() == {"name": "metaworld_scripted", "task": "assembly-v3",
                                 "policy": "SawyerAssemblyV3Policy"}


def test_every_task_has_a_scripted_policy():
    assert {name for name in metaworld.ALL_V3_ENVIRONMENTS} <= set(ENV_POLICY_MAP)


def test_actions_are_the_policy_on_the_float64_observation_clipped(env):
    expert = pvr.experts.create("metaworld_scripted", env)
    policy = ENV_POLICY_MAP["assembly-v3"]()
    obs, info = env.reset(seed=2)
    clipped_any = False
    for _ in range(40):
        raw = env.get_wrapper_attr("metaworld_obs")
        assert raw.dtype == np.float64 and raw.shape == (39,)
        np.testing.assert_allclose(raw.astype(np.float32), info["true_state"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # metaworld warns when its gains exceed the bounds
            want = np.asarray(policy.get_action(raw), np.float64)
        action = expert.act(obs, info)
        assert action.dtype == np.float32 and action.shape == (4,)
        np.testing.assert_allclose(action, np.minimum(np.maximum(want, -1.0), 1.0), rtol=1e-6)
        clipped_any |= bool(np.any(np.abs(want) > 1.0))
        obs, _, _, trunc, info = env.step(action)
        if trunc:
            break
    assert clipped_any  # the policies' gains exceed the action bounds early on; the expert stores what applies


def test_expert_refuses_other_suites():
    e = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    try:
        with pytest.raises(PvrError, match="supports the MetaWorld suite"):
            pvr.experts.create("metaworld_scripted", e)
    finally:
        e.close()


def test_collect_with_the_default_expert(tmp_path):
    import pvr.data
    from pvr.cli import main

    # button-press-topdown: the scripted policy presses by ~70 steps and holds it; 100 steps keep it short.
    argv = ["collect", "--env", "MetaWorld-button-press-topdown-v3", "--episodes", "1", "--data_path", str(tmp_path),
            "--env_kwargs", f'{{"image_size": {SMALL}, "max_episode_steps": 100}}', "--quiet"]
    assert main(argv) == 0
    with pvr.data.open(tmp_path / "MetaWorld-button-press-topdown-v3.zarr") as ds:
        assert ds.num_episodes == 1
        assert ds.meta["expert"]["name"] == "metaworld_scripted"
        assert ds.meta["collect_successes"] == 1 and ds.meta["collect_attempts"] == 1
        ep = ds.episode(0)
        assert ep["obs"].shape == (100, SMALL, SMALL, 3) and ep["obs"].dtype == np.uint8
        assert ep["true_state"].shape == (100, 39)
        assert ep["action"].shape == (100, 4) and np.all(np.abs(ep["action"]) <= 1.0)
        assert ep["done"].tolist() == [False] * 99 + [True]
