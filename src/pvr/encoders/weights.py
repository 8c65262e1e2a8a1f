"""Finding weight files on this machine — never downloading, never guessing.

Weights come from the framework's own cache (``$TORCH_HOME/hub/checkpoints`` for
torchvision) or from ``$PVR_MODEL_PATH`` (default ``~/.cache/pvr/models``), under
the file names the original project used. A missing file is a :class:`PvrError`
naming the file, the folders searched and where the weights are published.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pvr.errors import PvrError


def model_dir() -> Path:
    return Path(os.environ.get("PVR_MODEL_PATH", Path.home() / ".cache" / "pvr" / "models")).expanduser()


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    return [model_dir(), torch_hub_checkpoints()]


def find(filename: str) -> Path | None:
    for d in search_dirs():
        p = d / filename
        if p.is_file():
            return p
    return None


def require(filename: str, *, encoder: str, published: str) -> Path:
    path = find(filename)
    if path is None:
        dirs = ", ".join(str(d) for d in search_dirs())
        raise PvrError(f"encoder {encoder!r} needs weights file {filename!r}, not found in {dirs}. "
                       f"Download it from {published} and put it in $PVR_MODEL_PATH (now {model_dir()}).")
    return path


def load_state_dict(path: Path) -> dict:
    """Load a checkpoint without executing code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupted file or a pickle that is not plain tensors
        raise PvrError(f"cannot load weights from {path}: {e}. Re-download the file.") from None


def load_strict(module: torch.nn.Module, state: dict, *, source: Path | str, allow_unused: tuple[str, ...] = ()) -> None:
    """``load_state_dict`` that reports missing/unexpected keys as one clear error."""
    unexpected_ok = {k for k in state if any(k.startswith(p) for p in allow_unused)}
    state = {k: v for k, v in state.items() if k not in unexpected_ok}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise PvrError(f"weights in {source} do not fit: missing keys {result.missing_keys[:8]}"
                       f"{'...' if len(result.missing_keys) > 8 else ''}, unexpected keys "
                       f"{result.unexpected_keys[:8]}{'...' if len(result.unexpected_keys) > 8 else ''}")
