"""Frozen encoders run by ONNX Runtime or OpenVINO on a CPU: ``--runtime auto|torch|onnxruntime|openvino``.

PyTorch's CPU kernels leave much of a CPU idle on small batches, depthwise-heavy
convnets (EfficientNet-Lite) most of all; ONNX Runtime and OpenVINO run the same
graph several times faster there. What changes is only *who runs the backbone*:

- The encoder keeps its preprocessing (resize, crop, its own normalisation) in
  torch; only ``encoder.backbone`` — the part after uint8 → float — is exported
  (``torch.onnx.export``), once per (encoder fingerprint, input size), to
  ``$PVR_RUNTIME_CACHE`` or ``$XDG_CACHE_HOME/pvr/runtime`` (``~/.cache/pvr/runtime``).
  The file is written to a temporary name and renamed, under a lock, with a
  sidecar ``.json`` holding its SHA-256: a file that does not match it (a crash
  mid-copy, a bit flip) is exported again instead of being used.
- Before the first batch of each input size, the runtime's features are compared
  with torch's on that batch (at most :data:`CHECK_FRAMES` frames). They must
  satisfy ``max|f_rt - f_torch| <= RTOL * max|f_torch| + ATOL``; otherwise an explicit
  runtime raises :class:`PvrError` and ``auto`` falls back to torch with a warning.
- Because of that check, the encoder's fingerprint (the key of every feature
  cache) stays the torch encoder's: the runtime is provenance, recorded in the
  feature array's ``runtime`` attribute (:func:`record_provenance`), not identity.
- ``auto`` exports, checks and times every importable runtime on a representative
  batch and keeps the fastest (torch included), printing the figures; on a machine
  with a GPU it keeps torch, which runs there.

Threads: every runtime uses the cores this process may use (its affinity mask,
narrowed by Slurm's ``SLURM_CPUS_PER_TASK``).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pvr.encoders.base import Encoder
from pvr.errors import PvrError
from pvr.utils.cores import available_cores  # noqa: F401  (re-exported)

RUNTIMES = ("torch", "onnxruntime", "openvino")
CHOICES = ("auto",) + RUNTIMES
RTOL = 1e-4  # of the largest feature magnitude; fp32 reorderings measured here stay near 1e-6
ATOL = 1e-6
CHECK_FRAMES = 4
EXPORT_VERSION = 1  # bump when the export settings below change: old files stop matching
OPSET = 17
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_INSTALL = "pip install 'pvr[runtime]' (onnx, onnxruntime, openvino)"


def cache_dir() -> Path:
    if os.environ.get("PVR_RUNTIME_CACHE"):
        return Path(os.environ["PVR_RUNTIME_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pvr" / "runtime"


def is_available(runtime: str) -> bool:
    """Whether ``runtime`` can run here (torch always can; the others need their wheel and onnx)."""
    if runtime == "torch":
        return True
    return (importlib.util.find_spec(_MODULES[runtime]) is not None
            and importlib.util.find_spec("onnx") is not None)


def _check_name(runtime: str) -> None:
    if runtime not in CHOICES:
        raise PvrError(f"unknown runtime {runtime!r}; choose one of {', '.join(CHOICES)}")


# -- export and its cache ----------------------------------------------------------
def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_path(encoder: Encoder, chw: tuple[int, int, int], root: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", encoder.name)
    c, h, w = chw
    return (root or cache_dir()) / f"{safe}-{encoder.fingerprint}-{c}x{h}x{w}-v{EXPORT_VERSION}.onnx"


def _valid(path: Path) -> bool:
    meta = path.with_suffix(".json")
    try:
        info = json.loads(meta.read_text())
        return path.stat().st_size == info["size"] and _file_sha(path) == info["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def export(encoder: Encoder, chw: tuple[int, int, int], root: Path | None = None) -> Path:
    """The ONNX file of ``encoder.backbone`` for inputs (B, *chw), exported now unless a valid one is cached."""
    path = export_path(encoder, chw, root)
    if _valid(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting the same file
        try:
            if _valid(path):
                return path
            _export_atomically(encoder, chw, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _export_atomically(encoder: Encoder, chw: tuple[int, int, int], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        dummy = torch.zeros(2, *chw)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
            # the TorchScript exporter needs no extra package (the dynamo one wants onnxscript)
            # eval() first: the exporter restores the wrapper's mode afterwards, recursively, and a fresh
            # module is in training mode, which would leave BatchNorm using batch statistics
            torch.onnx.export(_TorchOnly(encoder.backbone).eval(), (dummy,), tmp, dynamo=False,
                              opset_version=OPSET, input_names=["x"], output_names=["y"], do_constant_folding=True,
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        encoder.train(encoder.training)  # a frozen encoder's backbone stays in eval mode whatever happened above
        meta = {"sha256": _file_sha(Path(tmp)), "size": os.path.getsize(tmp), "encoder": encoder.name,
                "fingerprint": encoder.fingerprint, "input": list(chw), "torch": torch.__version__,
                "opset": OPSET, "export_version": EXPORT_VERSION}
        os.replace(tmp, path)
        _write_atomically(path.with_suffix(".json"), json.dumps(meta, indent=1))
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        raise PvrError(f"encoder {encoder.name} could not be exported to ONNX ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); use --runtime torch") from e


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class _TorchOnly(torch.nn.Module):
    """The backbone's own torch forward, even while a runtime has replaced ``backbone.forward``."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return _torch_forward(self.backbone)(x)


def _torch_forward(backbone: torch.nn.Module) -> Callable:
    return getattr(backbone, "_pvr_torch_forward", None) or backbone.forward


# -- sessions ---------------------------------------------------------------------
def _session(runtime: str, path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"x": x})[0]
    if runtime == "openvino":
        import openvino as ov

        # f32 precision: on CPUs with bf16 units OpenVINO would otherwise compute in bf16
        compiled = ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[compiled.output(0)], copy=True)
    raise ValueError(runtime)


def max_rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """``max|got - ref| / max|ref|`` (the tolerance compares it with ``RTOL`` plus ``ATOL / max|ref|``)."""
    diff = float((got.float() - ref.float()).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return diff / max(scale, ATOL / RTOL)


def within_tolerance(got: torch.Tensor, ref: torch.Tensor) -> bool:
    if got.shape != ref.shape or not torch.isfinite(got).all():
        return False
    return float((got.float() - ref.float()).abs().max()) <= RTOL * float(ref.abs().max()) + ATOL


@dataclass
class RuntimeInfo:
    """What runs an encoder's backbone, and why: recorded in the features' ``runtime`` attribute."""

    runtime: str = "torch"
    requested: str = "torch"
    threads: int = 1
    img_per_s: dict[str, float] = field(default_factory=dict)  # auto's measurement
    max_rel_error: dict[str, float] = field(default_factory=dict)  # per input size "CxHxW"
    note: str = ""

    def as_attrs(self) -> dict:
        return {"runtime": self.runtime, "requested": self.requested, "threads": self.threads,
                "img_per_s": {k: round(v, 2) for k, v in self.img_per_s.items()},
                "max_rel_error": self.max_rel_error, "tolerance": {"rtol": RTOL, "atol": ATOL}}


class RuntimeForward:
    """Replaces ``backbone.forward``: runs the exported backbone, checked against torch per input size."""

    def __init__(self, encoder: Encoder, runtime: str, info: RuntimeInfo, *, fallback: bool,
                 root: Path | None = None):
        self.encoder, self.runtime, self.info, self.fallback, self.root = encoder, runtime, info, fallback, root
        self.torch_forward = _torch_forward(encoder.backbone)
        self.threads = info.threads  # the sessions' intra-op threads from now on (:func:`use_threads`)
        self.sessions: dict[tuple[int, ...], Callable] = {}  # (C, H, W, threads) → session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.info.runtime == "torch" or x.ndim != 4:
            return self.torch_forward(x)
        chw = tuple(int(s) for s in x.shape[1:])
        run = self.sessions.get((*chw, self.threads)) or self._build(chw, x)
        if run is None:  # auto fell back to torch
            return self.torch_forward(x)
        out = run(np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()))
        return torch.from_numpy(out).to(x.device)

    def _build(self, chw: tuple[int, ...], x: torch.Tensor) -> Callable | None:
        try:
            path = export(self.encoder, chw, self.root)
            run = _load(self.runtime, path, self.threads, self.encoder, chw, self.root)
            sample = x[:CHECK_FRAMES].detach().to("cpu", torch.float32).contiguous()
            with torch.no_grad():
                ref = self.torch_forward(sample.to(x.device)).cpu().float()
            got = torch.from_numpy(run(sample.numpy()))
            err = max_rel_error(got.reshape(ref.shape) if got.numel() == ref.numel() else got, ref)
            self.info.max_rel_error["x".join(map(str, chw))] = err
            if not within_tolerance(got.reshape(ref.shape) if got.numel() == ref.numel() else got, ref):
                raise PvrError(f"{self.runtime}'s {self.encoder.name} features differ from PyTorch's by "
                               f"{err:.2e} of their magnitude (tolerance {RTOL:g}); use --runtime torch")
        except PvrError as e:
            if not self.fallback:
                raise
            print(f"WARN: {e}; running {self.encoder.name} with torch instead", file=sys.stderr, flush=True)
            self.info.runtime, self.info.note = "torch", str(e)
            return None
        self.sessions[(*chw, self.threads)] = run
        return run


def _load(runtime: str, path: Path, threads: int, encoder: Encoder, chw, root) -> Callable:
    """A session over ``path``; a file the runtime cannot read is exported again once."""
    try:
        return _session(runtime, path, threads)
    except Exception:  # noqa: BLE001  (a damaged file raises whatever the runtime's parser raises)
        path.with_suffix(".json").unlink(missing_ok=True)
        path = export(encoder, chw, root)
    try:
        return _session(runtime, path, threads)
    except Exception as e:  # noqa: BLE001
        raise PvrError(f"{runtime} cannot run the exported {encoder.name} ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); use --runtime torch") from e


# -- choosing ---------------------------------------------------------------------
def runtime_info(encoder: Encoder) -> RuntimeInfo:
    fwd = encoder.backbone.__dict__.get("forward")
    if isinstance(fwd, RuntimeForward):
        return fwd.info
    return encoder.__dict__.get("_pvr_runtime_info") or RuntimeInfo(threads=torch.get_num_threads())


def use_threads(encoder: Encoder, threads: int) -> None:
    """Run ``encoder`` on ``threads`` intra-op threads from its next call on: torch's, and its runtime's.

    ONNX Runtime and OpenVINO fix their threads when a session is built, so a runtime
    keeps one session per thread count it has been asked for (the evaluation process
    uses at most two: its share of the cores, and all of them for the final evaluation
    or, with --adaptive_threads, while the trainer waits); each is checked against
    torch when it is built, like the first.
    Call it from the thread that runs the encoder (OpenMP's setting is per thread)."""
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    fwd = encoder.backbone.__dict__.get("forward") if isinstance(encoder.backbone, torch.nn.Module) else None
    if isinstance(fwd, RuntimeForward):
        fwd.threads = threads


def record_provenance(arr, encoder: Encoder) -> None:
    """Add this run's runtime to a feature array's ``runtime`` attribute (one entry per distinct runtime)."""
    entry = runtime_info(encoder).as_attrs()
    seen = [e for e in arr.attrs.get("runtime", []) if isinstance(e, dict)]
    if not any(e.get("runtime") == entry["runtime"] for e in seen):
        arr.attrs["runtime"] = seen + [entry]


def _supports(encoder: Encoder) -> str:
    """Why ``encoder`` cannot use an exported runtime ('' when it can)."""
    if encoder.input_key != "obs":
        return f"{encoder.name} encodes state vectors, not frames"
    if encoder.trainable:
        return f"{encoder.name} is being fine-tuned (an exported graph has no gradients)"
    if type(encoder)._forward is not Encoder._forward or not isinstance(encoder.backbone, torch.nn.Module):
        return f"{encoder.name} runs its own forward pass (e.g. a concatenation of encoders)"
    return ""


def _install(encoder: Encoder, runtime: str, info: RuntimeInfo, *, fallback: bool, root: Path | None) -> None:
    remove_runtime(encoder)
    if runtime == "torch":
        return
    bb = encoder.backbone
    bb._pvr_channels_last = encoder.channels_last
    encoder.set_layout(micro_batch=encoder.micro_batch, channels_last=False)  # runtimes take NCHW arrays
    bb._pvr_torch_forward = bb.forward
    bb.forward = RuntimeForward(encoder, runtime, info, fallback=fallback, root=root)


def remove_runtime(encoder: Encoder) -> Encoder:
    """Back to torch (the backbone's own forward, in the layout it had)."""
    bb = encoder.backbone
    if isinstance(bb.__dict__.get("forward"), RuntimeForward):
        del bb.forward
        del bb._pvr_torch_forward
        encoder.set_layout(micro_batch=encoder.micro_batch, channels_last=bb.__dict__.pop("_pvr_channels_last"))
    return encoder


def sample_frames(encoder: Encoder, n: int, frame_shape=None, seed: int = 0) -> torch.Tensor:
    """A deterministic batch of frames at the encoder's input size (or ``frame_shape``): smooth scenes plus noise."""
    h, w = (int(frame_shape[0]), int(frame_shape[1])) if frame_shape else (None, None)
    size = (encoder.preprocess.input_size if encoder.preprocess else None) or 224
    h, w = h or size, w or size
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    phase = torch.rand(n, 3, 1, 1, generator=g) * 6.28
    scene = 127 + 100 * torch.sin(6 * xx + 4 * yy + phase) * torch.cos(3 * yy - phase)
    noise = 20 * torch.randn(n, 3, h, w, generator=g)
    return (scene + noise).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _measure(encoder: Encoder, frames: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        encoder(frames[: max(1, encoder.micro_batch or 1)])  # warm-up (and, for a runtime, export + check)
        done, t0 = 0, time.perf_counter()
        while True:
            encoder(frames)
            done += frames.shape[0]
            if time.perf_counter() - t0 >= seconds:
                return done / (time.perf_counter() - t0)


def apply_runtime(encoder: Encoder, runtime: str = "torch", *, frame_shape=None, seconds: float = 1.0,
                  root: Path | None = None, verbose: bool = True, threads: int | None = None) -> Encoder:
    """Run ``encoder``'s backbone with ``runtime`` (in place; returns the encoder).

    ``auto`` times each importable runtime on a representative batch (``frame_shape``
    or the encoder's input size) for about ``seconds`` each and keeps the fastest;
    the choice and the figures are in :func:`runtime_info` and printed to stderr.
    ``threads``: the runtime's intra-op threads (default: the cores this process may
    use; the evaluation process passes its share, as it does to torch).
    Explicit runtimes raise :class:`PvrError` when they are not installed, cannot
    run this encoder, or disagree with torch beyond the tolerance.
    """
    _check_name(runtime)
    threads = max(1, int(threads or available_cores()))
    encoder.__dict__.pop("_pvr_runtime_info", None)
    if runtime == "torch":
        remove_runtime(encoder)
        return encoder
    why_not = _supports(encoder)
    if runtime != "auto":
        if why_not:
            raise PvrError(f"--runtime {runtime} cannot run this encoder: {why_not}; use --runtime torch")
        if not is_available(runtime):
            raise PvrError(f"--runtime {runtime} needs {runtime} and onnx: {_INSTALL}")
        info = RuntimeInfo(runtime=runtime, requested=runtime, threads=threads)
        _install(encoder, runtime, info, fallback=False, root=root)
        encoder(sample_frames(encoder, 2, frame_shape))  # export and check now, not mid-run
        return encoder
    info = RuntimeInfo(runtime="torch", requested="auto", threads=threads)
    candidates = [r for r in RUNTIMES[1:] if is_available(r)]
    if why_not or torch.cuda.is_available() or not candidates:
        info.note = why_not or ("a GPU runs torch" if torch.cuda.is_available() else f"no runtime installed: {_INSTALL}")
        encoder._pvr_runtime_info = info
        _report(encoder, info, verbose)
        return encoder
    frames = sample_frames(encoder, max(8, 2 * (encoder.micro_batch or 4)), frame_shape)
    best = ("torch", _measure(encoder, frames, seconds))
    info.img_per_s["torch"] = best[1]
    for r in candidates:
        trial = RuntimeInfo(runtime=r, requested="auto", threads=threads, max_rel_error=info.max_rel_error)
        _install(encoder, r, trial, fallback=True, root=root)
        speed = _measure(encoder, frames, seconds)
        if trial.runtime == r:  # it passed the check
            info.img_per_s[r] = speed
            best = max(best, (r, speed), key=lambda t: t[1])
        else:
            info.note += f"{r}: {trial.note} "
        remove_runtime(encoder)
    info.runtime = best[0]
    _install(encoder, best[0], info, fallback=True, root=root)
    encoder._pvr_runtime_info = info  # also when torch won: the measurement is provenance too
    if best[0] != "torch":  # the chosen session was checked during the measurement; build it again for this info
        encoder(frames[:2])
    _report(encoder, info, verbose)
    return encoder


def _report(encoder: Encoder, info: RuntimeInfo, verbose: bool) -> None:
    if not verbose:
        return
    figures = ", ".join(f"{k} {v:.1f}" for k, v in info.img_per_s.items())
    print(f"runtime auto: {encoder.name} runs with {info.runtime} ({info.threads} threads)"
          + (f"; measured img/s: {figures}" if figures else "") + (f"; {info.note.strip()}" if info.note else ""),
          file=sys.stderr, flush=True)
