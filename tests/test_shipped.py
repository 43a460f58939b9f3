"""The demo weights shipped inside the package: they load, stay small, and still produce their reference images."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cdiff import config as C
from cdiff.cli import app
from cdiff.stages import demo_weights
from cdiff.stages import generate as gen

runner = CliRunner()


def test_shipped_weights_are_small_fp16_and_complete():
    folder = demo_weights.shipped_run()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    assert json.loads((folder / "timings.json").read_text())["commit"]
    parts = {**demo_weights.PARTS, **demo_weights.optional_parts(folder)}
    assert {"sketch", "diffuser-mask-sketch-text", "diffuser-mask-sketch", "diffuser-sketch-text"} <= set(
        parts
    )
    files = [folder / p / "model.safetensors" for p in parts]
    files += [folder / demo_weights.EVALUATOR / name for name in demo_weights.EVALUATOR_FILES]
    total = sum(f.stat().st_size for f in files)
    assert total <= 25 * 2**20 and abs(total / 2**20 - manifest["total_mib"]) < 0.01
    assert (folder / "text" / "tokenizer" / "tokenizer.json").is_file()
    for part, stage in {**parts, demo_weights.EVALUATOR: "train-evaluator"}.items():
        assert json.loads((folder / part / "manifest.json").read_text())["stage"] == stage
    # the evaluator ships with its validation accuracy: it must read real faces well
    val = manifest["stages"]["evaluator"]["metrics"]["val"]
    assert val["parser_accuracy"] > 0.95 and val["gender_accuracy"] > 0.9 and val["beard_accuracy"] > 0.9


def test_shipped_weights_reproduce_their_reference_images(tmp_path):
    folder = demo_weights.shipped_run()
    ref = json.loads((folder / "reference" / "reference.json").read_text())
    s = ref["settings"]
    pairs = demo_weights.reference_pairs(folder)
    req = gen.GenerateRequest(method=s["method"], pairs=pairs, num=s["num"], seed=s["seed"])
    cfg = C.load_config("demo", {"sample.steps": s["steps"], "sample.eta": s["eta"]})
    res = gen.run(cfg, req, folder, tmp_path / "again")
    for name, im, mean in zip(ref["images"], res.images, ref["mean_pixel"], strict=True):
        expected = np.asarray(Image.open(folder / "reference" / name).convert("RGB")).astype(int)
        diff = np.abs(im.astype(int) - expected)
        assert diff.max() <= 3 and diff.mean() < 0.5, name
        assert abs(float(np.mean(im)) - mean) < 0.5


def test_generate_without_run_uses_the_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = demo_weights.shipped_run()
    mask = next((folder / "examples" / "masks").glob("*.png"))
    r = runner.invoke(
        app, ["generate", "--mask", str(mask), "--text", "He has a beard.", "--num", "1", "--steps", "3"]
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "outputs" / "000" / "000000.png").size == (64, 64)
