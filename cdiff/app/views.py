"""Pictures the page shows: influence maps at one step, the mean weight of each model over t, overlays.

Influence maps are the weights the dynamic diffusers applied to each model's noise prediction, per
latent pixel and per step (``(steps, modalities, h, w)``, summing to 1 over the modalities). Plain
numpy and PIL (the drawing helpers of :mod:`cdiff.viz`); no Gradio.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from cdiff.data.masks import colorize, resize_label
from cdiff.viz import colorbar, colormap, label, overlay, tile_grid, titled, upscale

VIEW = 256  # the size results and overlays are shown at (nearest: the 64 px pixels stay sharp)
MAP = 160  # one influence map's tile
LINE_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def shown(image: np.ndarray, size: int = VIEW) -> np.ndarray:
    """A small picture enlarged for the page (nearest)."""
    return image if image.shape[0] >= size else upscale(image, size)


def influence_frame(weights: torch.Tensor, ts: list[int], step: int, names: list[str]) -> np.ndarray:
    """The influence map of each model at sampler step ``step`` (0-based), side by side, with a colour bar."""
    step = int(min(max(step, 0), len(ts) - 1))
    tiles = [
        label(upscale(colormap(weights[step, k].float().numpy()), MAP), f"w_{m}") for k, m in enumerate(names)
    ]
    body = tile_grid(tiles, len(tiles))
    title = (
        f"step {step + 1} of {len(ts)}, t = {ts[step]}: the weight each model's prediction gets, per pixel"
    )
    return titled(body, title, colorbar(body.shape[0], "weight"))


def mean_weights(weights: torch.Tensor, names: list[str]) -> dict[str, list[float]]:
    """Per model, its weight averaged over the pixels at each step."""
    means = weights.float().mean(dim=(2, 3))  # (steps, M)
    return {m: [round(float(v), 4) for v in means[:, k]] for k, m in enumerate(names)}


def mean_weight_plot(
    means: dict[str, list[float]], ts: list[int], width: int = 480, height: int = 220
) -> np.ndarray:
    """A line per model: its mean weight (0 … 1) against the step, t falling from left to right."""
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    left, right, top, bottom = 40, width - 12, 22, height - 30
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top)
        draw.line((left, y, right, y), fill=(230, 230, 230))
        draw.text((6, y - 5), f"{frac:.2f}", fill=(60, 60, 60))
    n = max(len(ts) - 1, 1)
    for i in sorted({0, len(ts) // 2, len(ts) - 1}):
        x = left + i / n * (right - left)
        draw.text((x - 8, bottom + 4), f"t={ts[i]}", fill=(60, 60, 60))
    draw.text((left, height - 14), "sampler step (noise falls from left to right)", fill=(60, 60, 60))
    for k, (m, values) in enumerate(means.items()):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        points = [(left + i / n * (right - left), bottom - v * (bottom - top)) for i, v in enumerate(values)]
        draw.line(points if len(points) > 1 else points * 2, fill=colour, width=2)
        x = right - 90 * (len(means) - k)  # the legend at the top right (the page's label covers the left)
        draw.rectangle((x, 6, x + 10, 16), fill=colour)
        draw.text((x + 14, 5), f"{m} model", fill=(0, 0, 0))
    return np.asarray(im)


def mask_overlay(result: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """The mask | the result | the mask over the result, enlarged."""
    size = result.shape[0]
    colours = colorize(resize_label(label_map, size))
    return tile_grid([shown(colours), shown(result), shown(overlay(result, colours))], 3)


__all__ = ["influence_frame", "mask_overlay", "mean_weight_plot", "mean_weights", "shown"]
