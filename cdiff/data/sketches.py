"""Sketches: binary line drawings of faces at the image resolution (the data of the ``sketch`` condition).

Where they come from:
- a synthetic face: the exact lines of its own geometry, every boundary between two parts of the
  supersampled label map (face outline, hair, eyes, brows, nose, lips, ears, glasses, hat,
  earrings, necklace, neck, clothes): :func:`geometry_lines`;
- a photo (CelebA-HQ, the release's layout, a photo to edit): an edge detector, scikit-image's
  Canny on the grey image with the ``data.sketch`` settings: :func:`edge_lines`;
- a user's drawing: any picture, dark lines on light or light on dark (told apart by which side
  covers less), anti-aliased strokes thresholded (Otsu), lines thinned to one pixel and widened to
  ``line_width``: :func:`normalise`.

On disk a sketch is a grey PNG, black lines (0) on white (255), at the image resolution; in memory a
``bool`` array, True on the lines.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cdiff.errors import InputError

DETECTORS = ("canny",)


def geometry_lines(label_s: np.ndarray, ss: int) -> np.ndarray:
    """The boundaries of a supersampled label map ``(S, S)`` at ``S / ss`` pixels: a pixel is on a
    line when a part boundary crosses its ``ss × ss`` block (the lines are one or two pixels wide)."""
    edge = np.zeros(label_s.shape, bool)
    edge[:, 1:] |= label_s[:, 1:] != label_s[:, :-1]
    edge[1:, :] |= label_s[1:, :] != label_s[:-1, :]
    S = label_s.shape[0] // ss
    return edge[: S * ss, : S * ss].reshape(S, ss, S, ss).any(axis=(1, 3))


def edge_lines(image: np.ndarray, sigma: float, low: float, high: float) -> np.ndarray:
    """Canny edges of an RGB uint8 image (its grey levels in [0, 1]; ``low``/``high``: the
    hysteresis thresholds on the gradient, ``sigma``: the Gaussian's width in pixels)."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    grey = rgb2gray(np.asarray(image)[..., :3]) if np.asarray(image).ndim == 3 else np.asarray(image) / 255.0
    return canny(grey, sigma=sigma, low_threshold=low, high_threshold=high)


def normalise(grey: np.ndarray, line_width: int = 1) -> np.ndarray:
    """A drawing's grey levels ``(H, W)`` → its lines: thresholded (Otsu), the minority side taken
    as the lines (dark on light or light on dark), thinned to one pixel, widened to ``line_width``."""
    from skimage.filters import threshold_otsu
    from skimage.morphology import dilation, disk, skeletonize

    grey = np.asarray(grey, np.float64)
    if grey.max() == grey.min():
        return np.zeros(grey.shape, bool)  # a blank page: no lines
    grey = np.round((grey - grey.min()) / (grey.max() - grey.min()) * 255)  # the same levels either way
    if (grey <= threshold_otsu(grey)).mean() > 0.5:  # light lines on dark paper: make them dark
        grey = 255 - grey
    lines = skeletonize(grey <= threshold_otsu(grey))
    if line_width > 1:
        footprint = disk(line_width // 2) if line_width % 2 else np.ones((line_width,) * 2, bool)
        # the pixels of binary_dilation (deprecated in skimage 0.26) for these footprints
        lines = dilation(lines, footprint).astype(bool)
    return lines


def resize_lines(lines: np.ndarray, size: int) -> np.ndarray:
    """Lines at ``size × size`` (area resize of the ink, kept where a quarter of a pixel or more is ink)."""
    if lines.shape == (size, size):
        return lines
    im = Image.fromarray((lines * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(im) >= 64


def edge_f_score(pred: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> float:
    """How well the lines ``pred`` follow the lines ``truth`` (both bool ``(H, W)``): the harmonic mean of
    precision (pred pixels within ``tolerance`` pixels of a truth line) and recall (truth pixels within
    ``tolerance`` of a pred line); 1 for the same lines, 0 when none come near. Two blank pages: 1."""
    from scipy.ndimage import binary_dilation

    if not pred.any() and not truth.any():
        return 1.0
    if not pred.any() or not truth.any():
        return 0.0
    near = np.ones((2 * tolerance + 1,) * 2, bool)
    precision = (pred & binary_dilation(truth, near)).sum() / pred.sum()
    recall = (truth & binary_dilation(pred, near)).sum() / truth.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def encode_sketch(lines: np.ndarray) -> bytes:
    """PNG bytes: black lines on white."""
    buf = io.BytesIO()
    Image.fromarray(np.where(lines, 0, 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def read_stored(path: str | Path) -> np.ndarray:
    """A sketch as written by :func:`encode_sketch` (a prepared dataset's): True on the lines."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) < 128


def read_drawing(source: Any, size: int, line_width: int = 1) -> np.ndarray:
    """A user's sketch (a path or PIL image) at ``size × size``: :func:`normalise` d, then resized.

    Unreadable, missing or non-image files are one-line :class:`InputError` s naming the file.
    """
    if isinstance(source, Image.Image):
        return _from_image(source, size, line_width)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"sketch file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return _from_image(im, size, line_width)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"cannot read the sketch {path} ({type(exc).__name__}); give a PNG or JPEG drawing"
        ) from None


def _from_image(im: Image.Image, size: int, line_width: int) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparent paper is white
        im = Image.alpha_composite(white, im.convert("RGBA"))
    grey = np.asarray(im.convert("L"))
    if grey.shape[0] != grey.shape[1]:
        s = min(grey.shape)
        top, left = (grey.shape[0] - s) // 2, (grey.shape[1] - s) // 2
        grey = grey[top : top + s, left : left + s]
    lines = normalise(grey, 1)
    lines = resize_lines(lines, size)
    if line_width > 1:
        lines = normalise(np.where(lines, 0, 255), line_width)
    return lines


__all__ = [
    "DETECTORS",
    "edge_f_score",
    "edge_lines",
    "encode_sketch",
    "geometry_lines",
    "normalise",
    "read_drawing",
    "read_stored",
    "resize_lines",
]
