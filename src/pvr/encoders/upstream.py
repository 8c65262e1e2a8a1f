"""Reading the robotics PVRs' own checkpoint files (R3M, VIP, LIV, MVP, VC-1).

Their loaders download into a private cache (``~/.r3m/r3m_50/model.pt``,
``~/.vip/resnet50/model.pt``, ``~/.liv/resnet50/model.pt``) under names that
collide (three different networks are all ``model.pt``), so pvr gives each file
its own name under ``$PVR_MODEL_PATH`` and also looks in the exact place the
upstream loader put it. Nothing is downloaded.

The files hold the whole training module (a ``DataParallel`` state dict under
one key): the encoder is taken from under its prefix, the parts an encoder does
not use (language heads, text towers, MAE decoders) are dropped by name, and any
other key is reported, so a wrong file is an error rather than a silently random
network.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pvr.encoders import weights
from pvr.errors import PvrError


@dataclass(frozen=True)
class UpstreamSpec(weights.WeightsSpec):
    """A :class:`~pvr.encoders.weights.WeightsSpec` that also accepts the upstream loader's cache file.

    ``cache``: full paths (``~`` allowed) where the upstream loader stores the
    file; tried after pvr's own names.
    """

    cache: tuple[str, ...] = ()

    def cache_paths(self) -> list[Path]:
        return [Path(p).expanduser() for p in self.cache]

    def find(self) -> Path | None:
        found = super().find()
        if found is not None:
            return found
        return next((p for p in self.cache_paths() if p.is_file()), None)

    def require(self, encoder: str) -> Path:
        path = self.find()
        if path is None:
            names = " or ".join(repr(n) for n in self.filenames)
            where = ", ".join(str(d) for d in self.dirs())
            cache = "".join(f", nor at {p} (where the upstream loader keeps it)" for p in self.cache_paths())
            raise PvrError(f"encoder {encoder!r} needs weights file {names}, not found in {where}{cache}. "
                           f"Download it from {self.published} and put it in $PVR_MODEL_PATH (now "
                           f"{weights.model_dir()}) as {self.filename!r}.")
        return path

    def describe(self) -> str:
        return super().describe() + "".join(f" (or {p})" for p in self.cache)


def nested_state(path: Path, key: str | None, prefixes: tuple[str, ...], *, drop: tuple[str, ...] = ()
                 ) -> tuple[dict, list[str]]:
    """The encoder's tensors from checkpoint ``path``: ``ckpt[key]`` under the first matching prefix.

    Returns (state with the prefix removed, keys that are neither under the prefix
    nor under one of the ``drop`` prefixes — for the caller's strict load to report).
    """
    ckpt = weights.load_checkpoint(path)
    if key is not None:
        if not isinstance(ckpt, dict) or key not in ckpt:
            top = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
            raise PvrError(f"{path} is not the expected checkpoint: it has no {key!r} entry (it holds {top}). "
                           f"Check that the file is the one the encoder's authors publish.")
        ckpt = ckpt[key]
    if not isinstance(ckpt, dict):
        raise PvrError(f"{path}: {key!r} holds a {type(ckpt).__name__}, not a state dict")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in ckpt)), None)
    if prefix is None:
        raise PvrError(f"weights in {path} do not fit: no keys under {' or '.join(map(repr, prefixes))} "
                       f"(first keys: {list(ckpt)[:5]})")
    return weights.select_prefix(ckpt, prefix, ignore=drop)


_NOTICES: set[str] = set()


def licence_notice(name: str, licence: str) -> None:
    """Say once per process which licence an encoder's weights carry (non-commercial ones matter)."""
    if name not in _NOTICES:
        _NOTICES.add(name)
        print(f"pvr: the {name} weights are licensed {licence}.", file=sys.stderr)


# -- MAE-layout ViTs (MVP, VC-1) ------------------------------------------------------
#: keys of an MAE pre-training checkpoint that the encoder does not use
MAE_UNUSED = ("decoder", "mask_token")


def mae_vit(*, embed_dim: int, depth: int, heads: int, img_size: int):
    """timm's ViT with patch 16, MLP ratio 4, qkv bias, LayerNorm eps 1e-6, no head: CLS after the final norm.

    This is both MVP's and VC-1's ``VisionTransformer`` (subclasses of timm's with
    the head deleted); their forwards add the positions, run the blocks and take
    the normalised CLS token, which is timm's forward with ``global_pool="token"``
    (their dropouts are 0 and their ``norm_pre`` / ``fc_norm`` are identities).
    """
    from functools import partial

    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    return VisionTransformer(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=heads,
                             mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                             num_classes=0, global_pool="token")


def mae_vit_encoder(name: str, net, path: Path | None, preprocess, *, train: bool, tokens, resize_pos_embed: bool,
                    micro_batch: int, licence: str | None = None):
    """An :class:`Encoder` over an MAE-layout ViT (MVP, VC-1): the token option applied (checked before
    any weights are read), then the weights at ``path`` loaded, or random ones when ``path`` is None."""
    from pvr.encoders import tokens as token_opts
    from pvr.encoders.base import Encoder

    width, depth = net.embed_dim, len(net.blocks)
    backbone, dim, ident = token_opts.apply(net, tokens, name=name, native_dim=width, width=width, depth=depth,
                                            patch_grid=tuple(net.patch_embed.grid_size))
    source = "random init (pretrained=False)"
    if path is not None:
        load_mae_vit(net, path, resize_pos_embed=resize_pos_embed)
        source = str(path)
        if licence:
            licence_notice(name, licence)
    return Encoder(name, backbone, preprocess, dim=dim, trainable=train, weights_source=source,
                   extra_identity=ident, micro_batch=micro_batch)


def load_mae_vit(net, path: Path, *, resize_pos_embed: bool) -> None:
    """Load MAE's ``{"model": state}`` layout into ``net``, decoder and mask token dropped, strictly.

    ``resize_pos_embed``: a ``pos_embed`` for another grid is resampled to the
    network's (bicubic, no antialiasing, the CLS position kept), as VC-1's loader
    does; otherwise a different grid is a shape error, as with MVP's loader.
    """
    ckpt = weights.load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        top = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise PvrError(f"{path} is not an MAE-format checkpoint (a dict with a 'model' state dict; it holds {top})")
    state = {k: v for k, v in ckpt["model"].items() if not any(u in k for u in MAE_UNUSED)}
    pe = state.get("pos_embed")
    if resize_pos_embed and pe is not None and pe.ndim == 3 and tuple(pe.shape) != tuple(net.pos_embed.shape):
        from timm.layers import resample_abs_pos_embed

        state["pos_embed"] = resample_abs_pos_embed(pe.float(), list(net.patch_embed.grid_size), num_prefix_tokens=1,
                                                    interpolation="bicubic", antialias=False).to(pe.dtype)
    weights.load_strict(net, state, source=path)
