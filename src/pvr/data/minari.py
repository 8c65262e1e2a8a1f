"""Minari datasets, read from their on-disk HDF5 layout with h5py (no ``minari`` dependency).

A Minari dataset is a directory ``<id>/data/`` holding ``main_data.hdf5`` (one
group ``episode_<i>`` per episode: ``observations`` (T+1, ...) or a group of them
for dict spaces, ``actions`` (T, ...), ``rewards``, ``terminations``,
``truncations`` (T,), ``infos``) and ``metadata.json``. Datasets are found by
path (the ``<id>`` directory, its ``data/`` folder or ``main_data.hdf5``) or by
id under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``), e.g.
``minari:D4RL/door/human-v2``.

Read: step t keeps observation t (the final observation T has no action and is
dropped). Frames come from ``--obs_key`` (a member of a dict observation such as
``pixels``), or the observations themselves when they are (T+1, H, W, 3) uint8,
or the only image member of a dict observation. ``true_state`` is
``--state_key``, else the observations when they are vectors, else the
low-dimensional members of a dict observation (name order), else
``infos/true_state``. ``done`` is ``terminations`` (episode boundaries are the
episodes themselves). ``infos/*`` arrays (``qpos``, ``qvel``, ...) are kept for
re-rendering states into frames (:mod:`pvr.data.rerender`).

Write: the same layout; as Minari needs T+1 observations, the last frame is
repeated as the final observation (and dropped again on import, so a round trip
is exact). ``infos/true_state`` holds the state; ``metadata.json`` the Minari
fields (dataset_id, totals, spaces) plus ``pvr_meta``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pvr.data.h5common import fail, flat_state, frames_dataset, is_dataset, is_image, minari_root, open_h5, read, sorted_groups
from pvr.errors import PvrError

FORMAT = "minari"
MAIN_FILE = "main_data.hdf5"
PREFIX = "minari:"


def resolve(src: str | Path) -> Path | None:
    """The ``main_data.hdf5`` for a path or ``minari:<id>``; None when ``src`` is not a Minari dataset."""
    text = str(src)
    if text.startswith(PREFIX):
        dataset_id = text[len(PREFIX):].strip("/")
        root = minari_root()
        cand = root / dataset_id / "data" / MAIN_FILE
        if not cand.exists():
            raise PvrError(f"no Minari dataset {dataset_id!r} under {root} (MINARI_DATASETS_PATH); expected "
                           f"{cand} — download it with `minari download {dataset_id}` or set MINARI_DATASETS_PATH")
        return cand
    p = Path(src)
    for cand in (p / "data" / MAIN_FILE, p / MAIN_FILE, p):
        if cand.name == MAIN_FILE and cand.is_file():
            return cand
    return None


def dataset_dir(dst: str | Path) -> Path:
    """Where ``pvr convert ... minari:<id>`` (or a directory) writes a Minari dataset."""
    text = str(dst)
    if text.startswith(PREFIX):
        return minari_root() / text[len(PREFIX):].strip("/")
    return Path(dst)


def _metadata(main: Path) -> dict:
    p = main.parent / "metadata.json"
    if not p.exists():
        return {}
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PvrError(f"{p}: not valid JSON ({e}); fix or delete it") from None
    return meta if isinstance(meta, dict) else {}


def read_minari(main: Path, *, obs_key: str | None = None, state_key: str | None = None) -> tuple[dict, Iterator[dict]]:
    md = _metadata(main)
    f = open_h5(main)
    try:
        episodes = sorted_groups(f, "episode_")
        if not episodes:
            raise PvrError(f"{main.name}: file: key 'episode_0' is missing; a Minari main_data.hdf5 holds "
                           "episode_0, episode_1, ...")
        extra = md.get("pvr_meta") or {}
        env_spec = md.get("env_spec")
        if isinstance(env_spec, str):
            try:
                env_spec = json.loads(env_spec)
            except json.JSONDecodeError:
                env_spec = None
        env = extra.get("env") or (env_spec.get("id") if isinstance(env_spec, dict) else None)
        meta = {"format": FORMAT, "env": env, "source_meta": extra, "dataset_id": md.get("dataset_id"),
                "num_episodes": len(episodes)}
    except BaseException:
        f.close()
        raise
    return meta, _episodes(main, f, episodes, obs_key, state_key)


def _infos(node: Any, t: int) -> dict[str, np.ndarray]:
    """Per-step numeric infos: a group of arrays (older Minari) or one JSON string per step (newer)."""
    out: dict[str, np.ndarray] = {}
    if node is None:
        return out
    if is_dataset(node):
        if np.dtype(node.dtype).kind not in "OSU":
            return out
        rows = []
        for raw in node[()]:
            try:
                rows.append(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return out
        keys = set.intersection(*(set(r) for r in rows if isinstance(r, dict))) if rows and all(isinstance(r, dict) for r in rows) else set()
        for k in sorted(keys):
            try:
                a = np.asarray([r[k] for r in rows], dtype=np.float64)
            except (TypeError, ValueError):
                continue
            out[k] = a[:t]
        return out
    for name, child in node.items():
        if is_dataset(child) and child.ndim >= 1 and child.shape[0] >= t and np.dtype(child.dtype).kind in "biuf":
            out[name] = np.asarray(child[:t])
    return out


def _episodes(main: Path, f: Any, episodes: list[tuple[int, str]], obs_key: str | None, state_key: str | None) -> Iterator[dict]:
    try:
        for i, (_, name) in enumerate(episodes):
            g = f[name]
            where = name
            for key in ("observations", "actions"):
                if key not in g:
                    raise fail(main, i, where, key, "is missing; every Minari episode needs observations and actions")
            if not is_dataset(g["actions"]):
                raise fail(main, i, where, "actions", "is a group (a dict/tuple action space); pvr stores one "
                           "discrete or continuous action per step")
            t = int(g["actions"].shape[0]) if g["actions"].ndim else 0
            if t == 0:
                raise fail(main, i, where, "actions", "has 0 steps; drop empty episodes")
            obs = g["observations"]
            members = {"observations": obs} if is_dataset(obs) else {
                f"observations/{k}": v for k, v in obs.items() if is_dataset(v)}
            for key, node in members.items():
                if node.ndim == 0 or node.shape[0] not in (t + 1, t):
                    rows = node.shape[0] if node.ndim else "no"
                    raise fail(main, i, where, key, f"has {rows} rows but the episode has {t} actions; Minari "
                               f"stores {t + 1} observations (the final one included)")
            for key in ("rewards", "terminations", "truncations"):
                if key in g and (not is_dataset(g[key]) or g[key].ndim != 1 or g[key].shape[0] != t):
                    raise fail(main, i, where, key, f"has shape {getattr(g[key], 'shape', None)} but the episode "
                               f"has {t} actions; it needs one value per step")
            if obs_key is not None:
                fk = obs_key if obs_key in members else f"observations/{obs_key}"
                if fk not in members:
                    raise fail(main, i, where, obs_key, f"is missing (from --obs_key); observations hold "
                               f"{', '.join(sorted(members))}")
            else:
                images = [k for k, v in members.items() if is_image(v)]
                if len(images) > 1:
                    raise fail(main, i, where, "observations", f"holds several image keys ({', '.join(images)}); "
                               "choose one with --obs_key")
                fk = images[0] if images else None
            info_node = g["infos"] if "infos" in g else None
            infos = _infos(info_node, t)
            try:
                if state_key:
                    sk = state_key if state_key in members else f"observations/{state_key}"
                    if sk in members:
                        state = flat_state([read(members[sk], 0, t)], t)
                    elif state_key in infos:
                        state = flat_state([infos[state_key]], t)
                    else:
                        raise fail(main, i, where, state_key, "is missing (from --state_key)")
                else:
                    low = [k for k, v in sorted(members.items()) if not is_image(v) and k != fk]
                    if low:
                        state = flat_state([read(members[k], 0, t) for k in low], t)
                    elif "true_state" in infos:
                        state = flat_state([infos["true_state"]], t)
                    else:
                        raise fail(main, i, where, "observations", "hold no low-dimensional state and infos have no "
                                   "true_state; name one with --state_key")
                ep: dict[str, Any] = {"where": where, "index": i, "true_state": state,
                                      "obs": np.asarray(members[fk][:t]) if fk else None,
                                      "action": read(g["actions"]),
                                      "reward": read(g["rewards"]) if "rewards" in g else None}
            except TypeError as e:
                raise fail(main, i, where, "observations", f"{e}; re-export it") from None
            # done = terminated (a truncation at the time limit is an episode end, not a terminal state)
            ep["done"] = np.asarray(g["terminations"][()]).astype(bool) if "terminations" in g else None
            ep["sim_state"] = {**infos, "true_state": state}
            yield ep
    finally:
        f.close()


def _space(dtype: Any, shape: tuple[int, ...], discrete: int | None = None) -> dict:
    if discrete is not None:
        return {"type": "Discrete", "dtype": "int64", "start": 0, "n": int(discrete)}
    lo, hi = (0, 255) if np.dtype(dtype) == np.uint8 else (-np.inf, np.inf)
    return {"type": "Box", "dtype": str(np.dtype(dtype)), "shape": list(shape),
            "low": np.full(shape, lo).tolist(), "high": np.full(shape, hi).tolist()}


def write_minari(directory: Path, episodes: Iterable[dict], meta: dict, dataset_id: str) -> None:
    """Write a Minari dataset directory (``data/main_data.hdf5`` + ``data/metadata.json``)."""
    import h5py

    data = directory / "data"
    data.mkdir(parents=True)
    total_steps, count, obs_space, act_space, max_action = 0, 0, None, None, -1
    with h5py.File(data / MAIN_FILE, "w", track_order=True) as f:
        for i, ep in enumerate(episodes):
            n = ep["obs"].shape[0]
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            g.attrs["total_steps"] = n
            frames_dataset(g, "observations", np.concatenate([ep["obs"], ep["obs"][-1:]]))
            g.create_dataset("actions", data=ep["action"])
            g.create_dataset("rewards", data=ep["reward"].astype(np.float64))
            term = np.zeros(n, dtype=bool)
            term[-1] = bool(ep["done"][-1])
            trunc = np.zeros(n, dtype=bool)
            trunc[-1] = not term[-1]
            g.create_dataset("terminations", data=term)
            g.create_dataset("truncations", data=trunc)
            infos = g.create_group("infos")
            infos.create_dataset("true_state", data=np.concatenate([ep["true_state"], ep["true_state"][-1:]]))
            total_steps += n
            count += 1
            obs_space = (ep["obs"].dtype, tuple(ep["obs"].shape[1:]))
            if ep["action"].ndim == 1:
                max_action = max(max_action, int(ep["action"].max()))
            else:
                act_space = (ep["action"].dtype, tuple(ep["action"].shape[1:]))
    md = {"dataset_id": dataset_id, "total_episodes": count, "total_steps": total_steps, "data_format": "hdf5",
          "env_spec": None, "observation_space": json.dumps(_space(*obs_space)) if obs_space else None,
          "action_space": json.dumps(_space(*act_space) if act_space else _space(None, (), max_action + 1)),
          "author": "pvr convert", "pvr_meta": meta}
    (data / "metadata.json").write_text(json.dumps(md, default=str, indent=1))
