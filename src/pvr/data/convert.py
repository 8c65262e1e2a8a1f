"""``pvr convert``: between the store and every format pvr reads, never leaving half a file at dst.

Formats (by file type, or named with ``src_format`` / ``dst_format``):

    zarr        <name>.zarr                 the pvr store (read lazily)
    pickle      <name>.pickle / .pkl        the original project's dict of lists (read safely)
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

from pvr.data.h5common import H5_SUFFIXES, open_h5
from pvr.data.legacy import PICKLE_SUFFIXES, load_pickle, save_pickle
from pvr.data.store import ZarrDataset, create, open as open_dataset
from pvr.data.validate import FRAME_KEYS, expected_from, validate_episode
from pvr.errors import PvrError

FORMATS = ("zarr", "pickle", "d4rl", "robomimic", "minari")
SUPPORTED = (".pickle/.pkl -> .zarr, .zarr -> .pickle/.pkl, .hdf5/.h5 (D4RL or robomimic) or a Minari dataset "
             "(directory or minari:<id>) -> .zarr, .zarr -> .hdf5 (D4RL; --to robomimic) or Minari (--to minari); "
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
        return fmt
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
            progress: bool = False) -> Path:
    """Convert ``src`` to ``dst`` (formats from file types unless named); return the written path.

    ``env`` names the environment (default: the file's own record, else its stem);
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
    if kinds == ("pickle", "zarr"):
        return _pickle_to_zarr(src_path, dst_path, env=env, env_kwargs=env_kwargs, check_env=check_env)
    if kinds == ("zarr", "pickle"):
        return _zarr_to_pickle(src_path, dst_path)
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
def _pickle_to_zarr(src: Path, dst: Path, *, env: str | None, env_kwargs: dict | None, check_env: bool) -> Path:
    from pvr.data.rerender import action_check

    data = load_pickle(src)  # validates every trajectory before anything is written
    name = env or src.stem
    check = action_check(name, env_kwargs) if check_env else None
    if check is not None:
        for i in range(len(data["obs"])):
            check({k: data[k][i] for k in FRAME_KEYS}, i)
    tmp = _tmp_beside(dst)
    try:
        meta = {"source": str(src), "source_format": "legacy-pickle"}
        if env_kwargs:
            meta["env_kwargs"] = env_kwargs
        ds = create(tmp, env=name, meta=meta)
        with ds:
            for i in range(len(data["obs"])):
                ds.append_episode(**{k: data[k][i] for k in FRAME_KEYS})
        _commit(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _zarr_to_pickle(src: Path, dst: Path) -> Path:
    ds = open_dataset(src, mode="r")
    if not isinstance(ds, ZarrDataset):  # pragma: no cover - suffix already checked
        raise PvrError(f"{src} is not a zarr store; supported conversions are {SUPPORTED}")
    with ds:
        if ds.num_episodes == 0:
            raise PvrError(f"{src} holds no episodes; collect some before converting")
        data: dict[str, list] = {k: [] for k in FRAME_KEYS}
        for ep in ds.episodes():  # one episode in flight from disk at a time
            for k in FRAME_KEYS:
                data[k].append(ep[k])
    return save_pickle(dst, data, overwrite=True)  # overwrite already checked; save is atomic


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
