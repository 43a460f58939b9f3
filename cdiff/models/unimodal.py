"""A uni-modal latent diffusion model: a UNet and its condition encoder, trained together.

The encoder comes from the modality's module (:mod:`cdiff.modalities`): caption ids → text tokens,
a label map → 19 mask tokens, and so on. The UNet sees the condition tokens by cross-attention
(eq. 3-4); a modality whose encoder has ``extra_in`` channels also has them concatenated to the
UNet input (the demo mask model's ``mask_concat``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cdiff import config as cfg_mod
from cdiff import modalities
from cdiff.config import UnimodalConfig
from cdiff.modalities.mask import onehot_map, onehot_tokens  # noqa: F401  (re-exported for callers)
from cdiff.modalities.text import TOKENIZER  # noqa: F401  (the tokenizer folder beside a text model)
from cdiff.models import store
from cdiff.models.build import build_unet

WEIGHTS, CONFIG = "model.safetensors", "config.json"


class UnimodalModel(nn.Module):
    """``eps = model(x_t, t, cond)`` with ``cond = model.encode(raw condition)``."""

    def __init__(
        self,
        cfg: UnimodalConfig,
        modality: str,
        latent_channels: int,
        latent_size: int,
        vocab_size: int | None = None,
    ):
        super().__init__()
        self.cfg, self.modality, self.latent_size = cfg, modality, latent_size
        self.encoder = modalities.get(modality).build_encoder(cfg, latent_size, vocab_size)
        self.extra_in = self.encoder.extra_in
        self.unet = build_unet(cfg.unet, latent_channels, latent_size, extra_in=self.extra_in)

    @property
    def concat(self) -> bool:
        """True when the condition is also concatenated to the UNet input."""
        return self.extra_in > 0

    def encode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw condition rows (token ids, label maps, ...) → what :meth:`forward` conditions on."""
        return self.encoder.encode(raw)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([x_t, cond["concat"].to(x_t.dtype)], dim=1) if self.extra_in else x_t
        return self.unet(x, t, encoder_hidden_states=cond["tokens"]).sample

    def parameter_counts(self) -> dict[str, int]:
        return {
            f"{self.modality} UNet": sum(p.numel() for p in self.unet.parameters()),
            f"{self.modality} encoder": sum(p.numel() for p in self.encoder.parameters()),
        }


def unimodal_record(model: UnimodalModel, meta: dict[str, Any]) -> dict[str, Any]:
    """What ``config.json`` says of a uni-modal model: modality, architecture, and ``meta``."""
    return {"modality": model.modality, "unimodal": cfg_mod.to_dict(model.cfg), **meta}


def _build(record: dict[str, Any]) -> UnimodalModel:
    cfg = cfg_mod.build(UnimodalConfig, record["unimodal"])
    return UnimodalModel(
        cfg, record["modality"], record["latent_channels"], record["latent_size"], record.get("vocab_size")
    )


store.register(
    store.Kind(
        "unimodal",
        "trained uni-modal model",
        build=_build,
        parts=lambda model: {WEIGHTS: model},
        files=(WEIGHTS,),
        command=lambda folder: f"cdiff train-unimodal --modality {folder.name} --run {folder.parent}",
    )
)
