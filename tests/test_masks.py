"""Mask I/O and token conversion against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cdiff.data import masks
from cdiff.errors import InputError


def test_palette_and_names_match_reference():
    assert len(masks.CLASS_NAMES) == masks.NUM_CLASSES == 19
    assert (
        masks.CLASS_NAMES[13] == "hair"
        and masks.CLASS_NAMES[3] == "eye_g"
        and masks.CLASS_NAMES[18] == "cloth"
    )
    assert masks.PALETTE.shape == (19, 3)
    assert masks.PALETTE[1].tolist() == [204, 0, 0] and masks.PALETTE[13].tolist() == [0, 0, 204]
    assert len({tuple(c) for c in masks.PALETTE.tolist()}) == 19  # colours are unique


def test_combine_parts_later_overwrite_earlier():
    skin = np.zeros((4, 4), bool)
    skin[:, :] = True
    hair = np.zeros((4, 4), bool)
    hair[0] = True
    nose = np.zeros((4, 4), bool)
    nose[0, 0] = True  # nose comes before hair: hair wins at (0, 0)
    label = masks.combine_parts({"skin": skin, "hair": hair, "nose": nose}, (4, 4))
    assert label.tolist() == [[13] * 4, [1] * 4, [1] * 4, [1] * 4]


def test_tokens_hand_computed():
    # 4x4 map → r=2: nearest picks pixels (1,1), (1,3), (3,1), (3,3) (PIL pixel centres)
    label = np.array([[0, 0, 1, 1], [0, 5, 1, 7], [2, 2, 3, 3], [2, 9, 3, 18]], np.uint8)
    tokens = masks.label_to_tokens(label, r=2)
    assert tokens.shape == (19, 4) and tokens.dtype == np.float32
    assert tokens.sum(axis=0).tolist() == [1, 1, 1, 1]
    expected = {0: 5, 1: 7, 2: 9, 3: 18}  # token position (row-major) → class
    for pos, cls in expected.items():
        assert tokens[cls, pos] == 1.0
    assert masks.tokens_to_label(tokens).tolist() == [[5, 7], [9, 18]]


def test_tokens_identity_at_full_size():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (32, 32)).astype(np.uint8)
    tokens = masks.label_to_tokens(label, 32)
    i, j = 5, 17
    assert tokens[label[i, j], i * 32 + j] == 1.0  # [c, i*r + j] row-major
    assert np.array_equal(masks.tokens_to_label(tokens), label)


def test_index_png_roundtrip_with_palette(tmp_path):
    label = np.arange(19, dtype=np.uint8).repeat(2).reshape(2, 19)
    path = tmp_path / "m.png"
    masks.write_mask(path, label)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert im.getpalette()[:6] == [0, 0, 0, 204, 0, 0]
    assert np.array_equal(masks.read_mask(path), label)


def test_read_rgb_palette_png(tmp_path):
    label = np.array([[0, 1, 13], [17, 18, 4]], np.uint8)
    Image.fromarray(masks.colorize(label)).save(tmp_path / "rgb.png")
    assert np.array_equal(masks.read_mask(tmp_path / "rgb.png"), label)


def test_read_grey_index_png_and_resize(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[:4] = 13
    Image.fromarray(label, mode="L").save(tmp_path / "grey.png")
    assert np.array_equal(
        masks.read_mask(tmp_path / "grey.png", size=4), np.array([[13] * 4] * 2 + [[0] * 4] * 2)
    )


def test_read_pt_tokens(tmp_path):
    label = np.random.default_rng(1).integers(0, 19, (32, 32)).astype(np.uint8)
    torch.save(torch.from_numpy(masks.label_to_tokens(label)), tmp_path / "7.pt")
    assert np.array_equal(masks.read_mask(tmp_path / "7.pt"), label)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: Image.fromarray(np.full((4, 4), 19, np.uint8), mode="L").save(p), "outside 0..18"),
        (
            lambda p: Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(p),
            "outside the CelebAMask-HQ palette",
        ),
        (lambda p: p.write_bytes(b"not a png"), "cannot read mask"),
    ],
)
def test_bad_masks_are_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError, match=message) as info:
        masks.read_mask(path)
    assert "\n" not in str(info.value)


def test_bad_pt_shapes(tmp_path):
    torch.save(torch.zeros(3, 1024), tmp_path / "a.pt")
    with pytest.raises(InputError, match=r"\[19, r\*r\]"):
        masks.read_mask(tmp_path / "a.pt")
    torch.save(torch.zeros(19, 1000), tmp_path / "b.pt")
    with pytest.raises(InputError, match="not a square"):
        masks.read_mask(tmp_path / "b.pt")
    with pytest.raises(InputError, match="not found"):
        masks.read_mask(tmp_path / "missing.png")
