"""Finding weight files on this machine — never downloading, never guessing.

Weights come from the framework's own cache (``$TORCH_HOME/hub/checkpoints`` for
torchvision) or from ``$PVR_MODEL_PATH`` (default ``~/.cache/pvr/models``), under
the file names the original project used. A missing file is a :class:`PvrError`
naming the file, the folders searched and where the weights are published.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
    """Load a checkpoint without executing code (``weights_only=True``; see :func:`load_checkpoint`)."""
    return load_checkpoint(path)


def load_strict(module: torch.nn.Module, state: dict, *, source: Path | str, allow_unused: tuple[str, ...] = (),
                optional: tuple[str, ...] = ("num_batches_tracked",), extra_unexpected: list[str] | None = None) -> None:
    """``load_state_dict`` that reports missing/unexpected keys as one clear error.

    ``allow_unused``: key prefixes the checkpoint may hold beyond the module (heads
    and layers after a tap). ``optional``: key suffixes the checkpoint may lack
    (BatchNorm's step counter, which older files do not store). ``extra_unexpected``:
    keys the caller already found to be out of place (reported with the rest).
    """
    unexpected_ok = {k for k in state if any(k.startswith(p) for p in allow_unused)}
    state = {k: v for k, v in state.items() if k not in unexpected_ok}
    own = module.state_dict()
    for k in own:
        if k not in state and any(k.endswith(s) for s in optional):
            state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own] + list(extra_unexpected or [])
    if missing or unexpected:
        raise PvrError(f"weights in {source} do not fit: missing keys {missing[:8]}"
                       f"{'...' if len(missing) > 8 else ''}, unexpected keys "
                       f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if shapes:
        raise PvrError(f"weights in {source} do not fit this architecture: {'; '.join(shapes[:4])}"
                       f"{'...' if len(shapes) > 4 else ''}")
    module.load_state_dict(state, strict=True)


# -- more places real users keep weights -------------------------------------------
def clip_cache_dir() -> Path:
    """Where OpenAI's ``clip.load`` and open_clip's URL downloads put ``RN50.pt`` / ``ViT-B-32.pt``."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache (timm and open_clip download there when huggingface_hub is installed)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def find_hf(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """A file of ``repo_id`` already in the Hugging Face cache (never downloads)."""
    snapshots = hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    revs = [ref.read_text().strip()] if ref.is_file() else []
    revs += sorted(p.name for p in snapshots.iterdir() if p.name not in revs)
    for rev in revs:
        for name in filenames:
            p = snapshots / rev / name
            if p.is_file():
                return p
    return None


@dataclass(frozen=True)
class WeightsSpec:
    """Where one encoder's weights may be on this machine, in the order they are tried.

    ``filename`` (then each of ``alternates``: other names the original's branches
    used for the same weights) is looked up in ``$PVR_MODEL_PATH`` then the torch
    hub cache (and ``extra_dirs``); ``hf`` names a Hugging Face repo and its
    candidate files.
    """

    filename: str
    published: str
    extra_dirs: tuple[Callable[[], Path], ...] = ()
    hf: tuple[str, tuple[str, ...]] | None = None
    alternates: tuple[str, ...] = ()

    @property
    def filenames(self) -> tuple[str, ...]:
        return (self.filename, *self.alternates)

    def dirs(self) -> list[Path]:
        return search_dirs() + [d() for d in self.extra_dirs]

    def find(self) -> Path | None:
        for name in self.filenames:
            for d in self.dirs():
                if (d / name).is_file():
                    return d / name
        if self.hf is not None:
            return find_hf(*self.hf)
        return None

    def present(self) -> bool:
        return self.find() is not None

    def require(self, encoder: str) -> Path:
        path = self.find()
        if path is None:
            where = ", ".join(str(d) for d in self.dirs())
            if self.hf is not None:
                where += f", Hugging Face cache {hf_hub_cache()} (repo {self.hf[0]})"
            names = " or ".join(repr(n) for n in self.filenames)
            raise PvrError(f"encoder {encoder!r} needs weights file {names}, not found in {where}. "
                           f"Download it from {self.published} and put it in $PVR_MODEL_PATH (now {model_dir()}) "
                           f"under that name.")
        return path

    def describe(self) -> str:
        return f"file:{self.filename}" + "".join(f" (or {n})" for n in self.alternates)


def load_checkpoint(path: Path) -> Any:
    """Any checkpoint format users have, read without executing code from it.

    ``.safetensors`` via safetensors; TorchScript archives (OpenAI's CLIP ``.pt``)
    by reading their tensors with a restricted unpickler; everything else with
    ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if _is_torchscript(path):
            return read_torchscript_tensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except PvrError:
        raise
    except Exception as e:  # corrupted file or a pickle that is not plain tensors
        raise PvrError(f"cannot load weights from {path}: {e}. Re-download the file.") from None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or n.startswith("constants.pkl") for n in z.namelist())


class _Obj:
    """Stand-in for a TorchScript class instance: just its attribute dict."""

    def __setstate__(self, state):
        # NEWOBJ skips __init__; BUILD hands us the attribute dict.
        self.__dict__.setdefault("_attrs", {}).update(state if isinstance(state, dict) else {})


def _rebuild_tensor(storage, offset, size, stride, *args):
    untyped, dtype = storage
    t = torch.empty((0,), dtype=dtype)
    return t.set_(untyped, offset, tuple(size), tuple(stride))


class _ScriptUnpickler(pickle.Unpickler):
    # Only tensors, plain containers and attribute bags are built: any other global
    # is refused, so reading the file cannot run code (the TorchScript methods in
    # the archive are never compiled or called).
    _STORAGES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
                 "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                 "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                 "BoolStorage": torch.bool}

    def __init__(self, f, zf: zipfile.ZipFile, root: str):
        super().__init__(f)
        self.zf, self.root = zf, root

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _Obj
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in self._STORAGES:
            return self._STORAGES[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a TorchScript archive")

    def persistent_load(self, pid):
        _, dtype, key, _location, _numel = pid
        data = bytearray(self.zf.read(f"{self.root}/data/{key}"))
        return torch.frombuffer(data, dtype=torch.uint8).untyped_storage(), dtype


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors of a TorchScript archive (module attributes, dotted names)."""
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise PvrError(f"{path} is a zip archive without data.pkl: not a TorchScript model")
        root = pkl[0].split("/")[0]
        obj = _ScriptUnpickler(io.BytesIO(zf.read(pkl[0])), zf, root).load()
    out: dict[str, torch.Tensor] = {}

    def walk(o, prefix):
        if isinstance(o, torch.Tensor):
            out[prefix[:-1]] = o
        elif isinstance(o, _Obj):
            for k, v in o.__dict__.get("_attrs", {}).items():
                walk(v, f"{prefix}{k}.")

    walk(obj, "")
    return out


def select_prefix(state: dict, prefix: str, *, ignore: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """Keys under ``prefix`` with it removed, and the other keys (minus ``ignore`` prefixes)."""
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    outside = [k for k in state if not k.startswith(prefix) and not any(k.startswith(p) for p in ignore)]
    return inside, outside
