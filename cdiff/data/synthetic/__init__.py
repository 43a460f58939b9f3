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
5. The sketch: every boundary between two parts of the supersampled label map, at the final size
   (:func:`cdiff.data.sketches.geometry_lines`): the exact lines of the face's own geometry.

What the text alone describes is drawn strongly enough for a small CNN to read at 64 px:
beard none / stubble (sparse stipple) / short (dense jaw, chin and moustache) / long (darkest,
up the cheeks, sideburns); age teen (rosy cheeks, saturated skin) / twenties (plain) / thirties
(faint lines, a few grey strands) / forties (forehead lines, nasolabial folds, ~35 % grey) /
elderly (many wrinkles, white or silver hair, paler skin). ``l_*`` parts are on the image's left.

The package: :mod:`~cdiff.data.synthetic.sampling` (attributes, colours, geometry),
:mod:`~cdiff.data.synthetic.pen` (drawing in normalised coordinates),
:mod:`~cdiff.data.synthetic.parts` (the label map's parts), :mod:`~cdiff.data.synthetic.paint`
(the image), :mod:`~cdiff.data.synthetic.captions`; here, :func:`render_sample` puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cdiff.data.masks import combine_parts
from cdiff.data.sketches import geometry_lines
from cdiff.data.synthetic.captions import _captions
from cdiff.data.synthetic.paint import (
    _finish,
    _mix,
    _paint_age,
    _paint_beard,
    _paint_face,
    _paint_hair,
    _Painter,
    _palette,
)
from cdiff.data.synthetic.parts import _part_masks
from cdiff.data.synthetic.pen import Point, _grid
from cdiff.data.synthetic.sampling import (
    _AGE_GREY,
    AGE_DEGREES,
    BEARD_DEGREES,
    HAIR_COLOURS,
    HAIR_STYLES,
    HAT_STYLES,
    IRIS_COLOURS,
    LIPSTICKS,
    METALS,
    SKIN_TONES,
    _Geom,
    _sample_attributes,
    _sample_colours,
    _sample_geometry,
)

__all__ = [
    "AGE_DEGREES",
    "BEARD_DEGREES",
    "HAIR_COLOURS",
    "HAIR_STYLES",
    "HAT_STYLES",
    "IRIS_COLOURS",
    "LIPSTICKS",
    "METALS",
    "SKIN_TONES",
    "Point",
    "SyntheticSample",
    "render_sample",
]


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # (R, R, 3) uint8 RGB
    label: np.ndarray  # (R, R) uint8, class ids 0..18
    attribute_captions: dict[str, str]  # Bangs, Eyeglasses, No_Beard, Smiling, Young -> one sentence
    overall_caption: str  # the non-empty sentences, in a random order
    attributes: dict[str, Any]  # JSON-serialisable ground truth
    sketch: np.ndarray | None = None  # (R, R) bool: the lines of the face's own geometry


# here, not in paint: it looks the painters up in this module, so patching synthetic._paint_beard works
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
    return SyntheticSample(image, label, attribute_captions, overall, att, geometry_lines(label_s, ss))
