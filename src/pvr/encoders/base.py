"""The ``Encoder`` type: a frozen module from uint8 frames to flat feature vectors.

An encoder owns its preprocessing (resize, crop, normalisation, channel order), so
callers only ever hand it raw frames as they come out of an environment or a
dataset: a uint8 tensor (B, H, W, 3). Its ``fingerprint`` keys every cache of
features: it changes when the name, the weights or the preprocessing change, and
only then.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Frame preprocessing, applied inside the encoder (torch ops, batched).

    ``resize`` resizes the shorter side (torchvision ``Resize(int)``), then
    ``crop`` takes a centre square. ``scale`` divides the raw 0..255 values
    before ``mean``/``std``; ``bgr`` swaps channel order first.
    """

    resize: int | None = 256
    crop: int | None = 224
    interpolation: str = "bilinear"
    scale: float = 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    bgr: bool = False

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"encoders take frames shaped (B, H, W, 3); got {tuple(frames.shape)}")
        x = frames.permute(0, 3, 1, 2).float()
        if self.bgr:
            x = x.flip(1)
        if self.resize is not None:
            h, w = x.shape[-2:]
            s = self.resize / min(h, w)
            size = (max(self.resize, round(h * s)), max(self.resize, round(w * s)))
            if size != (h, w):
                x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
        if self.crop is not None:
            h, w = x.shape[-2:]
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[..., top : top + self.crop, left : left + self.crop]
        x = x / self.scale
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    @property
    def input_size(self) -> int | None:
        return self.crop or self.resize


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes, dtypes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Encoder(nn.Module):
    """Frames (B, H, W, 3) uint8 → features (B, dim) float32.

    ``backbone`` maps a preprocessed float batch (B, 3, h, w) to any tensor whose
    leading dimension is B; it is flattened. ``input_key`` names the dataset field
    the encoder consumes: ``"obs"`` for image encoders, ``"true_state"`` for the
    low-dimensional baseline.
    """

    input_key = "obs"

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        preprocess: Preprocess | None,
        *,
        dim: int | None = None,
        trainable: bool = False,
        weights_source: str = "",
        extra_identity: dict | None = None,
        micro_batch: int | None = 4,
    ):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.trainable = trainable
        self._extra_identity = dict(extra_identity or {})
        self._fingerprint: str | None = None
        self.set_layout(micro_batch=micro_batch, channels_last=True)
        self.set_trainable(trainable)
        self.dim = dim if dim is not None else self._probe_dim()

    def set_layout(self, *, micro_batch: int | None, channels_last: bool) -> "Encoder":
        """How inference is batched and laid out in memory; never changes the features' values' meaning."""
        self.micro_batch, self.channels_last = micro_batch, channels_last
        self.backbone.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return self

    # -- freezing -------------------------------------------------------------
    def set_trainable(self, trainable: bool) -> "Encoder":
        self.trainable = trainable
        for p in self.backbone.parameters():
            p.requires_grad_(trainable)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> "Encoder":
        # A frozen encoder stays in eval mode (BatchNorm statistics, dropout)
        # even when the policy around it is put in training mode.
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()
        return self

    # -- forward --------------------------------------------------------------
    def _probe_dim(self) -> int:
        size = self.preprocess.input_size if self.preprocess else None
        dummy = torch.zeros(1, size or 64, size or 64, 3, dtype=torch.uint8)
        with torch.no_grad():
            return int(self.forward(dummy).shape[1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Frozen inference runs in micro-batches: on CPUs, convnets run fastest on
        # a few images at a time in channels-last layout (EfficientNet-Lite0 here:
        # ~94 img/s at 4 vs ~33 at 32 NCHW; bench/RESULTS.md), so callers can pass
        # any batch size without paying for it.
        if self.micro_batch and frames.shape[0] > self.micro_batch and not (
                self.trainable and torch.is_grad_enabled()):
            return torch.cat([self._forward(chunk) for chunk in frames.split(self.micro_batch)])
        return self._forward(frames)

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(frames) if self.preprocess is not None else frames.float()
        if x.ndim == 4 and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.trainable and torch.is_grad_enabled():
            out = self.backbone(x)
        else:
            with torch.no_grad():
                out = self.backbone(x)
        return out.reshape(out.shape[0], -1).float()

    # -- identity -------------------------------------------------------------
    def identity(self) -> dict:
        return {
            "name": self.name,
            "weights": state_digest(self.backbone),
            "preprocess": asdict(self.preprocess) if self.preprocess else None,
            "input_key": self.input_key,
            **self._extra_identity,
        }

    @property
    def fingerprint(self) -> str:
        """16 hex digits over (name, weights digest, preprocessing)."""
        if self._fingerprint is None or self.trainable:
            blob = json.dumps(self.identity(), sort_keys=True, default=list).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()[:16]
        return self._fingerprint

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.dim}, fingerprint={self.fingerprint}"


def encode(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    """Encode a batch of observations, whatever their kind: (B, dim·views).

    State vectors go to the encoder as they are. Frames with 3k channels (B, H, W, 3k)
    — e.g. image-goal navigation's current + goal views — are k RGB views: each is
    embedded by the same encoder and the features are concatenated in channel order.
    The one place this rule lives: embedding, training and evaluation all call it.
    """
    if encoder.input_key != "obs" or x.ndim != 4 or x.shape[-1] == 3:
        return encoder(x)
    b, h, w, c = x.shape
    if c % 3:
        raise ValueError(f"frames must have 3k channels (RGB views); got {c}")
    k = c // 3
    views = x.reshape(b, h, w, k, 3).permute(0, 3, 1, 2, 4).reshape(b * k, h, w, 3)
    return encoder(views).reshape(b, -1)
