"""The prepared dataset: what ``cdiff prepare`` writes and every later stage reads.

Layout (the same for every source)::

    data/
      images/<id>.png|jpg     RGB, resolution x resolution
      masks/<id>.png          index PNG (values 0..18) with the CelebAMask-HQ palette
      sketches/<id>.png       the line drawing: black lines on white (a synthetic face's own
                              geometry; a photo's edges by ``data.sketch``'s detector)
      captions.jsonl          one record per kept sample (id, split, caption, raw_caption,
                              attribute_captions, attributes, source id)
      splits/train.txt        ids, one per line, in id order
      splits/val.txt
      tokenizer/              transformers fast tokenizer (WordPiece or BERT's)
      config.yaml             the resolved config
      manifest.json           stage record (inputs, outputs with hashes, counts, timings)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cdiff.data import masks
from cdiff.data.sketches import edge_lines, encode_sketch, read_stored, resize_lines
from cdiff.data.sources import RawSample
from cdiff.errors import InputError
from cdiff.rundir import atomic_write_bytes, require_stage

IMAGES, MASKS, CAPTIONS, SPLITS, TOKENIZER = "images", "masks", "captions.jsonl", "splits", "tokenizer"
SKETCHES = "sketches"


def center_crop(im: Image.Image) -> Image.Image:
    """The largest centred square."""
    w, h = im.size
    if w == h:
        return im
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return im.crop((left, top, left + s, top + s))


def center_crop_label(label: np.ndarray) -> np.ndarray:
    h, w = label.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return label[top : top + s, left : left + s]


def resize_image(im: Image.Image, size: int) -> Image.Image:
    """Centre-crop and resize with Lanczos (antialiased, high quality for downsampling)."""
    im = center_crop(im)
    return im if im.size == (size, size) else im.resize((size, size), Image.Resampling.LANCZOS)


def encode_image(im: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_mask(label: np.ndarray) -> bytes:
    buf = io.BytesIO()
    masks.label_to_image(label).save(buf, format="PNG")
    return buf.getvalue()


def write_sample(
    sample: RawSample, out: Path, resolution: int, fmt: str, quality: int, sketch: Any = None
) -> dict[str, Any]:
    """Resize, check and write one sample's files atomically; return its captions record.

    ``sketch``: the ``data.sketch`` settings (the edge detector for samples without their own lines)."""
    label = masks.check_label(sample.label, source=f"sample {sample.id} mask")
    image = resize_image(sample.image, resolution)
    label = masks.resize_label(center_crop_label(label), resolution)
    atomic_write_bytes(out / IMAGES / f"{sample.id}.{fmt}", encode_image(image, fmt, quality))
    atomic_write_bytes(out / MASKS / f"{sample.id}.png", encode_mask(label))
    if sketch is not None:
        atomic_write_bytes(
            out / SKETCHES / f"{sample.id}.png", encode_sketch(_lines(sample, image, resolution, sketch))
        )
    record = {
        "id": sample.id,
        "caption": sample.caption,
        "raw_caption": sample.raw_caption,
        "attribute_captions": sample.attribute_captions,
        "attributes": sample.attributes,
    }
    if sample.notes:
        record["notes"] = sample.notes
    return record


def _lines(sample: RawSample, image: Image.Image, resolution: int, cfg: Any) -> np.ndarray:
    """The sample's own lines at the resolution, or the detector's edges of its prepared image."""
    if sample.sketch is not None:
        return resize_lines(center_crop_label(sample.sketch), resolution)
    return edge_lines(np.asarray(image), cfg.sigma, cfg.low, cfg.high)


@dataclass
class PreparedDataset:
    """Read access to a prepared dataset folder."""

    root: Path

    @classmethod
    def open(cls, root: str | Path) -> PreparedDataset:
        root = Path(root)
        require_stage(root, "prepare", f"cdiff prepare --out {root}")
        return cls(root)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "manifest.json").read_text())

    @cached_property
    def resolution(self) -> int:
        """Image and mask size in pixels, as prepared (later stages use this, not their own config)."""
        return int(self.manifest["config"]["data"]["resolution"])

    @cached_property
    def image_format(self) -> str:
        return self.manifest["config"]["data"]["image_format"]

    def split(self, name: str) -> list[str]:
        path = self.root / SPLITS / f"{name}.txt"
        if not path.is_file():
            raise InputError(f"no split '{name}' in {self.root / SPLITS}")
        return path.read_text().split()

    def records(self) -> dict[str, dict[str, Any]]:
        with open(self.root / CAPTIONS, encoding="utf-8") as f:
            return {r["id"]: r for r in map(json.loads, f)}

    def image(self, sample_id: str) -> np.ndarray:
        with Image.open(self.root / IMAGES / f"{sample_id}.{self.image_format}") as im:
            return np.asarray(im.convert("RGB"))

    def label(self, sample_id: str) -> np.ndarray:
        return masks.read_mask(self.root / MASKS / f"{sample_id}.png")

    def sketch(self, sample_id: str) -> np.ndarray:
        """The sample's line drawing, ``(R, R)`` bool (True on the lines)."""
        path = self.root / SKETCHES / f"{sample_id}.png"
        if not path.is_file():
            if not (self.root / SKETCHES).is_dir():
                raise InputError(
                    f"{self.root} was prepared before cdiff made sketches; prepare it again: "
                    f"cdiff prepare --out {self.root} --force (same options)"
                )
            raise InputError(f"no sketch for sample {sample_id} in {self.root / SKETCHES}")
        return read_stored(path)

    def tokenizer(self):
        from cdiff.data.tokenizer import load_tokenizer

        return load_tokenizer(self.root / TOKENIZER)
