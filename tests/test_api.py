"""The Python API as docs/api.md shows it, and its agreement with the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.models import store

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
runner = CliRunner()


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory):
    """Every Python block of docs/api.md, run as written, in order, in one namespace."""
    folder = tmp_path_factory.mktemp("api")
    ns: dict = {}
    cwd = Path.cwd()
    try:
        import os

        os.chdir(folder)
        for block in doc_blocks():
            exec(compile(block, str(DOC), "exec"), ns)
    finally:
        os.chdir(cwd)
    return folder, ns


def test_the_documented_snippets_run(doc_run):
    folder, ns = doc_run
    assert len(doc_blocks()) >= 3
    res = ns["res"]
    assert isinstance(res.images[0], Image.Image) and len(res.images) == 4  # the second block: num=4
    assert (folder / "out" / "000007.png").is_file() and (folder / "out" / "manifest.json").is_file()
    ed = ns["ed"]
    assert len(ed.images) == 2 and len(ns["more"]) == 2
    assert "text: reconstruction loss with e_opt" in ed.metrics
    assert np.array_equal(np.asarray(ns["more"][1]), np.asarray(ed.images[1]))  # alpha 1 again: same pixels
    assert (folder / "edit" / "grid.png").is_file() and (folder / "edit" / "embeddings.safetensors").is_file()
    copy, record = store.load(folder / "copy" / "vae", "vae")  # the model-store block: a faithful copy
    assert record == ns["record"] and all(
        torch.equal(a, b)
        for a, b in zip(copy.state_dict().values(), ns["vae"].state_dict().values(), strict=True)
    )


def test_api_matches_the_cli_pixel_for_pixel(doc_run, tmp_path, monkeypatch):
    folder, ns = doc_run
    monkeypatch.chdir(tmp_path)
    mask = ns["example"]["mask"]
    r = runner.invoke(
        app, ["generate", "--mask", mask, "--text", "He is in his thirties.", "--seed", "7", "--num", "1"]
    )
    assert r.exit_code == 0, r.output
    cli_image = np.asarray(Image.open(tmp_path / "outputs" / "000" / "000007.png").convert("RGB"))
    api_image = np.asarray(Image.open(folder / "out" / "000007.png").convert("RGB"))
    assert np.array_equal(cli_image, api_image)
    assert np.array_equal(
        np.asarray(ns["pipe"].generate(mask=mask, text="He is in his thirties.", seed=7).images[0]), cli_image
    )


def test_models_load_once_and_nothing_is_written(doc_run, tmp_path, monkeypatch):
    _, ns = doc_run
    pipe = ns["fast"]
    monkeypatch.chdir(tmp_path)
    pipe.generate(text="He has a full beard.", mask=ns["mask"], steps=2)
    expert = pipe.run.expert("text")[0]
    pipe.generate(text="He has no beard.", mask=ns["mask"], steps=2)
    assert pipe.run.expert("text")[0] is expert
    assert list(tmp_path.iterdir()) == []


def test_influence_and_bad_settings(doc_run):
    _, ns = doc_run
    pipe = ns["fast"]
    res = pipe.generate(mask=ns["mask"], text="He has a full beard.", steps=3, intermediates=True)
    (w,) = res.influence
    assert w.shape[:2] == (3, 2) and np.allclose(w.float().sum(1).numpy(), 1, atol=2e-3)
    from cdiff.errors import InputError

    for bad, message in (
        ({"steps": 0}, "--steps must be between 1 and"),
        ({"eta": float("nan")}, "--eta must be a finite number"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"nope": 1}, "unknown sampling option 'nope'"),
    ):
        with pytest.raises(InputError, match=message):
            pipe.generate(mask=ns["mask"], text="x", **bad)
    with pytest.raises(InputError, match="a mask array must hold integer class ids"):
        pipe.generate(mask=np.zeros((64, 64), np.float32), text="x", steps=1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps must be between 1 and 999 for the ddim solver"),
        (["--steps", "-3"], "--steps must be between 1 and 999"),
        (["--steps", "1000"], "--steps must be between 1 and 999"),
        (["--solver", "dpm", "--steps", "1001"], "--steps must be between 1 and 1000 for the dpm solver"),
        (["--eta", "-1"], "--eta must be a finite number >= 0"),
        (["--eta", "nan"], "--eta must be a finite number >= 0"),
        (["--guidance", "inf"], "--guidance must be a finite number"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--influence-every", "0"], "--influence-every must be at least 1"),
        (["--device", "cuda"], "--device cuda: this machine has no CUDA device"),
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--dtype", "float16"], "--dtype float16 is for GPUs"),
        (["--seed", str(2**64)], "--seed must be a whole number from 0 to 9223372036854775807"),
        (["--seed=-1"], "--seed must be a whole number from 0"),
    ],
)
def test_bad_sampling_settings_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    import torch

    if args[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["generate", "--num", "1", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args",
    [["visualize", "no-such-generation"], ["train-evaluator", "--run", "no-such-run"]],
)
def test_every_model_command_takes_device(tmp_path, monkeypatch, args):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, [*args, "--device", "cuda"])
    assert r.exit_code == 2 and "--device cuda: this machine has no CUDA device" in r.output, r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert list(tmp_path.iterdir()) == []
