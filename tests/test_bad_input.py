"""Hostile and unusual input files: one-line errors, and inputs read as the user meant them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.data.masks import label_to_tokens, resize_label, write_mask
from cdiff.data.photos import load_photo
from cdiff.errors import InputError
from cdiff.modalities import Context
from cdiff.modalities.mask import MASK, onehot_tokens
from cdiff.stages.generate import read_pairs_file

runner = CliRunner()


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert text in result.output and "Traceback" not in result.output, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output


def test_a_16_bit_grayscale_photo_keeps_its_grey_levels(tmp_path):
    path = tmp_path / "grey16.png"
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(path)  # a 16-bit grayscale PNG
    assert Image.open(path).mode.startswith("I")
    rgb = load_photo(path, 64, [])
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert abs(int(rgb[:, 32, 0].mean()) - 130) <= 3  # mid-grey, not white (convert("RGB") clips to 255)
    assert rgb[:, 0].max() <= 2 and rgb[:, -1].min() >= 253


def test_images_past_the_decompression_bomb_limit_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 64×64 image now counts as a bomb (> 2 × 1000)
    photo = tmp_path / "huge.png"
    Image.new("RGB", (64, 64), (200, 100, 50)).save(photo)
    with pytest.raises(InputError, match="more than 2,000 pixels, more than cdiff reads; resize it first"):
        load_photo(photo, 64, [])
    mask = tmp_path / "huge_mask.png"
    write_mask(mask, np.zeros((64, 64), np.uint8))
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["generate", "--mask", str(mask), "--text", "She is young.", "--num", "1"])
    one_line_error(r, "has more than 2,000 pixels, more than cdiff reads")
    assert not (tmp_path / "outputs").exists()


def test_errors_print_brackets_in_names_as_they_are(tmp_path, monkeypatch):
    folder = tmp_path / "faces [draft]" / "[/x]"  # rich markup would eat the first and choke on the second
    folder.mkdir(parents=True)
    mask = folder / "m[fid].png"
    mask.write_bytes(b"not a picture")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["generate", "--mask", str(mask), "--text", "She is young.", "--num", "1"])
    one_line_error(r, "cannot read mask")
    assert "m[fid].png" in r.output and "[/x]" in r.output and "[draft]" in r.output
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"mask": "m.png", "text": "caf\xe9"}\n', "is not UTF-8 text (byte 30)"),
        (b'{"mask": "m.png", "text": null}\n', "text must be a string, got null"),
        (b'{"mask": "m.png", "text": 12345}\n', "text must be a string, got 12345"),
        (b'{"mask": 7, "text": "She smiles."}\n', "mask must be a string, got 7"),
        (b'["m.png", "She smiles."]\n', "expected an object with the keys"),
    ],
)
def test_bad_condition_files_are_refused_naming_the_line(tmp_path, content, message):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(message)):
        read_pairs_file(path)
    r = runner.invoke(app, ["generate", "--from-file", str(path), "--num", "1", "--out", str(tmp_path / "o")])
    one_line_error(r, message)
    assert not (tmp_path / "o").exists()


def test_a_mask_of_another_size_is_resized_once_to_the_token_grid(tmp_path):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:512, 0:512]
    label = np.zeros((512, 512), np.uint8)
    for _ in range(40):  # overlapping discs of random classes: edges everywhere
        cy, cx, rad = rng.integers(0, 512), rng.integers(0, 512), rng.integers(10, 90)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = rng.integers(1, 19)
    path = tmp_path / "m512.png"
    write_mask(path, label)
    notes: list[str] = []
    ctx = Context(resolution=256, meta={"unimodal": {"mask_tokens": 32}})
    raw = MASK.read([str(path)], ctx, notes)
    assert raw.shape == (1, 256, 256) and "resized (nearest) to 256×256" in notes[0]
    release = label_to_tokens(label, 32).argmax(0)  # the release: one nearest resize to 32×32
    ours = onehot_tokens(raw.long(), 32)[0].argmax(0).numpy()
    twice = (
        onehot_tokens(torch.from_numpy(resize_label(label, 256)[None].copy()).long(), 32)[0].argmax(0).numpy()
    )
    assert (ours == release).all()
    assert (twice != release).sum() > 5  # what a resize of a resize gives
    changed = (raw[0].numpy() != resize_label(label, 256)).mean()
    assert changed < 0.002  # the picture at 256 is the plain resize but for those sample points
