"""The mask canvas: one brush per CelebAMask-HQ class, its legend, and canvas → label map.

The editor hands back RGBA pictures (a background and the painted layers). A label map is made by
snapping every colour to the nearest palette colour: exact for index and palette PNGs, and for JPEG
or resampled uploads the snapped pixels are counted in a note. Painted layers count where they are
mostly opaque; their soft stroke edges are snapped silently (the brushes only hold palette colours).
No Gradio here: plain numpy and PIL, so it is tested on its own.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cdiff.data.masks import CLASS_NAMES, PALETTE, check_label, colorize, resize_label
from cdiff.errors import InputError

CANVAS = 256  # the painting resolution (the demo's 64 px masks are shown 4× larger, nearest)
OPAQUE = 128  # alpha from which a painted pixel counts

PRETTY = {  # CelebAMask-HQ's short names, spelled out for the legend
    "eye_g": "eyeglasses",
    "l_eye": "left eye",
    "r_eye": "right eye",
    "l_brow": "left brow",
    "r_brow": "right brow",
    "l_ear": "left ear",
    "r_ear": "right ear",
    "u_lip": "upper lip",
    "l_lip": "lower lip",
    "ear_r": "earring",
    "neck_l": "necklace",
    "cloth": "clothes",
}


def hex_colour(k: int) -> str:
    r, g, b = (int(v) for v in PALETTE[k])
    return f"#{r:02x}{g:02x}{b:02x}"


def brush_colours() -> list[str]:
    """The 19 class colours, in class order (the editor's fixed brush palette)."""
    return [hex_colour(k) for k in range(len(CLASS_NAMES))]


def class_title(k: int) -> str:
    name = CLASS_NAMES[k]
    return PRETTY.get(name, name)


def legend_html() -> str:
    """A swatch and name per class, in the brushes' order."""
    items = "".join(
        f'<span class="cdiff-swatch" title="class {k}: {html.escape(CLASS_NAMES[k])}">'
        f'<i style="background:{hex_colour(k)}"></i>{k} {html.escape(class_title(k))}</span>'
        for k in range(len(CLASS_NAMES))
    )
    return f'<div class="cdiff-legend">{items}</div>'


def snap(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` colours → (label map of the nearest palette colour, where the colour was exact)."""
    flat = rgb.reshape(-1, 3).astype(np.int32)
    d = ((flat[:, None, :] - PALETTE[None, :, :].astype(np.int32)) ** 2).sum(-1)  # (N, 19)
    labels = d.argmin(1)
    exact = d[np.arange(len(flat)), labels] == 0
    return labels.reshape(rgb.shape[:2]).astype(np.uint8), exact.reshape(rgb.shape[:2])


def _rgba(image: Any) -> np.ndarray:
    """A PIL image or array (HxW, HxWx3, HxWx4) as ``(H, W, 4)`` uint8."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"the canvas holds a picture of shape {arr.shape}, not an RGB or RGBA image")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, arr.dtype)], axis=2)
    return arr.astype(np.uint8)


def _snap_note(inexact: int, total: int, what: str) -> list[str]:
    if not inexact:
        return []
    return [
        f"{what}: {inexact} of {total} pixels ({100 * inexact / total:.1f}%) were not exact palette colours "
        "(a JPEG or a resized picture?) and were snapped to the nearest class colour"
    ]


def picture_to_label(image: Any, what: str = "the mask") -> tuple[np.ndarray, list[str]]:
    """A mask picture (transparent pixels: background) → (label map, notes about snapped colours)."""
    rgba = _rgba(image)
    label, exact = snap(rgba[..., :3])
    clear = rgba[..., 3] < OPAQUE
    label[clear] = 0
    return label, _snap_note(int((~exact & ~clear).sum()), label.size, what)


def editor_to_label(value: dict[str, Any] | None) -> tuple[np.ndarray, list[str]]:
    """The image editor's ``{"background", "layers", "composite"}`` → (label map, notes).

    The background gives the start (a loaded or uploaded mask; none: all background); each layer's
    mostly opaque pixels paint over it. Without background and layers, the composite is read.
    """
    value = value or {}
    background, layers = value.get("background"), [x for x in value.get("layers") or [] if x is not None]
    if background is None and not layers:
        if value.get("composite") is None:
            raise InputError("the mask canvas is empty: load an example mask, upload one, or paint one")
        return picture_to_label(value["composite"])
    notes: list[str] = []
    if background is not None:
        label, notes = picture_to_label(background)
    else:
        label = np.zeros(_rgba(layers[0]).shape[:2], np.uint8)
    for layer in layers:
        rgba = _rgba(layer)
        if rgba.shape[:2] != label.shape:
            rgba = np.asarray(Image.fromarray(rgba).resize(label.shape[::-1], Image.Resampling.NEAREST))
        painted = rgba[..., 3] >= OPAQUE
        if painted.any():
            label[painted] = snap(rgba[..., :3][painted][None])[0][0]
    return label, notes


def is_empty(value: dict[str, Any] | None) -> bool:
    """True when the editor holds nothing: no background and no painted pixel (an unused canvas)."""
    if not value or value.get("background") is not None:
        return not value
    pictures = [x for x in value.get("layers") or [] if x is not None] + [value.get("composite")]
    return all(x is None or (_rgba(x)[..., 3] < OPAQUE).all() for x in pictures)


def read_upload(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """An uploaded mask file: index PNG (ids 0..18), palette PNG, or a picture snapped to the palette."""
    from cdiff.data.masks import image_to_label

    name = Path(path).name
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I", "I;16"):
                try:
                    return image_to_label(im, name), []
                except InputError:
                    pass  # not class ids: read its colours
            return picture_to_label(im.convert("RGBA"), f"mask {name}")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InputError(
            f"cannot read {name} as a mask: give an index PNG (class ids 0..18) or a picture in the palette colours"
        ) from None


def background_for(label: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """The colour picture of a label map at the canvas size (nearest), for the editor's background."""
    return colorize(resize_label(check_label(label), size) if label.shape != (size, size) else label)


def editor_value(label: np.ndarray, size: int = CANVAS) -> dict[str, Any]:
    """An editor value that starts from ``label``: its colours as the background, no strokes yet."""
    picture = background_for(label, size)
    return {"background": picture, "layers": [], "composite": picture}


__all__ = [
    "CANVAS",
    "background_for",
    "brush_colours",
    "class_title",
    "editor_to_label",
    "editor_value",
    "is_empty",
    "legend_html",
    "picture_to_label",
    "read_upload",
    "snap",
]


# ---- the sketch canvas: black strokes on white --------------------------------------------------


def editor_to_sketch(value: dict[str, Any] | None) -> Image.Image | None:
    """The sketch editor's value → a grey picture of the drawing (dark lines on light), or None when
    nothing is drawn (no sketch condition). Strokes over an uploaded drawing add to it."""
    value = value or {}
    background, layers = value.get("background"), [x for x in value.get("layers") or [] if x is not None]
    layers = [rgba for rgba in map(_rgba, layers) if (rgba[..., 3] >= OPAQUE).any()]
    if background is None and not layers:
        picture = value.get("composite")
        if picture is None:
            return None
        background = picture
    base = _grey(background) if background is not None else None
    if base is None:
        base = np.full(layers[0].shape[:2], 255, np.uint8)
    if not (base < 128).any() and not layers:
        return None  # a blank page
    for rgba in layers:
        if rgba.shape[:2] != base.shape:
            rgba = np.asarray(Image.fromarray(rgba).resize(base.shape[::-1], Image.Resampling.NEAREST))
        ink = rgba[..., 3] >= OPAQUE
        base[ink] = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"))[ink]
    return Image.fromarray(base, mode="L")


def _grey(image: Any) -> np.ndarray:
    """A picture as grey levels, transparent pixels white (an empty canvas is a blank page)."""
    rgba = _rgba(image)
    grey = np.asarray(Image.fromarray(rgba[..., :3]).convert("L")).copy()
    grey[rgba[..., 3] < OPAQUE] = 255
    return grey


def blank_sketch(size: int = CANVAS) -> dict[str, Any]:
    """An empty sketch page: white, nothing drawn."""
    return {"background": np.full((size, size, 4), 255, np.uint8), "layers": [], "composite": None}
