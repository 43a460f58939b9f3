"""Shared fixtures: tiny data trees in the CelebAMask-HQ / CelebA-Dialog / release layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdiff.data import masks

PART_BOXES = {  # part -> (top, left, bottom, right) on a 40x40 part grid: overlaps test the overwrite order
    "skin": (8, 8, 36, 32),
    "nose": (18, 18, 26, 22),
    "l_eye": (14, 12, 17, 17),
    "r_eye": (14, 23, 17, 28),
    "hair": (2, 6, 14, 34),  # overwrites the top of the skin
    "neck": (34, 14, 40, 26),  # overwrites the bottom of the skin
}
CELEBA_IDS = [0, 1, 2, 1999, 2000, 2001, 2002, 4001]  # k = n // 2000 → folders 0, 1, 2


@pytest.fixture(autouse=True, scope="session")
def _hash_cache_in_a_temp_folder(tmp_path_factory):
    """The verified-weights hash cache (cdiff.models.store) of the tests: their own, not the user's."""
    import os

    old = os.environ.get("CDIFF_CACHE_DIR")
    os.environ["CDIFF_CACHE_DIR"] = str(tmp_path_factory.mktemp("cdiff-cache"))
    yield
    if old is None:
        os.environ.pop("CDIFF_CACHE_DIR", None)
    else:
        os.environ["CDIFF_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny run (``test_pipeline_tiny.make_tiny_run``), shared by the modules that read it."""
    from test_pipeline_tiny import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("run"))


def expected_label(n: int) -> np.ndarray:
    """The combined 40x40 map for fixture id ``n``, computed by hand from ``PART_BOXES``."""
    label = np.zeros((40, 40), np.uint8)
    for part in ("skin", "nose", "l_eye", "r_eye", "hair", "neck"):  # CelebAMask-HQ order
        if part == "hair" and n % 2:
            continue  # odd ids have no hair file: a missing part means the part is absent
        t, left, b, r = PART_BOXES[part]
        label[t:b, left:r] = masks.CLASS_ID[part]
    return label


def fixture_image(n: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(n)
    base = rng.integers(0, 255, size=(1, 1, 3))
    ramp = np.linspace(0, 60, size)[None, :, None]
    return np.clip(base + ramp + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)


def caption_entry(n: int) -> dict:
    pron = "He" if n % 3 else "She"
    beard = f"{pron} has a short beard." if pron == "He" else ""
    return {
        "attribute_wise_captions": {
            "Bangs": f"{pron} has no bangs at all.",
            "Eyeglasses": f"{pron} wears no eyeglasses.",
            "No_Beard": beard,
            "Smiling": f"{pron} is smiling.",
            "Young": f"{pron} is in the {20 + n % 5 * 10}s.",
        },
        "overall_caption": f"Overall caption of {n}.",
    }


@pytest.fixture
def celeba_tree(tmp_path: Path) -> Path:
    """Raw-data layout: CelebA-HQ-img/, CelebAMask-HQ-mask-anno/<k>/, captions_hq.json, attributes."""
    root = tmp_path / "celeba"
    img_dir = root / "CelebA-HQ-img"
    ann = root / "CelebAMask-HQ-mask-anno"
    img_dir.mkdir(parents=True)
    for n in CELEBA_IDS:
        Image.fromarray(fixture_image(n)).save(img_dir / f"{n}.jpg", quality=95)
        folder = ann / str(n // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for part, (t, left, b, r) in PART_BOXES.items():
            if part == "hair" and n % 2:
                continue
            arr = np.zeros((40, 40), np.uint8)
            arr[t:b, left:r] = 255
            Image.fromarray(arr).save(folder / f"{n:05d}_{part}.png")
    captions = {f"{n}.jpg": caption_entry(n) for n in CELEBA_IDS}
    (root / "captions_hq.json").write_text(json.dumps(captions))
    rows = ["Bangs Eyeglasses No_Beard Smiling Young"] + [
        f"{n}.jpg 0 1 {n % 4} 2 {n % 6}" for n in CELEBA_IDS
    ]
    (root / "combined_annotation.txt").write_text(f"{len(CELEBA_IDS)}\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def codiff_tree(tmp_path: Path) -> Path:
    """The release's datasets/ layout, made from the same ids as ``celeba_tree``."""
    root = tmp_path / "release" / "datasets"
    img_dir = root / "image" / "image_256_downsampled_from_hq_1024"
    mask_dir = root / "mask" / "CelebAMask-HQ-mask-anno" / "preprocessed_tensors"
    text_dir = root / "text"
    for d in (img_dir, mask_dir, text_dir):
        d.mkdir(parents=True)
    trimmed = {}
    for n in CELEBA_IDS:
        Image.fromarray(fixture_image(n)).save(img_dir / f"{n}.jpg", quality=95)
        tokens = masks.label_to_tokens(expected_label(n), 32)
        torch.save(torch.from_numpy(tokens), mask_dir / f"{n}.pt")
        attrs = caption_entry(n)["attribute_wise_captions"]
        trimmed[f"{n}.jpg"] = {"Beard_and_Age": " ".join(s for s in (attrs["No_Beard"], attrs["Young"]) if s)}
    (text_dir / "captions_hq_beard_and_age_2022-08-19.json").write_text(json.dumps(trimmed))
    return root
