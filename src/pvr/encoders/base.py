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

    The steps and their order are the original project's torchvision pipeline,
    re-stated as batched tensor ops so that features match it exactly:

    1. ``swap_rows`` (Mask R-CNN's original only): exchange image rows 0 and 2;
       ``bgr``: reverse the channel order.
    2. ``resize``: the shorter side to ``resize`` and the longer side to
       ``int(resize * long / short)`` (torchvision ``Resize(int)``), with
       ``interpolation``. ``antialias=False`` is what torchvision did to tensors
       when the original ran (antialiasing only matters when shrinking frames
       larger than ``resize``). ``uint8=True``: the frames are resized as uint8
       images, so the result is clamped (bicubic) and rounded to whole values
       before anything else, as torchvision does for uint8 tensors.
    3. ``crop``: a centre square, offsets rounded as torchvision's ``CenterCrop``
       (zero padding when the image is smaller).
    4. divide by ``scale``, then subtract ``mean`` and divide by ``std``.
    """

    resize: int | None = 256
    crop: int | None = 224
    interpolation: str = "bilinear"
    scale: float = 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    bgr: bool = False
    antialias: bool = False
    uint8: bool = True
    swap_rows: bool = False

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"encoders take frames shaped (B, H, W, 3); got {tuple(frames.shape)}")
        x = frames.permute(0, 3, 1, 2)
        if self.swap_rows and x.shape[2] >= 3:
            rows = torch.arange(x.shape[2], device=x.device)
            rows[[0, 2]] = rows[[2, 0]]
            x = x[:, :, rows]
        if self.bgr:
            x = x.flip(1)
        x = x.float()
        if self.resize is not None:
            size = resized_size(tuple(x.shape[-2:]), self.resize)
            if size != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False,
                                  antialias=self.antialias)
                if self.uint8:
                    x = (x.clamp(0, 255) if self.interpolation == "bicubic" else x).round()
        if self.crop is not None:
            x = center_crop(x, self.crop)
        x = x / self.scale
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    @property
    def input_size(self) -> int | None:
        return self.crop or self.resize


def resized_size(hw: tuple[int, int], short: int) -> tuple[int, int]:
    """torchvision ``Resize(short)``'s output size: the longer side is truncated, not rounded."""
    h, w = hw
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``CenterCrop(size)`` on (B, C, H, W): zero-pad if smaller, offsets rounded half to even."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        pw, ph = max(size - w, 0), max(size - h, 0)
        x = F.pad(x, (pw // 2, (pw + 1) // 2, ph // 2, (ph + 1) // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top: top + size, left: left + size]


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
    def _probe_dim(self, height: int | None = None, width: int | None = None) -> int:
        size = self.preprocess.input_size if self.preprocess else None
        dummy = torch.zeros(1, height or size or 64, width or size or 64, 3, dtype=torch.uint8)
        with torch.no_grad():
            return int(self._forward(dummy.to(_device_of(self.backbone))).shape[1])

    @property
    def native_size(self) -> bool:
        """True when frames are not cropped to a fixed size, so ``dim`` depends on the frame size."""
        return self.input_key == "obs" and self.preprocess is not None and self.preprocess.crop is None

    def dim_for(self, frame_shape) -> int:
        """Features per RGB view for frames shaped (H, W, ...): ``dim`` unless :attr:`native_size`."""
        if not self.native_size or frame_shape is None or len(frame_shape) < 2:
            return self.dim
        return self._probe_dim(int(frame_shape[0]), int(frame_shape[1]))

    def fit_frames(self, frame_shape) -> "Encoder":
        """Set ``dim`` for frames shaped (H, W, ...) (only :attr:`native_size` encoders change)."""
        self.dim = self.dim_for(frame_shape)
        return self

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


def _device_of(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    if p is None:
        p = next(iter(module.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


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
