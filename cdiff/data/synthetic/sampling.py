"""What a synthetic face is: its attributes, colours and jittered geometry, drawn from its generator."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

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
