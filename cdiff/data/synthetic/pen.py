"""Drawing in normalised coordinates: the pen, boolean part masks, mirrored shapes, pixel grids."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]  # normalised image coordinates, 0..1


class _Pen:
    """ImageDraw in normalised coordinates on an ``S x S`` 8-bit canvas; ``width`` > 0 draws outlines."""

    def __init__(self, size: int) -> None:
        self.S = size
        self.im = Image.new("L", (size, size), 0)
        self.d = ImageDraw.Draw(self.im)

    def _box(self, cx: float, cy: float, rx: float, ry: float) -> list[float]:
        return [(cx - rx) * self.S, (cy - ry) * self.S, (cx + rx) * self.S, (cy + ry) * self.S]

    def _w(self, width: float) -> int:
        return max(1, int(round(width * self.S)))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: int = 255, width: float = 0) -> None:
        if width:
            self.d.ellipse(self._box(cx, cy, rx, ry), outline=fill, width=self._w(width))
        else:
            self.d.ellipse(self._box(cx, cy, rx, ry), fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: int = 255, width: float = 0) -> None:
        box, radius = [x0 * self.S, y0 * self.S, x1 * self.S, y1 * self.S], 0.3 * (y1 - y0) * self.S
        if width:
            self.d.rounded_rectangle(box, radius=radius, outline=fill, width=self._w(width))
        else:
            self.d.rounded_rectangle(box, radius=radius, fill=fill)

    def polygon(self, pts: list[Point], fill: int = 255) -> None:
        self.d.polygon([(x * self.S, y * self.S) for x, y in pts], fill=fill)

    def line(self, pts: list[Point], width: float, fill: int = 255) -> None:
        self.d.line(
            [(x * self.S, y * self.S) for x, y in pts], fill=fill, width=self._w(width), joint="curve"
        )

    def arc(self, c: Point, r: Point, angles: tuple[float, float], width: float) -> None:
        self.d.arc(self._box(*c, *r), *angles, fill=255, width=self._w(width))

    def chord(self, c: Point, r: Point, angles: tuple[float, float], fill: int = 255) -> None:
        self.d.chord(self._box(*c, *r), *angles, fill=fill)


Draw = Callable[[_Pen], Any]


def _mask(S: int, draw: Draw) -> np.ndarray:
    pen = _Pen(S)
    draw(pen)
    return np.asarray(pen.im) > 0


def _mirrored(shape: Callable[[_Pen, int], Any]) -> Draw:
    """Draw ``shape(pen, side)`` on both sides, side = -1 (image left) and +1."""
    return lambda p: [shape(p, sx) for sx in (-1, 1)]


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, :], c[:, None]  # X (1, S), Y (S, 1)
