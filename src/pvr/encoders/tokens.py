"""Token options for ViT encoders: ``<name>:pool=...``, ``:grid=N``, ``:block=K``, ``:norm=no``.

Which of a ViT's outputs to use — the CLS token, the mean of the patch tokens, the
patch grid itself, or an intermediate block — is itself a question users study,
so every ViT family in the zoo takes the same options, appended to its name with
colons (any order, each at most once)::

    dinov2_vitb14:pool=mean        mean of the patch tokens
    dinov2_vitb14:block=8          the family's default pool (CLS here) of block 8's tokens
    dinov2_vitb14:pool=cls         the CLS token (prefix token 0)
    dinov2_vitb14:pool=max         element-wise max over the patch tokens
    dinov2_vitb14:pool=grid        every patch token, flattened (h·w·D values)
    dinov2_vitb14:grid=4           the patch grid average-pooled to 4×4, flattened (4·4·D)
    mae_base:block=8:pool=mean     tokens after block 8 (1-based, of 1..depth)
    mae_base:block=8:norm=no       ... without the final LayerNorm

Semantics, the same for every family:

- ``block=K`` takes the token sequence leaving block ``K`` (1-based); the default is
  the last block. ``norm=yes`` (the default) applies the model's final norm layer
  to those tokens — what DINOv2's ``get_intermediate_layers(norm=True)`` and
  timm's ``forward_intermediates(norm=True)`` do — and ``norm=no`` leaves them raw.
- Pooling acts on the patch tokens only: prefix tokens (CLS, DINOv2/DINOv3
  registers or storage tokens) are excluded from ``mean``/``max``/``grid``.
- Grid outputs are flattened cell by cell in raster order (row-major), each cell's
  D values contiguous: feature ``(i·w + j)·D + c`` is channel ``c`` of cell ``(i, j)``.
- Without any option an encoder keeps its family's native output (MAE: CLS;
  SigLIP: the attention-pooled head; CLIP: the projected CLS); ``pool=...`` reads
  the tokens instead (never the projection or pooling head).

The option is part of the encoder's identity (its name and fingerprint); the
reported ``dim`` accounts for it. A family opts in by calling :func:`enable` for
each of its names and by accepting ``tokens=`` in its factory, where it wraps its
network with :func:`readout`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pvr.encoders.registry import ENCODERS, add_encoder_rule
from pvr.errors import PvrError
from pvr.registry import Entry

POOLS = ("cls", "mean", "max", "grid")
KEYS = ("pool", "grid", "block", "norm")
_YES, _NO = ("yes", "true", "1"), ("no", "false", "0")
_OPTION = re.compile(r"^([a-z_]+)=([^:=+]*)$")

#: encoder name → (pools it supports, token width D, patch grid (h, w) at its input size, default pool)
SUPPORTED: dict[str, tuple[tuple[str, ...], int, tuple[int, int], str]] = {}


@dataclass(frozen=True)
class TokenSpec:
    """A parsed token option. ``pool`` is one of :data:`POOLS`; ``grid`` (cells per side) only with ``grid``."""

    pool: str = "cls"
    grid: int | None = None
    block: int | None = None
    norm: bool = True

    def canonical(self) -> str:
        """The option in one spelling (``pool=grid:grid=4:block=8:norm=no``), for identities and names."""
        parts = [f"pool={self.pool}"]
        if self.grid is not None:
            parts.append(f"grid={self.grid}")
        if self.block is not None:
            parts.append(f"block={self.block}")
        if not self.norm:
            parts.append("norm=no")
        return ":".join(parts)

    def dim(self, width: int, patch_grid: tuple[int, int]) -> int:
        """Feature size for a model of ``width`` whose input makes a ``patch_grid`` (h, w) of tokens."""
        if self.pool != "grid":
            return width
        if self.grid is not None:
            return self.grid * self.grid * width
        return patch_grid[0] * patch_grid[1] * width

    def check(self, name: str, *, depth: int, has_cls: bool = True,
              patch_grid: tuple[int, int] | None = None) -> None:
        """Refuse options the model cannot honour (before any weights are read)."""
        if self.block is not None and not 1 <= self.block <= depth:
            raise PvrError(f"{name}: block={self.block} is out of range; this model has blocks 1..{depth}")
        if self.pool == "cls" and not has_cls:
            raise PvrError(f"{name}: this model has no CLS token; use pool=mean, pool=max, pool=grid or grid=N")
        if self.grid is not None and patch_grid is not None and (
                self.grid > patch_grid[0] or self.grid > patch_grid[1]):
            raise PvrError(f"{name}: grid={self.grid} is finer than the {patch_grid[0]}x{patch_grid[1]} patch grid; "
                           f"use grid=1..{min(patch_grid)} or pool=grid for every patch")


def parse_spec(options: str, *, name: str = "", default_pool: str = "cls") -> TokenSpec:
    """``"pool=mean:block=8"`` → :class:`TokenSpec`; every mistake is a one-line :class:`PvrError`.

    Without ``pool=`` (and ``grid=``) the pool is ``default_pool``: the family's own
    (``cls``; ``mean`` for models without a CLS token or that pool by default, e.g. SigLIP, Theia).
    """
    where = name or options
    seen: dict[str, str] = {}
    for part in options.split(":"):
        m = _OPTION.match(part)
        if not m:
            raise PvrError(f"{where}: {part!r} is not a token option; write key=value with keys {', '.join(KEYS)} "
                           f"(e.g. dinov2_vitb14:pool=mean)")
        key, value = m.groups()
        if key not in KEYS:
            raise PvrError(f"{where}: unknown token option {key!r}; the options are {', '.join(KEYS)}")
        if key in seen:
            raise PvrError(f"{where}: token option {key!r} is given twice")
        seen[key] = value
    grid = _positive(seen["grid"], "grid", where) if "grid" in seen else None
    pool = seen.get("pool", "grid" if grid is not None else default_pool)
    if pool not in POOLS:
        raise PvrError(f"{where}: pool={pool!r} is not one of {', '.join(POOLS)}")
    if grid is not None and pool != "grid":
        raise PvrError(f"{where}: grid={grid} pools the patch grid; it cannot be combined with pool={pool}")
    block = _positive(seen["block"], "block", where) if "block" in seen else None
    norm = seen.get("norm", "yes").lower()
    if norm not in _YES + _NO:
        raise PvrError(f"{where}: norm={norm!r}; write norm=yes (final norm applied, the default) or norm=no")
    return TokenSpec(pool=pool, grid=grid, block=block, norm=norm in _YES)


def _positive(value: str, key: str, where: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise PvrError(f"{where}: {key}={value!r} must be a positive whole number")
    return int(value)


def split_name(name: str) -> tuple[str, str] | None:
    """``"dinov2_vitb14:pool=mean"`` → ``("dinov2_vitb14", "pool=mean")``; ``None`` without options."""
    parts = name.split(":")
    i = len(parts)
    while i > 1 and "=" in parts[i - 1]:
        i -= 1
    if i == len(parts):
        return None
    return ":".join(parts[:i]), ":".join(parts[i:])


# -- reading tokens out of a network -------------------------------------------------
#: ``fn(model, x, block, norm) -> (prefix (B, P, D) or None, patches (B, D, h, w))``; block is 0-based
TokensFn = Callable[[nn.Module, torch.Tensor, int, bool], tuple[torch.Tensor | None, torch.Tensor]]


def timm_tokens(model: nn.Module, x: torch.Tensor, block: int, norm: bool):
    """Tokens of a timm ``VisionTransformer`` / ``Eva`` (DINOv2, DINOv3, MAE, DeiT, SigLIP trunks)."""
    has_prefix = bool(getattr(model, "num_prefix_tokens", 0))
    out = model.forward_intermediates(x, indices=[block], norm=norm, stop_early=True, output_fmt="NCHW",
                                      intermediates_only=True, return_prefix_tokens=has_prefix)[0]
    return (out[1], out[0]) if has_prefix else (None, out)


def open_clip_tokens(model: nn.Module, x: torch.Tensor, block: int, norm: bool):
    """Tokens of an open_clip ``VisionTransformer`` (CLIP image towers); ``norm`` is its ``ln_post``."""
    out = model.forward_intermediates(x, indices=[block], stop_early=True, normalize_intermediates=norm,
                                      intermediates_only=True, output_fmt="NCHW", output_extra_tokens=True)
    return out["image_intermediates_prefix"][0], out["image_intermediates"][0]


def pool_tokens(spec: TokenSpec, prefix: torch.Tensor | None, patches: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) patch tokens (and prefix tokens) → (B, features) as ``spec`` says."""
    if spec.pool == "cls":
        if prefix is None:
            raise PvrError("this model has no CLS token; use pool=mean, pool=max or pool=grid")
        return prefix[:, 0]
    if spec.pool == "mean":
        return patches.mean(dim=(2, 3))
    if spec.pool == "max":
        return patches.amax(dim=(2, 3))
    if spec.grid is not None:
        patches = F.adaptive_avg_pool2d(patches, spec.grid)
    return patches.permute(0, 2, 3, 1).flatten(1)  # raster order, each cell's D values contiguous


class TokenReadout(nn.Module):
    """A ViT whose output is the pooled tokens of one block (the backbone of a token-option encoder)."""

    def __init__(self, model: nn.Module, spec: TokenSpec, tokens_fn: TokensFn, depth: int):
        super().__init__()
        self.model, self.spec, self.tokens_fn = model, spec, tokens_fn
        self.block = (spec.block if spec.block is not None else depth) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, patches = self.tokens_fn(self.model, x, self.block, self.spec.norm)
        return pool_tokens(self.spec, prefix, patches)

    def extra_repr(self) -> str:
        return self.spec.canonical()


def readout(model: nn.Module, spec: TokenSpec, *, name: str, depth: int, tokens_fn: TokensFn = timm_tokens,
            has_cls: bool = True, patch_grid: tuple[int, int] | None = None) -> TokenReadout:
    """Wrap ``model`` so that it returns what ``spec`` asks for (checked against the model first)."""
    spec.check(name, depth=depth, has_cls=has_cls, patch_grid=patch_grid)
    return TokenReadout(model, spec, tokens_fn, depth)


def identity(spec: TokenSpec | None) -> dict:
    """What a family adds to its encoder's identity (empty for the native output)."""
    return {"tokens": spec.canonical()} if spec is not None else {}


# -- names ---------------------------------------------------------------------------
def enable(name: str, *, width: int, patch_grid: tuple[int, int], pools: tuple[str, ...] = POOLS,
           default_pool: str = "cls") -> None:
    """Let ``name:<options>`` resolve; the factory of ``name`` must accept ``tokens=TokenSpec``.

    ``width`` (D) and ``patch_grid`` (the token grid at the encoder's input size) let
    ``pvr encoders`` report the size of each option without building the model;
    ``default_pool`` is the pool of an option that names none (``name:block=6``).
    """
    SUPPORTED[name] = (tuple(pools), int(width), (int(patch_grid[0]), int(patch_grid[1])), default_pool)


def _rule(name: str) -> Entry | None:
    split = split_name(name)
    if split is None:
        return None
    base, options = split
    if ":" in base:  # a prefix rule's name (antialias:<name>, concat:...): that rule resolves the inner names
        return None
    entry = ENCODERS.get(base)  # unknown names fail with the registry's message
    if base not in SUPPORTED:
        vits = ", ".join(sorted(SUPPORTED)[:12]) or "none registered"
        raise PvrError(f"{name}: encoder {base!r} takes no token options (pool=, grid=, block=, norm=); "
                       f"they apply to ViT encoders such as {vits}")
    pools, width, patch_grid, default_pool = SUPPORTED[base]
    spec = parse_spec(options, name=name, default_pool=default_pool)
    if spec.pool not in pools:
        raise PvrError(f"{name}: {base} does not offer pool={spec.pool}; it offers {', '.join(pools)}")

    def make(**kw):
        import pvr.encoders as E

        enc = E.create(base, tokens=spec, **kw)
        enc.name = name
        enc._extra_identity.update(identity(spec))
        enc._fingerprint = None
        return enc

    meta = {**entry.meta, "seeded": True, "dim": spec.dim(width, patch_grid),
            "description": f"{entry.meta.get('description', base)}; tokens {spec.canonical()}"}
    return Entry(name, make, meta)


add_encoder_rule(_rule)


def apply(net: nn.Module, spec: TokenSpec | None, *, name: str, native_dim: int, width: int, depth: int,
          patch_grid: tuple[int, int], tokens_fn: TokensFn = timm_tokens,
          has_cls: bool = True) -> tuple[nn.Module, int, dict]:
    """A family's backbone, feature size and identity entries for ``spec`` (``None``: the native output)."""
    if spec is None:
        return net, native_dim, {}
    wrapped = readout(net, spec, name=name, depth=depth, tokens_fn=tokens_fn, has_cls=has_cls, patch_grid=patch_grid)
    return wrapped, spec.dim(width, patch_grid), identity(spec)
