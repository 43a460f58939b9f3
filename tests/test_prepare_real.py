"""``prepare`` on tiny trees in the CelebAMask-HQ / CelebA-Dialog and release layouts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import CELEBA_IDS, expected_label
from PIL import Image

from cdiff import config as C
from cdiff.data import masks
from cdiff.data.prepared import PreparedDataset
from cdiff.errors import InputError
from cdiff.stages import prepare

FORMAT_FILES = {
    "images",
    "masks",
    "sketches",
    "captions.jsonl",
    "splits",
    "tokenizer",
    "preview.png",
    "config.yaml",
    "manifest.json",
}


def celeba_cfg(tree, **extra):
    over = {
        "data.source": "celeba",
        "data.resolution": 32,
        "data.val_count": 2,
        "data.workers": 1,
        "data.celebahq": str(tree / "CelebA-HQ-img"),
        "data.masks": str(tree / "CelebAMask-HQ-mask-anno"),
        "data.captions": str(tree / "captions_hq.json"),
        "data.image_format": "png",
    }
    over.update(extra)
    return C.load_config("demo", over)


def test_celeba_roundtrip(celeba_tree, tmp_path):
    out = tmp_path / "data"
    cfg = celeba_cfg(celeba_tree, **{"data.attributes": str(celeba_tree / "combined_annotation.txt")})
    report = prepare.run(cfg, out)
    assert report.kept == {"train": 6, "val": 2} and not report.skipped
    assert {p.name for p in out.iterdir()} == FORMAT_FILES
    ds = PreparedDataset.open(out)
    assert ds.split("val") == ["2002", "4001"]  # the last val_count ids, as the release
    assert ds.split("train") == [str(n) for n in CELEBA_IDS[:-2]]
    for n in CELEBA_IDS:  # per-part files in folder n // 2000, combined in order, nearest-resized
        assert np.array_equal(ds.label(str(n)), masks.resize_label(expected_label(n), 32)), n
        assert ds.image(str(n)).shape == (32, 32, 3)
    rec = ds.records()["1"]
    assert rec["caption"] == "He has a short beard. He is in the 30s."  # beard + age only
    assert rec["raw_caption"] == "Overall caption of 1."
    assert rec["attribute_captions"]["Bangs"] == "He has no bangs at all."
    assert rec["attributes"] == {"Bangs": 0, "Eyeglasses": 1, "No_Beard": 1, "Smiling": 2, "Young": 1}
    assert ds.records()["0"]["caption"] == "She is in the 20s."  # women: empty beard sentence dropped
    with Image.open(out / "masks" / "0.png") as im:
        assert im.mode == "P"
    manifest = ds.manifest
    assert manifest["stage"] == "prepare" and manifest["inputs"]["mask_layout"] == "per-part"
    assert manifest["inputs"]["captions"]["sha256"] and manifest["inputs"]["sample_files"]["files"] > 8
    assert manifest["outputs"]["images"]["files"] == 8 and "torch" in manifest["versions"]
    tok = ds.tokenizer()
    ids = tok("He has a short beard.", padding="max_length", max_length=77)["input_ids"]
    assert len(ids) == 77 and tok.unk_token_id not in ids


def test_celeba_high_quality_downsampling(celeba_tree, tmp_path):
    """Images are centre-cropped and resized with Lanczos, masks with nearest neighbour."""
    src = np.asarray(Image.open(celeba_tree / "CelebA-HQ-img" / "0.jpg").convert("RGB"))
    prepare.run(celeba_cfg(celeba_tree), tmp_path / "d")
    got = PreparedDataset.open(tmp_path / "d").image("0")
    ref = np.asarray(Image.fromarray(src).resize((32, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(got, ref)


def test_combined_label_pngs_index_and_rgb(celeba_tree, tmp_path):
    combined = tmp_path / "combined"
    combined.mkdir()
    for n in CELEBA_IDS:
        label = expected_label(n)
        if n % 2:
            masks.write_mask(combined / f"{n}.png", label)  # index PNG
        else:
            Image.fromarray(masks.colorize(label)).save(combined / f"{n}.png")  # palette RGB
    out = tmp_path / "data"
    prepare.run(celeba_cfg(celeba_tree, **{"data.masks": str(combined)}), out)
    ds = PreparedDataset.open(out)
    assert ds.manifest["inputs"]["mask_layout"] == "combined"
    for n in CELEBA_IDS:
        assert np.array_equal(ds.label(str(n)), masks.resize_label(expected_label(n), 32))


def test_codiff_layout_matches_celeba(celeba_tree, codiff_tree, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    prepare.run(celeba_cfg(celeba_tree), a)
    prepare.run(
        C.load_config(
            "demo",
            {
                "data.source": "codiff",
                "data.root": str(codiff_tree.parent),
                "data.resolution": 32,
                "data.val_count": 2,
            },
        ),
        b,
    )
    assert {p.name for p in b.iterdir()} == FORMAT_FILES
    da, db = PreparedDataset.open(a), PreparedDataset.open(b)
    assert da.split("train") == db.split("train") and da.split("val") == db.split("val")
    ra, rb = da.records(), db.records()
    for n in map(str, CELEBA_IDS):
        assert np.array_equal(da.label(n), db.label(n))  # at r = 32 the token path is exact
        assert ra[n]["caption"] == rb[n]["caption"]
        assert set(ra[n]) == set(rb[n]) - {"notes"}
    assert "upsampled" in rb["0"]["notes"][0]


def test_bad_inputs_stop_with_one_line(celeba_tree, tmp_path):
    out = tmp_path / "data"
    (celeba_tree / "CelebA-HQ-img" / "2000.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(InputError, match=r"sample 2000: cannot read image .*--skip-bad"):
        prepare.run(celeba_cfg(celeba_tree), out)
    assert not out.exists()
    report = prepare.run(celeba_cfg(celeba_tree), out, skip_bad=True)
    assert report.skipped == {"corrupt image": 1} and report.kept == {"train": 5, "val": 2}
    assert PreparedDataset.open(out).manifest["skipped"][0]["id"] == "2000"


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("caption", "no caption"),
        ("mask_missing", "missing mask"),
        ("mask_id", "bad mask"),
        ("mask_colour", "bad mask"),
    ],
)
def test_each_bad_sample_kind_is_counted(celeba_tree, tmp_path, damage, reason):
    combined = tmp_path / "combined"
    combined.mkdir()
    for n in CELEBA_IDS:
        masks.write_mask(combined / f"{n}.png", expected_label(n))
    if damage == "caption":
        caps = json.loads((celeba_tree / "captions_hq.json").read_text())
        del caps["2001.jpg"]
        (celeba_tree / "captions_hq.json").write_text(json.dumps(caps))
    elif damage == "mask_missing":
        (combined / "2001.png").unlink()
    elif damage == "mask_id":
        Image.fromarray(np.full((40, 40), 25, np.uint8), mode="L").save(combined / "2001.png")
    else:
        Image.fromarray(np.full((40, 40, 3), 9, np.uint8)).save(combined / "2001.png")
    cfg = celeba_cfg(celeba_tree, **{"data.masks": str(combined)})
    with pytest.raises(InputError, match="sample 2001") as info:
        prepare.run(cfg, tmp_path / "data")
    assert "\n" not in str(info.value)
    report = prepare.run(cfg, tmp_path / "data", skip_bad=True)
    assert report.skipped == {reason: 1}


def test_missing_inputs(celeba_tree, tmp_path):
    with pytest.raises(InputError, match="CelebA-HQ image folder not found"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.celebahq": str(tmp_path / "nope")}), tmp_path / "d")
    with pytest.raises(InputError, match="mask folder not given; pass --masks"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.masks": None}), tmp_path / "d")
    with pytest.raises(InputError, match="captions file not found"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.captions": str(tmp_path / "c.json")}), tmp_path / "d")
    with pytest.raises(InputError, match="--root"):
        prepare.run(C.load_config("demo", {"data.source": "codiff"}), tmp_path / "d")
    with pytest.raises(InputError, match="val_count"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.val_count": 8}), tmp_path / "d")
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_resume_after_interruption(celeba_tree, tmp_path):
    out = tmp_path / "data"
    cfg = celeba_cfg(celeba_tree)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare.run(cfg, out, progress=interrupt)
    assert not out.exists() and (tmp_path / "data.partial" / "progress.jsonl").is_file()
    with pytest.raises(InputError, match="interrupted run with other settings"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.resolution": 16}), out)
    report = prepare.run(cfg, out)
    assert report.resumed_from == 3 and report.kept == {"train": 6, "val": 2}
    fresh = tmp_path / "fresh"
    prepare.run(cfg, fresh)
    for name in ("captions.jsonl", "splits/train.txt", "tokenizer/tokenizer.json"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes()
    assert (
        json.loads((out / "manifest.json").read_text())["outputs"]
        == json.loads((fresh / "manifest.json").read_text())["outputs"]
    )


def test_finished_work_needs_force(celeba_tree, tmp_path):
    out = tmp_path / "data"
    prepare.run(celeba_cfg(celeba_tree), out)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="already holds finished work; pass --force"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.resolution": 16}), out)
    assert (out / "manifest.json").read_bytes() == before
    prepare.run(celeba_cfg(celeba_tree, **{"data.resolution": 16}), out, force=True)
    assert PreparedDataset.open(out).image("0").shape == (16, 16, 3)
    assert not list(tmp_path.glob("data.*"))  # no partial or old folder left behind


def test_bert_tokenizer_from_local_folder(celeba_tree, tmp_path):
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "he",
        "she",
        "has",
        "a",
        "short",
        "beard",
        "is",
        "in",
        "the",
        ".",
        "20",
        "30",
        "s",
    ]
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    out = tmp_path / "data"
    prepare.run(
        celeba_cfg(celeba_tree, **{"data.tokenizer": "bert-base-uncased", "data.tokenizer_path": str(bert)}),
        out,
    )
    tok = PreparedDataset.open(out).tokenizer()
    assert tok("He has a short beard.")["input_ids"] == [2, 5, 7, 8, 9, 10, 14, 3]
    with pytest.raises(InputError, match="tokenizer_path=DIR"):
        prepare.run(celeba_cfg(celeba_tree, **{"data.tokenizer": "bert-base-uncased"}), tmp_path / "x")
    shutil.rmtree(tmp_path / "x.partial", ignore_errors=True)


def test_parallel_workers_equal_serial(celeba_tree, tmp_path):
    for n in range(5000, 5070):  # enough samples to use the pool
        shutil.copy(celeba_tree / "CelebA-HQ-img" / "0.jpg", celeba_tree / "CelebA-HQ-img" / f"{n}.jpg")
        masks.write_mask(tmp_path / "x.png", expected_label(0))
    combined = tmp_path / "combined"
    combined.mkdir()
    caps = json.loads((celeba_tree / "captions_hq.json").read_text())
    for n in list(CELEBA_IDS) + list(range(5000, 5070)):
        masks.write_mask(combined / f"{n}.png", expected_label(n if n < 5000 else 0))
        caps.setdefault(f"{n}.jpg", caps["0.jpg"])
    (celeba_tree / "captions_hq.json").write_text(json.dumps(caps))
    a = prepare.run(
        celeba_cfg(celeba_tree, **{"data.masks": str(combined), "data.workers": 2}), tmp_path / "a"
    )
    b = prepare.run(
        celeba_cfg(celeba_tree, **{"data.masks": str(combined), "data.workers": 1}), tmp_path / "b"
    )
    assert a.kept == b.kept
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert ma["outputs"] == mb["outputs"]


def test_pt_mask_helper_matches_release_convention():
    label = expected_label(0)
    tokens = torch.from_numpy(masks.label_to_tokens(label, 32))
    assert tokens.shape == (19, 1024) and torch.all(tokens.sum(0) == 1)
