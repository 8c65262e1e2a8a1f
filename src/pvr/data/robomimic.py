"""robomimic HDF5: ``data/demo_<i>/{actions, obs/*, states, rewards, dones}``, ``data.attrs['env_args']``.

Read: demos in numeric order. Frames come from ``--obs_key`` (e.g.
``agentview_image``) or the only (T, H, W, 3) uint8 member of ``obs/`` (a
preferred name — ``agentview_image``, ``image`` — wins when there are several).
``true_state`` is ``--state_key`` (a path inside the demo, e.g. ``states`` or
``obs/object``), else ``states`` (MuJoCo's flattened simulator state), else the
low-dimensional ``obs/*`` concatenated in name order. Without frames, frames are
re-rendered from ``states`` by the environment (:mod:`pvr.data.rerender`).

Write: ``data/demo_<i>`` with ``actions``, ``rewards``, ``dones``, ``states``
(= true_state), ``obs/image`` (frames), ``obs/true_state``; ``num_samples`` per
demo, ``total`` and ``env_args`` (JSON: ``env_name``, ``env_kwargs``, ``type``)
on ``data``, and the dataset meta as ``data.attrs['pvr_meta']``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pvr.data.h5common import fail, flat_state, frames_dataset, is_dataset, is_image, json_attr, open_h5, read, sorted_groups
from pvr.errors import PvrError

FORMAT = "robomimic"
PREFERRED_IMAGES = ("agentview_image", "image", "rgb", "pixels")


def looks_like(f: Any) -> bool:
    return "data" in f and not hasattr(f["data"], "shape")


def read_robomimic(path: Path, *, obs_key: str | None = None, state_key: str | None = None) -> tuple[dict, Iterator[dict]]:
    f = open_h5(path)
    try:
        if "data" not in f or hasattr(f["data"], "shape"):
            raise PvrError(f"{path.name}: file: key 'data' is missing; a robomimic file holds data/demo_0, data/demo_1, ...")
        data = f["data"]
        demos = sorted_groups(data, "demo_")
        if not demos:
            raise PvrError(f"{path.name}: file: key 'data' holds no demo_<i> groups; the file has nothing to import")
        env_args = json_attr(path, data, "env_args", {}) or {}
        extra = json_attr(path, data, "pvr_meta", {}) or {}
        if not isinstance(env_args, dict):
            raise PvrError(f"{path.name}: attribute 'env_args' of /data is not a JSON object; fix or delete it")
        meta = {"format": FORMAT, "env": extra.get("env") or env_args.get("env_name"), "env_args": env_args,
                "source_meta": extra, "num_episodes": len(demos)}
    except BaseException:
        f.close()
        raise
    return meta, _episodes(path, f, demos, obs_key, state_key)


def _pick_frames(path: Path, i: int, where: str, demo: Any, obs_key: str | None) -> str | None:
    if obs_key is not None:
        key = obs_key if obs_key in demo else f"obs/{obs_key}"
        if key not in demo:
            raise fail(path, i, where, obs_key, "is missing (from --obs_key); "
                       f"the demo has obs/{', obs/'.join(demo['obs'].keys()) if 'obs' in demo else ''}")
        return key
    if "obs" not in demo:
        return None
    images = [k for k, v in demo["obs"].items() if is_dataset(v) and is_image(v)]
    for name in PREFERRED_IMAGES:
        if name in images:
            return f"obs/{name}"
    if len(images) == 1:
        return f"obs/{images[0]}"
    if len(images) > 1:
        raise fail(path, i, where, "obs", f"holds several cameras ({', '.join(sorted(images))}); choose one with --obs_key")
    return None


def _episodes(path: Path, f: Any, demos: list[tuple[int, str]], obs_key: str | None, state_key: str | None) -> Iterator[dict]:
    try:
        for i, (_, name) in enumerate(demos):
            demo = f["data"][name]
            where = f"data/{name}"
            if "actions" not in demo or not is_dataset(demo["actions"]):
                raise fail(path, i, where, "actions", "is missing; every robomimic demo needs actions (T, A)")
            t = int(demo["actions"].shape[0]) if demo["actions"].ndim else 0
            if t == 0:
                raise fail(path, i, where, "actions", "has 0 steps; drop empty demos")
            fk = _pick_frames(path, i, where, demo, obs_key)
            if state_key:
                if state_key not in demo:
                    raise fail(path, i, where, state_key, "is missing (from --state_key)")
                skeys = [state_key]
            elif "states" in demo:
                skeys = ["states"]
            else:
                skeys = sorted(f"obs/{k}" for k, v in demo["obs"].items()
                               if is_dataset(v) and not is_image(v)) if "obs" in demo else []
                if not skeys:
                    raise fail(path, i, where, "states", "is missing and obs/ holds no low-dimensional keys; "
                               "name the state with --state_key")
            ep: dict[str, Any] = {"where": where, "index": i}
            for key in [k for k in [fk, *skeys, "rewards", "dones"] if k and k in demo]:
                node = demo[key]
                if not is_dataset(node) or node.ndim == 0 or node.shape[0] != t:
                    rows = node.shape[0] if is_dataset(node) and node.ndim else "no"
                    raise fail(path, i, where, key, f"has {rows} rows but 'actions' has {t}; every key of a demo "
                               "needs one row per step")
            try:
                ep["obs"] = np.asarray(demo[fk][()]) if fk else None
                ep["action"] = read(demo["actions"])
                ep["true_state"] = flat_state([read(demo[k]) for k in skeys], t)
                ep["reward"] = read(demo["rewards"]) if "rewards" in demo else None
                ep["done"] = read(demo["dones"]) if "dones" in demo else None
            except TypeError as e:
                raise fail(path, i, where, "obs" if fk else skeys[0], f"{e}; re-export it") from None
            if ep["done"] is not None:
                ep["done"] = ep["done"].astype(bool)
            ep["sim_state"] = {"states": read(demo["states"]) if "states" in demo else ep["true_state"],
                               "true_state": ep["true_state"]}
            if "model_file" in demo.attrs:
                ep["sim_state_attrs"] = {"model_file": demo.attrs["model_file"]}
            yield ep
    finally:
        f.close()


def write_robomimic(path: Path, episodes: Iterable[dict], meta: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, ep in enumerate(episodes):
            g = data.create_group(f"demo_{i}")
            n = ep["obs"].shape[0]
            g.attrs["num_samples"] = n
            g.create_dataset("actions", data=ep["action"])
            g.create_dataset("rewards", data=ep["reward"])
            g.create_dataset("dones", data=ep["done"].astype(np.uint8))
            g.create_dataset("states", data=ep["true_state"])
            obs = g.create_group("obs")
            frames_dataset(obs, "image", ep["obs"])
            obs.create_dataset("true_state", data=ep["true_state"])
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": meta.get("env"), "type": "pvr",
                                             "env_kwargs": meta.get("env_kwargs") or {}})
        data.attrs["pvr_meta"] = json.dumps(meta, default=str)
