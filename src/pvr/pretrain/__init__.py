"""Self-supervised pre-training of an in-domain PVR on the frames pvr collected (``pvr pretrain``).

Methods come from lightly (MoCo v2; MAE), not rewritten here; what pvr adds is the
data (its stores, read lazily, with a fixed held-out split), resumable atomic
checkpoints, and the output: weights in the upstream layout of their family plus a
registry file, so ``NAME`` works as ``--embedding_name`` like any encoder of the zoo.
"""
from pvr.pretrain.config import PretrainConfig
from pvr.pretrain.trainer import pretrain

__all__ = ["PretrainConfig", "pretrain"]
