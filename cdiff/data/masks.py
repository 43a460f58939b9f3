"""Face-parsing masks: the 19 CelebAMask-HQ classes, their palette, reading, writing, tokens.

Every mask in cdiff is, in memory, a ``uint8`` label map ``(H, W)`` with values 0..18
(REFERENCE.md §4). On disk it is an index PNG (mode ``P``) carrying the CelebAMask-HQ
palette, so it opens as a colour picture and reads back as class ids. Readers also accept
palette-RGB PNGs and the released ``[19, r*r]`` one-hot ``.pt`` tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cdiff.errors import InputError

NUM_CLASSES = 19

CLASS_NAMES: tuple[str, ...] = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# CelebAMask-HQ per-part files, in combination order: label = index + 1, later parts overwrite.
PART_ORDER: tuple[str, ...] = CLASS_NAMES[1:]

PALETTE: np.ndarray = np.array(
    [
        [0, 0, 0],
        [204, 0, 0],
        [76, 153, 0],
        [204, 204, 0],
        [51, 51, 255],
        [204, 0, 204],
        [0, 255, 255],
        [255, 204, 204],
        [102, 51, 0],
        [255, 0, 0],
        [102, 204, 0],
        [255, 255, 0],
        [0, 0, 153],
        [0, 0, 204],
        [255, 51, 153],
        [0, 204, 204],
        [0, 51, 0],
        [255, 153, 51],
        [0, 204, 0],
    ],
    dtype=np.uint8,
)  # (19, 3)

_PIL_PALETTE: list[int] = PALETTE.flatten().tolist() + [0] * (768 - PALETTE.size)
_COLOUR_KEY = (PALETTE[:, 0].astype(np.int32) << 16) | (PALETTE[:, 1].astype(np.int32) << 8) | PALETTE[:, 2]


def combine_parts(parts: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Combine binary part masks into one label map, CelebAMask-HQ style.

    ``parts`` maps part names (``PART_ORDER``) to boolean arrays of ``shape``; absent parts
    are simply missing. Parts are painted in ``PART_ORDER``, later ones overwrite earlier ones.
    """
    label = np.zeros(shape, dtype=np.uint8)
    for name in PART_ORDER:
        if name in parts:
            label[parts[name]] = CLASS_ID[name]
    return label


def check_label(label: np.ndarray, source: str = "mask") -> np.ndarray:
    """Return ``label`` as uint8 (H, W) after checking every id is in 0..18."""
    if label.ndim != 2:
        raise InputError(f"{source}: expected a 2-D label map, got shape {tuple(label.shape)}")
    bad = np.unique(label[(label < 0) | (label >= NUM_CLASSES)])
    if bad.size:
        raise InputError(
            f"{source}: class ids {bad.tolist()[:10]} are outside 0..18; "
            "give an index PNG with CelebAMask-HQ ids or a palette-RGB PNG"
        )
    return label.astype(np.uint8)


def rgb_to_label(rgb: np.ndarray, source: str = "mask") -> np.ndarray:
    """Map a palette-coloured ``(H, W, 3)`` image to class ids; unknown colours are an error."""
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    lut_keys = np.sort(_COLOUR_KEY)
    lut_ids = np.argsort(_COLOUR_KEY)
    pos = np.clip(np.searchsorted(lut_keys, key), 0, NUM_CLASSES - 1)
    known = lut_keys[pos] == key
    if not known.all():
        unknown = np.unique(key[~known])[:5]
        colours = [f"({k >> 16},{(k >> 8) & 255},{k & 255})" for k in unknown.tolist()]
        raise InputError(
            f"{source}: {int((~known).sum())} pixels have colours outside the CelebAMask-HQ palette, "
            f"e.g. {', '.join(colours)}; save the mask with exact palette colours or as an index PNG"
        )
    return lut_ids[pos].astype(np.uint8)


def read_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a mask file as a uint8 label map (values 0..18).

    Accepts an index PNG (mode ``P``/``L``/``I``, values 0..18), a palette-RGB image, or a
    released ``.pt`` one-hot tensor ``[19, r*r]``. With ``size``, the map is resized by
    nearest neighbour to ``size x size``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask file not found: {path}")
    if path.suffix == ".pt":
        label = tokens_to_label(_load_pt_tokens(path), source=str(path))
    else:
        label = _read_mask_image(path)
    return resize_label(label, size) if size is not None else label


def _read_mask_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return image_to_label(im, str(path))
    except Image.DecompressionBombError:
        raise InputError(
            f"mask {path} has more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, more than cdiff reads; "
            "give it at the image resolution"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read mask {path}: {exc}; is it a PNG image?") from None


def image_to_label(im: Image.Image, source: str = "mask image") -> np.ndarray:
    """A PIL mask image (index ``P``/``L``/``I`` with ids 0..18, or palette RGB) → uint8 label map."""
    mode = im.mode
    if mode in ("P", "L", "I", "I;16"):
        if mode == "P" and _palette_is_foreign(im):
            return rgb_to_label(np.asarray(im.convert("RGB")), source=source)
        return check_label(np.asarray(im).astype(np.int64), source=source)
    if mode in ("RGB", "RGBA", "LA"):
        return rgb_to_label(np.asarray(im.convert("RGB")), source=source)
    raise InputError(f"{source}: unsupported mask image mode {mode}; use an index or RGB PNG")


def _palette_is_foreign(im: Image.Image) -> bool:
    """True when a mode-P image's palette is neither ours nor a grey ramp (its indices mean colours)."""
    pal = im.getpalette() or []
    used = np.unique(np.asarray(im))
    rgb = np.array(pal + [0] * (768 - len(pal)), dtype=np.int64).reshape(256, 3)[used]
    ours = used < NUM_CLASSES
    if ours.all() and np.array_equal(rgb, PALETTE[used].astype(np.int64)):
        return False
    grey = (rgb[:, 0] == rgb[:, 1]) & (rgb[:, 1] == rgb[:, 2]) & (rgb[:, 0] == used)
    if grey.all():
        return False
    return not ours.all()


def _load_pt_tokens(path: Path) -> np.ndarray:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise InputError(
            f"cannot read mask tensor {path}: {type(exc).__name__}; expected a [19, r*r] tensor"
        ) from None
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{path}: expected a tensor [19, r*r], found {type(obj).__name__}")
    return obj.float().numpy()


def write_mask(path: str | Path, label: np.ndarray) -> None:
    """Write a label map as an index PNG with the CelebAMask-HQ palette (not atomic: see rundir)."""
    im = label_to_image(label)
    im.save(path, format="PNG", optimize=False)


def label_to_image(label: np.ndarray) -> Image.Image:
    """A mode-``P`` PIL image of ``label`` with the CelebAMask-HQ palette."""
    im = Image.fromarray(check_label(label), mode="P")
    im.putpalette(_PIL_PALETTE)
    return im


def colorize(label: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` rendering of a label map in the palette."""
    return PALETTE[check_label(label)]


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to ``size x size`` (PIL's NEAREST: pixel centres, as the release)."""
    if label.shape == (size, size):
        return label
    im = Image.fromarray(label.astype(np.uint8), mode="L")
    return np.asarray(im.resize((size, size), resample=Image.Resampling.NEAREST))


def label_to_tokens(label: np.ndarray, r: int = 32) -> np.ndarray:
    """One-hot mask tokens ``[19, r*r]`` (float32), REFERENCE.md §4.

    The map is resized to ``r x r`` by nearest neighbour, one-hot encoded, and each class
    plane flattened row-major: ``tokens[c, i * r + j] = 1`` where the pixel (i, j) is class c.
    """
    small = resize_label(check_label(label), r)  # (r, r)
    onehot = np.zeros((NUM_CLASSES, r * r), dtype=np.float32)
    onehot[small.reshape(-1).astype(np.int64), np.arange(r * r)] = 1.0
    return onehot


def tokens_to_label(tokens: np.ndarray, source: str = "mask tensor") -> np.ndarray:
    """Inverse of :func:`label_to_tokens`: ``[19, r*r]`` → ``(r, r)`` label map (argmax per pixel)."""
    if tokens.ndim != 2 or tokens.shape[0] != NUM_CLASSES:
        raise InputError(f"{source}: expected shape [19, r*r], got {list(tokens.shape)}")
    r = int(round(tokens.shape[1] ** 0.5))
    if r * r != tokens.shape[1]:
        raise InputError(f"{source}: second dimension {tokens.shape[1]} is not a square r*r")
    return tokens.argmax(axis=0).reshape(r, r).astype(np.uint8)
