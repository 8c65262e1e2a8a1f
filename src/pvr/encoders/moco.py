"""MoCo (v2-style ResNet-50) encoders under the original's names and file names.

Checkpoints are MoCo's own layout: ``{"state_dict": {"module.encoder_q.<resnet key>": ...,
"module.encoder_k.*", "module.queue", ...}}``; only the query encoder is used, and
its projection head (``fc.*``) and the layers after a tap are the only keys left
over. ``*_l3`` / ``*_l4`` are the compressed taps (``taps.py``); ``*_uber_<layers>``
concatenate taps (``concat.py``). The augmentations the checkpoints were trained
with: ``aug`` = MoCo v2's, ``croponly`` = random crops only, ``coloronly`` = colour
jitter only; ``_places`` = trained on Places, ``_habitat`` / ``_mujoco`` / ``_uber``
= in-domain frames (Habitat, MuJoCo, both).

File names: the original's ``distributed`` branch loads ``moco_aug_habitat.pth`` /
``moco_croponly_habitat.pth``, its ``main`` branch ``..._habitat_64.pth``; both are
accepted, the ``distributed`` name first. ``demy`` is the original's "DEMYSTIFY"
entry: ``demy.pth``, loaded exactly as the MoCo checkpoints (query encoder,
pooled ResNet-50, 2048 values) — by its name, the MoCo model of Purushwalkam &
Gupta, "Demystifying Contrastive Self-Supervised Learning" (2020); the original
does not say more.
"""
from __future__ import annotations

from pvr.encoders import taps

#: name → (tap, file name the original loads[, other names it used for the same file])
MOCO = {
    "moco_aug": ("conv5", "moco_aug.pth.tar"),
    "moco_aug_places": ("conv5", "moco_aug_places.pth.tar"),
    "moco_aug_habitat": ("conv5", "moco_aug_habitat.pth", "moco_aug_habitat_64.pth"),
    "moco_aug_mujoco": ("conv5", "moco_aug_mujoco.pth"),
    "moco_aug_uber": ("conv5", "moco_aug_uber.pth"),
    "moco_aug_l3": ("l3", "moco_aug_l3.pth"),
    "moco_aug_l4": ("l4", "moco_aug_l4.pth"),
    "moco_aug_places_l3": ("l3", "moco_aug_places_l3.pth"),
    "moco_aug_places_l4": ("l4", "moco_aug_places_l4.pth"),
    "moco_croponly": ("conv5", "moco_croponly.pth"),
    "moco_croponly_places": ("conv5", "moco_croponly_places.pth"),
    "moco_croponly_habitat": ("conv5", "moco_croponly_habitat.pth", "moco_croponly_habitat_64.pth"),
    "moco_croponly_mujoco": ("conv5", "moco_croponly_mujoco.pth"),
    "moco_croponly_uber": ("conv5", "moco_croponly_uber.pth"),
    "moco_croponly_l3": ("l3", "moco_croponly_l3.pth"),
    "moco_croponly_l4": ("l4", "moco_croponly_l4.pth"),
    "moco_croponly_places_l3": ("l3", "moco_croponly_places_l3.pth"),
    "moco_croponly_places_l4": ("l4", "moco_croponly_places_l4.pth"),
    "moco_coloronly": ("conv5", "moco_coloronly.pth"),
    "demy": ("conv5", "demy.pth"),
}

for _name, (_tap, _file, *_others) in MOCO.items():
    taps.register_tap(_name, _tap, _file, family="moco", alternates=tuple(_others),
                      description=("MoCo ResNet-50 (Demystifying contrastive SSL), global-pooled" if _name == "demy"
                                   else "MoCo ResNet-50 " + ("global-pooled" if _tap == "conv5" else
                                                             f"{_tap} + trained compression block")))
