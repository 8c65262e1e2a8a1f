"""Small shared helpers."""
import torch


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (the CPU for a module without any)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def default_device(disable_cuda: bool = False) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not disable_cuda else "cpu")
