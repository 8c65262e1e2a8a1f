"""SigLIP and SigLIP 2 image towers (``siglip_base``, ``siglip2_base``, ...): the attention-pooled output.

Weights are open_clip's release of Google's checkpoints, the Hugging Face repos
``timm/ViT-B-16-SigLIP2`` etc., read from a snapshot already in the Hugging Face cache
(``$HF_HOME/hub`` or ``$HF_HUB_CACHE``), or from ``$PVR_MODEL_PATH/<repo name>/`` holding
the repo's ``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``). Nothing
is downloaded and no code from the repo is run. Only the ``visual.*`` tensors are used
(the text tower and the logit scale/bias are ignored).

The network is open_clip's tower for the config (a timm ViT trunk without a CLS
token and its MAP head, ``timm_pool="map"``, no projection); the feature is the MAP
head's pooled vector, what ``encode_image`` returns before normalisation.
Preprocessing is open_clip's for these models: resize the frame to the model's
square size regardless of its aspect ratio (``resize_mode="squash"``, bicubic,
antialiased on the uint8 image), no crop, mean = std = 0.5.

Token options (:mod:`pvr.encoders.tokens`) read the trunk's tokens: ``pool=mean``,
``max``, ``grid``, ``grid=N``, ``block=K``; there is no CLS token, so ``pool=cls`` is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess, center_crop
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError

MEAN = STD = (0.5, 0.5, 0.5)
LICENCE = "Apache-2.0"
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class SquashPreprocess(Preprocess):
    """Resize to ``resize``×``resize`` whatever the aspect ratio (torchvision ``Resize((s, s))``), then normalise.

    The uint8 rounding and the centre crop after it are :class:`Preprocess`'s; ``crop`` equal
    to ``resize`` is a no-op that keeps the input size fixed.
    """

    squash: bool = True

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"encoders take frames shaped (B, H, W, 3); got {tuple(frames.shape)}")
        x = frames.permute(0, 3, 1, 2).float()
        size = (self.resize, self.resize)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=self.antialias)
            if self.uint8:
                x = x.clamp(0, 255).round()
        if self.crop is not None and self.crop != self.resize:
            x = center_crop(x, self.crop)
        x = x / self.scale
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class Model:
    config: str  # open_clip model config = Hugging Face repo name under timm/
    #: trunk overrides (tests build tiny trunks of the same layout)
    overrides: dict = field(default_factory=dict)

    @property
    def repo(self) -> str:
        return f"timm/{self.config}"


MODELS = {
    "siglip_base": Model("ViT-B-16-SigLIP"),
    "siglip_base_256": Model("ViT-B-16-SigLIP-256"),
    "siglip_large_256": Model("ViT-L-16-SigLIP-256"),
    "siglip_so400m": Model("ViT-SO400M-14-SigLIP"),
    "siglip2_base": Model("ViT-B-16-SigLIP2"),
    "siglip2_base_256": Model("ViT-B-16-SigLIP2-256"),
    "siglip2_large_256": Model("ViT-L-16-SigLIP2-256"),
    "siglip2_so400m": Model("ViT-SO400M-14-SigLIP2"),
}


def spec(name: str) -> weights.WeightsSpec:
    m = MODELS[name]
    return weights.WeightsSpec(f"{m.config}/{HF_FILES[0]}", f"https://huggingface.co/{m.repo}",
                               alternates=(f"{m.config}/{HF_FILES[1]}",), hf=(m.repo, HF_FILES))


def vision_cfg(name: str) -> dict:
    import open_clip

    cfg = open_clip.get_model_config(MODELS[name].config)
    if cfg is None:
        raise PvrError(f"open_clip has no model config {MODELS[name].config!r}; upgrade open_clip_torch")
    return cfg


def build(name: str):
    """open_clip's SigLIP image tower (a ``TimmModel``: timm trunk + MAP head), randomly initialised."""
    import timm
    from open_clip.model import _build_vision_tower

    cfg = vision_cfg(name)
    tower = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    overrides = MODELS[name].overrides
    if overrides:  # the same trunk as open_clip builds it for proj="none", at another size
        vc = cfg["vision_cfg"]
        tower.trunk = timm.create_model(vc["timm_model_name"], pretrained=False, num_classes=0,
                                        global_pool=vc["timm_pool"], **overrides)
    return tower


def image_size(name: str) -> int:
    return int(vision_cfg(name)["vision_cfg"]["image_size"])


def load(tower, path) -> None:
    state = weights.load_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(k.startswith("visual.") for k in state):
        first = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise PvrError(f"{path} has no open_clip image tower (no 'visual.*' keys; first keys: {first})")
    visual, _text = weights.select_prefix(state, "visual.")  # text tower, logit scale and bias: unused
    weights.load_strict(tower, visual, source=path)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    path = spec(name).require(name) if pretrained else None
    tower = build(name)
    trunk, size = tower.trunk, image_size(name)
    side = size // trunk.patch_embed.patch_size[0]
    backbone, dim, ident = token_opts.apply(trunk, tokens, name=name, native_dim=trunk.num_features,
                                            width=trunk.embed_dim, depth=len(trunk.blocks), patch_grid=(side, side),
                                            has_cls=False)
    if tokens is None:
        backbone = tower
    source = "random init (pretrained=False)"
    if path is not None:
        load(tower, path)
        source = str(path)
    pre = SquashPreprocess(resize=size, crop=size, interpolation="bicubic", antialias=True, uint8=True,
                           mean=MEAN, std=STD)
    return Encoder(name, backbone, pre, dim=dim, trainable=train, weights_source=source, extra_identity=ident,
                   micro_batch=8)


def _shape(name: str) -> tuple[int, int]:
    """(width, patch grid side) from the timm trunk's name, without building it."""
    vc = vision_cfg(name)["vision_cfg"]
    patch = int(vc["timm_model_name"].split("_patch")[1].split("_")[0])
    return int(vision_cfg(name)["embed_dim"]), int(vc["image_size"]) // patch


for _name, _m in MODELS.items():
    _width, _side = _shape(_name)
    register_encoder(_name, family="siglip2" if "SigLIP2" in _m.config else "siglip",
                     weights=spec(_name).describe() + f" (or the Hugging Face cache, {_m.repo})", dim=_width,
                     input_size=image_size(_name), present=(lambda n=_name: spec(n).present()),
                     published=spec(_name).published, licence=LICENCE,
                     description=f"{_m.config} image tower (open_clip), MAP-head pooled output")(
        lambda n=_name, **kw: _make(n, **kw))
    token_opts.enable(_name, width=_width, patch_grid=(_side, _side), pools=("mean", "max", "grid"),
                      default_pool="mean")
