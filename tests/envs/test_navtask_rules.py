"""The image-goal task's episode rules on a synthetic backend whose geometry the test sets exactly:
habitat-lab's ``is_compatible_episode`` (floor gap, geodesic range, geodesic / Euclidean ratio sampling,
island radius) and the original's 100 x 100 goal / start retries."""
import math

import numpy as np
import pytest

from pvr.envs import navtask
from pvr.errors import PvrError


class Synthetic(navtask.NavBackend):
    """Goal at the origin; a point's geodesic is ``ratio`` x its Euclidean distance, heights and islands
    as set. Points come from ``queue`` (then from the rng)."""

    forward_step, turn_angle_deg = 0.25, 10.0

    def __init__(self):
        self.ratio, self.height, self.island = 1.5, 0.0, 10.0
        self.queue, self.samples, self.goal = [], 0, np.zeros(2)
        self.pose = (np.zeros(2), 0.0)

    def sample_navigable(self, rng):
        self.samples += 1
        return np.asarray(self.queue.pop(0), float) if self.queue else rng.uniform(-5, 5, 2)

    def point3(self, pos):
        return np.array([pos[0], 0.0 if np.allclose(pos, self.goal) else self.height, pos[1]])

    def island_radius(self, pos):
        return self.island

    def set_goal(self, goal):
        self.goal = np.asarray(goal, float)

    def geodesic_distance(self, pos):
        return self.ratio * float(np.linalg.norm(self.point3(pos) - self.point3(self.goal)))

    def goal_clearance(self, pos, heading):
        raise AssertionError("the clear-view filter is off by default")

    def render_at(self, pos, heading):
        return np.zeros((4, 4, 3), np.uint8)

    def render(self):
        return np.zeros((4, 4, 3), np.uint8)

    def set_agent(self, pos, heading):
        self.pose = (np.asarray(pos, float), heading)

    def agent_pose(self):
        return self.pose


def _env(**kw):
    env = navtask.ImageNavEnv(Synthetic(), (4, 4), scene="room_0", **kw)
    env.np_random = np.random.default_rng(0)
    return env, env.backend


def test_floor_gap_range_and_island():
    env, b = _env()
    env.goal = np.zeros(2)
    b.ratio = 1.5  # above 1.1: never subsampled
    start = np.array([2.0, 0.0])
    assert env.start_is_compatible(start)
    b.height = 0.6
    assert not env.start_is_compatible(start)  # another floor
    b.height = 0.0
    for dist, ok in [(0.99, False), (1.0, True), (30.0, True), (30.01, False)]:
        assert env.start_is_compatible(np.array([dist / 1.5, 0.0])) is ok, dist
    b.ratio = math.inf
    assert not env.start_is_compatible(start)  # unreachable
    b.ratio, b.island = 1.5, 1.49
    assert not env.start_is_compatible(start)
    b.island = 1.5
    assert env.start_is_compatible(start)


@pytest.mark.parametrize("ratio", [1.0, 1.05, 1.09])
def test_straight_line_starts_are_kept_with_habitats_probability(ratio):
    env, b = _env()
    env.goal = np.zeros(2)
    b.ratio = ratio
    n = 4000
    kept = sum(env.start_is_compatible(np.array([3.0, 0.0])) for _ in range(n)) / n
    p = 20 * (ratio - 0.98) ** 2  # habitat-lab pointnav_generator._ratio_sample_rate
    assert abs(kept - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (kept, p)


def test_ratio_test_off_and_old_rules():
    env, b = _env(geodesic_to_euclid_ratio=0.0, max_start_distance=math.inf)
    env.goal = np.zeros(2)
    b.ratio = 1.0
    assert all(env.start_is_compatible(np.array([40.0, 0.0])) for _ in range(50))


def test_hundred_starts_per_goal_hundred_goals_then_a_clear_error():
    env, b = _env()
    b.ratio = math.inf  # no start is ever connected
    with pytest.raises(PvrError, match="100 goals x 100 starts"):
        env.reset(seed=0)
    assert b.samples == 100 + 100 * 100


def test_goal_heading_is_uniform_and_the_start_heading_too():
    env, b = _env()
    goal_h, start_h = [], []
    for seed in range(300):
        env.reset(seed=seed)
        goal_h.append(env.goal_heading)
        start_h.append(b.pose[1])
    for h in (goal_h, start_h):
        h = np.asarray(h)
        assert h.min() >= -math.pi and h.max() <= math.pi
        counts = np.histogram(h, bins=4, range=(-math.pi, math.pi))[0]
        assert counts.min() > 50  # 75 expected per quarter
