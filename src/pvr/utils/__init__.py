"""Small shared helpers.

torch is imported inside the functions: submodules such as ``pvr.utils.cores`` are
used by environment processes, which must not load torch (~600 MB each).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (the CPU for a module without any)."""
    import torch

    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def default_device(disable_cuda: bool = False) -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() and not disable_cuda else "cpu")
