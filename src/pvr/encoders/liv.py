"""LIV (``liv_rn50``): a CLIP RN50 fine-tuned on EpicKitchens for language-image values.

LIV's ``model.pt`` holds ``{"liv": {"module.model.<OpenAI CLIP key>": ...}}`` (the whole
CLIP model, inside LIV, inside ``DataParallel``). Only the image tower
(``module.model.visual.*``) is built — open_clip's ``ModifiedResNet``, the same
modules and key names as OpenAI's — and its output is ``encode_image`` without
normalisation (1024 values), what LIV's ``forward(modality="vision")`` returns. The
text tower and logit scale are ignored; any key outside ``module.model.`` is an error.

Preprocessing is LIV's tensor path (``LIV.forward`` → ``transforms_tensor``): frames
/255 (LIV guesses this from ``max > 10``; pvr always divides), ``Resize(224)`` of the
float image — bilinear, not antialiased, not rounded (torchvision ≤ 0.14 on tensors,
LIV's pinned torch ≤ 1.13.1) — ``CenterCrop(224)``, OpenAI's CLIP mean/std.

File: ``liv_rn50.pt`` in ``$PVR_MODEL_PATH``, or ``~/.liv/resnet50/model.pt`` where
``load_liv`` keeps it.
"""
from __future__ import annotations

from pvr.encoders import clip, weights
from pvr.encoders.base import Encoder, Preprocess
from pvr.encoders.registry import register_encoder
from pvr.encoders.upstream import UpstreamSpec, nested_state

NAME = "liv_rn50"
LICENCE = "MIT"
SPEC = UpstreamSpec("liv_rn50.pt", "https://huggingface.co/jasonyma/LIV/resolve/main/model.pt (LIV's model.pt)",
                    cache=("~/.liv/resnet50/model.pt",))
#: the published file is DataParallel-wrapped; LIV's trainer snapshots are not
PREFIXES = ("module.model.", "model.")
DIM = 1024
MICRO_BATCH = 4


def preprocess() -> Preprocess:
    return Preprocess(resize=224, crop=224, interpolation="bilinear", antialias=False, uint8=False,
                      mean=clip.OPENAI_MEAN, std=clip.OPENAI_STD)


def load(tower, path) -> None:
    state, others = nested_state(path, "liv", PREFIXES)
    visual, _text = weights.select_prefix(state, "visual.")  # text tower, logit_scale: unused
    weights.load_strict(tower, visual, source=path, extra_unexpected=others)


def _make(train: bool = False, pretrained: bool = True) -> Encoder:
    path = SPEC.require(NAME) if pretrained else None
    tower = clip.image_tower("clip_rn50")
    source = "random init (pretrained=False)"
    if path is not None:
        load(tower, path)
        source = str(path)
    return Encoder(NAME, tower.float(), preprocess(), dim=DIM, trainable=train, weights_source=source,
                   micro_batch=MICRO_BATCH)


register_encoder(NAME, family="liv", weights=SPEC.describe(), dim=DIM, input_size=224,
                 present=SPEC.present, published=SPEC.published, licence=LICENCE,
                 description="LIV CLIP RN50 image tower (encode_image), EpicKitchens language-image values")(
    lambda **kw: _make(**kw))
