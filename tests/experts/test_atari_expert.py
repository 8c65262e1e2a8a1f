import numpy as np
import pytest

pytest.importorskip("ale_py")

import pvr.data  # noqa: E402
import pvr.envs  # noqa: E402
import pvr.experts  # noqa: E402
from pvr.collect import collect  # noqa: E402
from pvr.errors import PvrError  # noqa: E402
from pvr.experts.atari import PONG_BALL_Y, PONG_PADDLE_Y, Candidate, Lookahead  # noqa: E402

PONG = "Atari-PongDeterministic-v4"
BREAKOUT = "Atari-BreakoutDeterministic-v4"


def _twins(name, seed, **kw):
    a, b = pvr.envs.make(name, **kw), pvr.envs.make(name, **kw)
    oa, ia = a.reset(seed=seed)
    ob, ib = b.reset(seed=seed)
    np.testing.assert_array_equal(oa, ob)
    return a, b, (oa, ia)


@pytest.mark.parametrize("name,kw", [
    (PONG, {"depth": 12}),                                       # Pong hook, exact rollouts
    (PONG, {"game": None, "depth": 6, "rollouts": 2}),           # generic planner, random rollouts
    ("Atari-ALE/Pong-v5", {"depth": 6, "rollouts": 2}),          # sticky actions: RNG + held action restored
])
def test_planning_leaves_the_console_as_found(name, kw):
    """An env the expert plans on plays exactly like a twin that is only given the same actions."""
    planned, twin, (obs, info) = _twins(name, seed=5, image_size=32)
    try:
        expert = pvr.experts.create("lookahead", planned, **kw)
        expert.seed(5)
        expert.reset(obs, info)
        ale = planned.unwrapped.ale
        for _ in range(40):
            ram = ale.getRAM().copy()
            frame_no = ale.getEpisodeFrameNumber()
            action = expert.act(obs, info)
            np.testing.assert_array_equal(ale.getRAM(), ram)
            assert ale.getEpisodeFrameNumber() == frame_no
            obs, r1, *_, info = planned.step(action)
            obs2, r2, *_, info2 = twin.step(action)
            np.testing.assert_array_equal(obs, obs2)
            np.testing.assert_array_equal(info["true_state"], info2["true_state"])
            assert r1 == r2
        assert expert.searches > 0
    finally:
        planned.close()
        twin.close()


def _predicted_vs_played(env, expert, actions):
    """Roll ``actions`` out in the planner's model, then play them in the env.

    Per step: model (RAM, reward, over), played (RAM, reward, over, lives)."""
    ale = env.unwrapped.ale
    model, advance = [], expert._advance

    def spy(a, pending):
        r, over = advance(a, pending)
        model.append((ale.getRAM().copy(), r, over))
        return r, over

    expert._advance = spy
    root = ale.cloneState()
    expert._rollout(Candidate("fixed", lambda ram, t: int(actions[t])), expert._pending())
    ale.restoreState(root)
    expert._advance = advance
    played = []
    for a in actions[:len(model)]:
        _, r, term, trunc, info = env.step(int(a))
        played.append((ale.getRAM().copy(), r, term or trunc, info["lives"]))
    return model, played


@pytest.mark.parametrize("starts", ["original", "reset"])
def test_planner_models_the_first_step_and_lost_lives(starts):
    """The planner's rollout of a fixed action sequence is what the env then does, step for step:
    at reset (pending FIRE + no-ops with starts="original") and right after a lost life (pending FIRE)."""
    env = pvr.envs.make(BREAKOUT, image_size=16, starts=starts)
    try:
        expert = pvr.experts.create("lookahead", env, game=None, depth=120)
        assert expert.describe()["starts"] == starts
        rng = np.random.default_rng(0)
        for phase in ("reset", "lost life"):
            obs, info = env.reset(seed=4)
            expert.reset(obs, info)
            ale = env.unwrapped.ale
            if phase == "lost life":  # play until a life is lost: originally a FIRE is then pending
                lives = ale.lives()
                while ale.lives() == lives:
                    env.step(int(rng.choice([0, 2, 3])))
                assert env.get_wrapper_attr("pending_fire") is (starts == "original")
            actions = rng.choice([0, 2, 3], size=120)  # no FIRE: only the env's FIRE serves the ball
            model, played = _predicted_vs_played(env, expert, actions)
            assert len(model) >= 20
            for (ram_m, r_m, over_m), (ram_p, r_p, over_p, _) in zip(model, played):
                np.testing.assert_array_equal(ram_m, ram_p)
                assert (r_m, over_m) == (r_p, over_p)
            assert len({lives for *_, lives in played}) > 1  # the rollout crossed a lost life
    finally:
        env.close()


def test_same_seed_same_actions():
    env = pvr.envs.make(PONG, image_size=16)
    try:
        expert = pvr.experts.create("lookahead", env, game=None, depth=8, rollouts=2)

        def actions(seed):
            obs, info = env.reset(seed=0)
            expert.seed(seed)
            expert.reset(obs, info)
            out = []
            for _ in range(25):
                a = expert.act(obs, info)
                out.append(a)
                obs, _, _, _, info = env.step(a)
            return out

        first = actions(3)
        assert actions(3) == first
        assert set(first) <= set(range(env.action_space.n))
    finally:
        env.close()


def _points(env, policy, steps, seed=0):
    obs, info = env.reset(seed=seed)
    won = lost = 0
    for _ in range(steps):
        obs, r, terminated, truncated, info = env.step(policy(obs, info))
        won, lost = won + (r > 0), lost + (r < 0)
        if terminated or truncated:
            break
    return int(won), int(lost)


@pytest.mark.parametrize("kw,flawless", [({}, True), ({"game": None, "depth": 20, "rollouts": 2}, False)])
def test_beats_noop_and_random_at_pong(kw, flawless):
    steps = 150  # NOOP and random both lose a point every ~40 steps
    env = pvr.envs.make(PONG, image_size=16)
    try:
        rng = np.random.default_rng(0)
        _, lost_noop = _points(env, lambda o, i: 0, steps)
        _, lost_random = _points(env, lambda o, i: int(rng.integers(env.action_space.n)), steps)
        expert = pvr.experts.create(None, env, **kw)
        assert isinstance(expert, Lookahead)
        expert.seed(0)

        def plan(obs, info, started=[]):
            if not started:
                expert.reset(obs, info)
                started.append(True)
            return expert.act(obs, info)

        won, lost = _points(env, plan, steps)
        assert lost_noop >= 3 and lost_random >= 2
        assert lost < min(lost_noop, lost_random) and won - lost > -min(lost_noop, lost_random)
        if flawless:  # the Pong hook sees every point coming: it loses none
            assert lost == 0
    finally:
        env.close()


def test_pong_hook_keeps_paddle_with_ball():
    env = pvr.envs.make(PONG, image_size=16)
    try:
        obs, info = env.reset(seed=2)
        expert = pvr.experts.create("lookahead", env)
        expert.seed(2)
        expert.reset(obs, info)
        gaps = []
        for _ in range(120):
            obs, _, _, _, info = env.step(expert.act(obs, info))
            ram = env.unwrapped.ale.getRAM()
            if ram[PONG_BALL_Y]:
                gaps.append(abs(int(ram[PONG_BALL_Y]) - int(ram[PONG_PADDLE_Y])))
        assert len(gaps) > 50 and np.median(gaps) < 20
    finally:
        env.close()


def test_bad_options_and_envs():
    env = pvr.envs.make(PONG, image_size=16)
    try:
        with pytest.raises(PvrError, match="no lookahead game hook"):
            pvr.experts.create("lookahead", env, game="nope")
        with pytest.raises(PvrError, match="depth must be >= 1"):
            pvr.experts.create("lookahead", env, depth=0)
        with pytest.raises(PvrError, match="discount"):
            pvr.experts.create("lookahead", env, discount=1.5)
        with pytest.raises(PvrError, match="offsets= is an option of the Pong hook"):
            pvr.experts.create("lookahead", env, game=None, offsets=[0, 4])
        generic = pvr.experts.create("lookahead", env, game=None)
        assert generic.describe()["game_hook"] is None
    finally:
        env.close()
    gym_env = pvr.envs.make("CartPole-v1")
    try:
        with pytest.raises(PvrError, match="Atari"):
            Lookahead(gym_env)
    finally:
        gym_env.close()


def test_collect_pong_short_episode(tmp_path):
    path = collect(PONG, 1, tmp_path, env_kwargs={"image_size": 32, "max_episode_steps": 60},
                   keep_failures=True, progress=False)  # Atari defines no success: keep the episode
    ds = pvr.data.open(path)
    try:
        assert ds.num_episodes == 1
        expert = ds.meta["expert"]
        assert expert["name"] == "lookahead" and expert["game_hook"] == "pong" and expert["depth"] == 40
        ep = ds.episode(0)
        n = len(ep["action"])  # the time limit also counts the env's no-op start steps
        assert 20 <= n <= 60
        assert ep["obs"].shape == (n, 32, 32, 3) and ep["obs"].dtype == np.uint8
        assert ep["action"].shape == (n,) and ep["action"].dtype == np.int64
        assert ep["action"].min() >= 0 and ep["action"].max() < 6
        assert ep["true_state"].shape == (n, 128) and ep["true_state"].dtype == np.float32
        assert ep["reward"].shape == (n,) and ep["done"][-1] and not ep["done"][:-1].any()
        assert len(set(ep["action"].tolist())) > 1  # it moves the paddle
    finally:
        ds.close()
