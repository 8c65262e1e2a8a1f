"""MAE from lightly's parts (timm ViT encoder, MAE decoder, token masking), saved as MAE's own checkpoint.

The encoder is timm's ``vit_small_patch16_224`` / ``vit_base_patch16_224`` (at
``--image_size``), wrapped by lightly's ``MaskedVisionTransformerTIMM``; the decoder is
lightly's ``MAEDecoderTIMM`` with MAE's defaults (512 wide, 8 blocks, 16 heads),
whose parameter names are MAE's own (``decoder_embed``, ``decoder_blocks``,
``decoder_norm``, ``decoder_pred``, ``mask_token``, ``decoder_pos_embed``). The loss
is MAE's: mean squared error on the masked patches, each patch's pixels normalised
(``--norm_pix_loss``, with which MAE's released encoders were trained). The file is
``{"model": encoder keys + decoder keys, "epoch"}`` as MAE's ``main_pretrain.py``
writes it, so ``pvr.encoders.mae.load_mae`` reads it as it reads ``mae_base``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

TIMM = {"vit_small": ("vit_small_patch16_224", 384), "vit_base": ("vit_base_patch16_224", 768)}


def encoder(arch: str, image_size: int) -> nn.Module:
    """The ViT as pvr embeds with it: CLS token after the final norm, no head (as ``mae_base``)."""
    import timm

    return timm.create_model(TIMM[arch][0], pretrained=False, num_classes=0, global_pool="token",
                             img_size=image_size)


def transform(image_size: int):
    """lightly's MAE view transform (random resized crop 0.2-1, bicubic, flip), one view."""
    from lightly.transforms import MAETransform

    return MAETransform(input_size=image_size)


class MAE(nn.Module):
    def __init__(self, arch: str, image_size: int, *, mask_ratio: float = 0.75, decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16):
        super().__init__()
        from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM

        vit = encoder(arch, image_size)
        self.width = TIMM[arch][1]
        self.mask_ratio = mask_ratio
        self.patch = vit.patch_embed.patch_size[0]
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        with warnings.catch_warnings():  # lightly deprecates it for a decoder whose keys are not MAE's names
            warnings.simplefilter("ignore", FutureWarning)
            self.decoder = MAEDecoderTIMM(num_patches=vit.patch_embed.num_patches, patch_size=self.patch,
                                          embed_dim=vit.embed_dim, decoder_embed_dim=decoder_dim,
                                          decoder_depth=decoder_depth, decoder_num_heads=decoder_heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from lightly.models import utils as U

        b = images.shape[0]
        seq = self.backbone.sequence_length
        idx_keep, idx_mask = U.random_token_mask(size=(b, seq), mask_ratio=self.mask_ratio, device=images.device)
        encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        x = self.decoder.embed(encoded)
        tokens = U.repeat_token(self.decoder.mask_token, (b, seq))
        tokens = U.set_at_index(tokens, idx_keep, x.type_as(tokens))
        pred = self.decoder.predict(U.get_at_index(self.decoder.decode(tokens), idx_mask))
        target = U.get_at_index(U.patchify(images, self.patch), idx_mask - 1)  # idx 0 is the CLS token
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        return nn.functional.mse_loss(pred, target)

    def upstream_checkpoint(self, epoch: int) -> dict:
        state = {k: v.detach().cpu().clone() for k, v in self.backbone.vit.state_dict().items()}
        state.update({k: v.detach().cpu().clone() for k, v in self.decoder.state_dict().items()})
        return {"model": state, "epoch": int(epoch)}
