"""CLIP image towers: ``clip_rn50`` (RN50, 1024-d), ``clip_vit`` (ViT-B/32, 512-d),
``clip_vitb16`` (ViT-B/16, 512-d) and ``clip_vitl14`` (ViT-L/14, 768-d).

Weights are OpenAI's, found where users already have them, never downloaded:

1. ``RN50.pt`` / ``ViT-B-32.pt`` / ``ViT-B-16.pt`` / ``ViT-L-14.pt`` in ``$PVR_MODEL_PATH``, the torch hub cache, or
   ``~/.cache/clip`` — where OpenAI's ``clip.load`` (which the original used) and
   open_clip's URL download put them. These are TorchScript archives; their tensors
   are read with a restricted unpickler (no code from the file is run).
2. open_clip's Hugging Face copy (``timm/resnet50_clip.openai``,
   ``timm/vit_base_patch32_clip_224.openai``) in the Hugging Face cache.

Only the image tower is built (open_clip's ``ModifiedResNet`` / ``VisionTransformer``
with QuickGELU, as OpenAI trained them); the output is ``encode_image`` without
normalisation, as in the original. Preprocessing is the original's for CLIP: resize
the uint8 frame's shorter side to 224 (bicubic, antialiased, rounded to uint8), centre
crop 224, OpenAI's mean/std (the same for the ViTs added since: OpenAI's ``preprocess``).

The ViT towers take the token options of :mod:`pvr.encoders.tokens`
(``clip_vitb16:pool=mean``, ``:grid=4``, ``:block=8``): they read the transformer's
tokens, after ``ln_post`` unless ``norm=no``, without the projection.
"""
from __future__ import annotations

from pvr.encoders import tokens as token_opts
from pvr.encoders import weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.errors import PvrError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: pvr name → (open_clip config, OpenAI file, Hugging Face repo, embedding size)
MODELS = {
    "clip_rn50": ("RN50-quickgelu", "RN50.pt", "timm/resnet50_clip.openai", 1024),
    "clip_vit": ("ViT-B-32-quickgelu", "ViT-B-32.pt", "timm/vit_base_patch32_clip_224.openai", 512),
    "clip_vitb16": ("ViT-B-16-quickgelu", "ViT-B-16.pt", "timm/vit_base_patch16_clip_224.openai", 512),
    "clip_vitl14": ("ViT-L-14-quickgelu", "ViT-L-14.pt", "timm/vit_large_patch14_clip_224.openai", 768),
}
LICENCE = "MIT (OpenAI CLIP)"
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: measured in bench/bench_encoders.py
MICRO_BATCH = {"clip_rn50": 4, "clip_vit": 8, "clip_vitb16": 8, "clip_vitl14": 8}


def _url(cfg: str) -> str:
    from open_clip.pretrained import get_pretrained_url

    return get_pretrained_url(cfg.replace("-quickgelu", ""), "openai")


def spec(name: str) -> weights.WeightsSpec:
    cfg, filename, repo, _ = MODELS[name]
    return weights.WeightsSpec(filename, f"{_url(cfg)} (or open_clip.create_model('{cfg[:-10]}', pretrained='openai'))",
                               extra_dirs=(weights.clip_cache_dir,), hf=(repo, _HF_FILES))


def image_tower(name: str):
    """open_clip's image tower for ``name``, randomly initialised."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(MODELS[name][0])
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=cfg.get("quick_gelu", False))


def load_visual(tower, path) -> None:
    """Load the ``visual.*`` tensors of an OpenAI / open_clip checkpoint into ``tower``."""
    state = weights.load_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PvrError(f"{path} holds a {type(state).__name__}, not CLIP weights")
    prefix = next((p for p in ("visual.", "module.visual.") if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        raise PvrError(f"{path} has no CLIP image tower (no 'visual.*' keys; first keys: {list(state)[:5]})")
    # everything outside visual.* (text tower, logit scale, OpenAI's input_resolution ...) is unused
    visual, _text = weights.select_prefix(state, prefix)
    weights.load_strict(tower, visual, source=path)


def _token_shape(name: str) -> tuple[int, int, tuple[int, int]] | None:
    """(width, depth, patch grid at 224 px) of a ViT tower; ``None`` for the ResNet."""
    import open_clip

    vision = open_clip.get_model_config(MODELS[name][0])["vision_cfg"]
    if not vision.get("patch_size"):
        return None
    side = 224 // vision["patch_size"]
    return vision["width"], vision["layers"], (side, side)


def _make(name: str, train: bool = False, pretrained: bool = True,
          tokens: token_opts.TokenSpec | None = None) -> Encoder:
    path = spec(name).require(name) if pretrained else None
    tower = image_tower(name)
    backbone, dim, ident = tower, MODELS[name][3], {}
    if tokens is not None:
        width, depth, grid = _token_shape(name)
        backbone, dim, ident = token_opts.apply(tower, tokens, name=name, native_dim=dim, width=width, depth=depth,
                                                patch_grid=grid, tokens_fn=token_opts.open_clip_tokens)
    source = "random init (pretrained=False)"
    if path is not None:
        load_visual(tower, path)
        source = str(path)
    tower.float()
    # the original's: torchvision Resize(224, bicubic, antialias=True) on uint8 frames (rounded), crop 224
    pre = Preprocess(resize=224, crop=224, interpolation="bicubic", antialias=True, uint8=True,
                     mean=OPENAI_MEAN, std=OPENAI_STD)
    return Encoder(name, backbone, pre, dim=dim, trainable=train, weights_source=source,
                   micro_batch=MICRO_BATCH[name], extra_identity=ident)


for _name, (_cfg, _file, _repo, _dim) in MODELS.items():
    register_encoder(_name, family="clip", weights=f"file:{_file} (or open_clip's cache)", dim=_dim, input_size=224,
                     present=(lambda n=_name: spec(n).present()), published=_url(_cfg), licence=LICENCE,
                     description=f"OpenAI CLIP {_cfg[:-10]} image tower (encode_image)")(
        lambda n=_name, **kw: _make(n, **kw))
    if _token_shape(_name) is not None:
        _w, _d, _g = _token_shape(_name)
        token_opts.enable(_name, width=_w, patch_grid=_g)
