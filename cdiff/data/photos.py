"""Photos to edit: any image file or PIL image → RGB at the model's resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cdiff.errors import InputError


def load_photo(photo: Any, resolution: int, notes: list[str]) -> np.ndarray:
    """Any image (a path or a PIL image) → RGB ``resolution²`` uint8: centre-cropped, then resized (Lanczos)."""
    im = _rgb(photo)
    name = Path(photo).name if isinstance(photo, str | Path) else "the photo"
    w, h = im.size
    side = min(w, h)
    if (w, h) != (resolution, resolution):
        what = f"centre-cropped to {side}×{side} and resized" if w != h else "resized"
        notes.append(f"{name} is {w}×{h}: {what} to the model's {resolution}×{resolution}")
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(im)


def _rgb(photo: Any) -> Image.Image:
    """RGB, transparent parts composited on white, EXIF orientation applied."""
    if isinstance(photo, Image.Image):
        return _flatten(ImageOps.exif_transpose(photo))
    if not isinstance(photo, str | Path) or not Path(photo).is_file():
        raise InputError(f"photo not found: {photo}")
    try:
        with Image.open(photo) as im:
            return _flatten(ImageOps.exif_transpose(im))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"cannot read {photo} as an image ({type(exc).__name__}); give a PNG or JPEG photo"
        ) from None


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")
