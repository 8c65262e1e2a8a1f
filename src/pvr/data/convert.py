"""``pvr convert``: between the store and every format pvr reads, never leaving half a file at dst.

Formats (by file type, or named with ``src_format`` / ``dst_format``):

    zarr        <name>.zarr                 the pvr store (read lazily)
    pickle      <name>.pickle / .pkl        the original project's dict of lists (read safely): raw frames,
                                            Habitat's 6-channel frames (2 views), or embedded features
    habitat     <name>.pickle               write-only: the original's Habitat layout (automatic for 2-view stores)
    d4rl        <name>.hdf5 / .h5           observations, actions, rewards, terminals, timeouts, infos/*
    robomimic   <name>.hdf5 (data/demo_i)   write with dst_format="robomimic"
    minari      a dataset directory, its main_data.hdf5, or minari:<id> under $MINARI_DATASETS_PATH

Every trajectory is validated (:func:`pvr.data.validate_episode`: keys, dtypes,
shapes, lengths, NaN/inf, single frames, one action space; plus the action
space of ``env`` when it is a registered environment) before it is written,
one trajectory at a time (memory is bounded by the longest trajectory, except
for pickles, which are one object). Files with states but no frames are
re-rendered by the environment (:mod:`pvr.data.rerender`). The result is built
beside ``dst`` and renamed into place at the end: a malformed input leaves
nothing at ``dst`` (and an existing ``dst`` untouched).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pvr.data.h5common import H5_SUFFIXES, open_h5
from pvr.data import embedded
from pvr.data.legacy import (HABITAT_DTYPES, HABITAT_KEYS, LEGACY_KEYS, PICKLE_SUFFIXES, read_legacy,
                             save_pickle)
from pvr.data.store import ZarrDataset, create, open as open_dataset
from pvr.data.validate import FRAME_KEYS, expected_from, validate_episode
from pvr.errors import PvrError

FORMATS = ("zarr", "pickle", "habitat", "d4rl", "robomimic", "minari")
EXACT_GROUP = "source_exact"  # a pickle's values the store's dtypes would round (float64 true_state), kept as they were
SUPPORTED = (".pickle/.pkl -> .zarr, .zarr -> .pickle/.pkl, .hdf5/.h5 (D4RL or robomimic) or a Minari dataset "
             "(directory or minari:<id>) -> .zarr, .zarr -> .hdf5 (D4RL; --to robomimic) or Minari (--to minari), "
             ".zarr -> .pickle in the Habitat layout (--to habitat); "
             "convert other pairs through a .zarr")
_META_SKIP = ("format_version", "pvr_version", "created", "command", "env")


def _sniff_h5(path: Path) -> str:
    from pvr.data import d4rl, robomimic

    with open_h5(path) as f:
        if any(k.startswith("episode_") for k in f.keys()):
            return "minari"
        if robomimic.looks_like(f):
            return "robomimic"
        if d4rl.looks_like(f):
            return "d4rl"
    raise PvrError(f"{path.name}: file is HDF5 but neither D4RL ('actions', 'observations'), robomimic "
                   "(data/demo_<i>) nor Minari (episode_<i>); name the format with --from or re-export it")


def _src_kind(src: str | os.PathLike, fmt: str | None) -> str | None:
    from pvr.data import minari

    if fmt is not None:
        if fmt not in FORMATS:
            raise PvrError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return "pickle" if fmt == "habitat" else fmt
    if str(src).startswith(minari.PREFIX):
        return "minari"
    p = Path(src)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix == ".zarr":
        return "zarr"
    if p.is_dir() and minari.resolve(p) is not None:
        return "minari"
    if suffix in H5_SUFFIXES:
        return "minari" if p.name == minari.MAIN_FILE else (_sniff_h5(p) if p.is_file() else "d4rl")
    return None


def _dst_kind(dst: str | os.PathLike, fmt: str | None) -> str | None:
    from pvr.data import minari

    if fmt is not None:
        if fmt not in FORMATS:
            raise PvrError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if str(dst).startswith(minari.PREFIX):
        return "minari"
    suffix = Path(dst).suffix.lower()
    return {".zarr": "zarr", ".pickle": "pickle", ".pkl": "pickle", ".hdf5": "d4rl", ".h5": "d4rl",
            ".he5": "d4rl"}.get(suffix)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, env: str | None = None, overwrite: bool = False,
            src_format: str | None = None, dst_format: str | None = None, obs_key: str | None = None,
            state_key: str | None = None, env_kwargs: dict | None = None, check_env: bool = True,
            progress: bool = False, embedding_name: str | None = None) -> Path:
    """Convert ``src`` to ``dst`` (formats from file types unless named); return the written path.

    ``env`` names the environment (default: the file's own record, else its stem,
    without the ``_<embedding>`` of an embedded pickle); ``embedding_name`` names the
    encoder of an embedded pickle's features (default: from the file name);
    ``obs_key``/``state_key`` pick the frames / state inside HDF5 files;
    ``env_kwargs`` are passed to ``pvr.envs.make`` for re-rendering and checks.
    """
    from pvr.data import minari

    kinds = (_src_kind(src, src_format), _dst_kind(dst, dst_format))
    if None in kinds or kinds[0] == kinds[1] or "zarr" not in kinds:
        raise PvrError(f"cannot convert {Path(str(src)).name} to {Path(str(dst)).name}: supported conversions are {SUPPORTED}")
    src_path = minari.resolve(src) if kinds[0] == "minari" else Path(src)
    if src_path is None or not src_path.exists():
        raise PvrError(f"no such file or directory {src}; check the path")
    dst_path = minari.dataset_dir(dst) if kinds[1] == "minari" else Path(dst)
    if dst_path.exists() and not overwrite:
        raise PvrError(f"{dst_path} already exists; pass overwrite=True (or --overwrite) to replace it, or pick another path")
    if embedding_name and kinds != ("pickle", "zarr"):
        raise PvrError("--embedding_name names the encoder of an embedded pickle being imported; drop it for "
                       f"{kinds[0]} -> {kinds[1]}")
    if kinds == ("pickle", "zarr"):
        return _pickle_to_zarr(src_path, dst_path, env=env, env_kwargs=env_kwargs, check_env=check_env,
                               embedding_name=embedding_name)
    if kinds in (("zarr", "pickle"), ("zarr", "habitat")):
        return _zarr_to_pickle(src_path, dst_path, habitat=kinds[1] == "habitat")
    if kinds[1] == "zarr":
        return _import(kinds[0], src_path, dst_path, env=env, obs_key=obs_key, state_key=state_key,
                       env_kwargs=env_kwargs, check_env=check_env, progress=progress, raw_src=str(src))
    return _export(src_path, kinds[1], dst_path, raw_dst=str(dst))


# -- building beside dst, then renaming --------------------------------------------------
def _tmp_beside(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    return dst.parent / f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp"


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _commit(tmp: Path, dst: Path) -> None:
    if dst.exists():
        _remove(dst)
    os.rename(tmp, dst)


# -- pickle <-> zarr (the original format) ---------------------------------------------
def _pickle_to_zarr(src: Path, dst: Path, *, env: str | None, env_kwargs: dict | None, check_env: bool,
                    embedding_name: str | None) -> Path:
    from pvr.data.rerender import action_check

    f = read_legacy(src)  # validates every trajectory before anything is written
    meta: dict[str, Any] = {"source": str(src), "source_format": "legacy-pickle", "pickle_layout": f.layout()}
    if f.embedded:
        stem_env, encoder = embedded.split_name(src.stem, embedding_name)
        name = env or stem_env
        views = embedded.check_encoder(encoder, int(f.features[0].shape[1]), src.name)
        meta.update(source_format="embedded-pickle", frameless=True, imported_embedding=encoder)
        if views:
            meta["views"] = views
    else:
        if embedding_name:
            raise PvrError(f"{src.name} holds frames, not embedded features; drop --embedding_name (embed the "
                           f"store with `pvr embed` or let `pvr train` do it)")
        name = env or src.stem
        if f.views > 1:
            meta["views"] = f.views  # (H, W, 6): current view + goal view, as the original's Habitat files
    check = action_check(name, env_kwargs) if check_env else None
    keys = [k for k in FRAME_KEYS if k in f.data]
    if check is not None:
        for i in range(len(f.data["action"])):
            check({k: f.data[k][i] for k in keys}, i)
    if f.dropped:
        meta["source_dropped_keys"] = f.dropped
    tmp = _tmp_beside(dst)
    try:
        if env_kwargs:
            meta["env_kwargs"] = env_kwargs
        ds = create(tmp, env=name, meta=meta)
        with ds:
            for i in range(len(f.data["action"])):
                ep = {k: f.data[k][i] for k in keys}
                ds.append_episode(**{"obs": None, **ep})
            for key, arrays in f.exact.items():
                _write_exact(ds.group, key, arrays)
            if f.embedded:
                embedded.write_features(ds.group, meta["imported_embedding"], f.features, src)
        _commit(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _write_exact(group: Any, key: str, arrays: list) -> None:
    """The file's own values of ``key`` (N, ...), in one dtype that holds every trajectory's exactly."""
    dtype = np.result_type(*[a.dtype for a in arrays])
    whole = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays], axis=0)
    grp = group.require_group(EXACT_GROUP)
    arr = grp.create_array(key, shape=whole.shape, chunks=(max(1, min(len(whole), 65536)),) + whole.shape[1:],
                           dtype=dtype, fill_value=0)
    arr[:] = whole


def _pickle_plan(ds: Any, habitat: bool) -> tuple[list[str], dict[str, Any]]:
    """Keys (in order) and dtypes of the pickle to write: the Habitat layout when asked for (or for a
    multi-view store not made from a pickle), the layout of the pickle the store was made from, else
    the four legacy keys plus reward in the store's dtypes."""
    layout = ds.meta.get("pickle_layout")
    if habitat or (not layout and int(ds.meta.get("views") or 1) > 1):
        return list(HABITAT_KEYS), dict(HABITAT_DTYPES)
    if layout:
        return list(layout["keys"]), dict(layout["dtypes"])
    keys = list(LEGACY_KEYS) + ["reward"]
    return keys, {k: str(ds[k].dtype) for k in keys if k in ds}


def _zarr_to_pickle(src: Path, dst: Path, *, habitat: bool = False) -> Path:
    ds = open_dataset(src, mode="r")
    if not isinstance(ds, ZarrDataset):  # pragma: no cover - suffix already checked
        raise PvrError(f"{src} is not a zarr store; supported conversions are {SUPPORTED}")
    with ds:
        if ds.num_episodes == 0:
            raise PvrError(f"{src} holds no episodes; collect some before converting")
        if habitat and ds.frameless:
            raise PvrError(f"{src} holds imported features and no frames; the Habitat layout holds frames: "
                           "write a plain .pickle (the embedded layout) instead")
        keys, dtypes = _pickle_plan(ds, habitat)
        exact = dict(ds.group[EXACT_GROUP].arrays()) if EXACT_GROUP in ds.group else {}
        sources: dict[str, Any] = {k: ds[k] for k in keys if k != "obs" or not ds.frameless}
        if ds.frameless:
            arr = embedded.imported_features(ds, ds.meta.get("imported_embedding"))
            if arr is None:
                raise PvrError(f"{src} has no complete imported features to write; convert the embedded pickle again")
            sources["obs"] = arr
        data: dict[str, list] = {k: [] for k in keys}
        for i in range(ds.num_episodes):  # one episode read from disk at a time
            start, stop = ds.episode_bounds(i)
            for k in keys:
                src_arr = exact[k] if k in exact and exact[k].shape[0] >= stop else sources[k]
                want = dtypes.get(k)
                if isinstance(want, list):
                    want = want[i] if i < len(want) else None
                values = np.asarray(src_arr[start:stop])
                data[k].append(values.astype(want, copy=False) if want else values)
    return save_pickle(dst, data, overwrite=True, keys=keys)  # overwrite already checked; save is atomic


# -- HDF5 formats -> zarr ------------------------------------------------------------------
def _read(kind: str, src: Path, obs_key: str | None, state_key: str | None) -> tuple[dict, Iterator[dict]]:
    from pvr.data import d4rl, minari, robomimic

    reader = {"d4rl": d4rl.read_d4rl, "robomimic": robomimic.read_robomimic, "minari": minari.read_minari}[kind]
    return reader(src, obs_key=obs_key, state_key=state_key)


def _validated(kind: str, src: Path, episodes: Iterator[dict], *, env: str | None, env_kwargs: dict | None,
               check_env: bool, progress: bool, stats: dict) -> Iterator[dict]:
    """Source episodes → store-ready episodes: frames re-rendered where missing, every one validated."""
    from pvr.data.rerender import Renderer, action_check

    check = action_check(env, env_kwargs) if check_env else None
    renderer: Renderer | None = None
    expected = None
    try:
        for i, ep in enumerate(episodes):
            if ep.get("obs") is None:
                if renderer is None:
                    renderer = Renderer(env, env_kwargs, src)
                ep["obs"] = renderer.frames(ep, i)
                stats["rendered"] = stats.get("rendered", 0) + 1
            try:
                clean = validate_episode({k: ep.get(k) for k in FRAME_KEYS}, i, expected=expected)
                if check is not None:
                    check(clean, i)
            except PvrError as e:
                raise PvrError(f"{src.name}: {e} [{kind} {ep.get('where', '')}]") from None
            if expected is None:
                expected = expected_from(clean)
            if progress and i % 100 == 0:
                print(f"  {src.name}: trajectory {i}", flush=True)
            yield clean
    finally:
        if renderer is not None:
            renderer.close()


def _import(kind: str, src: Path, dst: Path, *, env: str | None, obs_key: str | None, state_key: str | None,
            env_kwargs: dict | None, check_env: bool, progress: bool, raw_src: str) -> Path:
    meta, episodes = _read(kind, src, obs_key, state_key)
    name = env or meta.get("env") or (Path(raw_src.split(":", 1)[-1]).name if kind == "minari" else src.stem)
    stats: dict[str, Any] = {}
    tmp = _tmp_beside(dst)
    try:
        extra = {k: v for k, v in (meta.get("source_meta") or {}).items() if k not in _META_SKIP}
        extra.update(source=raw_src, source_format=kind)
        if env_kwargs:
            extra["env_kwargs"] = env_kwargs
        for k in ("env_args", "dataset_id"):
            if meta.get(k):
                extra[f"source_{k}"] = meta[k]
        ds = create(tmp, env=name, meta=extra)
        with ds:
            for ep in _validated(kind, src, episodes, env=name, env_kwargs=env_kwargs, check_env=check_env,
                                 progress=progress, stats=stats):
                ds.append_episode(**ep)
            if ds.num_episodes == 0:
                raise PvrError(f"{src.name} holds no trajectories; nothing to import")
            if stats.get("rendered"):
                ds.update_meta(rendered_from_states=True)
        _commit(tmp, dst)
    finally:
        episodes.close()
        if tmp.exists():
            _remove(tmp)
    return dst


# -- zarr -> HDF5 formats ------------------------------------------------------------------------
def _export(src: Path, kind: str, dst: Path, *, raw_dst: str) -> Path:
    from pvr.data import d4rl, minari, robomimic

    ds = open_dataset(src, mode="r")
    with ds:
        if ds.num_episodes == 0:
            raise PvrError(f"{src} holds no episodes; collect some before converting")
        meta = dict(ds.meta)
        tmp = _tmp_beside(dst)
        try:
            episodes = ds.episodes()  # one episode in memory at a time
            if kind == "d4rl":
                d4rl.write_d4rl(tmp, episodes, meta)
            elif kind == "robomimic":
                robomimic.write_robomimic(tmp, episodes, meta)
            else:
                dataset_id = raw_dst[len(minari.PREFIX):] if raw_dst.startswith(minari.PREFIX) else dst.name
                minari.write_minari(tmp, episodes, meta, dataset_id)
            _commit(tmp, dst)
        finally:
            if tmp.exists():
                _remove(tmp)
    return dst
