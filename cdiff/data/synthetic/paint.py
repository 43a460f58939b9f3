"""The image: base colours per part, then details blended in, each confined to its part; the finish."""

from __future__ import annotations

from typing import Any

import numpy as np

from cdiff.data.masks import CLASS_ID
from cdiff.data.synthetic.parts import _glasses
from cdiff.data.synthetic.pen import Draw, _grid, _mirrored, _Pen
from cdiff.data.synthetic.sampling import _AGE_GREY, _AGE_GREY_STRANDS, HAIR_COLOURS, SKIN_TONES, _Geom


def _mix(c0: Any, c1: Any, t: float) -> np.ndarray:
    return (1 - t) * np.asarray(c0, np.float32) + t * np.asarray(c1, np.float32)


def _skin_colour(att: dict[str, Any]) -> np.ndarray:
    skin = np.asarray(SKIN_TONES[att["skin_tone"]], np.float32)
    if att["age"] == 0:  # teen: saturated, fresh
        skin = np.clip(skin + 0.25 * (skin - skin.mean()) + 6, 0, 255)
    if att["age"] == 4:  # elderly: paler, greyer
        skin = _mix(_mix(skin, skin.mean(), 0.35), (232, 222, 214), 0.22)
    return skin


def _palette(att: dict[str, Any], col: dict[str, Any]) -> np.ndarray:
    """One base colour per class, (19, 3) float32."""
    skin, grey, base_hair = _skin_colour(att), _AGE_GREY[att["age"]], HAIR_COLOURS[att["hair_colour"]]
    lips = _mix(skin, (178, 84, 84), 0.45) if att["gender"] == "man" else _mix(skin, col["lipstick"], 0.75)
    colours = {
        "background": col["bg"][0],
        "skin": skin,
        "nose": skin * 0.94,
        "eye_g": _mix(skin, (225, 240, 255), 0.3),  # the frame is painted later
        "l_eye": (244, 242, 236),
        "r_eye": (244, 242, 236),
        "l_brow": _mix(base_hair, col["white_hair"], 0.6 * grey) * 0.8,
        "r_brow": _mix(base_hair, col["white_hair"], 0.6 * grey) * 0.8,
        "l_ear": skin * 0.92,
        "r_ear": skin * 0.92,
        "mouth": (92, 22, 32),
        "u_lip": lips * 0.9,
        "l_lip": lips,
        "hair": _mix(base_hair, col["white_hair"], grey),
        "hat": col["hat"],
        "ear_r": col["earring"],
        "neck_l": col["necklace"],
        "neck": skin * 0.84,
        "cloth": col["cloth"],
    }
    lut = np.zeros((len(CLASS_ID), 3), np.float32)
    for name, colour in colours.items():
        lut[CLASS_ID[name]] = colour
    return lut


class _Painter:
    """Blends details into the supersampled image, each confined to some part labels.

    Work is done only inside the bounding box of what was drawn, which keeps a sample fast.
    """

    def __init__(self, img: np.ndarray, label: np.ndarray) -> None:
        self.img, self.label, self.S = img, label, label.shape[0]

    def paint(self, parts: tuple[str, ...], colour: Any, draw: Draw, strength: float = 1.0) -> None:
        """Draw shapes with ``draw(pen)`` and blend ``colour`` in (at most ``strength``) on ``parts``."""
        pen = _Pen(self.S)
        draw(pen)
        box = pen.im.getbbox()
        if box is not None:
            x0, y0, x1, y1 = box
            alpha = np.asarray(pen.im.crop(box), dtype=np.float32) * (strength / 255)
            self.blend(parts, colour, alpha, (slice(y0, y1), slice(x0, x1)))

    def blend(self, parts: tuple[str, ...], colour: Any, alpha: np.ndarray, box: tuple[slice, slice]) -> None:
        """Blend ``colour`` with per-pixel ``alpha`` (0..1) into ``img[box]`` where the label is in ``parts``."""
        lab = self.label[box]
        where = np.zeros(lab.shape, dtype=bool)
        for name in parts:
            where |= lab == CLASS_ID[name]
        crop = self.img[box]
        crop += (alpha * where)[..., None] * (np.asarray(colour, np.float32) - crop)


def _paint_face(pt: _Painter, g: _Geom, att: dict[str, Any], col: dict[str, Any]) -> None:
    eyes, nose_bot = ("l_eye", "r_eye"), g.eye_y + g.nose_len
    nostril = _mirrored(
        lambda p, sx: p.ellipse(g.cx + sx * g.a * 0.09, nose_bot + g.b * 0.02, g.a * 0.05, g.b * 0.025)
    )
    pt.paint(("nose",), (0, 0, 0), nostril, 0.55)
    pt.paint(
        eyes,
        col["iris"],
        _mirrored(lambda p, sx: p.ellipse(g.cx + sx * g.eye_dx, g.eye_y, g.eye_ry * 1.05, g.eye_ry * 1.05)),
    )
    if att["gender"] == "woman":  # eyeliner
        liner = _mirrored(
            lambda p, sx: p.ellipse(
                g.cx + sx * g.eye_dx, g.eye_y - g.eye_ry * 0.3, g.eye_rx * 1.2, g.eye_ry * 0.9, width=0.008
            )
        )
        pt.paint(eyes, (10, 10, 10), liner)
    if att["smiling"]:  # teeth
        x0, x1 = g.cx - g.mouth_rx * 0.7, g.cx + g.mouth_rx * 0.7
        pt.paint(("mouth",), (246, 244, 236), lambda p: p.rect(x0, g.mouth_y, x1, g.mouth_y + g.b * 0.06))
    inner_ear = _mirrored(
        lambda p, sx: p.ellipse(g.cx + sx * g.a * 1.04, g.cy + g.b * 0.06, g.a * 0.06, g.b * 0.1)
    )
    pt.paint(("l_ear", "r_ear"), (0, 0, 0), inner_ear, 0.2)
    if att["eyeglasses"]:
        pt.paint(("eye_g",), col["frame"], lambda p: _glasses(p, g, att["glasses_style"], frame=0.012))


def _paint_hair(
    pt: _Painter, rng: np.random.Generator, g: _Geom, att: dict[str, Any], col: dict[str, Any]
) -> None:
    """Dark and light strands for texture, then grey strands by age (brows grey too from the forties)."""
    bottom = g.hair_bottom if att["hair_style"] == "long" else g.cy + g.b * 0.4
    parts = ("hair", "l_brow", "r_brow") if att["age"] >= 3 else ("hair",)
    strands = (
        ((0, 0, 0), 40, 0.3),
        ((255, 255, 255), 15, 0.18),
        (col["white_hair"], _AGE_GREY_STRANDS[att["age"]], 0.9),
    )
    for colour, n, strength in strands:
        x0 = g.cx + g.head_rx * rng.uniform(-0.9, 0.9, n)
        x1 = x0 + (x0 - g.cx) * 0.35 + g.head_rx * rng.uniform(-0.15, 0.15, n)
        y0 = g.cy - g.head_ry * rng.uniform(0.6, 1.1, n)
        y1 = y0 + (bottom - y0) * rng.uniform(0.3, 1.0, n)
        lines = [[(x0[i], y0[i]), (x1[i], y1[i])] for i in range(n)]
        pt.paint(parts, colour, lambda p, lines=lines: [p.line(pts, 0.008) for pts in lines], strength)


def _paint_age(pt: _Painter, g: _Geom, age: int) -> None:
    cx, a, b, ey = g.cx, g.a, g.b, g.eye_y
    if age == 0:  # rosy cheeks
        cheek = _mirrored(lambda p, sx: p.ellipse(cx + sx * a * 0.55, ey + b * 0.3, a * 0.2, b * 0.11))
        pt.paint(("skin",), (236, 96, 110), cheek, 0.6)
    if age < 2:
        return
    under_eye = _mirrored(
        lambda p, sx: p.ellipse(cx + sx * g.eye_dx, ey + g.eye_ry * 2.2, g.eye_rx * 1.1, g.eye_ry * 1.3)
    )
    pt.paint(("skin",), (70, 30, 50), under_eye, 0.1 * (age - 1))  # soft shadows, darker with age
    w, strength = ((0.009, 0.35), (0.011, 0.5), (0.013, 0.62))[age - 2]
    pt.paint(("skin",), (20, 10, 10), lambda p: _wrinkles(p, g, age, w), strength)


def _wrinkles(p: _Pen, g: _Geom, age: int, w: float) -> None:
    """Thirties: one forehead line, under-eye lines; forties: + a second line, nasolabial folds;
    elderly: + a third line, crow's feet, eye bags, marionette lines."""
    cx, a, b, ey = g.cx, g.a, g.b, g.eye_y
    for i in range(age - 1):
        p.arc((cx, g.brow_y - b * (0.02 + 0.1 * i)), (a * 0.5, b * 0.12), (200, 340), w)
    for sx in (-1, 1):
        ex = cx + sx * g.eye_dx
        p.arc((ex, ey + g.eye_ry * 1.4), (g.eye_rx, g.eye_ry * 1.4), (20, 160), w * 0.8)
        if age >= 3:
            nb = ey + g.nose_len
            fold = [(cx + sx * a * 0.24, nb - b * 0.05), (cx + sx * a * 0.36, nb + b * 0.1)]
            p.line([*fold, (cx + sx * (g.mouth_rx + a * 0.06), g.mouth_y + b * 0.06)], w)
        if age == 4:
            ox = ex + sx * g.eye_rx * 1.3
            for dy in (-0.05, 0.0, 0.05):
                p.line([(ox, ey + b * dy * 0.4), (ox + sx * a * 0.16, ey + b * dy * 1.6)], w * 0.8)
            p.arc((ex, ey + g.eye_ry * 2.6), (g.eye_rx * 0.9, g.eye_ry * 1.2), (20, 160), w * 0.8)
            mx = g.mouth_rx
            p.line([(cx + sx * mx * 1.05, g.mouth_y + b * 0.1), (cx + sx * mx, g.mouth_y + b * 0.22)], w)


def _paint_beard(pt: _Painter, rng: np.random.Generator, g: _Geom, degree: int, colour: np.ndarray) -> None:
    """Jaw, chin and moustache (long: higher up the cheeks, sideburns), on skin only: the label stays 1."""
    S = pt.S
    rows = slice(int((g.cy - 0.3 * g.b) * S), int((g.cy + g.b) * S) + 1)
    cols = slice(max(0, int((g.cx - g.a) * S)), int((g.cx + g.a) * S) + 1)
    X, Y = _grid(S)
    u, v = (X[:, cols] - g.cx) / g.a, (Y[rows] - g.cy) / g.b
    mv = (g.mouth_y - g.cy) / g.b
    region = v > ((0.68 - 0.6 * u * u) if degree < 3 else (0.45 - 0.45 * u * u))  # jaw and chin
    region |= ((u / 0.48) ** 2 + ((v - mv + 0.13) / 0.1) ** 2) < 1  # moustache
    region |= ((u / 0.55) ** 2 + ((v - mv - 0.05) / 0.25) ** 2) < 1  # around the mouth
    if degree == 3:
        region |= (np.abs(u) > 0.78) & (v > -0.15)  # sideburns
    density, strength = {1: (0.45, 0.75), 2: (0.9, 0.92), 3: (1.0, 1.0)}[degree]
    alpha = region.astype(np.float32) * strength
    if density < 1:  # stipple in cells of 1/128 of the image, about half an output pixel at 64 px
        c, (h, w) = max(1, round(S / 128)), alpha.shape
        dots = rng.random((-(-h // c), -(-w // c)), dtype=np.float32) < density
        alpha *= np.repeat(np.repeat(dots, c, 0), c, 1)[:h, :w]
    pt.blend(("skin",), colour * (0.75 if degree == 3 else 1.0), alpha, (rows, cols))


def _finish(img_s: np.ndarray, label: np.ndarray, light: float, noise: np.ndarray) -> np.ndarray:
    """Box-downsample, shade non-background pixels with a side light, add pixel noise."""
    R = label.shape[0]
    ss = img_s.shape[0] // R
    img = img_s.reshape(R, ss, R * ss, 3).sum(1).reshape(R, R, ss, 3).sum(2) * (1 / ss**2)
    X, Y = _grid(R)
    shade = 1 + light * (X - 0.5) + 0.08 * (0.5 - Y)
    img = np.where(label[..., None] > 0, img * shade[..., None], img) + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
