"""Pictures for people: colour maps with legends, labelled tiles, overlays, animated GIFs.

Pure numpy/PIL helpers (no models); ``stages/visualize.py`` puts them together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# viridis, sampled at 9 evenly spaced points (perceptually uniform, readable in grey and by the colour-blind)
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def colormap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Values → uint8 RGB (viridis): ``(H, W)`` → ``(H, W, 3)``."""
    x = np.clip((np.asarray(values, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    pos = x * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to ``size × size`` (keeps latent pixels visible as blocks)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner, white on a dark box."""
    im = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(im)
    box = draw.textbbox((2, 1), text, font=_font())
    draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255), font=_font())
    return np.asarray(im)


def tile_grid(tiles: list[np.ndarray], ncol: int, pad: int = 2, bg: int = 255) -> np.ndarray:
    """Tiles (same size, RGB) in rows of ``ncol``."""
    h, w = tiles[0].shape[:2]
    nrow = -(-len(tiles) // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), bg, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, ncol)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = t
    return out


def titled(image: np.ndarray, title: str, legend: np.ndarray | None = None) -> np.ndarray:
    """A title strip above ``image`` and an optional legend to its right."""
    body = image
    if legend is not None:
        h = max(image.shape[0], legend.shape[0])
        canvas = np.full((h, image.shape[1] + legend.shape[1] + 8, 3), 255, np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image
        canvas[: legend.shape[0], image.shape[1] + 8 :] = legend
        body = canvas
    width = max(
        body.shape[1], int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=_font())) + 8
    )
    if width > body.shape[1]:  # widen so the title fits
        wide = np.full((body.shape[0], width, 3), 255, np.uint8)
        wide[:, : body.shape[1]] = body
        body = wide
    strip = Image.new("RGB", (width, 16), (255, 255, 255))
    ImageDraw.Draw(strip).text((4, 2), title, fill=(0, 0, 0), font=_font())
    return np.concatenate([np.asarray(strip), body])


def colorbar(height: int, label_text: str = "weight", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """A vertical colour bar with ticks at vmin, the middle and vmax, and a label."""
    height = max(height, 64)
    bar_w, text_w = 14, 44
    values = np.linspace(vmax, vmin, height - 20)[:, None].repeat(bar_w, 1)
    im = Image.new("RGB", (bar_w + text_w, height), (255, 255, 255))
    im.paste(Image.fromarray(colormap(values, vmin, vmax)), (0, 14))
    draw = ImageDraw.Draw(im)
    draw.text((0, 0), label_text, fill=(0, 0, 0), font=_font())
    for frac in (0.0, 0.5, 1.0):
        y = 14 + round((1 - frac) * (height - 21))
        draw.line((bar_w, y, bar_w + 3, y), fill=(0, 0, 0))
        draw.text(
            (bar_w + 5, max(y - 5, 12)), f"{vmin + frac * (vmax - vmin):.2g}", fill=(0, 0, 0), font=_font()
        )
    return np.asarray(im)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a colour picture (e.g. a mask's palette colours) over an image."""
    return (
        (image.astype(np.float64) * (1 - alpha) + colours.astype(np.float64) * alpha).round().astype(np.uint8)
    )


def save_gif(path: Path, frames: list[np.ndarray], ms_per_frame: int = 120) -> None:
    """An endlessly looping animated GIF, written atomically; the last frame is held longer."""
    ims = [Image.fromarray(f) for f in frames]
    durations = [ms_per_frame] * (len(ims) - 1) + [ms_per_frame * 12]
    tmp = path.with_name(f".{path.name}.tmp")
    ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=durations, loop=0)
    tmp.replace(path)


__all__ = ["colorbar", "colormap", "label", "overlay", "save_gif", "tile_grid", "titled", "upscale"]
