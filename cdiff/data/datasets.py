"""Torch datasets over a prepared dataset folder (images, label maps, caption token ids)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cdiff.data.prepared import PreparedDataset


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` → float ``(3, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.array(image, copy=True))  # a copy: arrays read from PIL are read-only
    return x.permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in [-1, 1] → uint8 ``(H, W, 3)``."""
    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class ImageDataset(Dataset):
    """Images of one split as ``{"image": (3, H, W) in [-1, 1]}``; kept in memory after first read."""

    def __init__(self, data: PreparedDataset, split: str, ids: list[str] | None = None, cache: bool = True):
        self.data = data
        self.ids = ids if ids is not None else data.split(split)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and i in self.cache:
            return {"image": self.cache[i]}
        x = to_tensor(self.data.image(self.ids[i]))
        if self.cache is not None:
            self.cache[i] = x
        return {"image": x}
