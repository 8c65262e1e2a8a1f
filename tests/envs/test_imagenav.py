import math

import numpy as np
import pytest

import pvr.envs
from pvr.envs import imagenav, navtask
from pvr.errors import PvrError

from envtest_util import checked, roll

SIZE = 32


@pytest.fixture(scope="module")
def env():
    e = pvr.envs.make("ImageNav-apartment_0", image_size=SIZE)
    yield e
    e.close()


def follow(env, max_steps=300):
    """A plain shortest-path follower (aims 0.6 m ahead along the path): the task must be solvable."""
    u = env.unwrapped
    for _ in range(max_steps):
        pos, heading = u.agent_pose()
        path = u.shortest_path()
        k = min(len(path) - 1, int(np.argmin(np.linalg.norm(path - pos, axis=1))) + 6)
        dx, dz = path[k] - pos
        diff = (math.atan2(-dz, dx) - heading + math.pi) % (2 * math.pi) - math.pi
        a = navtask.FORWARD if abs(diff) < math.radians(10) else (navtask.LEFT if diff > 0 else navtask.RIGHT)
        out = env.step(a)
        if out[2] or out[3]:
            return out
    return out


def test_frames_state_success_and_check_env(env):
    *_, info = roll(env, (SIZE, SIZE, 6), steps=4)
    assert info["true_state"].shape == (8,)
    assert env.action_space.n == 3
    checked(env)


def test_default_size_is_the_originals_64():
    e = pvr.envs.make("ImageNav-room_0")
    obs, _ = e.reset(seed=0)
    assert obs.shape == (64, 64, 6) and obs.dtype == np.uint8
    e.close()


def test_goal_view_is_the_view_at_the_goal_and_stays(env):
    obs, info = env.reset(seed=2)
    u = env.unwrapped
    np.testing.assert_array_equal(obs[..., 3:], u.backend.render_at(u.goal, u.goal_heading))
    np.testing.assert_array_equal(obs[..., :3], u.backend.render())
    obs2, *_, info = env.step(navtask.LEFT)
    np.testing.assert_array_equal(obs2[..., 3:], obs[..., 3:])
    assert not np.array_equal(obs2[..., :3], obs[..., :3])  # turning changes the current view
    ts = info["true_state"]
    pos, heading = u.agent_pose()
    np.testing.assert_allclose(ts, [pos[0], pos[1], math.cos(heading), math.sin(heading), u.goal[0], u.goal[1],
                                    math.cos(u.goal_heading), math.sin(u.goal_heading)], atol=1e-5)


def test_goals_reachable_informative_starts_far(env):
    u = env.unwrapped
    b = u.backend
    for seed in range(8):
        _, info = env.reset(seed=seed)
        assert b.reachable[b.cell_of(u.goal)]
        assert b.goal_clearance(u.goal, u.goal_heading) >= u.min_goal_depth
        assert math.isfinite(info["geodesic_distance"]) and info["geodesic_distance"] >= u.min_start_distance
        assert u.goal_view.std() > 5  # not a uniform wall


def test_distance_field_and_shortest_path(env):
    env.reset(seed=5)
    u = env.unwrapped
    b = u.backend
    field = b.distance_field
    assert field[b.cell_of(u.goal)] == 0 and np.isinf(field[~b.reachable]).all()
    assert np.isfinite(field[b.reachable]).all()  # one connected region
    path = u.shortest_path()
    np.testing.assert_allclose(path[-1], u.goal)
    d = [field[b.cell_of(p)] for p in path[:-1]]
    assert all(x > y for x, y in zip(d, d[1:]))
    steps = np.linalg.norm(np.diff(path[:-1], axis=0), axis=1)
    assert np.all(steps <= 0.1 * math.sqrt(2) + 1e-9)
    assert u.geodesic_distance() >= np.linalg.norm(u.agent_pose()[0] - u.goal) - 0.15


def test_episodes_are_solvable_and_success_terminates(env):
    for seed in range(3):
        env.reset(seed=seed)
        obs, r, term, trunc, info = follow(env)
        assert term and not trunc and info["success"] is True and r > 1.0
        assert env.unwrapped.distance_to_goal() <= env.unwrapped.success_radius


def test_truncation_without_success():
    e = pvr.envs.make("ImageNav-room_0", image_size=16, max_steps=3)
    e.reset(seed=0)
    outs = [e.step(navtask.LEFT) for _ in range(3)]
    assert [o[3] for o in outs] == [False, False, True] and not any(o[-1]["success"] for o in outs)
    with pytest.raises(PvrError, match="0 \\(forward\\)"):
        e.step(3)
    e.close()


def test_seeded_episodes_repeat(env):
    o1, i1 = env.reset(seed=11)
    o2, i2 = env.reset(seed=11)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(i1["true_state"], i2["true_state"])


def test_scenes_named_seeded_distinct():
    a, b = imagenav.generate_scene("apartment_0"), imagenav.generate_scene("apartment_0")
    assert a == b  # a pure function of the name
    c = imagenav.generate_scene("apartment_1")
    assert c != a and len(c.rooms) == len(a.rooms) == 4
    assert len(imagenav.generate_scene("hotel_0").rooms) == 4 and len(imagenav.generate_scene("room_2").rooms) == 2
    for scene in (a, c, imagenav.generate_scene("office_3")):
        walls = [r.wall_tex for r in scene.rooms]
        assert len(set(walls)) == len(walls) and len(set(r.floor_tex for r in scene.rooms)) == len(walls)
        assert len(scene.doors) >= len(scene.rooms) - 1 and len(scene.objects) >= len(scene.rooms)
        kinds = [(k, str(s)) for k, s, *_ in scene.objects]
        assert len(set(kinds)) == len(kinds)
    with pytest.raises(PvrError, match="scene names"):
        imagenav.generate_scene("bad-name")


def test_two_scenes_in_one_process_render_their_own(env):
    other = pvr.envs.make("ImageNav-office_0", image_size=SIZE)
    obs, _ = env.reset(seed=3)
    u = env.unwrapped
    other.reset(seed=3)
    other.step(navtask.LEFT)
    np.testing.assert_array_equal(u.backend.render_at(u.goal, u.goal_heading), obs[..., 3:])
    other.close()


def test_fast_texture_decoder_matches_pygletss():
    import glob

    import pyglet
    from miniworld.opengl import get_file_path

    path = sorted(glob.glob(get_file_path("textures", "white_1", "png")))[0]
    ours = imagenav.texture_pixels(path)
    img = pyglet.image.load(path)
    assert ours.get_data("RGBA", ours.width * 4) == img.get_image_data().get_data("RGBA", img.width * 4)
