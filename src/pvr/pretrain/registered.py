"""Encoders made by ``pvr pretrain``: ``NAME.pth`` + ``NAME.pvr.json`` in ``$PVR_MODEL_PATH``.

The registry file says what the weights are (family, architecture, method,
augmentation), how frames must be preprocessed for them (the size the network was
trained at) and which datasets it saw (environment names and content fingerprints,
the held-out episodes). It holds no paths or times, so moving or copying the files
changes nothing. The encoder's fingerprint covers the file's content and the
weights, so a model trained with another method, on other data, or re-trained,
embeds again; the same model under another folder does not.

``NAME`` resolves through a rule of the encoder registry (``pvr.encoders.registry``),
after the built-in names, which ``pvr pretrain`` therefore refuses as names.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pvr.encoders import weights
from pvr.errors import PvrError

SUFFIX = ".pvr.json"
FORMAT = 1


def files(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    folder = Path(folder) if folder is not None else weights.model_dir()
    return folder / f"{name}.pth", folder / f"{name}{SUFFIX}"


def read(path: Path) -> dict:
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PvrError(f"cannot read {path}: {e}; re-run `pvr pretrain` or delete the file") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "family" not in info:
        raise PvrError(f"{path} is not a pvr pretrain registry file (format {FORMAT}); re-run `pvr pretrain`")
    return info


def digest(info: dict) -> str:
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def preprocess_of(info: dict):
    from pvr.encoders.base import Preprocess

    p = dict(info["preprocess"])
    p["mean"], p["std"] = tuple(p["mean"]), tuple(p["std"])
    return Preprocess(**p)


def tap_dim(tap: str, image_size: int) -> int:
    """Flattened size of a compressed tap at ``image_size`` px (layer3 is 1/16 of the side, layer4 1/32)."""
    from pvr.encoders import taps

    stride = 16 if tap == "l3" else 32
    side = -(-image_size // stride)
    return taps.TAPS[tap][1] * side * side


def build(name: str, info: dict, weights_path: Path, *, train: bool = False, pretrained: bool = True, **_):
    """The frozen :class:`Encoder` for a registered model (pooled backbone features)."""
    from pvr.encoders.base import Encoder

    if info["family"] == "moco" and info.get("tap"):
        from pvr.encoders import taps

        net = taps.build(info["tap"])  # the l3 / l4 network, loaded as the original's l3 / l4 checkpoints are
        source = "random init (pretrained=False)"
        if pretrained:
            prefix = taps.load_into(net, info["tap"], weights_path)
            source = f"{weights_path} (keys under {prefix!r}, tap {info['tap']})"
    elif info["family"] == "moco":
        import torchvision
        from torch import nn

        from pvr.encoders import taps

        net = getattr(torchvision.models, info["arch"])(weights=None)
        net.fc = nn.Identity()
        source = "random init (pretrained=False)"
        if pretrained:
            prefix = taps.load_into(net, "conv5", weights_path)  # MoCo's own layout, as for moco_aug
            source = f"{weights_path} (keys under {prefix!r})"
    elif info["family"] == "mae":
        from pvr.pretrain import mae

        net = mae.encoder(info["arch"], info["image_size"])
        source = "random init (pretrained=False)"
        if pretrained:
            from pvr.encoders.mae import load_mae

            load_mae(net, weights_path)  # MAE's own layout, as for mae_base
            source = str(weights_path)
    else:
        raise PvrError(f"{name}: family {info['family']!r} in its registry file is not one pvr pretrain makes")
    return Encoder(name, net, preprocess_of(info), dim=info["dim"], trainable=train, weights_source=source,
                   extra_identity={"pretrain": digest(info)}, micro_batch=info.get("micro_batch", 4))


def entry(name: str):
    """A registry :class:`Entry` for ``name`` if ``$PVR_MODEL_PATH`` holds its registry file, else None."""
    from pvr.registry import Entry

    pth, meta = files(name)
    if not meta.is_file():
        return None
    info = read(meta)

    def make(**kw):
        if kw.get("pretrained", True) and not pth.is_file():
            raise PvrError(f"encoder {name!r}: {meta} is there but its weights {pth} are not; copy both files "
                           f"or re-run `pvr pretrain --name {name}`")
        return build(name, info, pth, **kw)

    return Entry(name, make, dict(family=info["family"], weights=f"file:{pth.name} (pvr pretrain)", dim=info["dim"],
                                  input_size=info["image_size"], present=pth.is_file, seeded=False,
                                  description=f"{info['family']} {info['arch']} ({info.get('aug') or info['method']}) "
                                              f"pre-trained by pvr on {', '.join(d['env'] for d in info['datasets'])}",
                                  published="made here by `pvr pretrain`", licence=""))


def listing(folder: Path | None = None) -> list[dict]:
    """One row per ``*.pvr.json`` in ``$PVR_MODEL_PATH`` (what ``pvr encoders`` shows); an unreadable file is
    listed with its problem rather than hiding the others."""
    folder = Path(folder) if folder is not None else weights.model_dir()
    rows = []
    for meta in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        name = meta.name[: -len(SUFFIX)]
        pth = meta.with_name(f"{name}.pth")
        try:
            info = read(meta)
        except PvrError as e:
            rows.append(dict(name=name, family="?", method="?", arch="?", dim="?", datasets=str(e),
                             present=pth.is_file()))
            continue
        method = info["method"] + (f" ({info['aug']})" if info.get("aug") else "")
        arch = info["arch"] + (f" {info['tap']}" if info.get("tap") else "")
        rows.append(dict(name=name, family=info["family"], method=method, arch=arch, dim=info["dim"],
                         datasets=", ".join(d["env"] for d in info.get("datasets", [])), present=pth.is_file()))
    return rows
