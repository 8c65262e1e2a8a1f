import warnings

import numpy as np
from gymnasium.utils.env_checker import check_env


def check_info(info, length=None):
    assert set(info) >= {"true_state", "success"}
    ts = info["true_state"]
    assert isinstance(ts, np.ndarray) and ts.dtype == np.float32 and ts.ndim == 1 and ts.size > 0
    assert np.all(np.isfinite(ts))
    if length is not None:
        assert ts.shape == (length,)
    assert isinstance(info["success"], bool)
    return ts.shape[0]


def roll(env, shape, steps=3, seed=0, actions=None):
    """Reset, step a few times; check frames, true_state, success; return the last step's tuple."""
    obs, info = env.reset(seed=seed)
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.uint8
    assert obs.shape == shape and obs.dtype == np.uint8 and obs.max() > 0
    n = check_info(info)
    assert info["success"] is False
    out = None
    for t in range(steps):
        a = env.action_space.sample() if actions is None else actions[t]
        out = env.step(a)
        o2, r, term, trunc, info = out
        assert o2.shape == shape and o2.dtype == np.uint8
        assert not np.shares_memory(o2, obs)
        assert np.isscalar(r) or np.ndim(r) == 0
        check_info(info, n)
        if term or trunc:
            break
    return out


def checked(env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "different from the unwrapped version" is expected
        check_env(env, skip_render_check=True)
