"""Build every network from its config section, with the diffusers classes where they fit.

The paper-scale configs reproduce the released architectures to the parameter
(REFERENCE.md §1): VAE 55,312,063 (256 px) / 83,639,999 (512 px), uni-modal UNet 403,623,939,
mask encoder 656,000, text encoder 166,590,080 (+19,564,602 for the release's unused output
layer). ``count_parameters(..., meta=True)`` builds on the meta device: no memory is used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from cdiff.config import TextEncoderConfig, UNetConfig, VAEConfig
from cdiff.data.masks import NUM_CLASSES
from cdiff.models.encoders import MaskEncoder, TextEncoder


def vae_downsample(cfg: VAEConfig) -> int:
    """Image pixels per latent pixel (4 for three levels, 8 for four)."""
    return 2 ** (len(cfg.block_out_channels) - 1)


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    levels = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
    )


def build_unet(
    cfg: UNetConfig, latent_channels: int, latent_size: int, extra_in: int = 0
) -> UNet2DConditionModel:
    """A conditional UNet; ``extra_in`` input channels carry a concatenated condition (demo option).

    ``cfg.heads`` is the number of attention heads (diffusers calls it ``attention_head_dim``).
    ``time_injection``: ``additive`` adds the timestep embedding to the features (the release);
    ``adaln`` scales and shifts the normalised features by it (seed eq. 2). ``global_condition``
    (a demo option, off at paper scale) also adds the attention-pooled condition tokens to the
    timestep embedding, which lets a small model pick up global attributes (age, beard) sooner.
    """
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels + extra_in,
        out_channels=cfg.out_channels or latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=cfg.heads,
        transformer_layers_per_block=cfg.transformer_depth,
        cross_attention_dim=cfg.cross_attention_dim,
        norm_num_groups=cfg.norm_num_groups,
        flip_sin_to_cos=True,
        freq_shift=0,
        resnet_time_scale_shift="scale_shift" if cfg.time_injection == "adaln" else "default",
        addition_embed_type="text" if cfg.global_condition else None,
        addition_embed_type_num_heads=cfg.heads,
    )
    if cfg.zero_out:
        nn.init.zeros_(unet.conv_out.weight)
        nn.init.zeros_(unet.conv_out.bias)
    return unet


def build_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    return TextEncoder(cfg)


def build_mask_encoder(r: int, width: int) -> MaskEncoder:
    return MaskEncoder(r=r, width=width)


def count_parameters(make: Callable[[], nn.Module], meta: bool = True) -> int:
    """Exact parameter count; with ``meta`` the model is built without allocating memory."""
    if meta:
        with torch.device("meta"):
            model = make()
    else:
        model = make()
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "NUM_CLASSES",
    "build_mask_encoder",
    "build_text_encoder",
    "build_unet",
    "build_vae",
    "count_parameters",
    "vae_downsample",
]
