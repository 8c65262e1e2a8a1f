import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pvr.envs
from pvr.errors import PvrError

IDS = ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-Empty-5x5-v0", "MiniGrid-LavaGapS5-v0"]


def _check_info(info, length=None):
    assert set(info) >= {"true_state", "success"}
    ts = info["true_state"]
    assert isinstance(ts, np.ndarray) and ts.dtype == np.float32 and ts.ndim == 1
    if length is not None:
        assert ts.shape == (length,)
    assert isinstance(info["success"], bool)
    return ts.shape[0]


@pytest.mark.parametrize("name", IDS)
def test_make_minigrid_obs_and_info(name):
    env = pvr.envs.make(name)
    assert isinstance(env, gym.Env)
    assert env.observation_space == gym.spaces.Box(0, 255, (56, 56, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(7)
    obs, info = env.reset(seed=1)
    assert obs.shape == (56, 56, 3) and obs.dtype == np.uint8
    assert obs.max() > 0  # a real rendering, not a blank frame
    n = _check_info(info)
    assert info["success"] is False
    for a in [0, 2, 1, 2, 2, 3, 5]:
        obs, r, term, trunc, info = env.step(a)
        assert obs.shape == (56, 56, 3) and obs.dtype == np.uint8
        _check_info(info, n)
        if term or trunc:
            break
    env.close()


def test_true_state_layout_doorkey():
    env = pvr.envs.make("MiniGrid-DoorKey-5x5-v0")
    _, info = env.reset(seed=3)
    u = env.unwrapped
    ts = info["true_state"]
    assert ts.shape == (6 + 5 * 5 * 3,)
    np.testing.assert_array_equal(ts[:2], np.asarray(u.agent_pos, np.float32))
    assert ts[2] == u.agent_dir
    np.testing.assert_array_equal(ts[3:6], 0)  # carrying nothing
    np.testing.assert_array_equal(ts[6:], u.grid.encode().ravel())
    # carrying the key shows up in the state (so it is Markov)
    from minigrid.core.world_object import Key

    u.carrying = Key("yellow")
    assert env.unwrapped.carrying is not None
    obs, *_, info = env.step(0)
    assert info["true_state"][3:6].tolist() == list(Key("yellow").encode())


def test_success_only_when_goal_reached():
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    env.reset(seed=0)
    # Empty-5x5: agent at (1,1) facing right, goal at (3,3)
    infos = [env.step(a) for a in (2, 2, 1, 2, 2)]
    assert [i[-1]["success"] for i in infos] == [False, False, False, False, True]
    assert infos[-1][2] is True and infos[-1][1] > 0


def test_lava_is_failure():
    env = pvr.envs.make("MiniGrid-LavaGapS5-v0")
    env.reset(seed=0)
    u = env.unwrapped
    from minigrid.core.world_object import Lava

    front = u.front_pos
    u.grid.set(*front, Lava())
    _, r, term, _, info = env.step(u.actions.forward)
    assert term and r == 0 and info["success"] is False


@pytest.mark.parametrize("name", ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-LavaGapS5-v0"])
def test_check_env_passes(name):
    env = pvr.envs.make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "different from the unwrapped version" is expected
        check_env(env, skip_render_check=True)


def test_kwargs_tile_size_view_and_max_steps():
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0", tile_size=4, agent_view_size=5, max_steps=3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20, 20, 3)
    assert env.observation_space.shape == (20, 20, 3)
    truncs = [env.step(0)[3] for _ in range(3)]
    assert truncs == [False, False, True]
    with pytest.raises(PvrError, match="keyword"):
        pvr.envs.make("MiniGrid-Empty-5x5-v0", no_such_option=1)


def test_unknown_name_lists_suites_and_examples():
    with pytest.raises(PvrError) as e:
        pvr.envs.make("Minigrid-DoorKey-5x5-v0")
    msg = str(e.value)
    assert "MiniGrid-DoorKey-5x5-v0" in msg  # did-you-mean
    assert "MiniGrid (MiniGrid-*" in msg and "pvr envs" in msg
    with pytest.raises(PvrError, match="MiniGrid"):
        pvr.envs.make("TotallyUnknown-v3")


def test_unknown_minigrid_id_suggests_close_ids():
    with pytest.raises(PvrError) as e:
        pvr.envs.make("MiniGrid-DoorKey-7x7-v0")
    msg = str(e.value)
    assert "unknown MiniGrid environment" in msg and "MiniGrid-DoorKey-8x8-v0" in msg


def test_suites_and_available():
    suites = {s.name: s for s in pvr.envs.suites()}
    mg = suites["MiniGrid"]
    assert mg.works and mg.reason == ""
    assert mg.pattern == "MiniGrid-*" and mg.default_expert == "bfs"
    assert "MiniGrid-DoorKey-5x5-v0" in mg.examples and "56" in mg.image_size
    assert "MiniGrid-DoorKey-5x5-v0" in pvr.envs.available()
    assert pvr.envs.available("MiniGrid-DoorKey-*") == sorted(n for n in mg.examples if "DoorKey" in n)
    assert pvr.envs.available("Nothing-*") == []
    assert pvr.envs.suite_for("MiniGrid-Empty-16x16-v0").name == "MiniGrid"  # family rule, not an example
    env = pvr.envs.make("MiniGrid-Empty-16x16-v0")
    assert pvr.envs.suite_of(env) == "MiniGrid"


def test_spec_rebuilds_same_env():
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0", tile_size=4)
    again = env.spec.make()
    assert again.observation_space == env.observation_space
    o1, i1 = env.reset(seed=5)
    o2, i2 = again.reset(seed=5)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(i1["true_state"], i2["true_state"])
