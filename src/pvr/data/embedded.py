"""Embedded pickles: features computed elsewhere, imported into a store that has no frames.

The original project embedded every raw-frame pickle once per encoder
(``data_generator/save_embedded_obs.py``) into ``<env>_<embedding>.pickle``: the
same dict with ``obs`` replaced by (n, D * views) float32 features (each RGB
view embedded, the features concatenated in view order). A user holding such
files can train from them directly: ``pvr convert`` stores the features as
``features/<embedding>-imported`` of a store with no frames. Their encoder
weights are unknown (no fingerprint), so :func:`pvr.embed.find_features` uses
them only when no features computed by pvr exist, and says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pvr.errors import PvrError

FEATURES_GROUP = "features"  # the store's feature group (shared with pvr.embed)
IMPORTED = "imported"  # the fingerprint part of an imported feature array's key


def imported_key(name: str) -> str:
    return f"{name}-{IMPORTED}"


def _registered() -> list[str]:
    import pvr.encoders

    return list(pvr.encoders.available())


def split_name(stem: str, embedding_name: str | None) -> tuple[str, str]:
    """``<env>_<embedding>`` → (env, embedding); ``embedding_name`` overrides the suffix.

    Encoder names hold underscores (``moco_aug_l3``), environment names do not end
    in one, so the longest registered encoder name that ends the stem wins."""
    names = _registered()
    if embedding_name:
        if embedding_name not in names:
            raise PvrError(f"--embedding_name {embedding_name!r} is not a registered encoder; `pvr encoders` lists "
                           "them (evaluation embeds live frames with it, so it must exist here)")
        suffix = "_" + embedding_name
        return (stem[: -len(suffix)] if stem.endswith(suffix) and len(stem) > len(suffix) else stem), embedding_name
    for name in sorted(names, key=len, reverse=True):
        suffix = "_" + name
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], name
    raise PvrError(f"{stem}: the file holds embedded features (its 'obs' are (n, D) floats) but its name does not end "
                   "in _<encoder> with a registered encoder; pass --embedding_name NAME (see `pvr encoders`)")


def check_encoder(name: str, width: int, source: str) -> int | None:
    """Views per frame the features imply (width / the encoder's size), or None when the size is not fixed."""
    if name == "true_state":
        raise PvrError(f"{source}: true_state is read from the 'true_state' key of the raw-frame pickle, never "
                       "from an embedded one; convert the raw pickle, or pass the encoder these features came from")
    from pvr.encoders import ENCODERS

    dim = ENCODERS.get(name).meta.get("dim")
    if not isinstance(dim, int) or dim <= 0:
        return None
    if width % dim:
        raise PvrError(f"{source}: features are {width} wide but {name} gives {dim} per view; they came from "
                       "another encoder: pass the right --embedding_name")
    return width // dim


def write_features(group: Any, name: str, features: list[np.ndarray], source: str | Path) -> Any:
    """Write the imported features of every trajectory as ``features/<name>-imported`` (N, D) float32."""
    from pvr.embed import chunk_frames_for  # lazily: pvr.embed imports pvr.data

    n = int(sum(len(f) for f in features))
    width = int(features[0].shape[1])
    grp = group.require_group(FEATURES_GROUP)
    arr = grp.create_array(imported_key(name), shape=(n, width), chunks=(chunk_frames_for(width), width),
                           dtype="float32", fill_value=0)
    start = 0
    for f in features:
        arr[start: start + len(f)] = f
        start += len(f)
    arr.attrs.update({"encoder": name, "fingerprint": None, "imported": True, "source": str(source),
                      "dim": width, "frames_done": n})
    return arr


def imported_features(ds: Any, name: str) -> Any | None:
    """The complete imported feature array of encoder ``name`` in ``ds``, or None."""
    try:
        arr = ds.group[FEATURES_GROUP][imported_key(name)]
    except (KeyError, FileNotFoundError, AttributeError, TypeError):
        return None
    if not arr.attrs.get("imported") or arr.attrs.get("encoder") != name:
        return None
    if arr.attrs.get("frames_done", 0) < ds.num_frames or arr.shape[0] < ds.num_frames:
        return None
    return arr
