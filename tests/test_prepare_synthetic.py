"""``prepare --source synthetic``: deterministic, same format as the real sources."""

from __future__ import annotations

import filecmp
import json

import numpy as np
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.data import masks
from cdiff.data.prepared import PreparedDataset
from cdiff.data.synthetic import render_sample

runner = CliRunner()


def _prepare(out, *extra):
    args = [
        "prepare",
        "--source",
        "synthetic",
        "--num",
        "64",
        "--resolution",
        "64",
        "--out",
        str(out),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_twice_byte_identical(tmp_path):
    a, b = _prepare(tmp_path / "a"), _prepare(tmp_path / "b")  # 64 samples: two worker processes
    assert _files(a) == _files(b)
    for rel in _files(a):
        if rel != "manifest.json":
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for volatile in ("created", "wall_time_s"):
        ma.pop(volatile), mb.pop(volatile)
    assert ma == mb
    serial = json.loads((_prepare(tmp_path / "c", "--workers", "1") / "manifest.json").read_text())
    assert serial["outputs"] == ma["outputs"]


def test_format_and_content(tmp_path):
    ds = PreparedDataset.open(_prepare(tmp_path / "d"))
    train, val = ds.split("train"), ds.split("val")
    assert len(train) == 58 and val == [str(i) for i in range(58, 64)]  # last 10 % held out
    records = ds.records()
    sample = render_sample(0, 5, 64)  # the generator is the source of truth
    assert np.array_equal(ds.label("5"), sample.label)
    assert np.array_equal(ds.image("5"), sample.image)
    rec = records["5"]
    assert rec["attributes"]["age"] == sample.attributes["age"]
    assert rec["caption"] == " ".join(
        s for s in (sample.attribute_captions["No_Beard"], sample.attribute_captions["Young"]) if s
    )
    assert set(rec) == {"id", "split", "caption", "raw_caption", "attribute_captions", "attributes"}
    labels = np.stack([ds.label(i) for i in train])
    assert labels.max() <= 18 and len(np.unique(labels)) >= 15
    tok = ds.tokenizer()
    ids = tok(rec["caption"])["input_ids"]
    assert tok.unk_token_id not in ids and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ds.manifest["inputs"]["generator"]["code_sha256"]
    with open(tmp_path / "d" / "masks" / "0.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert masks.read_mask(tmp_path / "d" / "masks" / "0.png").dtype == np.uint8


def test_same_seed_any_num(tmp_path):
    small = _prepare(tmp_path / "small")
    big = runner.invoke(app, ["prepare", "--num", "80", "--resolution", "64", "--out", str(tmp_path / "big")])
    assert big.exit_code == 0
    for i in ("0", "17", "63"):
        assert (small / "images" / f"{i}.png").read_bytes() == (
            tmp_path / "big" / "images" / f"{i}.png"
        ).read_bytes()
