"""``pvr pretrain`` settings: one dataclass whose defaults are MoCo v2's (``main_moco.py --mlp --moco-t 0.2
--aug-plus --cos``), the flags generated from it as ``pvr train``'s are.

Fields in :data:`OPERATIONAL` change how a run executes, never what it computes, so a
resumed run may change them; any other difference from the saved ``config.json``
is refused.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pvr.errors import PvrError


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


METHODS = ("moco", "mae")
ARCHS = {"moco": ("resnet18", "resnet50"), "mae": ("vit_small", "vit_base")}
AUGS = ("aug", "croponly", "coloronly")


@dataclass
class PretrainConfig:
    env: str = _f("", "environments whose frames are used, comma-separated (<data_path>/<env>.zarr)", required=True)
    name: str = _f("", "name of the new encoder: writes NAME.pth and NAME.pvr.json; then --embedding_name NAME",
                   required=True)
    method: str = _f("moco", "self-supervised method (lightly's implementation)", choices=METHODS)
    arch: str | None = _f(None, "backbone: resnet18 or resnet50 (moco; default resnet50), vit_small or vit_base "
                                "(mae; default vit_base)",
                   choices=tuple(a for v in ARCHS.values() for a in v))
    aug: str = _f("aug", "MoCo augmentation: aug = MoCo v2's full set, croponly = random resized crops only, "
                         "coloronly = colour jitter, grayscale and blur only", choices=AUGS)
    tap: str | None = _f(None, "train the paper's compressed-layer model instead: ResNet-50 with a BasicBlock "
                               "squeezing layer3 (l3) or layer4 (l4), trained with the network; NAME then embeds "
                               "that tap, as moco_aug_l3 / moco_aug_l4 do (moco, resnet50 only)",
                         choices=("l3", "l4"))
    data_path: str = _f("pvr_data", "folder holding one dataset per environment: <data_path>/<env>.zarr")
    out: str | None = _f(None, "folder for NAME.pth / NAME.pvr.json (default: $PVR_MODEL_PATH, where "
                               "--embedding_name finds it)")
    save_path: str = _f("pvr_pretrain", "checkpoints, stats.jsonl and tensorboard/ go to <save_path>/<name>/")
    epochs: int = _f(200, "passes over the training frames (MoCo v2: 200)")
    max_steps: int | None = _f(None, "stop after this many gradient steps in all (default: epochs x steps per epoch)")
    batch_size: int = _f(256, "frames per gradient step, all processes together (MoCo v2: 256)")
    image_size: int = _f(224, "side of the square crops the network sees; embedding resizes frames to it")
    learning_rate: float | None = _f(None, "peak learning rate, cosine-decayed per epoch (default: MoCo v2's SGD "
                                           "0.03; MAE's AdamW 1.5e-4 x batch_size / 256)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "SGD weight decay")
    moco_dim: int = _f(128, "MoCo projection size")
    moco_k: int = _f(65536, "MoCo queue (memory bank) size")
    moco_m: float = _f(0.999, "momentum of the key encoder")
    moco_t: float = _f(0.2, "softmax temperature")
    mask_ratio: float = _f(0.75, "MAE: fraction of patches masked")
    decoder_depth: int = _f(8, "MAE: decoder blocks (MAE: 8)")
    holdout: float = _f(0.1, "fraction of episodes kept out of pre-training (chosen by a hash of env and episode "
                             "index, so the split is fixed); recorded in NAME.pvr.json")
    seed: int = _f(0, "random seed (initial weights, frame order, augmentations)")
    num_workers: int | None = _f(None, "data-loading processes (default: one per available core but one, at most 8)")
    checkpoint_every: int = _f(200, "also write a checkpoint every this many steps (always at each epoch's end)")
    force: bool = _f(False, "replace an existing NAME.pth / NAME.pvr.json")
    disable_cuda: bool = _f(False, "train on the CPU even if a GPU is available")
    disable_tensorboard: bool = _f(False, "no TensorBoard event files")
    quiet: bool = _f(False, "no progress bar")

    def validate(self) -> "PretrainConfig":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", self.name or ""):
            raise PvrError(f"--name {self.name!r}: use letters, digits, '_', '-' or '.', e.g. moco_aug_dmc")
        if self.learning_rate is None:
            self.learning_rate = 0.03 if self.method == "moco" else 1.5e-4 * self.batch_size / 256
        if self.arch is None:
            self.arch = ARCHS[self.method][-1]
        if self.arch not in ARCHS[self.method]:
            raise PvrError(f"--method {self.method} trains {' or '.join(ARCHS[self.method])}, not --arch {self.arch}")
        if self.tap is not None and (self.method != "moco" or self.arch != "resnet50"):
            raise PvrError(f"--tap {self.tap} is a MoCo ResNet-50 model: use --method moco --arch resnet50")
        if not self.envs:
            raise PvrError("--env: name at least one dataset, e.g. --env DMC-walker-walk")
        for k in ("epochs", "batch_size", "image_size", "checkpoint_every"):
            if getattr(self, k) < 1:
                raise PvrError(f"--{k} must be at least 1")
        if not 0.0 <= self.holdout < 1.0:
            raise PvrError("--holdout is a fraction of episodes in [0, 1)")
        if self.method == "mae" and self.image_size % 16:
            raise PvrError("--image_size must be a multiple of the ViT's 16-pixel patches for --method mae")
        return self

    @property
    def envs(self) -> list[str]:
        return [e for e in self.env.split(",") if e]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: settings that do not change what is computed (a resumed run may change them)
OPERATIONAL = {"out", "force", "num_workers", "disable_tensorboard", "quiet", "checkpoint_every", "disable_cuda",
               "save_path", "max_steps"}
