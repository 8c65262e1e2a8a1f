import math
import sys
import types

import numpy as np
import pytest

import pvr.envs
from pvr.envs import habitat, navtask
from pvr.errors import PvrError

REASON = habitat._probe()


def test_listed_with_the_reason_it_cannot_run():
    info = {s.name: s for s in pvr.envs.suites()}["HabitatImageNav"]
    assert info.works is (REASON is None)
    if REASON is not None:
        assert "habitat-sim" in info.reason and "ImageNav-*" in info.reason
        with pytest.raises(PvrError, match="cannot run here"):
            pvr.envs.make("HabitatImageNav-apartment_0")


def test_missing_scene_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PVR_HABITAT_SCENES", str(tmp_path))
    with pytest.raises(PvrError, match="PVR_HABITAT_SCENES"):
        habitat.scene_path("apartment_0")
    (tmp_path / "room_0" / "habitat").mkdir(parents=True)
    (tmp_path / "room_0" / "habitat" / "mesh_semantic.ply").write_text("")
    assert habitat.scene_path("room_0").name == "mesh_semantic.ply"


@pytest.mark.skipif(REASON is not None, reason=f"habitat-sim unavailable: {REASON}")
def test_habitat_imagenav_runs(tmp_path):
    env = pvr.envs.make("HabitatImageNav-apartment_0", image_size=32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 6) and info["true_state"].shape == (12,)
    env.step(0)
    assert env.unwrapped.backend.follower_action() in (None, 0, 1, 2)
    env.close()


# -- synthetic habitat-sim: the backend's conversions without the simulator -------------------------------

class Quat:
    """What AgentState.rotation holds (numpy-quaternion): attributes w, x, y, z."""

    def __init__(self, w, x, y, z):
        self.w, self.x, self.y, self.z = w, x, y, z


def yaw_quat(theta):
    return Quat(math.cos(theta / 2), 0.0, math.sin(theta / 2), 0.0)


class FakeAgent:
    def __init__(self):
        self.state = types.SimpleNamespace(position=np.array([1.0, 0.3, 2.0]), rotation=yaw_quat(0.0))

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = state


class FakePathfinder:
    """A flat, open navmesh at y = 0.3: straight-line paths."""

    def snap_point(self, p):
        return np.array([p[0], 0.3, p[2]], np.float32)

    def find_path(self, path):
        path.points = [np.asarray(path.requested_start), np.asarray(path.requested_end)]
        path.geodesic_distance = float(np.linalg.norm(path.points[1] - path.points[0]))
        return True

    def island_radius(self, p):
        return 7.0


@pytest.fixture()
def fake_backend(monkeypatch):
    common = types.ModuleType("habitat_sim.utils.common")
    common.quat_from_coeffs = lambda c: Quat(c[3], c[0], c[1], c[2])  # habitat-sim's (x, y, z, w) order
    for name, mod in [("habitat_sim", types.ModuleType("habitat_sim")),
                      ("habitat_sim.utils", types.ModuleType("habitat_sim.utils")),
                      ("habitat_sim.utils.common", common)]:
        monkeypatch.setitem(sys.modules, name, mod)
    b = object.__new__(habitat.HabitatBackend)
    b.hs = types.SimpleNamespace(ShortestPath=types.SimpleNamespace, AgentState=types.SimpleNamespace)
    b.sim = types.SimpleNamespace(pathfinder=FakePathfinder())
    b.agent = FakeAgent()
    b.goal3, b._points, b._follower = np.zeros(3), {}, None
    b.forward_step, b.turn_angle_deg = 0.25, 10.0
    return b


@pytest.mark.parametrize("theta", np.linspace(-math.pi, math.pi, 13))
def test_agent_pose_heading_faces_where_habitat_looks(fake_backend, theta):
    """Habitat: a camera looks down -z; rotating by theta about +y it faces (-sin theta, -cos theta) in (x, z).
    The task heading h faces (cos h, -sin h), the direction the shortest-path expert walks."""
    fake_backend.agent.state.rotation = yaw_quat(theta)
    pos, h = fake_backend.agent_pose()
    np.testing.assert_allclose(pos, [1.0, 2.0])
    np.testing.assert_allclose([math.cos(h), -math.sin(h)], [-math.sin(theta), -math.cos(theta)], atol=1e-12)
    xyz, wxyz = fake_backend.agent_pose3()
    np.testing.assert_allclose(xyz, [1.0, 0.3, 2.0])
    np.testing.assert_allclose(wxyz, [math.cos(theta / 2), 0, math.sin(theta / 2), 0])


def test_set_agent_writes_the_originals_rotation(fake_backend):
    for h in np.linspace(-3, 3, 7):
        fake_backend.set_agent(np.array([0.5, -1.0]), h)
        theta = h - math.pi / 2
        # The original writes rotations as [0, sin(theta / 2), 0, cos(theta / 2)] (x, y, z, w).
        np.testing.assert_allclose(habitat.coeffs_xyzw(h), [0, math.sin(theta / 2), 0, math.cos(theta / 2)],
                                   atol=1e-12)
        q = fake_backend.agent.state.rotation
        np.testing.assert_allclose([q.w, q.x, q.y, q.z], [math.cos(theta / 2), 0, math.sin(theta / 2), 0],
                                   atol=1e-12)
        assert fake_backend.agent_pose()[1] == pytest.approx(h, abs=1e-12)
        np.testing.assert_allclose(fake_backend.agent.state.position, [0.5, 0.3, -1.0])


def test_expert_turns_the_right_way_on_habitat(fake_backend):
    """Facing -z (theta 0): a goal straight ahead means forward, one at -x (on the left) turn_left,
    one at +x turn_right; the true_state is Habitat's 12 values."""
    from pvr.experts.shortest_path import ShortestPathFollower

    env = navtask.ImageNavEnv(fake_backend, (4, 4), scene="frl_apartment_2")
    for goal, action in [((1.0, -1.0), navtask.FORWARD), ((-1.0, 2.0), navtask.LEFT), ((3.0, 2.0), navtask.RIGHT)]:
        fake_backend.agent.state = types.SimpleNamespace(position=np.array([1.0, 0.3, 2.0]), rotation=yaw_quat(0.0))
        env.goal = np.array(goal)
        fake_backend.set_goal(env.goal)
        expert = ShortestPathFollower(env)
        expert.reset(None, {})
        assert expert.act(None, {}) == action, goal
        assert env.geodesic_distance() == pytest.approx(math.dist((1.0, 2.0), goal))
    np.testing.assert_allclose(env.true_state(), [1.0, 0.3, 2.0, 1, 0, 0, 0, 3.0, 0.3, 2.0, 1.0, 2.0])
    assert fake_backend.island_radius(np.zeros(2)) == 7.0


def test_sampled_points_keep_their_own_height(fake_backend):
    fake_backend.sim.pathfinder.get_random_navigable_point = lambda: np.array([4.0, 2.7, 5.0])
    p = fake_backend.sample_navigable(np.random.default_rng(0))
    np.testing.assert_allclose(p, [4.0, 5.0])
    np.testing.assert_allclose(fake_backend.point3(p), [4.0, 2.7, 5.0])  # another floor, not the agent's
    np.testing.assert_allclose(fake_backend.point3(np.array([9.0, 9.0])), [9.0, 0.3, 9.0])
