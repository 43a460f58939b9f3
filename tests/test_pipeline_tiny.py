"""The whole uni-modal pipeline from the command line, on tiny models (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cdiff.cli import app
from cdiff.data import masks
from cdiff.imageio import read_png_metadata

runner = CliRunner()
TINY = [
    "vae.block_out_channels=[8,16]",
    "vae.layers_per_block=1",
    "vae.norm_num_groups=4",
    "vae.perceptual_weight=0",
    "vae.train.batch_size=8",
    "vae.train.lr=2e-3",
    "vae.logvar_init=-7",
    "unimodal.unet.block_out_channels=[16,32]",
    "unimodal.unet.attention=[false,true]",
    "unimodal.unet.heads=2",
    "unimodal.unet.norm_num_groups=4",
    "unimodal.unet.cross_attention_dim=32",
    "unimodal.text_encoder.width=32",
    "unimodal.text_encoder.depth=1",
    "unimodal.text_encoder.heads=2",
    "unimodal.text_encoder.head_dim=16",
    "unimodal.mask_tokens=8",
    "unimodal.train.batch_size=8",
    "unimodal.train.lr=1e-3",
    "unimodal.cond_dropout=0.2",
    "sample.batch_size=3",
]


def cli(*args):
    sets = [a for s in TINY for a in ("--set", s)]
    result = runner.invoke(app, [str(a) for a in args] + sets)
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert (
        runner.invoke(app, ["prepare", "--num", "40", "--resolution", "32", "--run", str(run)]).exit_code == 0
    )
    r = cli("train-vae", "--run", run, "--steps", 6)
    assert r.exit_code == 0, r.output
    for modality in ("text", "mask"):
        r = cli("train-unimodal", "--modality", modality, "--run", run, "--steps", 4)
        assert r.exit_code == 0, r.output
    return run


def test_stage_outputs(run_dir):
    vae = json.loads((run_dir / "vae" / "config.json").read_text())
    assert vae["latent_size"] == 16 and vae["scale_factor"] > 0
    assert (run_dir / "vae" / "reconstructions.png").is_file()
    assert not (run_dir / "vae" / "checkpoint.pt").exists()  # the export replaces the training state
    for modality in ("text", "mask"):
        manifest = json.loads((run_dir / modality / "manifest.json").read_text())
        assert manifest["stage"] == f"train-unimodal-{modality}" and manifest["metrics"]["steps"] == 4
        assert (
            manifest["inputs"]["vae"]["sha256"]
            == json.loads((run_dir / "vae" / "manifest.json").read_text())["outputs"]["model.safetensors"][
                "sha256"
            ]
        )
    assert (run_dir / "text" / "tokenizer" / "tokenizer.json").is_file()
    assert json.loads((run_dir / "latents" / "key.json").read_text())["vae_sha256"]


def test_generate_text_is_seeded_and_batch_invariant(run_dir, tmp_path):
    args = [
        "generate",
        "--modality",
        "text",
        "--run",
        run_dir,
        "--text",
        "He is an elderly.",
        "--num",
        3,
        "--steps",
        4,
        "--seed",
        7,
    ]
    assert cli(*args, "--out", tmp_path / "a").exit_code == 0
    assert cli(*args, "--out", tmp_path / "b", "--batch-size", 1).exit_code == 0
    for seed in (7, 8, 9):
        a = np.asarray(Image.open(tmp_path / "a" / f"{seed:06d}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "b" / f"{seed:06d}.png")).astype(int)
        assert np.abs(a - b).max() <= 1  # same seed, same image, whatever the batch size
    meta = read_png_metadata(tmp_path / "a" / "000008.png")
    assert meta["condition"] == "He is an elderly." and meta["seed"] == "8"
    assert json.loads(meta["settings"])["eta"] == 1.0
    different = np.asarray(Image.open(tmp_path / "a" / "000007.png")).astype(int)
    assert np.abs(different - np.asarray(Image.open(tmp_path / "a" / "000009.png")).astype(int)).max() > 5


def test_generate_mask_file_guidance_and_default_folder(run_dir, tmp_path):
    label = np.zeros((64, 64), np.uint8)
    label[10:50, 16:48] = 1
    masks.write_mask(tmp_path / "m.png", label)
    r = cli(
        "generate",
        "--modality",
        "mask",
        "--run",
        run_dir,
        "--mask",
        tmp_path / "m.png",
        "--num",
        2,
        "--steps",
        3,
        "--guidance",
        2.0,
        "--solver",
        "dpm",
    )
    assert r.exit_code == 0, r.output
    folder = run_dir / "samples" / "000"
    assert {p.name for p in folder.iterdir()} == {"000000.png", "000001.png", "grid.png", "manifest.json"}
    assert Image.open(folder / "000000.png").size == (32, 32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--modality", "text", "--mask", "x.png"], "--modality text takes --text"),
        (["generate", "--modality", "mask", "--mask", "/nonexistent.png"], "mask file not found"),
        (["generate", "--modality", "text", "--solver", "euler"], "Invalid value"),
    ],
)
def test_generate_bad_input(run_dir, args, message):
    r = cli(*args, "--run", run_dir)
    assert r.exit_code == 2 and message in r.output


def test_missing_stage_says_what_to_run(tmp_path):
    assert (
        runner.invoke(app, ["prepare", "--num", "12", "--resolution", "32", "--run", str(tmp_path)]).exit_code
        == 0
    )
    r = cli("train-unimodal", "--modality", "text", "--run", tmp_path, "--steps", 1)
    assert r.exit_code == 2 and "run `cdiff train-vae --run" in r.output
    r = cli("generate", "--modality", "mask", "--run", tmp_path)
    assert r.exit_code == 2 and "cdiff train-unimodal --modality mask" in r.output
    r = cli("train-vae", "--run", tmp_path / "nothing")
    assert r.exit_code == 2 and "cdiff prepare" in r.output
