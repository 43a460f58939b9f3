"""Synthetic CelebA-like faces: image, 19-class label map, CelebA-Dialog captions, attributes.

The embedded default dataset (SYNTHETIC.md). ``render_sample(seed, index)`` draws one cartoon
portrait from its own generator ``default_rng(SeedSequence([seed, index]))``, so sample k is the
same whatever else is generated, on any machine. Only numpy and Pillow are used.

How a sample is made:

1. Attributes are drawn: gender, age degree, beard degree (men only), hair style, bangs, hat,
   eyeglasses, earrings, necklace, smiling; then colours, a jittered geometry, the captions.
2. Parts are rasterised as boolean masks at a supersampled size (3x at 64 px) and combined in
   the CelebAMask-HQ overwrite order (``masks.combine_parts``): the label map. As in the real
   annotations the neck excludes the face and the necklace, hair excludes the visible face,
   and long hair hides the ears because hair overwrites them.
3. The image is painted from the label map (one colour per part), then details are blended in,
   each confined to its part: irises, teeth, hair strands and greying, wrinkles and cheeks,
   beard, glasses frames. Beard and age never change the label map: a beard is painted on the
   skin of the lower face, which stays label 1 (skin), exactly like CelebAMask-HQ.
4. The image is box-downsampled (anti-aliased), the label map centre-picked (hard ids); a side
   light and pixel noise are added at the final size.

What the text alone describes is drawn strongly enough for a small CNN to read at 64 px:
beard none / stubble (sparse stipple) / short (dense jaw, chin and moustache) / long (darkest,
up the cheeks, sideburns); age teen (rosy cheeks, saturated skin) / twenties (plain) / thirties
(faint lines, a few grey strands) / forties (forehead lines, nasolabial folds, ~35 % grey) /
elderly (many wrinkles, white or silver hair, paler skin). ``l_*`` parts are on the image's left.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cdiff.data.masks import CLASS_ID, combine_parts

AGE_DEGREES = ("teen", "twenties", "thirties", "forties", "elderly")  # index = degree 0..4
BEARD_DEGREES = ("none", "stubble", "short", "long")  # 0..3, men only (women always 0)
HAIR_STYLES = ("none", "short", "long")
HAT_STYLES = ("beanie", "brimmed", "cap")

SKIN_TONES = ((255, 222, 196), (240, 192, 158), (222, 170, 126), (196, 134, 92), (141, 88, 58), (96, 62, 44))
HAIR_COLOURS = ((28, 24, 24), (66, 42, 30), (112, 74, 46), (156, 114, 72), (222, 190, 120), (150, 66, 36))
IRIS_COLOURS = ((55, 32, 20), (96, 58, 30), (62, 104, 160), (70, 106, 62), (104, 110, 118))
LIPSTICKS = ((196, 38, 60), (214, 84, 112), (150, 36, 72), (222, 102, 96))
METALS = ((222, 184, 60), (205, 205, 215))  # gold, silver
_AGE_GREY = (0.0, 0.0, 0.12, 0.35, 0.85)  # hair greying by age degree
_AGE_GREY_STRANDS = (0, 0, 8, 45, 25)

Point = tuple[float, float]  # normalised image coordinates, 0..1


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # (R, R, 3) uint8 RGB
    label: np.ndarray  # (R, R) uint8, class ids 0..18
    attribute_captions: dict[str, str]  # Bangs, Eyeglasses, No_Beard, Smiling, Young -> one sentence
    overall_caption: str  # the non-empty sentences, in a random order
    attributes: dict[str, Any]  # JSON-serialisable ground truth


@dataclass(frozen=True)
class _Geom:
    """Face layout in normalised coordinates; ``a``, ``b`` = face half-width and half-height."""

    cx: float
    cy: float
    a: float
    b: float
    jaw_n: float  # superellipse exponent of the lower face (higher = squarer jaw)
    taper: float  # chin narrowing
    eye_y: float
    eye_dx: float
    eye_rx: float
    eye_ry: float
    brow_y: float
    brow_w: float
    nose_len: float
    mouth_y: float
    mouth_rx: float
    head_rx: float
    head_ry: float
    hairline: float  # hairline height at the face centre
    hairline_k: float  # how far the hairline drops towards the temples
    hairline_tilt: float  # side-swept bangs
    hair_bottom: float  # short hair: lowest point; long hair: end, behind the shoulders
    body_x: float
    shoulder_y: float


# ---- sampling -------------------------------------------------------------------------------


def _sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    man = bool(rng.random() < 0.5)
    age = int(rng.choice(5, p=(0.18, 0.22, 0.2, 0.2, 0.2)))
    beard = int(rng.choice(4, p=(0.34, 0.22, 0.22, 0.22))) * man  # drawn for all: women get 0
    p_none = 0.06 + 0.05 * age if man else 0.03
    p_long = 0.16 if man else 0.68
    hair = int(rng.choice(3, p=(p_none, 1 - p_none - p_long, p_long)))
    return {
        "gender": "man" if man else "woman",
        "age": age,
        "age_name": AGE_DEGREES[age],
        "beard": beard,
        "beard_name": BEARD_DEGREES[beard],
        "hair_style": HAIR_STYLES[hair],
        "bangs": bool(hair > 0 and rng.random() < (0.25 if man else 0.4)),
        "hat": bool(rng.random() < 0.15),
        "eyeglasses": bool(rng.random() < 0.15 + 0.05 * age),
        "earrings": bool(rng.random() < (0.08 if man else 0.45)),
        "necklace": bool(rng.random() < (0.08 if man else 0.35)),
        "smiling": bool(rng.random() < 0.5),
        "skin_tone": int(rng.integers(len(SKIN_TONES))),
        "hat_style": HAT_STYLES[int(rng.integers(3))],
        "glasses_style": "round" if rng.random() < 0.5 else "rect",
        "collar": "round" if rng.random() < 0.6 else "v",
    }


def _sample_colours(rng: np.random.Generator, att: dict[str, Any]) -> dict[str, Any]:
    dark_skin = att["skin_tone"] >= 4
    hair_p = (0.55, 0.3, 0.1, 0.05, 0.0, 0.0) if dark_skin else (0.2, 0.22, 0.18, 0.14, 0.14, 0.12)
    att["hair_colour"] = int(rng.choice(len(HAIR_COLOURS), p=hair_p))
    return {
        "iris": IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))],
        "lipstick": LIPSTICKS[int(rng.integers(len(LIPSTICKS)))],
        "bg": (_hsv(rng, (0.15, 0.55), (0.45, 0.9)), _hsv(rng, (0.15, 0.55), (0.45, 0.9))),
        "bg_gradient": bool(rng.random() < 0.5),
        "cloth": _hsv(rng, (0.3, 0.9), (0.3, 0.9)),
        "hat": _hsv(rng, (0.3, 0.8), (0.25, 0.85)),
        "frame": ((30, 28, 30), (120, 60, 30), (190, 160, 70))[int(rng.integers(3))],
        "earring": METALS[int(rng.integers(2))],
        "necklace": METALS[int(rng.integers(2))],
        "white_hair": (190, 190, 196) if rng.random() < 0.5 else (236, 234, 230),
        "light": rng.uniform(-0.16, 0.16),  # horizontal shading slope
    }


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple[int, ...]:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return tuple(int(round(255 * c)) for c in rgb)


def _sample_geometry(rng: np.random.Generator, att: dict[str, Any]) -> _Geom:
    man, bangs = att["gender"] == "man", att["bangs"]
    cx = 0.5 + float(np.clip(rng.normal(0, 0.025), -0.05, 0.05))
    cy = 0.44 + float(np.clip(rng.normal(0, 0.02), -0.04, 0.04))
    s = rng.uniform(0.92, 1.06)
    a, b = 0.18 * s * (1.06 if man else 1.0), 0.25 * s
    eye_y = cy - b * rng.uniform(0.02, 0.1)
    if att["hair_style"] == "long":
        hair_bottom = cy + b * 1.45 + rng.uniform(0.0, 0.12)
    else:
        hair_bottom = cy + b * (rng.uniform(-0.08, 0.15) if man else rng.uniform(0.0, 0.45))
    brow_y = eye_y - b * rng.uniform(0.17, 0.23)
    return _Geom(
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        jaw_n=rng.uniform(2.6, 3.2) if man else rng.uniform(2.0, 2.4),
        taper=rng.uniform(0.08, 0.16) if man else rng.uniform(0.22, 0.32),
        eye_y=eye_y,
        eye_dx=a * rng.uniform(0.4, 0.46),
        eye_rx=a * rng.uniform(0.19, 0.23),
        eye_ry=b * rng.uniform(0.075, 0.09),
        brow_y=brow_y,
        brow_w=b * (rng.uniform(0.09, 0.11) if man else rng.uniform(0.06, 0.075)),
        nose_len=b * rng.uniform(0.36, 0.46),
        mouth_y=cy + b * rng.uniform(0.5, 0.58),
        mouth_rx=a * rng.uniform(0.3, 0.36) * (1.2 if att["smiling"] else 1.0),
        head_rx=a * rng.uniform(1.1, 1.2) * (1.0 if man else 1.06),
        head_ry=b * rng.uniform(1.0, 1.1),
        hairline=(brow_y - b * rng.uniform(0.04, 0.1)) if bangs else cy - b * rng.uniform(0.55, 0.7),
        hairline_k=b * (rng.uniform(0.0, 0.15) if bangs else rng.uniform(0.35, 0.5)),
        hairline_tilt=b * (rng.uniform(-0.25, 0.25) if bangs and rng.random() < 0.4 else 0.0),
        hair_bottom=hair_bottom,
        body_x=cx + float(rng.normal(0, 0.01)),
        shoulder_y=cy + b * rng.uniform(1.3, 1.45),
    )


# ---- drawing helpers ------------------------------------------------------------------------


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


# ---- label map ------------------------------------------------------------------------------


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


# ---- image ----------------------------------------------------------------------------------


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


def _render_image(
    label: np.ndarray, rng: np.random.Generator, g: _Geom, att: dict[str, Any], col: dict[str, Any]
) -> np.ndarray:
    S = label.shape[0]
    img = np.take(_palette(att, col), label, axis=0)  # (S, S, 3) float32
    if col["bg_gradient"]:
        _, Y = _grid(S)
        img += (
            (label == 0)[..., None]
            * Y[..., None]
            * (np.subtract(col["bg"][1], col["bg"][0], dtype=np.float32))
        )
    pt = _Painter(img, label)
    _paint_face(pt, g, att, col)
    if att["hair_style"] != "none":
        _paint_hair(pt, rng, g, att, col)
    _paint_age(pt, g, att["age"])
    if att["beard"] > 0:
        beard = _mix(
            np.multiply(HAIR_COLOURS[att["hair_colour"]], 0.7), (150, 150, 150), 0.7 * _AGE_GREY[att["age"]]
        )
        _paint_beard(pt, rng, g, att["beard"], beard)
    if att["hat"]:
        pt.paint(("hat",), (0, 0, 0), lambda p: p.rect(0, g.cy - g.b * 0.72, 1, g.cy - g.b * 0.55), 0.3)
    return pt.img


def _finish(img_s: np.ndarray, label: np.ndarray, light: float, noise: np.ndarray) -> np.ndarray:
    """Box-downsample, shade non-background pixels with a side light, add pixel noise."""
    R = label.shape[0]
    ss = img_s.shape[0] // R
    img = img_s.reshape(R, ss, R * ss, 3).sum(1).reshape(R, R, ss, 3).sum(2) * (1 / ss**2)
    X, Y = _grid(R)
    shade = 1 + light * (X - 0.5) + 0.08 * (0.5 - Y)
    img = np.where(label[..., None] > 0, img * shade[..., None], img) + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- captions (CelebA-Dialog register) --------------------------------------------------------

_SUBJECTS = {
    "man": ("He", "He", "This man", "This guy", "The gentleman", "This gentleman", "The man"),
    "woman": ("She", "She", "This woman", "This lady", "The woman", "This female", "The lady"),
}
_PRONOUNS = {"man": ("he", "his"), "woman": ("she", "her")}
_AGE_PHRASES = (
    (
        "{S} is a teen.",
        "{S} is a teenager.",
        "{S} looks very young, still a teenager.",
        "{S} is in {his} teens.",
    ),
    ("{S} is a young adult.", "{S} is in {his} twenties.", "{S} looks like a young adult in {his} twenties."),
    (
        "{S} is in {his} thirties.",
        "{S} looks like {he} is in {his} thirties.",
        "{S} is about thirty-five years old.",
    ),
    ("{S} is in {his} forties.", "{S} is in the middle age.", "{S} looks middle-aged, in {his} forties."),
    (
        "{S} looks like an elderly.",
        "{S} is an elderly person.",
        "{S} looks very old.",
        "{S} is in {his} seventies.",
    ),
)
_BEARD_PHRASES = (
    (
        "{S} doesn't have any beard at all.",
        "{S} doesn't have any mustache at all.",
        "{S} has no beard.",
        "{His} face is clean shaven.",
        "{S} doesn't have any beard.",
    ),
    (
        "{S} has some stubble on {his} face.",
        "{His} face is covered with short stubble.",
        "{S} has a very short beard, just stubble.",
        "There is a bit of stubble on {his} chin and jaw.",
    ),
    (
        "The face is covered with short pointed beard.",
        "{S} has a short beard.",
        "{S} has beard of medium length.",
        "{S} has a neat short beard and a mustache.",
    ),
    (
        "{S} has a long thick beard.",
        "{His} face is covered with a very long beard.",
        "{S} has a big bushy beard.",
        "The face is covered with a long full beard.",
    ),
)
_NO_BEARD_WOMAN = ("{S} doesn't have any beard.", "{S} doesn't have any beard at all.", "{S} has no beard.")
_FLAG_PHRASES = {  # key -> (sentences when absent, sentences when present)
    "Bangs": (
        ("{S} has no bangs at all.", "{His} forehead is not covered by any bangs."),
        ("{S} has bangs.", "{S} has bangs covering {his} forehead.", "{His} forehead is covered by bangs."),
    ),
    "Eyeglasses": (
        ("{S} doesn't wear any eyeglasses.", "There are no eyeglasses on {his} face."),
        ("{S} wears eyeglasses.", "{S} is wearing a pair of glasses.", "There are glasses on {his} face."),
    ),
    "Smiling": (
        ("{S} looks serious with no smile in {his} face.", "{S} is not smiling."),
        (
            "{S} is smiling happily with {his} mouth open.",
            "{S} has a big smile on {his} face.",
            "{S} is laughing with {his} teeth showing.",
        ),
    ),
}
_CAPTION_KEYS = ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")


def _sentence(rng: np.random.Generator, options: tuple[str, ...], gender: str) -> str:
    text = options[int(rng.integers(len(options)))]
    subject = _SUBJECTS[gender][int(rng.integers(len(_SUBJECTS[gender])))]
    he, his = _PRONOUNS[gender]
    return text.format(S=subject, he=he, his=his, His=his.capitalize())


def _captions(rng: np.random.Generator, att: dict[str, Any]) -> tuple[dict[str, str], str]:
    """One sentence per CelebA-Dialog key (a woman's beard sentence is empty half the time) and their join."""
    gender = att["gender"]
    caps = {
        key: _sentence(rng, _FLAG_PHRASES[key][int(att[flag])], gender)
        for key, flag in (("Bangs", "bangs"), ("Eyeglasses", "eyeglasses"), ("Smiling", "smiling"))
    }
    beard = _sentence(rng, _BEARD_PHRASES[att["beard"]] if gender == "man" else _NO_BEARD_WOMAN, gender)
    caps["No_Beard"] = beard if gender == "man" or rng.random() < 0.5 else ""
    caps["Young"] = _sentence(rng, _AGE_PHRASES[att["age"]], gender)
    overall = " ".join(caps[_CAPTION_KEYS[i]] for i in rng.permutation(5) if caps[_CAPTION_KEYS[i]])
    return {k: caps[k] for k in _CAPTION_KEYS}, overall


# ---- entry point ----------------------------------------------------------------------------


def _supersampling(resolution: int) -> int:
    """3x up to 64 px (an odd factor: the label pick is the exact centre), 2x from 128 px."""
    return max(2, min(3, -(-192 // resolution)))


def render_sample(seed: int, index: int, resolution: int = 64) -> SyntheticSample:
    """Render sample ``index`` of the synthetic dataset ``seed`` at ``resolution`` x ``resolution``.

    Attributes, captions and geometry do not depend on ``resolution``; pixel noise does.
    """
    if resolution < 32:
        raise ValueError(f"resolution must be >= 32, got {resolution}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    att = _sample_attributes(rng)
    col = _sample_colours(rng, att)
    g = _sample_geometry(rng, att)
    attribute_captions, overall = _captions(rng, att)
    noise = rng.normal(0, 2.5, (resolution, resolution, 3)).astype(np.float32)
    ss = _supersampling(resolution)
    S = resolution * ss
    label_s = combine_parts(_part_masks(g, att, S), (S, S))
    img_s = _render_image(label_s, rng, g, att, col)  # hair strands, then beard stipple: the last draws
    label = np.ascontiguousarray(label_s[ss // 2 :: ss, ss // 2 :: ss])
    image = _finish(img_s, label, col["light"], noise)
    return SyntheticSample(image, label, attribute_captions, overall, att)
