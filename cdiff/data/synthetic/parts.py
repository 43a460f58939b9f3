"""The label map's parts: one boolean mask per present part, as an annotator would paint them."""

from __future__ import annotations

from typing import Any

import numpy as np

from cdiff.data.synthetic.pen import Point, _grid, _mask, _mirrored, _Pen
from cdiff.data.synthetic.sampling import _Geom


def _part_masks(g: _Geom, att: dict[str, Any], S: int) -> dict[str, np.ndarray]:
    """Boolean ``(S, S)`` masks of every present part, as an annotator would paint them."""
    face = _mask(S, lambda p: p.polygon(_face_outline(g)))
    parts = {"skin": face, "nose": _mask(S, lambda p: _nose(p, g))}
    if att["eyeglasses"]:
        parts["eye_g"] = _mask(S, lambda p: _glasses(p, g, att["glasses_style"], frame=0))
    for side, sx in (("l", -1), ("r", 1)):
        parts[f"{side}_eye"] = _mask(
            S, lambda p, sx=sx: p.ellipse(g.cx + sx * g.eye_dx, g.eye_y, g.eye_rx, g.eye_ry)
        )
        parts[f"{side}_brow"] = _mask(S, lambda p, sx=sx: _brow(p, g, sx))
        ear = _mask(
            S, lambda p, sx=sx: p.ellipse(g.cx + sx * g.a * 1.03, g.cy + g.b * 0.06, g.a * 0.18, g.b * 0.2)
        )
        parts[f"{side}_ear"] = ear & ~face  # the cheek hides the ear's inner edge
    if att["smiling"]:
        parts["mouth"] = _mask(S, lambda p: p.chord((g.cx, g.mouth_y), (g.mouth_rx, g.b * 0.15), (0, 180)))
    parts["u_lip"] = _mask(S, lambda p: _lip(p, g, att["smiling"], upper=True))
    parts["l_lip"] = _mask(S, lambda p: _lip(p, g, att["smiling"], upper=False))
    if att["hair_style"] != "none":
        parts["hair"] = _hair(g, att["hair_style"], face, S)
    if att["hat"]:
        parts["hat"] = _mask(S, lambda p: _hat(p, g, att["hat_style"]))
    if att["earrings"]:
        parts["ear_r"] = _mask(S, _mirrored(lambda p, sx: _earring(p, g, sx)))
    if att["necklace"]:
        parts["neck_l"] = _mask(S, lambda p: _necklace(p, g))
    parts["neck"] = _mask(S, lambda p: _neck(p, g, att["collar"])) & ~face & ~parts.get("neck_l", np.False_)
    parts["cloth"] = _mask(S, lambda p: _cloth(p, g, att["collar"]))
    return parts


def _face_outline(g: _Geom, n: int = 56) -> list[Point]:
    """An ellipse on top, a squarer, tapering superellipse below."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    ex = np.where(s > 0, 2 / g.jaw_n, 2 / 2.1)
    y = np.sign(s) * np.abs(s) ** ex
    x = np.sign(c) * np.abs(c) ** ex * (1 - g.taper * np.clip(y, 0, None) ** 2)
    return list(zip((g.cx + g.a * x).tolist(), (g.cy + g.b * y).tolist(), strict=True))


def _nose(p: _Pen, g: _Geom) -> None:
    top, bot, cx, a = g.eye_y + g.b * 0.06, g.eye_y + g.nose_len, g.cx, g.a
    p.polygon([(cx - a * 0.07, top), (cx + a * 0.07, top), (cx + a * 0.2, bot), (cx - a * 0.2, bot)])
    p.ellipse(cx, bot, a * 0.22, g.b * 0.06)


def _brow(p: _Pen, g: _Geom, sx: int) -> None:
    x0, x1 = g.cx + sx * (g.eye_dx - g.eye_rx * 1.2), g.cx + sx * (g.eye_dx + g.eye_rx * 1.3)
    y, b = g.brow_y, g.b
    p.line([(x0, y + b * 0.01), ((x0 + x1) / 2, y - b * 0.035), (x1, y + b * 0.02)], g.brow_w)


def _lip(p: _Pen, g: _Geom, smiling: bool, upper: bool) -> None:
    """Closed: two half-ellipses. Smiling: a thin upper lip over an open mouth, a crescent below."""
    cx, y, rx, b = g.cx, g.mouth_y, g.mouth_rx, g.b
    if upper and smiling:
        p.chord((cx, y + b * 0.02), (rx * 1.02, b * 0.07), (180, 360))
        p.rect(cx - rx, y - b * 0.005, cx + rx, y + b * 0.035)
    elif smiling:
        p.chord((cx, y - b * 0.01), (rx * 1.02, b * 0.22), (0, 180))
        p.chord((cx, y - b * 0.01), (rx * 0.92, b * 0.15), (0, 180), fill=0)
    elif upper:
        p.chord((cx, y), (rx, b * 0.075), (180, 360))
    else:
        p.chord((cx, y), (rx * 0.95, b * 0.1), (0, 180))


def _glasses(p: _Pen, g: _Geom, style: str, frame: float) -> None:
    """Lenses, bridge and temples; ``frame`` > 0 draws only the frame, that wide."""
    rx, ry, fw = g.eye_rx * 1.55, g.eye_ry * 2.6, 0.012
    for sx in (-1, 1):
        ex = g.cx + sx * g.eye_dx
        if style == "round":
            p.ellipse(ex, g.eye_y, rx, ry, width=frame)
        else:
            p.rect(ex - rx, g.eye_y - ry, ex + rx, g.eye_y + ry, width=frame)
        p.line([(ex + sx * rx * 0.95, g.eye_y - ry * 0.4), (g.cx + sx * g.a * 0.99, g.eye_y - ry * 0.3)], fw)
    bridge_x = g.eye_dx - rx * 0.95
    p.line([(g.cx - bridge_x, g.eye_y - ry * 0.3), (g.cx + bridge_x, g.eye_y - ry * 0.3)], fw)


def _hair(g: _Geom, style: str, face: np.ndarray, S: int) -> np.ndarray:
    """Head cap (short: cut at ``hair_bottom``; long: falling behind the shoulders), minus the visible face."""
    pen = _Pen(S)
    top = g.cy - g.b * 0.15
    pen.ellipse(g.cx, top, g.head_rx, g.head_ry)
    if style == "long":
        w0 = max(g.head_rx, g.a * 1.27)  # wide enough to cover the ears
        w1 = w0 * 1.15
        pen.polygon(
            [(g.cx - w0, top), (g.cx + w0, top), (g.cx + w1, g.hair_bottom), (g.cx - w1, g.hair_bottom)]
        )
    else:
        pen.rect(g.cx - g.head_rx, top, g.cx + g.head_rx, g.hair_bottom + 0.02)
        pen.rect(0, g.hair_bottom, 1, 1, fill=0)
    X, Y = _grid(S)
    u = (X - g.cx) / g.a
    below_hairline = Y > g.hairline + g.hairline_k * u * u + g.hairline_tilt * u
    return (np.asarray(pen.im) > 0) & ~(face & below_hairline)


def _hat(p: _Pen, g: _Geom, style: str) -> None:
    cx, cy, a, b = g.cx, g.cy, g.a, g.b
    if style == "beanie":
        p.ellipse(cx, cy - b * 0.6, a * 1.24, b * 0.7)
        p.rect(0, cy - b * 0.45, 1, 1, fill=0)
        p.rect(cx - a * 1.26, cy - b * 0.72, cx + a * 1.26, cy - b * 0.45)
    elif style == "brimmed":
        p.ellipse(cx, cy - b * 0.92, a * 0.98, b * 0.5)
        p.rect(cx - a * 0.98, cy - b * 0.92, cx + a * 0.98, cy - b * 0.58)
        p.ellipse(cx, cy - b * 0.6, a * 1.85, b * 0.12)
    else:  # cap: dome and a visor seen from the front
        p.ellipse(cx, cy - b * 0.62, a * 1.2, b * 0.66)
        p.rect(0, cy - b * 0.55, 1, 1, fill=0)
        p.ellipse(cx, cy - b * 0.55, a * 1.0, b * 0.12)


def _earring(p: _Pen, g: _Geom, sx: int) -> None:
    x, y = g.cx + sx * g.a * 1.04, g.cy + g.b * 0.3
    p.line([(x, y - g.b * 0.05), (x, y)], 0.01)
    p.ellipse(x, y + 0.012, 0.016, 0.016)


def _necklace(p: _Pen, g: _Geom) -> None:
    p.arc((g.body_x, g.shoulder_y - 0.03), (g.a * 0.58, 0.075), (15, 165), 0.014)
    p.ellipse(g.body_x, g.shoulder_y + 0.045, 0.012, 0.014)


def _neck(p: _Pen, g: _Geom, collar: str) -> None:
    p.rect(g.body_x - g.a * 0.5, g.cy, g.body_x + g.a * 0.5, g.shoulder_y + 0.05)
    _neckline(p, g, collar, 255)  # the chest skin inside the neckline is labelled neck


def _neckline(p: _Pen, g: _Geom, collar: str, fill: int) -> None:
    if collar == "round":
        p.ellipse(g.body_x, g.shoulder_y, g.a * 0.68, 0.085, fill=fill)
    else:
        top = g.shoulder_y - 0.03
        p.polygon(
            [(g.body_x - g.a * 0.7, top), (g.body_x + g.a * 0.7, top), (g.body_x, g.shoulder_y + 0.14)], fill
        )


def _cloth(p: _Pen, g: _Geom, collar: str) -> None:
    p.ellipse(g.body_x, g.shoulder_y + 0.34, 0.48, 0.34)
    _neckline(p, g, collar, 0)
