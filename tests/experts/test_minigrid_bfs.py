import time
from collections import deque

import numpy as np
import pytest

import pvr.envs
import pvr.experts
from pvr.errors import PvrError
from pvr.experts.minigrid_bfs import MiniGridBFS


def run(env, expert, seed):
    obs, info = env.reset(seed=seed)
    expert.reset(obs, info)
    n, done = 0, False
    while not done:
        obs, r, term, trunc, info = env.step(expert.act(obs, info))
        n += 1
        done = term or trunc
    return info["success"], n


def doorkey_optimum(u):
    """Independent shortest path on DoorKey from an abstract model of the rules:
    state (x, y, dir, has_key, door_open); turn, move, pick up the key, open the door."""
    from minigrid.core.constants import DIR_TO_VEC

    def cell(x, y):
        return u.grid.get(x, y)

    start = (*map(int, u.agent_pos), int(u.agent_dir), False, False)
    seen = {start}
    queue = deque([(start, 0)])
    while queue:
        (x, y, d, key, door), n = queue.popleft()
        fx, fy = x + DIR_TO_VEC[d][0], y + DIR_TO_VEC[d][1]
        c = cell(fx, fy)
        kind = c.type if c is not None else None
        nxt = [(x, y, (d - 1) % 4, key, door), (x, y, (d + 1) % 4, key, door)]
        if kind == "goal":
            return n + 1
        if kind in (None, "floor") or (kind == "key" and key) or (kind == "door" and door):
            nxt.append((fx, fy, d, key, door))
        if kind == "key" and not key:
            nxt.append((x, y, d, True, door))
        if kind == "door" and key and not door:
            nxt.append((x, y, d, key, True))
        for s in nxt:
            if s not in seen:
                seen.add(s)
                queue.append((s, n + 1))
    return -1


def test_doorkey5_20_seeds_succeed_with_optimal_length():
    env = pvr.envs.make("MiniGrid-DoorKey-5x5-v0")
    expert = pvr.experts.create("bfs", env)
    for seed in range(20):
        env.reset(seed=seed)
        optimum = doorkey_optimum(env.unwrapped)
        success, n = run(env, expert, seed)
        assert success, seed
        assert n == optimum, (seed, n, optimum)


@pytest.mark.parametrize("name,seeds", [("MiniGrid-DoorKey-6x6-v0", 4), ("MiniGrid-LavaGapS5-v0", 5), ("MiniGrid-Empty-5x5-v0", 3)])
def test_other_tasks_succeed(name, seeds):
    env = pvr.envs.make(name)
    expert = pvr.experts.create(None, env)
    for seed in range(seeds):
        env.reset(seed=seed)
        optimum = doorkey_optimum(env.unwrapped)  # lava is impassable in the model, as it should be
        success, n = run(env, expert, seed)
        assert success, (name, seed)
        assert n == optimum > 0, (name, seed)


def test_empty5_optimum_from_geometry():
    # Empty-5x5: start (1,1) facing east, goal (3,3): 2 forward, 1 turn, 2 forward.
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    env.reset(seed=0)
    plan, keys = MiniGridBFS(env).plan()
    assert plan == [2, 2, 1, 2, 2]
    assert len(keys) == len(plan)


def test_lava_is_avoided():
    env = pvr.envs.make("MiniGrid-LavaGapS6-v0")
    expert = pvr.experts.create("bfs", env)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        expert.reset(obs, info)
        u = env.unwrapped
        while True:
            obs, r, term, trunc, info = env.step(expert.act(obs, info))
            cell = u.grid.get(*u.agent_pos)
            assert cell is None or cell.type != "lava"
            if term or trunc:
                break
        assert info["success"]


def test_planning_leaves_env_unchanged():
    a = pvr.envs.make("MiniGrid-DoorKey-6x6-v0")
    b = pvr.envs.make("MiniGrid-DoorKey-6x6-v0")
    a.reset(seed=7)
    b.reset(seed=7)
    u = a.unwrapped
    before = (u.grid, u.carrying, u.agent_pos, u.agent_dir, u.step_count)
    rng_before = u.np_random.bit_generator.state
    plan, _ = MiniGridBFS(a).plan()
    assert len(plan) > 5
    assert (u.grid, u.carrying, u.agent_pos, u.agent_dir, u.step_count) == before
    assert u.grid is before[0]
    assert u.np_random.bit_generator.state == rng_before
    assert "gen_obs" not in vars(u)  # the planning-time stub is gone
    for action in plan:
        ra, rb = a.step(action), b.step(action)
        np.testing.assert_array_equal(ra[0], rb[0])
        assert ra[1:4] == rb[1:4]
        np.testing.assert_array_equal(ra[4]["true_state"], rb[4]["true_state"])
    assert ra[4]["success"] and ra[1] == rb[1] > 0


def test_replans_after_deviation():
    env = pvr.envs.make("MiniGrid-DoorKey-5x5-v0")
    expert = pvr.experts.create("bfs", env)
    obs, info = env.reset(seed=2)
    expert.reset(obs, info)
    expert.act(obs, info)
    obs, *_, info = env.step(env.unwrapped.actions.left)  # someone else moved the agent
    obs, *_, info = env.step(env.unwrapped.actions.left)
    plans = expert.plans
    done = False
    while not done:
        obs, r, term, trunc, info = env.step(expert.act(obs, info))
        done = term or trunc
    assert info["success"] and expert.plans == plans + 1


def test_unreachable_goal_gives_up():
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    obs, info = env.reset(seed=0)
    from minigrid.core.world_object import Wall

    env.unwrapped.grid.set(3, 3, Wall())  # wall over the goal
    expert = pvr.experts.create("bfs", env)
    expert.reset(obs, info)
    assert expert.act(obs, info) == env.unwrapped.actions.done
    assert expert.gave_up


def test_plans_fast():
    env = pvr.envs.make("MiniGrid-DoorKey-6x6-v0")
    expert = pvr.experts.create("bfs", env)
    worst = 0.0
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        t = time.perf_counter()
        expert.reset(obs, info)
        worst = max(worst, time.perf_counter() - t)
    assert worst < 1.0


def test_registry_and_describe():
    env = pvr.envs.make("MiniGrid-Empty-5x5-v0")
    expert = pvr.experts.create(None, env)
    assert isinstance(expert, MiniGridBFS)
    assert expert.describe()["name"] == "bfs"
    assert "bfs" in pvr.experts.available()
    assert pvr.experts.EXPERTS.get("bfs").meta["suites"] == ("MiniGrid",)
    with pytest.raises(PvrError) as e:
        pvr.experts.create("bfss", env)
    assert "bfs" in str(e.value) and "pvr experts" in str(e.value)
