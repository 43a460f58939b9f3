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
    except Image.DecompressionBombError:
        raise InputError(too_large(photo)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"cannot read {photo} as an image ({type(exc).__name__}); give a PNG or JPEG photo"
        ) from None


def too_large(path: Any) -> str:
    """The message for an image with more pixels than PIL reads (its decompression-bomb guard)."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"{path} has more than {limit:,} pixels, more than cdiff reads; resize it first (a photo needs no more than ~1000×1000)"


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I") or im.mode == "F":
        return Image.fromarray(_to_8bit(im), mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def _to_8bit(im: Image.Image) -> np.ndarray:
    """A 16-bit or 32-bit grayscale image (modes ``I;16*``, ``I``, ``F``) → uint8 grey levels.

    16-bit data (``I;16``, or ``I`` with values past 255) is scaled by 255/65535; float data in
    [0, 1] by 255; anything else is clipped to 0..255. (``convert("RGB")`` would clip 16-bit
    values to white.)
    """
    a = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a * 255.0 / 65535.0
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
