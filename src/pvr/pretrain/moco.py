"""MoCo v2 from lightly's parts, exported in the layout of MoCo's own ``main_moco.py`` checkpoints.

The query encoder is a torchvision ResNet whose ``fc`` is MoCo v2's MLP head
(lightly's :class:`MoCoProjectionHead`: Linear(d, d), ReLU, Linear(d, 128)), so its
``state_dict`` keys are exactly upstream's ``encoder_q.*`` (``fc.0.*``, ``fc.2.*``
for the head). The key encoder is a copy updated by lightly's ``update_momentum``;
the loss is lightly's ``NTXentLoss`` with a memory bank, which with one positive
(the key) and the bank as negatives is MoCo's InfoNCE; the bank is MoCo's queue.
Under torchrun, keys are gathered from every process before they enter the bank and
the key encoder sees a batch shuffled across processes (lightly's
``batch_shuffle_distributed``), MoCo's "shuffling BN".
"""
from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn

#: upstream's names for its non-encoder state (``moco/builder.py``: register_buffer("queue"/"queue_ptr"))
QUEUE, QUEUE_PTR = "module.queue", "module.queue_ptr"


def transform(aug: str, image_size: int):
    """lightly's MoCo v2 view transform, or the paper's crop-only / colour-only variants (two views)."""
    from lightly.transforms import MoCoV2Transform

    if aug == "aug":
        kw = {}
    elif aug == "croponly":  # random resized crops (scale 0.2-1, aspect 3/4-4/3) and nothing else
        kw = dict(cj_prob=0.0, random_gray_scale=0.0, gaussian_blur=0.0, hf_prob=0.0)
    elif aug == "coloronly":  # MoCo v2's photometric part; scale (1, 1) keeps the whole frame, only resized
        kw = dict(min_scale=1.0, hf_prob=0.0)
    else:
        raise ValueError(aug)
    return MoCoV2Transform(input_size=image_size, **kw)


def with_tap_blocks(net: nn.Module, tap: str) -> nn.Module:
    """The paper's l3 / l4 network: the tapped layer followed by a compressing and an expanding BasicBlock,
    trained with the rest, nested as the original's checkpoints are (``layerN.0.<i>``, ``layerN.1``
    compresses, ``layerN.2`` expands back), so :mod:`pvr.encoders.taps` loads the result as it loads
    ``moco_aug_l3``."""
    from pvr.encoders import taps

    wide, narrow, _ = taps.TAPS[tap]
    layer = "layer3" if tap == "l3" else "layer4"
    setattr(net, layer, nn.Sequential(getattr(net, layer), taps.compression_block(wide, narrow),
                                      taps.compression_block(narrow, wide)))
    return net


def resnet_with_head(arch: str, dim: int, tap: str | None = None) -> nn.Module:
    from lightly.models.modules import MoCoProjectionHead

    net = getattr(torchvision.models, arch)(weights=None)
    if tap is not None:
        net = with_tap_blocks(net, tap)
    width = net.fc.in_features
    net.fc = MoCoProjectionHead(width, width, dim).layers  # Sequential(Linear, ReLU, Linear): fc.0 / fc.2
    return net


class MoCo(nn.Module):
    def __init__(self, arch: str, *, dim: int = 128, k: int = 65536, m: float = 0.999, t: float = 0.2,
                 distributed: bool = False, tap: str | None = None):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.utils import deactivate_requires_grad

        self.arch, self.m, self.distributed = arch, m, distributed
        self.encoder_q = resnet_with_head(arch, dim, tap)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        deactivate_requires_grad(self.encoder_k)
        self.criterion = NTXentLoss(temperature=t, memory_bank_size=(k, dim), gather_distributed=distributed)

    def forward(self, query: torch.Tensor, key: torch.Tensor, encoder_q: nn.Module | None = None) -> torch.Tensor:
        from lightly.models import utils as U

        q = (encoder_q or self.encoder_q)(query)
        with torch.no_grad():
            U.update_momentum(self.encoder_q, self.encoder_k, self.m)
            if self.distributed:
                key, shuffle = U.batch_shuffle_distributed(key)
                k = U.batch_unshuffle_distributed(self.encoder_k(key), shuffle)
            else:
                k = self.encoder_k(key)
        return self.criterion(q, k.detach())

    # -- the queue, which lightly keeps out of state_dict -------------------------
    def bank_state(self) -> dict:
        mb = self.criterion.memory_bank
        return {"bank": mb.bank.detach().cpu().clone(), "bank_ptr": mb.bank_ptr.detach().cpu().clone()}

    def load_bank_state(self, state: dict) -> None:
        mb = self.criterion.memory_bank
        mb.bank.copy_(state["bank"])
        mb.bank_ptr.copy_(state["bank_ptr"])

    def upstream_checkpoint(self, epoch: int) -> dict:
        """``{"epoch", "arch", "state_dict"}`` with ``module.encoder_q.*``, ``module.encoder_k.*``,
        ``module.queue`` (dim, K) and ``module.queue_ptr`` (1,), as ``main_moco.py`` saves under DataParallel."""
        state = {}
        for prefix, net in (("module.encoder_q.", self.encoder_q), ("module.encoder_k.", self.encoder_k)):
            state.update({prefix + k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        bank = self.bank_state()
        state[QUEUE] = bank["bank"].t().contiguous()
        state[QUEUE_PTR] = bank["bank_ptr"]
        return {"epoch": int(epoch), "arch": self.arch, "state_dict": state}


def encoder_dim(arch: str) -> int:
    return {"resnet18": 512, "resnet34": 512, "resnet50": 2048}[arch]
