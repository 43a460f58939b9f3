"""Sketches: the synthetic faces' own lines, photos' edges, users' drawings, and the prepared format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from test_prepare_real import celeba_cfg

from cdiff import config as C
from cdiff.data import sketches
from cdiff.data.prepared import SKETCHES, PreparedDataset
from cdiff.data.synthetic import render_sample
from cdiff.errors import InputError
from cdiff.stages import prepare


def grow(a: np.ndarray) -> np.ndarray:
    """``a`` and its 8 neighbours."""
    out = np.zeros_like(a)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(a, dy, 0), dx, 1)
    return out


def test_synthetic_lines_are_the_boundaries_of_the_label_map():
    s = render_sample(0, 3, 64)
    assert s.sketch.shape == (64, 64) and s.sketch.dtype == bool
    assert 0.03 < s.sketch.mean() < 0.25  # lines, not fill
    lab = s.label.astype(int)
    boundary = np.zeros_like(s.sketch)
    boundary[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    boundary[1:, :] |= lab[1:, :] != lab[:-1, :]
    assert grow(boundary)[s.sketch].all()  # every line pixel is at most a pixel from a part boundary
    assert grow(s.sketch)[boundary].mean() > 0.97  # and every boundary is drawn
    again = render_sample(0, 3, 64)
    assert np.array_equal(again.sketch, s.sketch) and np.array_equal(again.image, s.image)


def drawing(dark_on_light: bool = True, scale: int = 4) -> Image.Image:
    """An anti-aliased drawing (drawn big, then downsampled): a circle and a cross."""
    big = Image.new("L", (64 * scale, 64 * scale), 255 if dark_on_light else 0)
    d = ImageDraw.Draw(big)
    ink = 0 if dark_on_light else 255
    d.ellipse((12 * scale, 10 * scale, 52 * scale, 54 * scale), outline=ink, width=3 * scale)
    d.line((20 * scale, 32 * scale, 44 * scale, 32 * scale), fill=ink, width=2 * scale)
    return big.resize((64, 64), Image.Resampling.LANCZOS)


def test_drawings_either_polarity_thin_lines_and_widths(tmp_path):
    dark = sketches.read_drawing(drawing(True), 64)
    light = sketches.read_drawing(drawing(False), 64)
    assert dark.sum() > 100 and np.array_equal(dark, light)  # dark on light = light on dark
    assert dark.mean() < 0.08  # thinned to one pixel: a 3-pixel stroke is not kept whole
    assert not dark[32, 5] and dark[30:35, 32].any()  # the paper is not ink; the cross is
    wide = sketches.read_drawing(drawing(True), 64, line_width=3)
    assert wide.sum() > 2 * dark.sum() and wide[dark].all()
    path = tmp_path / "s.png"
    drawing(True).convert("RGBA").save(path)  # read from a file as well, RGBA included
    assert np.array_equal(sketches.read_drawing(path, 64), dark)
    small = sketches.read_drawing(path, 32)
    assert small.shape == (32, 32) and small.any()
    assert not sketches.read_drawing(Image.new("L", (64, 64), 255), 64).any()  # a blank page


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"not a png", "cannot read the sketch"),
        (b"\x89PNG\r\n\x1a\n\0\0", "cannot read"),
    ],
)
def test_unreadable_sketches_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as exc:
        sketches.read_drawing(path, 64)
    assert "\n" not in str(exc.value)


def test_prepare_stores_sketches_for_every_source(tmp_path, celeba_tree):
    cfg = C.load_config("demo", {"data.num": 12, "data.workers": 1})
    prepare.run(cfg, tmp_path / "syn")
    ds = PreparedDataset.open(tmp_path / "syn")
    for i in ("0", "7"):
        assert np.array_equal(ds.sketch(i), render_sample(0, int(i), 64).sketch)  # the exact lines
    assert ds.manifest["outputs"][SKETCHES]["files"] == 12
    assert ds.manifest["config"]["data"]["sketch"]["detector"] == "canny"
    prepare.run(celeba_cfg(celeba_tree), tmp_path / "real")  # photos: the detector's edges
    real = PreparedDataset.open(tmp_path / "real")
    image = real.image("1")
    edges = sketches.edge_lines(image, cfg.data.sketch.sigma, cfg.data.sketch.low, cfg.data.sketch.high)
    assert np.array_equal(real.sketch("1"), edges) and real.sketch("1").shape == (32, 32)


def test_a_dataset_prepared_before_sketches_names_the_fix(tmp_path):
    prepare.run(C.load_config("demo", {"data.num": 6, "data.workers": 1}), tmp_path / "d")
    for f in (tmp_path / "d" / SKETCHES).iterdir():
        f.unlink()
    (tmp_path / "d" / SKETCHES).rmdir()
    with pytest.raises(InputError, match="prepared before cdiff made sketches.*--force"):
        PreparedDataset.open(tmp_path / "d").sketch("0")


def test_the_sketch_encoder_makes_patch_tokens_and_the_concat_plane():
    from cdiff import modalities

    cfg = C.load_config("demo").unimodal
    enc = modalities.get("sketch").build_encoder(cfg, 16)
    raw = torch.from_numpy(np.stack([render_sample(0, i, 64).sketch for i in range(2)]).astype(np.float32))
    out = enc.encode(raw)
    assert out["tokens"].shape == (2, 64, cfg.unet.cross_attention_dim)  # 8 x 8 patches
    assert out["concat"].shape == (2, 1, 16, 16) and 0 < out["concat"].mean() < 0.3
    assert enc.extra_in == 1
    paper = C.load_config("celeba256").unimodal
    big = modalities.get("sketch").build_encoder(paper, 32)
    tokens = big.encode(torch.zeros(1, 256, 256))["tokens"]
    assert tokens.shape == (1, 256, paper.unet.cross_attention_dim) and big.extra_in == 0
    n = sum(p.numel() for p in big.parameters())
    assert (
        n == 256 * paper.unet.cross_attention_dim * 2 + paper.unet.cross_attention_dim
    )  # linear + positions
    assert modalities.get("sketch").parameter_notes(paper, 0) == {"sketch encoder (patch tokens)": n}


def test_edge_f_score():
    a = np.zeros((20, 20), bool)
    a[5, 2:18] = True
    assert sketches.edge_f_score(a, a) == 1.0
    shifted = np.roll(a, 1, axis=0)
    assert sketches.edge_f_score(shifted, a) == 1.0  # within the 1-pixel tolerance
    assert sketches.edge_f_score(shifted, a, tolerance=0) == 0.0
    far = np.roll(a, 8, axis=0)
    assert sketches.edge_f_score(far, a) == 0.0
    half = a.copy()
    half[5, 10:] = False  # precision 1, recall 9/16
    assert sketches.edge_f_score(half, a) == pytest.approx(
        2 * (9 / 16) / (1 + 9 / 16)
    )  # col 10 is near col 9
    blank = np.zeros_like(a)
    assert sketches.edge_f_score(blank, blank) == 1.0 and sketches.edge_f_score(blank, a) == 0.0
