"""Raw conditions shared by the diffusion stages: caption token ids and label maps, and the null condition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cdiff.data.masks import read_mask, resize_label
from cdiff.data.prepared import PreparedDataset
from cdiff.data.tokenizer import encode as tokenize


def raw_conditions(data: PreparedDataset, ids: list[str], modality: str, max_length: int) -> torch.Tensor:
    """Token ids ``(N, max_length)`` or label maps ``(N, H, W)`` (uint8) for ``ids``."""
    if modality == "text":
        records = data.records()
        return tokenize(data.tokenizer(), [records[i]["caption"] for i in ids], max_length)
    return torch.from_numpy(np.stack([data.label(i) for i in ids]))


def null_condition(modality: str, like: torch.Tensor, tokenizer=None, max_length: int = 77) -> torch.Tensor:
    """The null condition for classifier-free guidance: the empty caption, or an all-background mask."""
    if modality == "text":
        return tokenize(tokenizer, [""] * len(like), max_length).to(like.device)
    return torch.zeros_like(like)


def read_condition_masks(values: list[str], run_dir: Path, resolution: int, notes: list[str]) -> torch.Tensor:
    """Label maps ``(N, r, r)`` for mask files or ``val:<id>`` (the run's data); other sizes are resized."""
    labels = []
    data = None
    for v in values:
        if v.startswith("val:"):
            data = data or PreparedDataset.open(run_dir / "data")
            label = data.label(v[4:])
        else:
            label = read_mask(v)
        if label.shape != (resolution, resolution):
            notes.append(
                f"mask {v} is {label.shape[1]}×{label.shape[0]}: resized (nearest) to {resolution}×{resolution}"
            )
            label = resize_label(label, resolution)
        labels.append(label)
    return torch.from_numpy(np.stack(labels))
