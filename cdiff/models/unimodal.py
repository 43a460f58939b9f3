"""A uni-modal latent diffusion model: a UNet and its condition encoder, trained together.

``modality="text"``: caption token ids ``(B, 77)`` → text tokens ``(B, 77, C)``.
``modality="mask"``: label maps ``(B, H, W)`` → one-hot ``[19, r*r]`` → 19 mask tokens ``(B, 19, C)``;
with the demo-only ``mask_concat`` option the one-hot map at latent size is also concatenated
to the UNet input. The UNet sees the condition tokens by cross-attention (eq. 3-4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from cdiff import config as cfg_mod
from cdiff.config import UnimodalConfig
from cdiff.data.masks import NUM_CLASSES
from cdiff.errors import InputError
from cdiff.models.build import build_unet
from cdiff.models.encoders import MaskEncoder, TextEncoder

MODALITIES = ("text", "mask")
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer"


def onehot_tokens(labels: torch.Tensor, r: int) -> torch.Tensor:
    """Label maps ``(B, H, W)`` (int) → ``(B, 19, r*r)`` one-hot, nearest-resized like PIL (pixel centres)."""
    small = _nearest(labels, r)  # (B, r, r)
    return F.one_hot(small.long().flatten(1), NUM_CLASSES).permute(0, 2, 1).float()


def onehot_map(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Label maps ``(B, H, W)`` → ``(B, 19, size, size)`` one-hot planes (for ``mask_concat``)."""
    return F.one_hot(_nearest(labels, size).long(), NUM_CLASSES).permute(0, 3, 1, 2).float()


def _nearest(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest resize sampling pixel centres: index floor((i + 0.5) * H / size), as PIL's NEAREST."""
    H, W = labels.shape[-2:]
    if (H, W) == (size, size):
        return labels
    rows = ((torch.arange(size, device=labels.device) + 0.5) * H / size).floor().long()
    cols = ((torch.arange(size, device=labels.device) + 0.5) * W / size).floor().long()
    return labels[:, rows][:, :, cols]


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
        if modality not in MODALITIES:
            raise InputError(f"unknown modality '{modality}'; choose text or mask")
        self.cfg, self.modality, self.latent_size = cfg, modality, latent_size
        self.concat = modality == "mask" and cfg.mask_concat
        width = cfg.unet.cross_attention_dim
        if modality == "text":
            if cfg.text_encoder.width != width:
                raise InputError(
                    f"unimodal.text_encoder.width ({cfg.text_encoder.width}) must equal "
                    f"unimodal.unet.cross_attention_dim ({width})"
                )
            enc_cfg = cfg_mod.build(cfg_mod.TextEncoderConfig, cfg_mod.to_dict(cfg.text_encoder))
            enc_cfg.vocab_size = vocab_size or enc_cfg.vocab_size
            self.encoder: nn.Module = TextEncoder(enc_cfg)
        else:
            self.encoder = MaskEncoder(cfg.mask_tokens, width)
        self.unet = build_unet(
            cfg.unet, latent_channels, latent_size, extra_in=NUM_CLASSES if self.concat else 0
        )

    def encode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Token ids (text) or label maps (mask) → what :meth:`forward` conditions on."""
        if self.modality == "text":
            return {"tokens": self.encoder(raw)}
        dtype = next(self.encoder.parameters()).dtype  # float32, or bf16/fp16 when cast as a frozen expert
        cond = {"tokens": self.encoder(onehot_tokens(raw, self.cfg.mask_tokens).to(dtype))}
        if self.concat:
            cond["concat"] = onehot_map(raw, self.latent_size).to(dtype)
        return cond

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([x_t, cond["concat"].to(x_t.dtype)], dim=1) if self.concat else x_t
        return self.unet(x, t, encoder_hidden_states=cond["tokens"]).sample

    def parameter_counts(self) -> dict[str, int]:
        return {
            f"{self.modality} UNet": sum(p.numel() for p in self.unet.parameters()),
            f"{self.modality} encoder": sum(p.numel() for p in self.encoder.parameters()),
        }


def export_unimodal(folder: Path, model: UnimodalModel, meta: dict[str, Any]) -> None:
    """``model.safetensors`` (``unet.*``, ``encoder.*``) + ``config.json`` describing how to rebuild it."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(
        state,
        str(folder / WEIGHTS),
        metadata={"format": "pt"},  # one key: byte-identical files
    )
    record = {"kind": "unimodal", "modality": model.modality, "unimodal": cfg_mod.to_dict(model.cfg), **meta}
    (folder / CONFIG).write_text(json.dumps(record, indent=2) + "\n")


def load_unimodal(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[UnimodalModel, dict[str, Any]]:
    """A trained uni-modal model (eval mode, frozen) and its ``config.json`` record."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise InputError(f"no trained uni-modal model in {folder}; run `cdiff train-unimodal` first")
    meta = json.loads((folder / CONFIG).read_text())
    cfg = cfg_mod.build(UnimodalConfig, meta["unimodal"])
    model = UnimodalModel(
        cfg, meta["modality"], meta["latent_channels"], meta["latent_size"], meta.get("vocab_size")
    )
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.to(device).eval().requires_grad_(False), meta
