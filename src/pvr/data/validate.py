"""Check one trajectory before it is stored, so bad data fails loudly at the door.

Every message names the trajectory index and the key, says what was found and
what is expected, so the user can fix the producer rather than debug training.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pvr.errors import PvrError

REQUIRED_KEYS = ("obs", "action", "true_state")
OPTIONAL_KEYS = ("done", "reward")
FRAME_KEYS = ("obs", "action", "done", "true_state", "reward")

# dtypes the store keeps, whatever numeric type the producer handed in
STORAGE_DTYPES = {"obs": np.uint8, "done": np.bool_, "true_state": np.float32, "reward": np.float32}


def _fail(index: int, key: str | None, msg: str) -> PvrError:
    where = f"trajectory {index}" + (f": key {key!r}" if key is not None else "")
    return PvrError(f"{where} {msg}" if key is not None else f"{where}: {msg}")


def _shape(a: np.ndarray) -> str:
    return str(tuple(int(s) for s in a.shape))


def _check_finite(index: int, key: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a))[0][0])
        raise _fail(index, key, f"contains NaN or inf (first at step {bad}); fix or drop that step before storing")


def expected_from(ep: dict) -> dict:
    """Describe a (validated) episode so later episodes can be checked against it."""
    return {
        "obs": tuple(ep["obs"].shape[1:]) if ep.get("obs") is not None else None,
        "action": (tuple(ep["action"].shape[1:]), "discrete" if ep["action"].dtype.kind in "iu" else "continuous"),
        "true_state": tuple(ep["true_state"].shape[1:]),
    }


def validate_episode(ep: Any, index: int, *, expected: dict | None = None, require_done: bool = False,
                     views: int = 1, frames: bool = True) -> dict:
    """Validate one trajectory and return it normalised to the store's dtypes.

    ``ep`` is a dict of numpy arrays: ``obs`` (n,H,W,3) uint8, ``action`` (n,)
    integer or (n,A) float, ``true_state`` (n,S) numeric, optional ``done`` (n,)
    bool/0-1 and ``reward`` (n,) numeric. A dataset that declares ``views`` = k > 1
    in its meta (image-goal navigation: current + goal view, k = 2) holds frames of
    k RGB views on channels, (n,H,W,3k); any other multi-frame obs is refused
    (frame stacks are built after loading). ``expected`` (from :func:`expected_from`
    of an earlier episode) pins obs/action/true_state shapes and the action kind.
    Missing ``done`` becomes [F, ..., F, T]; missing ``reward`` becomes zeros.
    ``frames=False`` is for a store of imported features (no frames): ``obs`` must
    be absent and the length comes from ``action``; the result has no ``obs``.
    Raises :class:`PvrError` naming ``index`` and the offending key.
    """
    if not isinstance(ep, dict):
        raise _fail(index, None, f"is a {type(ep).__name__}, not a dict of numpy arrays with keys obs, action, true_state, done")
    required = REQUIRED_KEYS + (("done",) if require_done else ())
    if not frames:
        if ep.get("obs") is not None:
            raise _fail(index, "obs", "is given but the dataset holds imported features and no frames; "
                        "append frames to a dataset made with frames (convert the raw-frame pickle)")
        required = tuple(k for k in required if k != "obs")
    for key in required:
        if key not in ep or ep[key] is None:
            raise _fail(index, key, f"is missing; every trajectory needs {', '.join(required)} (done and reward are optional)")
    for key in FRAME_KEYS:
        if key in ep and ep[key] is not None and not isinstance(ep[key], np.ndarray):
            raise _fail(index, key, f"is a {type(ep[key]).__name__}, not a numpy array; convert it with np.asarray before storing")

    if frames:
        obs = _check_obs(ep["obs"], index, views)
        n = obs.shape[0]
    else:
        obs = None
        n = int(ep["action"].shape[0]) if ep["action"].ndim else 0
        if n < 1:
            raise _fail(index, "action", "has 0 steps; every trajectory needs at least one step, drop empty ones")
    out = _check_rest(ep, index, n, obs, expected)
    if not frames:
        out.pop("obs")
    return out


def _check_obs(obs: np.ndarray, index: int, views: int) -> np.ndarray:
    views = int(views or 1)
    if views < 1:
        raise _fail(index, None, f"the dataset declares views={views}; views (RGB views per frame) must be >= 1")
    if views > 1 and not (obs.ndim == 4 and obs.shape[-1] == 3 * views):
        raise _fail(index, "obs", f"has shape {_shape(obs)} but the dataset declares {views} views per frame, so it "
                    f"must be (n, H, W, {3 * views}) uint8 (the views concatenated on channels)")
    if views == 1 and obs.ndim == 4 and obs.shape[-1] > 3 and obs.shape[-1] % 3 == 0:
        raise _fail(index, "obs", f"has shape {_shape(obs)} but must be (n, H, W, 3) uint8 single frames "
                    f"(looks like {obs.shape[-1] // 3} stacked frames; stack frames after loading, not in the data; "
                    f"if each frame really holds {obs.shape[-1] // 3} views, e.g. current + goal, declare "
                    f"meta {{'views': {obs.shape[-1] // 3}}} when creating the dataset)")
    if views == 1 and (obs.ndim != 4 or obs.shape[-1] != 3):
        raise _fail(index, "obs", f"has shape {_shape(obs)} but must be (n, H, W, 3) uint8 single frames "
                    "(stack frames after loading, not in the data)")
    if obs.dtype != np.uint8:
        raise _fail(index, "obs", f"has dtype {obs.dtype} but must be uint8 pixels 0-255; "
                    "convert with (x * 255).round().astype(np.uint8) if it holds floats in [0, 1]")
    if obs.shape[0] < 1:
        raise _fail(index, "obs", "has 0 steps; every trajectory needs at least one step, drop empty ones")
    return obs


def _check_rest(ep: dict, index: int, n: int, obs: np.ndarray | None, expected: dict | None) -> dict:
    action = ep["action"]
    if action.ndim == 1 and action.dtype.kind in "iu":
        action = action.astype(np.int64, copy=False)
    elif action.ndim == 2 and action.dtype.kind == "f":
        action = action.astype(np.float32, copy=False)
    elif action.ndim == 2 and action.shape[1] == 1 and action.dtype.kind in "iu":
        raise _fail(index, "action", f"has shape {_shape(action)} {action.dtype}; discrete actions must be (n,) "
                    "integers, squeeze the last axis with action[:, 0]")
    else:
        raise _fail(index, "action", f"has shape {_shape(action)} and dtype {action.dtype} but must be (n,) integers "
                    "(discrete) or (n, A) floats (continuous); cast with .astype(np.int64) or .astype(np.float32)")
    _check_finite(index, "action", action)

    ts = ep["true_state"]
    if ts.ndim != 2 or ts.dtype.kind not in "biuf":
        raise _fail(index, "true_state", f"has shape {_shape(ts)} and dtype {ts.dtype} but must be (n, S) numbers; "
                    "use reshape(n, -1) for a flat state vector per step")
    ts = ts.astype(np.float32, copy=False)
    _check_finite(index, "true_state", ts)

    done = ep.get("done")
    if done is None:
        done = np.zeros(n, dtype=np.bool_)
        done[-1] = True
    else:
        if done.ndim != 1 or done.dtype.kind not in "biuf":
            raise _fail(index, "done", f"has shape {_shape(done)} and dtype {done.dtype} but must be (n,) booleans")
        if done.dtype.kind != "b" and not np.isin(done, (0, 1)).all():
            raise _fail(index, "done", "holds values other than 0/1; done must be booleans (True on the last step)")
        done = done.astype(np.bool_, copy=False)

    reward = ep.get("reward")
    if reward is None:
        reward = np.zeros(n, dtype=np.float32)
    else:
        if reward.ndim != 1 or reward.dtype.kind not in "biuf":
            raise _fail(index, "reward", f"has shape {_shape(reward)} and dtype {reward.dtype} but must be (n,) numbers")
        reward = reward.astype(np.float32, copy=False)
        _check_finite(index, "reward", reward)

    out = {"obs": obs, "action": action, "done": done, "true_state": ts, "reward": reward}
    ref = "'obs'" if obs is not None else "'action'"
    for key, arr in out.items():
        if arr is not None and arr.shape[0] != n:
            raise _fail(index, key, f"has {arr.shape[0]} steps but {ref} has {n}; all keys of a trajectory need the same length")

    if expected:
        if obs is not None and expected.get("obs") is not None and tuple(obs.shape[1:]) != tuple(expected["obs"]):
            raise _fail(index, "obs", f"has frames of shape {tuple(obs.shape[1:])} but earlier trajectories have "
                        f"{tuple(expected['obs'])}; resize frames to one size or store them in separate datasets")
        if "action" in expected:
            tail, kind = expected["action"]
            mine = "discrete" if action.dtype.kind in "iu" else "continuous"
            if mine != kind or tuple(action.shape[1:]) != tuple(tail):
                raise _fail(index, "action", f"is {mine} with per-step shape {tuple(action.shape[1:])} but earlier "
                            f"trajectories are {kind} with {tuple(tail)}; one dataset holds one action space")
        if "true_state" in expected and tuple(ts.shape[1:]) != tuple(expected["true_state"]):
            raise _fail(index, "true_state", f"has per-step shape {tuple(ts.shape[1:])} but earlier trajectories have "
                        f"{tuple(expected['true_state'])}; one dataset holds one state layout")
    return out
