"""Where samples come from: the synthetic generator, raw CelebA-HQ, or the release's layout.

Every source lists ids and loads one id as a :class:`RawSample` (image, label map, captions,
attributes). Everything after that (cropping, resizing, checks, file formats) is shared, so
the three sources produce the same prepared format through the same code path.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cdiff.data import captions as cap
from cdiff.data import masks
from cdiff.errors import InputError


class SampleError(InputError):
    """One sample is unusable (corrupt image, bad mask, no caption); ``--skip-bad`` skips it."""

    def __init__(self, sample_id: str, reason: str, detail: str):
        super().__init__(f"sample {sample_id}: {detail}")
        self.reason = reason


@dataclass
class RawSample:
    id: str
    image: Image.Image  # RGB, any size
    label: np.ndarray  # (h, w) uint8 class ids, any size
    caption: str  # the text condition (beard + age)
    raw_caption: str = ""
    attribute_captions: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)  # (input file, sha256) read for it
    sketch: np.ndarray | None = None  # (h, w) bool lines when the source draws them (synthetic); else edges


def _numeric_ids(names: list[str]) -> list[str]:
    return sorted({n for n in names if n.isdigit()}, key=int)


def _read_bytes(path: Path, digests: list[tuple[str, str]]) -> bytes:
    """Read a file once, recording its content hash for the manifest."""
    data = path.read_bytes()
    digests.append((path.name, hashlib.sha256(data).hexdigest()))
    return data


def _open_rgb(path: Path, sample_id: str, digests: list[tuple[str, str]]) -> Image.Image:
    try:
        with Image.open(io.BytesIO(_read_bytes(path, digests))) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(sample_id, "corrupt image", f"cannot read image {path} ({exc})") from None


def _subdir(folder: Path, name: str) -> Path:
    """``folder/name`` when the user gave the parent folder, else ``folder``."""
    return folder / name if (folder / name).is_dir() else folder


def _need_dir(value: str | None, option: str, what: str) -> Path:
    if not value:
        raise InputError(f"{what} folder not given; pass {option} DIR")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise InputError(f"{what} folder not found: {path}; check {option}")
    return path


# ---- synthetic ------------------------------------------------------------------------------


@dataclass
class SyntheticSource:
    """The embedded generator (SYNTHETIC.md): ids 0..num-1, sample k depends only on (seed, k)."""

    num: int
    seed: int
    resolution: int
    name: str = "synthetic"

    def ids(self) -> list[str]:
        return [str(i) for i in range(self.num)]

    def inputs(self) -> dict[str, Any]:
        from cdiff.data import synthetic

        code = hashlib.sha256()  # every module of the generator package, by name
        for path in sorted(Path(synthetic.__file__).parent.glob("*.py")):
            code.update(path.name.encode() + b"\0" + path.read_bytes())
        return {
            "generator": {
                "module": synthetic.__name__,
                "code_sha256": code.hexdigest(),
                "seed": self.seed,
                "num": self.num,
            }
        }

    def load(self, sample_id: str) -> RawSample:
        from cdiff.data.synthetic import render_sample

        s = render_sample(self.seed, int(sample_id), self.resolution)
        return RawSample(
            id=sample_id,
            image=Image.fromarray(s.image, mode="RGB"),
            label=s.label,
            caption=cap.trim_caption(s.attribute_captions),
            raw_caption=s.overall_caption,
            attribute_captions=dict(s.attribute_captions),
            attributes=dict(s.attributes),
            sketch=s.sketch,
        )


# ---- CelebA-HQ + CelebAMask-HQ + CelebA-Dialog ---------------------------------------------


@dataclass
class CelebASource:
    """Raw CelebA-HQ images, CelebAMask-HQ masks (per-part or combined), CelebA-Dialog captions."""

    image_dir: Path
    mask_dir: Path
    per_part: bool
    captions: dict[str, dict[str, Any]]
    attributes: dict[str, dict[str, int]] | None
    input_files: dict[str, str]
    name: str = "celeba"

    @classmethod
    def from_config(cls, data: Any) -> CelebASource:
        image_dir = _subdir(_need_dir(data.celebahq, "--celebahq", "CelebA-HQ image"), "CelebA-HQ-img")
        mask_dir = _subdir(_need_dir(data.masks, "--masks", "CelebAMask-HQ mask"), "CelebAMask-HQ-mask-anno")
        if not data.captions:
            raise InputError("captions file not given; pass --captions captions_hq.json (CelebA-Dialog)")
        per_part = any(p.is_dir() and p.name.isdigit() for p in mask_dir.iterdir())
        attributes = cap.read_attribute_table(data.attributes, data.hq_mapping) if data.attributes else None
        files = {"captions": data.captions, "attributes": data.attributes, "hq_mapping": data.hq_mapping}
        return cls(
            image_dir,
            mask_dir,
            per_part,
            cap.read_dialog_captions(data.captions),
            attributes,
            {k: v for k, v in files.items() if v},
        )

    def ids(self) -> list[str]:
        ids = _numeric_ids(
            [p.stem for p in self.image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        )
        if not ids:
            raise InputError(f"no CelebA-HQ images (<n>.jpg) in {self.image_dir}; check --celebahq")
        return ids

    def inputs(self) -> dict[str, Any]:
        return {
            "images": str(self.image_dir),
            "masks": str(self.mask_dir),
            "mask_layout": "per-part" if self.per_part else "combined",
            **self.input_files,
        }

    def _image_path(self, sample_id: str) -> Path:
        for ext in (".jpg", ".png", ".jpeg", ".JPG"):
            p = self.image_dir / f"{sample_id}{ext}"
            if p.is_file():
                return p
        raise SampleError(sample_id, "missing image", f"image file not found in {self.image_dir}")

    def load(self, sample_id: str) -> RawSample:
        entry = self.captions.get(sample_id)
        if entry is None or not entry["caption"]:
            raise SampleError(sample_id, "no caption", "has no beard/age caption in the captions file")
        digests: list[tuple[str, str]] = []
        image = _open_rgb(self._image_path(sample_id), sample_id, digests)
        if self.per_part:
            label = self._load_parts(sample_id, digests)
        else:
            label = self._load_combined(sample_id, digests)
        attrs = self.attributes.get(sample_id) if self.attributes is not None else None
        return RawSample(
            sample_id,
            image,
            label,
            entry["caption"],
            entry["raw_caption"],
            entry["attribute_captions"],
            attrs,
            digests=digests,
        )

    def _load_parts(self, sample_id: str, digests: list[tuple[str, str]]) -> np.ndarray:
        folder = self.mask_dir / str(int(sample_id) // 2000)
        parts: dict[str, np.ndarray] = {}
        shape = None
        for name in masks.PART_ORDER:
            path = folder / f"{int(sample_id):05d}_{name}.png"
            if not path.is_file():
                continue
            try:
                with Image.open(io.BytesIO(_read_bytes(path, digests))) as im:
                    arr = np.asarray(im.convert("L")) > 127
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise SampleError(
                    sample_id, "corrupt mask", f"cannot read mask part {path} ({exc})"
                ) from None
            if shape is not None and arr.shape != shape:
                raise SampleError(sample_id, "bad mask", f"mask part {path} is {arr.shape}, others {shape}")
            shape, parts[name] = arr.shape, arr
        if not parts:
            raise SampleError(
                sample_id, "missing mask", f"no mask part files {int(sample_id):05d}_*.png in {folder}"
            )
        return masks.combine_parts(parts, shape)

    def _load_combined(self, sample_id: str, digests: list[tuple[str, str]]) -> np.ndarray:
        path = self.mask_dir / f"{sample_id}.png"
        if not path.is_file():
            raise SampleError(sample_id, "missing mask", f"mask {path} not found")
        try:
            _read_bytes(path, digests)
            return masks.read_mask(path)
        except InputError as exc:
            raise SampleError(sample_id, "bad mask", str(exc)) from None


# ---- the release's preprocessed datasets/ ---------------------------------------------------


@dataclass
class CodiffSource:
    """The released code's ``datasets/`` layout: downsampled jpgs, trimmed captions, ``[19, 1024]`` masks."""

    image_dir: Path
    mask_dir: Path
    captions: dict[str, dict[str, Any]]
    captions_file: str
    name: str = "codiff"

    @classmethod
    def from_config(cls, data: Any) -> CodiffSource:
        root = _subdir(_need_dir(data.root, "--root", "release datasets/"), "datasets")
        image_dir = cls._find_images(root, data.resolution)
        captions_file = cls._find_captions(root)
        mask_dir = _need_dir(data.masks, "--masks", "mask") if data.masks else cls._find_masks(root)
        return cls(image_dir, mask_dir, cap.read_dialog_captions(captions_file), str(captions_file))

    @staticmethod
    def _find_images(root: Path, resolution: int) -> Path:
        found = {}
        for size in (256, 512, 1024):
            for rel in (
                f"image/image_{size}_downsampled_from_hq_1024",
                f"image_{size}_downsampled_from_hq_1024",
            ):
                if (root / rel).is_dir():
                    found.setdefault(size, root / rel)
        if not found:
            raise InputError(
                f"no image_<size>_downsampled_from_hq_1024/ folder under {root}; is --root the release's datasets/?"
            )
        larger = [s for s in sorted(found) if s >= resolution]
        return found[larger[0] if larger else max(found)]

    @staticmethod
    def _find_captions(root: Path) -> Path:
        preferred = root / "text" / "captions_hq_beard_and_age_2022-08-19.json"
        if preferred.is_file():
            return preferred
        candidates = sorted((root / "text").glob("*.json")) if (root / "text").is_dir() else []
        if not candidates:
            raise InputError(f"no captions JSON under {root / 'text'}; is --root the release's datasets/?")
        return candidates[0]

    @staticmethod
    def _find_masks(root: Path) -> Path:
        for path in sorted(root.rglob("*.pt")):
            if path.stem.isdigit():
                return path.parent
        raise InputError(f"no <n>.pt mask tensors under {root}; pass --masks DIR")

    def ids(self) -> list[str]:
        ids = _numeric_ids([p.stem for p in self.image_dir.iterdir() if p.suffix.lower() in (".jpg", ".png")])
        if not ids:
            raise InputError(f"no images in {self.image_dir}")
        return ids

    def inputs(self) -> dict[str, Any]:
        return {"images": str(self.image_dir), "masks": str(self.mask_dir), "captions": self.captions_file}

    def load(self, sample_id: str) -> RawSample:
        entry = self.captions.get(sample_id)
        if entry is None or not entry["caption"]:
            raise SampleError(sample_id, "no caption", "has no caption in the captions file")
        image_path = next(
            (
                p
                for p in (self.image_dir / f"{sample_id}.jpg", self.image_dir / f"{sample_id}.png")
                if p.is_file()
            ),
            None,
        )
        if image_path is None:
            raise SampleError(sample_id, "missing image", f"image not found in {self.image_dir}")
        digests: list[tuple[str, str]] = []
        image = _open_rgb(image_path, sample_id, digests)
        mask_path = self.mask_dir / f"{sample_id}.pt"
        if not mask_path.is_file():
            raise SampleError(sample_id, "missing mask", f"mask tensor {mask_path} not found")
        try:
            _read_bytes(mask_path, digests)
            label = masks.read_mask(mask_path)
        except InputError as exc:
            raise SampleError(sample_id, "bad mask", str(exc)) from None
        note = f"mask upsampled from {label.shape[0]}x{label.shape[1]} tokens"
        return RawSample(
            sample_id,
            image,
            label,
            entry["caption"],
            entry["raw_caption"],
            entry["attribute_captions"],
            None,
            [note],
            digests,
        )


def make_source(data: Any) -> SyntheticSource | CelebASource | CodiffSource:
    """The source named by ``data.source``, its inputs checked."""
    if data.source == "synthetic":
        if data.num < 1:
            raise InputError(f"--num must be at least 1, got {data.num}")
        return SyntheticSource(data.num, data.seed, data.resolution)
    if data.source == "celeba":
        return CelebASource.from_config(data)
    return CodiffSource.from_config(data)
