"""The ``mask`` modality: a 19-class CelebAMask-HQ face segmentation map (REFERENCE.md §1, §4).

Raw condition: a label map ``(H, W)`` uint8 at the image resolution. Encoder: the one-hot map
resized to ``r x r`` and flattened to ``[19, r*r]``, one Linear → 19 mask tokens ``(19, C)`` for
cross-attention; with the demo-only ``mask_concat`` the one-hot map at latent size is also
concatenated to the UNet input. Null condition: the all-background map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cdiff.data.masks import (
    NUM_CLASSES,
    check_label,
    colorize,
    image_to_label,
    read_mask,
    resize_label,
    write_mask,
)
from cdiff.errors import InputError
from cdiff.modalities import ConditionEncoder, Context, PictureModality, register
from cdiff.models.encoders import MaskEncoder


def _nearest(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest resize sampling pixel centres: index floor((i + 0.5) * H / size), as PIL's NEAREST."""
    H, W = labels.shape[-2:]
    if (H, W) == (size, size):
        return labels
    rows = ((torch.arange(size, device=labels.device) + 0.5) * H / size).floor().long()
    cols = ((torch.arange(size, device=labels.device) + 0.5) * W / size).floor().long()
    return labels[:, rows][:, :, cols]


def onehot_tokens(labels: torch.Tensor, r: int) -> torch.Tensor:
    """Label maps ``(B, H, W)`` (int) → ``(B, 19, r*r)`` one-hot, nearest-resized like PIL (pixel centres)."""
    small = _nearest(labels, r)  # (B, r, r)
    return F.one_hot(small.long().flatten(1), NUM_CLASSES).permute(0, 2, 1).float()


def onehot_map(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Label maps ``(B, H, W)`` → ``(B, 19, size, size)`` one-hot planes (for ``mask_concat``)."""
    return F.one_hot(_nearest(labels, size).long(), NUM_CLASSES).permute(0, 3, 1, 2).float()


def at_resolution(label: np.ndarray, size: int, r: int | None) -> np.ndarray:
    """``label`` resized (nearest) to ``size``×``size``, with the pixels that :func:`onehot_tokens`
    samples for its ``r``×``r`` grid set from ``label`` resized once, straight to ``r``×``r``."""
    out = resize_label(label, size).copy()
    if r:
        idx = ((np.arange(r) + 0.5) * size / r).astype(np.int64)  # the grid _nearest samples
        out[np.ix_(idx, idx)] = resize_label(label, r)
    return out


class MaskCondition(MaskEncoder, ConditionEncoder):
    """Label maps ``(B, H, W)`` → ``{"tokens": (B, 19, C)}`` (+ ``"concat"`` planes with ``mask_concat``)."""

    def __init__(self, r: int, width: int, latent_size: int, concat: bool):
        super().__init__(r=r, width=width)
        self.latent_size, self.extra_in = latent_size, NUM_CLASSES if concat else 0

    def encode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = self.linear.weight.dtype  # float32, or bf16/fp16 when cast as a frozen expert
        cond = {"tokens": self(onehot_tokens(raw, self.r).to(dtype))}
        if self.extra_in:
            cond["concat"] = onehot_map(raw, self.latent_size).to(dtype)
        return cond


class Mask(PictureModality):
    name = "mask"
    option = "--mask"
    option_help = "A mask: index PNG, palette RGB PNG or .pt (repeatable)."
    target_option = "--target-mask"
    target_help = "The mask to edit toward (index PNG, palette RGB PNG or .pt)."
    option_type = Path
    describes = "a mask (index PNG, palette RGB PNG or .pt)"
    released_role = "early"  # the release leans on it in the first steps

    def build_encoder(self, cfg: Any, latent_size: int, vocab_size: int | None = None) -> MaskCondition:
        return MaskCondition(cfg.mask_tokens, cfg.unet.cross_attention_dim, latent_size, cfg.mask_concat)

    def from_dataset(self, data: Any, ids: list[str], ctx: Context) -> torch.Tensor:
        return torch.from_numpy(np.stack([data.label(i) for i in ids]))

    def read(self, values: list[Any], ctx: Context, notes: list[str]) -> torch.Tensor:
        """Mask files, ``val:<id>`` (the run's data), PIL images or ``(H, W)`` integer arrays.

        Other sizes are resized (nearest) to the image resolution, with a note; the pixels the
        r×r token grid samples are taken straight from the given mask (:func:`at_resolution`), so
        the tokens are the release's single resize to r×r, not a resize of a resize.
        """
        labels = []
        r = (ctx.meta.get("unimodal") or {}).get("mask_tokens")
        for v in values:
            label = self._label(v, ctx)
            if label.shape != (ctx.resolution, ctx.resolution):
                size = ctx.resolution
                notes.append(
                    f"mask {self.record(v)} is {label.shape[1]}×{label.shape[0]}: resized (nearest) to {size}×{size}"
                )
                label = at_resolution(label, size, r)
            labels.append(label)
        return torch.from_numpy(np.stack(labels))

    def _label(self, value: Any, ctx: Context) -> np.ndarray:
        if isinstance(value, Image.Image):
            return image_to_label(value)
        if isinstance(value, torch.Tensor):
            value = value.cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "iub":
                raise InputError(f"a mask array must hold integer class ids 0..18, got dtype {value.dtype}")
            return check_label(value.astype(np.int64), source="mask array")
        if isinstance(value, str | Path):
            text = str(value)
            if text.startswith("val:"):
                if ctx.data is None:
                    raise InputError(f"mask {text} names a validation sample, but there is no prepared data")
                return ctx.data.label(text[4:])
            return read_mask(text)
        raise InputError(
            f"a mask must be a file path, a PIL image or an HxW array, got {type(value).__name__}"
        )

    def null(self, like: torch.Tensor, ctx: Context) -> torch.Tensor:
        return torch.zeros_like(like[0])

    def save_picture(self, raw_row: torch.Tensor, path: Path) -> bool:
        write_mask(path, raw_row.numpy())
        return True

    def tile(self, raw_row: torch.Tensor, size: int) -> np.ndarray:
        return colorize(resize_label(raw_row.numpy(), size))

    def overlay(self, raw_row: torch.Tensor, size: int) -> np.ndarray:
        return resize_label(raw_row.numpy(), size)

    # the face parser's reading against the input mask, at full size and at the release's 32x32
    columns = {
        "mask_accuracy_32": ("mask acc. (32×32)", "mask 32"),
        "mask_accuracy": ("mask acc. (full)", "mask"),
    }
    headline = "mask_accuracy"
    judged_by = "mask accuracy: the face parser's reading against the input mask"

    def truth(self, data: Any, ids: list[str], judges: Any) -> torch.Tensor:
        return torch.from_numpy(np.stack([data.label(i) for i in ids]))

    def judge(self, judges: Any, images: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        from cdiff.models.evaluator import parse_scores

        size = images.shape[-1]
        if truth.shape[-1] != size:
            truth = torch.from_numpy(np.stack([resize_label(lb.numpy(), size) for lb in truth]))
        return parse_scores(judges.parser, images, truth)

    def reading(self, scores: dict[str, torch.Tensor], j: int) -> np.ndarray:
        return colorize(scores["parsed"][j].numpy())


MASK = register(Mask())
