"""Writing pictures: grids and PNGs that carry their settings as text metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cdiff.rundir import atomic_write_bytes


def grid(images: list[np.ndarray], ncol: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 ``(H, W, 3)`` images (same size) into one picture, row-major."""
    n = len(images)
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    h, w = images[0].shape[:2]
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, ncol)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return out


def png_bytes(image: np.ndarray, metadata: dict[str, Any] | None = None) -> bytes:
    """PNG bytes of a uint8 image; ``metadata`` values are stored as text chunks (JSON for non-strings)."""
    info = PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(k, v if isinstance(v, str) else json.dumps(v))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(path: str | Path, image: np.ndarray, metadata: dict[str, Any] | None = None) -> None:
    atomic_write_bytes(path, png_bytes(image, metadata))


def read_png_metadata(path: str | Path) -> dict[str, str]:
    with Image.open(path) as im:
        return dict(im.text)
