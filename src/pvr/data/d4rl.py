"""D4RL-style HDF5: flat per-step arrays, episodes cut at ``terminals | timeouts``.

Read: ``observations`` (N, ...), ``actions`` (N, A), optional ``rewards``,
``terminals``, ``timeouts`` (N,) and ``infos/*`` (N, ...). D4RL's observations are
usually low-dimensional states: they become ``true_state``, and frames are
re-rendered from ``infos/*`` (``qpos``, ``qvel``, ...) by the environment — see
:mod:`pvr.data.rerender`. When ``observations`` (or ``--obs_key``) holds
(N, H, W, 3) uint8 frames, those are used, and the state comes from
``--state_key``, ``infos/true_state`` or ``infos/qpos`` + ``infos/qvel``. A last
trajectory without a terminal/timeout flag is kept (D4RL files often end so).

Write: ``observations`` = frames, ``actions``, ``rewards``, ``terminals`` (the
store's ``done`` on the last step), ``timeouts`` (last step of an episode that
is not done), ``infos/true_state``, and the dataset meta as the JSON attribute
``pvr_meta``; appended episode by episode.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pvr.data.h5common import append_rows, appendable, fail, flat_state, is_image, json_attr, numeric_members, open_h5, read
from pvr.errors import PvrError

FORMAT = "d4rl"


def looks_like(f: Any) -> bool:
    return ("actions" in f or "observations" in f) and "data" not in f


def read_d4rl(path: Path, *, obs_key: str | None = None, state_key: str | None = None) -> tuple[dict, Iterator[dict]]:
    f = open_h5(path)
    try:
        meta = _meta(path, f, obs_key, state_key)
    except BaseException:
        f.close()
        raise
    return meta, _episodes(path, f, meta)


def _node(path: Path, f: Any, key: str, what: str) -> Any:
    if key not in f:
        raise PvrError(f"{path.name}: file: key {key!r} is missing; {what}")
    node = f[key]
    if not hasattr(node, "shape"):
        raise PvrError(f"{path.name}: file: key {key!r} is a group, not an array; {what}")
    return node


def _meta(path: Path, f: Any, obs_key: str | None, state_key: str | None) -> dict:
    actions = _node(path, f, "actions", "a D4RL file needs 'actions' (N, A) and 'observations' (N, ...)")
    n = int(actions.shape[0]) if actions.ndim else 0
    if n == 0:
        raise PvrError(f"{path.name}: file: key 'actions' holds no steps; the file has nothing to import")
    keys: dict[str, str | None] = {"action": "actions", "reward": "rewards" if "rewards" in f else None}
    if obs_key is None and "observations" not in f:
        raise PvrError(f"{path.name}: file: key 'observations' is missing; a D4RL file needs 'observations' "
                       "(or name the frames with --obs_key)")
    if obs_key is not None:
        _node(path, f, obs_key, "check --obs_key")
    observations = f["observations"] if "observations" in f else None
    frames_key = obs_key or ("observations" if observations is not None and is_image(observations) else None)
    if state_key:
        _node(path, f, state_key, "check --state_key")
        state_keys = [state_key]
    elif observations is not None and not is_image(observations):
        state_keys = ["observations"]
    elif "infos/true_state" in f:
        state_keys = ["infos/true_state"]
    elif "infos/qpos" in f and "infos/qvel" in f:
        state_keys = ["infos/qpos", "infos/qvel"]
    else:
        raise PvrError(f"{path.name}: file: key 'observations' holds frames and the file has no low-dimensional state "
                       "(infos/true_state or infos/qpos + infos/qvel); name one with --state_key")
    per_step = {"frames": frames_key, **{f"state:{k}": k for k in state_keys}, **keys,
                "terminals": "terminals" if "terminals" in f else None,
                "timeouts": "timeouts" if "timeouts" in f else None}
    for role, key in per_step.items():
        if key is None:
            continue
        node = f[key]
        if not hasattr(node, "shape") or node.ndim == 0 or node.shape[0] != n:
            rows = node.shape[0] if hasattr(node, "shape") and node.ndim else "no"
            raise PvrError(f"{path.name}: file: key {key!r} has {rows} rows but 'actions' has {n}; "
                           "every per-step array needs one row per step")
        if np.dtype(node.dtype).kind not in "biuf":
            raise PvrError(f"{path.name}: file: key {key!r} holds {node.dtype} values, not numbers; re-export it")
    ends = np.zeros(n, dtype=bool)
    for k in ("terminals", "timeouts"):
        if k in f:
            ends |= np.asarray(f[k][()]).astype(bool)
    cut = np.flatnonzero(ends) + 1
    if not len(cut) or cut[-1] != n:
        cut = np.append(cut, n)
    extra = json_attr(path, f, "pvr_meta", {}) or {}
    return {"format": FORMAT, "n": n, "ends": cut.astype(np.int64), "frames_key": frames_key,
            "state_keys": state_keys, "keys": keys, "env": extra.get("env"), "source_meta": extra,
            "infos": sorted(numeric_members(f["infos"], (n,), "infos/")) if "infos" in f and not hasattr(f["infos"], "shape") else []}


def _episodes(path: Path, f: Any, meta: dict) -> Iterator[dict]:
    try:
        start = 0
        for i, stop in enumerate(meta["ends"].tolist()):
            ep: dict[str, Any] = {"where": f"steps {start}-{stop - 1}", "index": i}
            fk = meta["frames_key"]
            ep["obs"] = np.asarray(f[fk][start:stop]) if fk else None
            parts = [read(f[k], start, stop) for k in meta["state_keys"]]
            ep["true_state"] = flat_state(parts, stop - start)
            ep["action"] = read(f["actions"], start, stop)
            ep["reward"] = read(f["rewards"], start, stop) if meta["keys"]["reward"] else None
            done = np.zeros(stop - start, dtype=bool)
            done[-1] = bool(f["terminals"][stop - 1]) if "terminals" in f else True
            ep["done"] = done
            sim = {k.split("/", 1)[1]: read(f[k], start, stop) for k in meta["infos"]}
            sim["true_state"] = ep["true_state"]
            if "observations" in f and not is_image(f["observations"]):
                sim.setdefault("observations", read(f["observations"], start, stop))
            ep["sim_state"] = sim
            yield ep
            start = stop
    finally:
        f.close()


def write_d4rl(path: Path, episodes: Iterable[dict], meta: dict) -> None:
    """Write validated episodes to a new file at ``path`` (the caller renames it into place)."""
    import json

    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["pvr_meta"] = json.dumps(meta, default=str)
        dsets: dict[str, Any] = {}
        for ep in episodes:
            n = ep["obs"].shape[0]
            terminals = np.zeros(n, dtype=bool)
            timeouts = np.zeros(n, dtype=bool)
            terminals[-1] = bool(ep["done"][-1])
            timeouts[-1] = not terminals[-1]
            rows = {"observations": ep["obs"], "actions": ep["action"], "rewards": ep["reward"],
                    "terminals": terminals, "timeouts": timeouts, "infos/true_state": ep["true_state"]}
            for k, v in rows.items():
                if k not in dsets:
                    dsets[k] = appendable(f, k, tuple(v.shape[1:]), v.dtype)
                append_rows(dsets[k], v)
