"""The whole uni-modal pipeline from the command line, on tiny models (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
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
    "diffuser.unet.block_out_channels=[8,16]",
    "diffuser.unet.layers_per_block=1",
    "diffuser.unet.attention=[false,true]",
    "diffuser.unet.heads=2",
    "diffuser.unet.norm_num_groups=4",
    "diffuser.unet.cross_attention_dim=32",
    "diffuser.train.batch_size=8",
    "diffuser.train.lr=1e-3",
    "sample.batch_size=3",
    "evaluator.parser_channels=[4,8]",
    "evaluator.classifier_channels=[4,8]",
    "evaluator.train.batch_size=8",
]


def cli(*args):
    sets = [a for s in TINY for a in ("--set", s)]
    result = runner.invoke(app, [str(a) for a in args] + sets)
    return result


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run


def make_tiny_run(run):
    """40 synthetic faces at 32 px and every model a few steps (conftest's ``tiny_run``, once a session)."""
    assert (
        runner.invoke(app, ["prepare", "--num", "40", "--resolution", "32", "--run", str(run)]).exit_code == 0
    )
    r = cli("train-vae", "--run", run, "--steps", 6)
    assert r.exit_code == 0, r.output
    for modality in ("text", "mask"):
        r = cli("train-unimodal", "--modality", modality, "--run", run, "--steps", 4)
        assert r.exit_code == 0, r.output
    r = cli("train-diffuser", "--run", run, "--steps", 3)
    assert r.exit_code == 0, r.output
    r = cli("train-evaluator", "--run", run, "--steps", 3)
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
        "--method",
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
    assert json.loads(meta["conditions"]) == {"text": "He is an elderly."} and meta["seed"] == "8"
    assert json.loads(meta["settings"])["eta"] == 1.0
    different = np.asarray(Image.open(tmp_path / "a" / "000007.png")).astype(int)
    assert np.abs(different - np.asarray(Image.open(tmp_path / "a" / "000009.png")).astype(int)).max() > 5


def test_generate_mask_file_guidance_and_default_folder(run_dir, tmp_path):
    label = np.zeros((64, 64), np.uint8)
    label[10:50, 16:48] = 1
    masks.write_mask(tmp_path / "m.png", label)
    r = cli(
        "generate",
        "--method",
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
        (["generate", "--method", "text", "--mask", "x.png"], "--method text does not use --mask"),
        (["generate", "--method", "mask", "--mask", "/nonexistent.png"], "mask file not found"),
        (["generate", "--method", "text", "--solver", "euler"], "Invalid value"),
        (["generate", "--mask", "/nonexistent.png"], "--text is missing"),
        (
            ["generate", "--text", "a", "--text", "b", "--text", "c", "--mask", "m1", "--mask", "m2"],
            "paired by position",
        ),
        (["generate", "--method", "text", "--weights", "1,0"], "multi-modal methods only"),
        (["generate", "--method", "composable", "--weights", "1,0,1"], "--weights needs 2 numbers"),
        (["generate", "--method", "composable", "--weights", "a,b"], "comma-separated numbers"),
        (["generate", "--method", "collaborative", "--weights", "1,0"], "for --method composable"),
        (["generate", "--method", "composable", "--reweight", "released"], "collaborative only"),
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
    r = cli("generate", "--method", "mask", "--run", tmp_path)
    assert r.exit_code == 2 and "cdiff train-unimodal --modality mask" in r.output
    r = cli("train-diffuser", "--run", tmp_path)
    assert r.exit_code == 2 and "run `cdiff train-vae --run" in r.output
    r = cli("train-vae", "--run", tmp_path / "nothing")
    assert r.exit_code == 2 and "cdiff prepare" in r.output


# ---- collaboration --------------------------------------------------------------------------


def _mask_file(tmp_path, size=64):
    label = np.zeros((size, size), np.uint8)
    label[size // 6 : size - size // 6, size // 4 : size - size // 4] = 1
    label[: size // 5] = 13  # hair
    masks.write_mask(tmp_path / "m.png", label)
    return tmp_path / "m.png"


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


def test_train_diffuser_outputs(run_dir):
    manifest = json.loads((run_dir / "diffuser" / "manifest.json").read_text())
    assert manifest["stage"] == "train-diffuser" and manifest["metrics"]["steps"] == 3
    assert set(manifest["parameters"]) == {"mask dynamic diffuser", "text dynamic diffuser"}
    record = json.loads((run_dir / "diffuser" / "config.json").read_text())
    assert record["diffuser"]["modalities"] == ["mask", "text"] and set(record["experts"]) == {"mask", "text"}
    lines = [json.loads(x) for x in (run_dir / "diffuser" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "loss_average", "w_mask", "w_text"} <= set(lines[-1])
    assert abs(lines[-1]["w_mask"] + lines[-1]["w_text"] - 1) < 1e-5
    assert list((run_dir / "diffuser" / "samples").glob("step_*.png"))


def test_generate_collaborative_intermediates_and_batch_invariance(run_dir, tmp_path):
    m = _mask_file(tmp_path)
    args = ["generate", "--run", run_dir, "--text", "He has a beard.", "--mask", m, "--num", 3, "--steps", 4]
    r = cli(*args, "--out", tmp_path / "a", "--save-intermediates")
    assert r.exit_code == 0, r.output
    assert "resized (nearest) to 32×32" in r.output  # a 64 px mask for a 32 px model
    assert cli(*args, "--out", tmp_path / "b", "--batch-size", 1).exit_code == 0
    for seed in (0, 1, 2):
        assert (
            np.abs(_png(tmp_path / "a" / f"{seed:06d}.png") - _png(tmp_path / "b" / f"{seed:06d}.png")).max()
            <= 1
        )
    meta = read_png_metadata(tmp_path / "a" / "000001.png")
    assert json.loads(meta["conditions"]) == {"mask": str(m), "text": "He has a beard."}
    assert json.loads(meta["settings"])["method"] == "collaborative"
    from safetensors.torch import load_file

    inter = load_file(str(tmp_path / "a" / "intermediates" / "000001.safetensors"))
    assert inter["weights"].shape == (4, 2, 16, 16) and inter["x_t"].shape == (4, 3, 16, 16)
    assert inter["t"].tolist() == [751, 501, 251, 1]
    assert np.allclose(inter["weights"].float().sum(1).numpy(), 1.0, atol=2e-3)


def test_composable_with_one_hot_weights_is_the_expert(run_dir, tmp_path):
    m = _mask_file(tmp_path)
    common = ["--run", run_dir, "--mask", m, "--num", 2, "--steps", 3]
    r = cli(
        "generate",
        "--method",
        "composable",
        "--weights",
        "1,0",
        "--text",
        "x",
        *common,
        "--out",
        tmp_path / "c",
    )
    assert r.exit_code == 0, r.output
    assert cli("generate", "--method", "mask", *common, "--out", tmp_path / "u").exit_code == 0
    for seed in (0, 1):
        assert (
            np.abs(_png(tmp_path / "c" / f"{seed:06d}.png") - _png(tmp_path / "u" / f"{seed:06d}.png")).max()
            <= 1
        )


def test_reweight_influence_reuse_and_from_file(run_dir, tmp_path):
    from safetensors.torch import load_file

    m = _mask_file(tmp_path)
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"mask": "m.png", "text": "She is in her twenties."})
        + "\n"
        + json.dumps({"mask": str(m), "text": "He is elderly."})
        + "\n"
    )
    base = ["generate", "--run", run_dir, "--from-file", tmp_path / "pairs.jsonl", "--num", 1, "--steps", 4]
    r = cli(*base, "--out", tmp_path / "plain", "--save-intermediates")
    assert r.exit_code == 0, r.output
    r = cli(
        *base,
        "--out",
        tmp_path / "rw",
        "--save-intermediates",
        "--reweight",
        "released",
        "--influence-every",
        2,
    )
    assert r.exit_code == 0, r.output
    files = json.loads((tmp_path / "rw" / "manifest.json").read_text())["outputs"]["images"]
    assert [f["file"] for f in files] == ["000-000000.png", "001-000000.png"]
    plain = load_file(str(tmp_path / "plain" / "intermediates" / "000-000000.safetensors"))["weights"].float()
    rw = load_file(str(tmp_path / "rw" / "intermediates" / "000-000000.safetensors"))["weights"].float()
    assert np.allclose(rw.sum(1).numpy(), 1.0, atol=2e-3)
    # at t = 1 the released schedule hands (almost) everything to the text model
    assert rw[-1, 1].min() > 0.99 and plain[-1, 1].max() < 0.99


def test_collaboration_refuses_diffusers_of_other_experts(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("samples", "latents"))
    record = json.loads((copy / "diffuser" / "config.json").read_text())
    record["experts"]["text"] = "0" * 64
    (copy / "diffuser" / "config.json").write_text(json.dumps(record))
    r = cli("generate", "--run", copy, "--steps", 2, "--num", 1)
    assert r.exit_code == 2 and "trained with another text model" in r.output


def test_visualize_collaborative_generation(run_dir, tmp_path):
    m = _mask_file(tmp_path, size=32)
    gen = tmp_path / "gen"
    r = cli(
        "generate",
        "--run",
        run_dir,
        "--text",
        "x",
        "--mask",
        m,
        "--num",
        2,
        "--steps",
        4,
        "--out",
        gen,
        "--save-intermediates",
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["visualize", str(gen), "--image", "000001"])
    assert r.exit_code == 0, r.output
    out = gen / "visualize"
    assert {p.name for p in (out / "000001").iterdir()} == {
        "influence_mask.png",
        "influence_text.png",
        "x_t.png",
        "pred_x0.png",
        "overlay.png",
        "animation.gif",
        "weights.json",
    }
    weights = json.loads((out / "000001" / "weights.json").read_text())
    assert len(weights["t"]) == 4 and weights["t"][0] > weights["t"][-1]
    means = np.array([weights["mask"]["mean"], weights["text"]["mean"]])
    assert np.allclose(means.sum(0), 1, atol=2e-3) and (np.array(weights["mask"]["max"]) >= means[0]).all()
    assert not (out / "000000").exists()
    gif = Image.open(out / "000001" / "animation.gif")
    assert gif.n_frames == 5  # 4 steps + the result
    page = (out / "index.html").read_text()
    assert "000001/influence_mask.png" in page and "000001/influence_text.png" in page
    assert "mean weight per modality" in page and "000001/weights.json" in page
    # a colour map, not grey: the influence picture has colour
    rgb = _png(out / "000001" / "influence_mask.png")
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 30).mean() > 0.05
    r = runner.invoke(app, ["visualize", str(gen)])
    assert r.exit_code == 2 and "--force" in r.output
    assert runner.invoke(app, ["visualize", str(gen), "--force"]).exit_code == 0
    assert (out / "000000" / "x_t.png").is_file()


def test_visualize_bad_input(run_dir, tmp_path):
    r = runner.invoke(app, ["visualize", str(tmp_path)])
    assert r.exit_code == 2 and "not a generate output" in r.output
    gen = tmp_path / "plain"
    assert (
        cli(
            "generate",
            "--method",
            "text",
            "--run",
            run_dir,
            "--text",
            "x",
            "--num",
            1,
            "--steps",
            2,
            "--out",
            gen,
        ).exit_code
        == 0
    )
    r = runner.invoke(app, ["visualize", str(gen)])
    assert r.exit_code == 2 and "--save-intermediates" in r.output


def test_demo_weights_export_and_import(run_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from cdiff.stages import demo_weights

    shipped = tmp_path / "shipped"
    sizes = demo_weights.export(run_dir, shipped)
    assert set(sizes) == {
        "vae",
        "text",
        "mask",
        "diffuser",
        "evaluator/parser.safetensors",
        "evaluator/classifier.safetensors",
    }
    assert (shipped / "text" / "tokenizer").is_dir()
    assert {v.dtype for v in load_file(str(shipped / "mask" / "model.safetensors")).values()} == {
        torch.float16
    }
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert {"dtype", "config", "stages", "reference", "total_mib"} <= set(manifest)
    assert "commit" in json.loads((shipped / "timings.json").read_text())  # provenance varies; models do not
    assert manifest["stages"]["text"]["seed"] == 0 and manifest["stages"]["diffuser"]["metrics"]["steps"] == 3
    pairs = [json.loads(x) for x in (shipped / "examples" / "pairs.jsonl").read_text().splitlines()]
    assert all(p["mask_of"] != p["caption_of"] for p in pairs)  # the mask of one face, the caption of another
    assert len(list((shipped / "reference").glob("0*.png"))) == len(manifest["reference"]["images"])
    # exported again: every file the same bytes but timings.json (when and how fast each stage ran)
    again = demo_weights.export(run_dir, tmp_path / "again") and tmp_path / "again"
    names = {p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file()}
    assert names == {p.relative_to(again) for p in again.rglob("*") if p.is_file()}
    differ = [str(n) for n in names if (shipped / n).read_bytes() != (again / n).read_bytes()]
    assert differ == ["timings.json"]
    assert "wall_time_s" in json.loads((shipped / "timings.json").read_text())["stages"]["mask"]
    # the shipped folder is itself a run: generate from it, as `cdiff generate` does without --run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_weights, "shipped_dir", lambda: shipped)
    r = runner.invoke(app, ["generate", "--num", "1", "--steps", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "outputs" / "000" / "grid.png").is_file()
    # import into a run directory
    run2 = tmp_path / "run2"
    parts = ["vae", "text", "mask", "diffuser", "examples", "evaluator"]
    assert demo_weights.import_demo(run2, source=shipped) == parts
    assert json.loads((run2 / "evaluator" / "manifest.json").read_text())["stage"] == "train-evaluator"
    assert json.loads((run2 / "diffuser" / "manifest.json").read_text())["stage"] == "train-diffuser"
    r = cli("generate", "--run", run2, "--num", 1, "--steps", 2, "--out", tmp_path / "g")
    assert r.exit_code == 0, r.output
    with pytest.raises(Exception, match="--force"):
        demo_weights.import_demo(run2, source=shipped)
    monkeypatch.setattr(demo_weights, "shipped_dir", lambda: tmp_path / "nothing")
    r = runner.invoke(app, ["generate", "--num", "1"])
    assert r.exit_code == 2 and "make demo-train" in r.output


def test_generate_all_methods_side_by_side(run_dir, tmp_path):
    m = _mask_file(tmp_path, size=32)
    out = tmp_path / "all"
    r = cli(
        "generate",
        "--run",
        run_dir,
        "--method",
        "all",
        "--text",
        "a",
        "--text",
        "b",
        "--mask",
        m,
        "--num",
        1,
        "--steps",
        2,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {
        "collaborative",
        "composable",
        "text",
        "mask",
        "masks",
        "compare.png",
        "compare.html",
    }
    assert (out / "masks" / "001.png").is_file() and 'src="masks/001.png"' in (
        out / "compare.html"
    ).read_text()
    assert Image.open(out / "compare.png").size == (5 * 32 + 6 * 2, 2 * 32 + 3 * 2)
    # each column is the method's own output
    compare = _png(out / "compare.png")[..., :3]
    row, col = (
        1,
        3,
    )  # the second condition, the text-only column (mask, collaborative, composable, text, mask)
    tile = compare[2 + row * 34 : 2 + row * 34 + 32, 2 + col * 34 : 2 + col * 34 + 32]
    assert np.array_equal(tile, _png(out / "text" / "001-000000.png")[..., :3])
    assert "collaborative/000-000000.png" in (out / "compare.html").read_text()


# ---- editing --------------------------------------------------------------------------------

EDIT_FAST = [
    "--embed-steps",
    20,
    "--embed-lr",
    1e-2,
    "--finetune-steps",
    20,
    "--finetune-lr",
    3e-3,
    "--steps",
    4,
]
# enough fine-tuning for the tiny model to memorise the photo: alpha = 0 then reconstructs it measurably better
EDIT_STRONG = ["--embed-steps", 40, "--embed-lr", 1e-2, "--finetune-steps", 120, "--finetune-lr", 3e-3]
EDIT_STRONG += ["--steps", 10, "--eta", 0]


def _photo(run_dir, tmp_path):
    """A validation face, padded to 48×40 RGBA: the edit must crop, resize and drop alpha."""
    from cdiff.data.prepared import PreparedDataset

    data = PreparedDataset.open(run_dir / "data")
    face = Image.fromarray(data.image(data.split("val")[0])).resize((40, 40))
    canvas = Image.new("RGBA", (48, 40), (0, 0, 0, 0))
    canvas.paste(face, (4, 0))
    canvas.save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_text_edit_optimises_reuses_and_is_reproducible(run_dir, tmp_path):
    photo = _photo(run_dir, tmp_path)
    out = tmp_path / "edit"
    r = cli(
        "edit",
        photo,
        "--run",
        run_dir,
        "--target-text",
        "He has a beard.",
        "--alphas",
        "0,1",
        "--out",
        out,
        *EDIT_STRONG,
    )
    assert r.exit_code == 0, r.output
    assert "centre-cropped to 40×40 and resized" in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    m = manifest["metrics"]
    assert m["text: reconstruction loss with e_opt"] < m["text: reconstruction loss with e_tgt"]
    assert m["text: reconstruction loss with e_opt, fine-tuned"] < m["text: reconstruction loss with e_opt"]
    assert (
        m["text: alpha=0 PSNR to the photo, after fine-tuning"]
        > m["text: alpha=0 PSNR to the photo, before fine-tuning"]
    )
    for name in (
        "embeddings.safetensors",
        "finetuned_text.safetensors",
        "start_noise.safetensors",
        "input.png",
        "grid.png",
        "alpha_+0.00.png",
        "alpha_+1.00.png",
    ):
        assert (out / name).is_file(), name
    assert Image.open(out / "input.png").size == (32, 32)
    # reuse: the saved embeddings, UNet and noise give the same images, and new alphas
    r = cli("edit", "--from", out, "--alphas", "1,0.5,0", "--out", tmp_path / "again")
    assert r.exit_code == 0, r.output
    for a in ("+0.00", "+1.00"):
        assert np.array_equal(_png(out / f"alpha_{a}.png"), _png(tmp_path / "again" / f"alpha_{a}.png")), a
    assert (tmp_path / "again" / "alpha_+0.50.png").is_file()
    r = cli("edit", photo, "--run", run_dir, "--target-text", "x", "--out", out, *EDIT_FAST)
    assert r.exit_code == 2 and "--force" in r.output


def test_collaborative_edit_and_visualize(run_dir, tmp_path):
    photo = _photo(run_dir, tmp_path)
    m = _mask_file(tmp_path, size=32)
    out = tmp_path / "both"
    r = cli(
        "edit",
        photo,
        "--run",
        run_dir,
        "--target-text",
        "She is old.",
        "--target-mask",
        m,
        "--alphas",
        "0,1.5",
        "--out",
        out,
        "--save-intermediates",
        *EDIT_FAST,
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["settings"]["modalities"] == ["mask", "text"]
        and manifest["settings"]["method"] == "collaborative"
    )
    assert {"finetuned_text.safetensors", "finetuned_mask.safetensors", "target_mask.png"} <= {
        p.name for p in out.iterdir()
    }
    r = runner.invoke(app, ["visualize", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "visualize" / "alpha_+1.50" / "influence_mask.png").is_file()
    assert (out / "visualize" / "alpha_+1.50" / "overlay.png").is_file()
    # the edits toward each target alone, combined (--from twice): the same images, without optimising
    for flag, value, name in (("--target-text", "She is old.", "text"), ("--target-mask", m, "mask")):
        r = cli(
            "edit",
            photo,
            "--run",
            run_dir,
            flag,
            value,
            "--alphas",
            "0",
            "--out",
            tmp_path / name,
            *EDIT_FAST,
        )
        assert r.exit_code == 0, r.output
    combined = tmp_path / "combined"
    r = cli(
        "edit",
        "--from",
        tmp_path / "text",
        "--from",
        tmp_path / "mask",
        "--alphas",
        "0,1.5",
        "--out",
        combined,
    )
    assert r.exit_code == 0, r.output
    for a in ("+0.00", "+1.50"):
        assert np.array_equal(_png(out / f"alpha_{a}.png"), _png(combined / f"alpha_{a}.png")), a
    assert json.loads((combined / "manifest.json").read_text())["settings"]["modalities"] == ["mask", "text"]
    r = cli("edit", "--from", combined, "--alphas", "1.5", "--out", tmp_path / "again")  # an edit of its own
    assert r.exit_code == 0, r.output
    assert np.array_equal(_png(out / "alpha_+1.50.png"), _png(tmp_path / "again" / "alpha_+1.50.png"))
    r = cli("edit", "--from", tmp_path / "text", "--from", tmp_path / "text", "--out", tmp_path / "twice")
    assert r.exit_code == 2 and "two of the edits target text" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["edit", "PHOTO", "--alphas", "0"], "--target-text, --target-mask, --target-sketch or several"),
        (["edit", "NOTIMAGE", "--target-text", "x"], "cannot read"),
        (["edit", "/nonexistent.jpg", "--target-text", "x"], "photo not found"),
        (["edit", "--from", "/tmp"], "not an edit folder"),
        (["edit", "--target-text", "x"], "give a photo"),
        (["edit", "PHOTO", "--target-mask", "/nonexistent.png"], "mask file not found"),
    ],
)
def test_edit_bad_input(run_dir, tmp_path, args, message):
    photo = _photo(run_dir, tmp_path)
    (tmp_path / "not.jpg").write_text("hello")
    args = [str(photo) if a == "PHOTO" else str(tmp_path / "not.jpg") if a == "NOTIMAGE" else a for a in args]
    r = cli(*args, "--run", run_dir, *EDIT_FAST)
    assert r.exit_code == 2 and message in r.output, r.output


def test_modality_is_an_alias_of_the_unimodal_methods(run_dir, tmp_path):
    common = ["--run", run_dir, "--text", "x", "--num", 1, "--steps", 2]
    assert cli("generate", "--modality", "text", *common, "--out", tmp_path / "a").exit_code == 0
    assert cli("generate", "--method", "text", *common, "--out", tmp_path / "b").exit_code == 0
    assert np.array_equal(_png(tmp_path / "a" / "000000.png"), _png(tmp_path / "b" / "000000.png"))
    r = cli("generate", "--modality", "text", "--method", "mask", *common)
    assert r.exit_code == 2 and "disagree" in r.output


def test_edit_accepts_grayscale_photos(run_dir, tmp_path):
    Image.fromarray(np.full((40, 40), 128, np.uint8), mode="L").save(tmp_path / "grey.png")
    r = cli(
        "edit",
        tmp_path / "grey.png",
        "--run",
        run_dir,
        "--target-text",
        "x",
        "--alphas",
        "1",
        "--out",
        tmp_path / "e",
        *EDIT_FAST,
    )
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "e" / "input.png")).shape == (32, 32, 3)


def test_collaborative_generate_rejects_bad_masks_and_takes_long_captions(run_dir, tmp_path):
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(tmp_path / "odd.png")
    r = cli(
        "generate", "--run", run_dir, "--text", "x", "--mask", tmp_path / "odd.png", "--num", 1, "--steps", 2
    )
    assert r.exit_code == 2 and "outside the CelebAMask-HQ palette" in r.output
    m = _mask_file(tmp_path, size=32)
    long_caption = "He has a beard. " * 60  # far beyond 77 tokens: truncated like the release's tokenizer
    r = cli(
        "generate",
        "--run",
        run_dir,
        "--text",
        long_caption,
        "--mask",
        m,
        "--num",
        1,
        "--steps",
        2,
        "--out",
        tmp_path / "long",
    )
    assert r.exit_code == 0, r.output


def test_training_is_reproducible_to_the_byte(run_dir, tmp_path):
    """Seeded initial weights, seeded batches and noise, one safetensors metadata key: identical files."""
    import hashlib
    import shutil

    digests = []
    for name in ("a", "b"):
        run = tmp_path / name
        for part in ("data", "vae", "latents"):
            shutil.copytree(run_dir / part, run / part)
        r = cli("train-unimodal", "--modality", "mask", "--run", run, "--steps", 3)
        assert r.exit_code == 0, r.output
        digests.append(hashlib.sha256((run / "mask" / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_train_evaluator_outputs(run_dir):
    manifest = json.loads((run_dir / "evaluator" / "manifest.json").read_text())
    assert manifest["stage"] == "train-evaluator" and manifest["metrics"]["steps"] == 3
    val = manifest["metrics"]["val"]
    assert {
        "parser_accuracy",
        "parser_accuracy_32",
        "parser_miou",
        "gender_accuracy",
        "beard_accuracy",
    } <= set(val)
    assert all(0 <= v <= 1 for v in val.values())
    assert manifest["metrics"]["val_reconstructed"] is not None  # the run has a VAE
    assert (run_dir / "evaluator" / "parser.png").is_file()
    assert not (run_dir / "evaluator" / "checkpoint.pt").exists()
    r = cli("train-evaluator", "--run", run_dir, "--dry-run")
    assert r.exit_code == 0 and "face parser" in r.output
    r = cli("train-evaluator", "--run", run_dir, "--steps", 3)
    assert r.exit_code == 2 and "--force" in r.output


def test_evaluate_end_to_end_and_report(run_dir, tmp_path):
    out = tmp_path / "ev"
    methods = ["--method", "collaborative", "--method", "composable", "--method", "text", "--method", "mask"]
    r = cli("evaluate", "--run", run_dir, "--pairs", 4, "--steps", 2, "--out", out, *methods)
    assert r.exit_code == 0, r.output
    assert "collaborative vs composable" in r.output and "evaluation" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"collaborative", "composable", "text", "mask"}
    assert set(metrics["references"]) == {"real faces", "VAE reconstructions"}
    for rec in metrics["methods"].values():
        assert 0 <= rec["mask_accuracy"] <= 1 and 0 <= rec["mask_accuracy_32"] <= 1
        assert rec["fd_evaluator"] >= 0 and "fid_50" not in rec  # no Inception weights here
    assert len(metrics["claims"]) == 4 and all(c["pairs"] > 0 for c in metrics["claims"])
    pairs = metrics["pairs"]
    assert len(pairs) == 4 and all(p["mask_of"] != p["text_of"] for p in pairs)
    assert [p["seed"] for p in pairs] == [0, 1, 2, 3]
    # every method drew pair k from the same seed: the files carry it
    for meth in metrics["methods"]:
        assert sorted(f.name for f in (out / meth).glob("0*.png")) == [
            f"{k:03d}-{k:06d}.png" for k in range(4)
        ]
    assert (out / "samples.png").is_file() and "Samples" in (out / "report.html").read_text()
    assert any("FID skipped" in n for n in metrics["notes"])
    # the same request again: identical numbers; never over finished work without --force
    r = cli("evaluate", "--run", run_dir, "--pairs", 4, "--steps", 2, "--out", out, *methods)
    assert r.exit_code == 2 and "--force" in r.output
    out2 = tmp_path / "ev2"
    r = cli("evaluate", "--run", run_dir, "--pairs", 4, "--steps", 2, "--out", out2, "--method", "mask")
    assert r.exit_code == 0, r.output
    again = json.loads((out2 / "metrics.json").read_text())
    assert again["methods"]["mask"]["mask_accuracy"] == metrics["methods"]["mask"]["mask_accuracy"]
    assert again["claims"] == []  # nothing to compare with one method
    # the run's report page gathers what is there
    import shutil

    shutil.copytree(out, run_dir / "evaluation", dirs_exist_ok=False)
    r = runner.invoke(app, ["report", "--run", str(run_dir)])
    assert r.exit_code == 0, r.output
    page = (run_dir / "report.html").read_text()
    assert "Evaluation" in page and "Models" in page and 'src="evaluation/samples.png"' in page
    shutil.rmtree(run_dir / "evaluation")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--pairs", "1"], "--pairs must be between 2"),
        (["--pairs", "100000"], "--pairs must be between 2"),
        (["--inception", "missing.pth"], "not found"),
        (["--set", "evaluate.pairz=3"], "unknown config key 'evaluate.pairz'"),
    ],
)
def test_evaluate_bad_input(run_dir, tmp_path, args, message):
    r = cli("evaluate", "--run", run_dir, "--out", tmp_path / "x", "--steps", 2, *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_evaluate_needs_the_evaluator(run_dir, tmp_path):
    import shutil

    run2 = tmp_path / "run"
    for part in ("data", "vae", "text", "mask"):
        shutil.copytree(run_dir / part, run2 / part)
    r = cli("evaluate", "--run", run2, "--pairs", 2, "--steps", 2, "--method", "text")
    assert r.exit_code == 2 and "cdiff train-evaluator" in r.output
    r = runner.invoke(app, ["report", "--run", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not found" in r.output


# ---- a third modality, registered from the test suite alone ---------------------------------


def _register_colour():
    """A toy modality: the face's mean colour (3 numbers), one token. No package file knows it."""
    import torch
    from torch import nn

    from cdiff import modalities
    from cdiff.errors import InputError

    class ColourEncoder(nn.Linear, modalities.ConditionEncoder):
        def encode(self, raw):
            return {"tokens": self(raw.to(self.weight.dtype))[:, None, :]}  # (B, 1, C)

    class Colour(modalities.Modality):
        name = "colour"
        describes = "a colour R,G,B in 0..1"

        def build_encoder(self, cfg, latent_size, vocab_size=None):
            return ColourEncoder(3, cfg.unet.cross_attention_dim)

        def from_dataset(self, data, ids, ctx):
            return torch.tensor(
                np.stack([data.image(i).mean(axis=(0, 1)) / 255 for i in ids]), dtype=torch.float32
            )

        def dataset_value(self, data, sample_id):
            return ",".join(f"{v:.3f}" for v in data.image(sample_id).mean(axis=(0, 1)) / 255)

        def read(self, values, ctx, notes):
            try:
                return torch.tensor([[float(x) for x in str(v).split(",")] for v in values])
            except ValueError:
                raise InputError(f"a colour is R,G,B, got {values}") from None

        def null(self, like, ctx):
            return torch.zeros_like(like[0])

    return modalities.register(Colour())


def test_a_third_modality_trains_and_collaborates_three_ways(run_dir, tmp_path):
    import shutil

    from cdiff import modalities

    run = tmp_path / "run3"
    shutil.copytree(run_dir, run)
    _register_colour()
    try:
        r = cli("train-unimodal", "--modality", "colour", "--run", run, "--steps", 3)
        assert r.exit_code == 0, r.output
        r = cli("train-diffuser", "--run", run, "--steps", 1, "--modalities", "colour,mask")
        assert r.exit_code == 0, r.output
        assert (run / "diffuser-colour-mask" / "manifest.json").is_file()
        m = _mask_file(tmp_path, size=32)
        out = tmp_path / "two"
        r = cli(
            "generate",
            "--run",
            run,
            "--mask",
            m,
            "--cond",
            "colour=0.8,0.5,0.4",
            "--num",
            2,
            "--steps",
            3,
            "--out",
            out,
            "--save-intermediates",
        )
        assert r.exit_code == 0, r.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["settings"]["modalities"] == ["colour", "mask"]  # the set of the conditions given
        assert manifest["outputs"]["images"][0]["conditions"]["colour"] == "0.8,0.5,0.4"
        from safetensors.torch import load_file

        w = load_file(str(out / "intermediates" / "000000.safetensors"))["weights"]
        assert w.shape[:2] == (3, 2) and torch.allclose(w.float().sum(1), torch.ones(()), atol=2e-3)
        # composable with three fixed weights (no diffusers needed), and the colour model alone
        args = ["--text", "a", "--mask", m, "--cond", "colour=0.8,0.5,0.4", "--num", 2, "--steps", 3]
        r = cli(
            "generate",
            "--run",
            run,
            *args,
            "--method",
            "composable",
            "--weights",
            "0.2,0.3,0.5",
            "--out",
            tmp_path / "c",
        )
        assert r.exit_code == 0, r.output
        r = cli(
            "generate",
            "--run",
            run,
            "--cond",
            "colour=0.1,0.1,0.1",
            "--method",
            "colour",
            "--num",
            1,
            "--steps",
            2,
            "--out",
            tmp_path / "alone",
        )
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / "alone" / "000000.png").size == (32, 32)
    finally:
        modalities.unregister("colour")


@pytest.fixture(scope="module")
def three_way(run_dir, tmp_path_factory):
    """The tiny run with a sketch model and two more diffuser sets: mask+sketch+text and mask+sketch."""
    import shutil

    run = tmp_path_factory.mktemp("three") / "run"
    shutil.copytree(run_dir, run)
    r = cli("train-unimodal", "--modality", "sketch", "--run", run, "--steps", 2)
    assert r.exit_code == 0, r.output
    for mods in ("mask,text,sketch", "sketch,mask"):
        r = cli("train-diffuser", "--run", run, "--steps", 1, "--modalities", mods)
        assert r.exit_code == 0, r.output
    return run


def _sketch_file(tmp_path):
    drawing = Image.new("L", (48, 48), 230)  # light lines on a dark page would do as well
    ImageDraw.Draw(drawing).ellipse((10, 6, 38, 44), outline=20, width=2)
    drawing.save(tmp_path / "s.png")
    return tmp_path / "s.png"


def test_diffuser_sets_live_side_by_side_named_by_their_modalities(three_way, tmp_path):
    from cdiff.stages.run import Run

    run = Run(three_way)
    assert run.diffuser_sets() == {
        "diffuser": ["mask", "text"],
        "diffuser-mask-sketch": ["sketch", "mask"],
        "diffuser-mask-sketch-text": ["mask", "text", "sketch"],
    }
    assert run.diffuser_part(["text", "sketch", "mask"]) == "diffuser-mask-sketch-text"
    assert run.diffuser_part() == "diffuser"  # the default set: mask and text, as before
    x = ["--out", tmp_path / "x"]
    refused = [  # each a one-line error (exit code 2) saying what to do
        (
            ["train-diffuser", "--steps", 2, "--modalities", "mask,sketch"],
            "--force",
        ),  # a finished set is kept
        (
            ["generate", "--text", "a", "--sketch", _sketch_file(tmp_path), *x],
            "cdiff train-diffuser --modalities sketch,text",
        ),
        (["generate", "--modalities", "mask,bogus", *x], "unknown modality bogus"),
        (["generate", "--method", "text", "--modalities", "mask,text", *x], "drop it with --method text"),
        # --method all over modalities without their set: the command that trains it, not a silent skip
        (
            ["generate", "--modalities", "sketch,text", "--method", "all", *x],
            "cdiff train-diffuser --modalities sketch,text",
        ),
        (
            ["generate", "--method", "collaborative-bogus", *x],
            "--method collaborative-bogus: unknown modality bogus",
        ),
        # 2 pairs would reuse a face in a triple
        (
            ["evaluate", "--modalities", "mask,text,sketch", "--pairs", 2, "--force"],
            "--pairs must be between 3",
        ),
    ]
    for args, message in refused:
        r = cli(args[0], "--run", three_way, *args[1:])
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    r = cli("evaluate", "--run", three_way, "--modalities", "mask,text,sketch", "--dry-run")
    assert r.exit_code == 0 and "collaborative, composable, collaborative-mask-sketch" in r.output.replace(
        "\n", " "
    )


def test_sketch_trains_alone_and_collaborates_with_mask_and_text(three_way, tmp_path):
    from safetensors.torch import load_file

    run = three_way
    sketch = _sketch_file(tmp_path)
    out = tmp_path / "three"
    args = ["--text", "a", "--mask", _mask_file(tmp_path, 32), "--sketch", sketch, "--num", 2]
    r = cli("generate", "--run", run, *args, "--steps", 3, "--out", out, "--save-intermediates")
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["modalities"] == ["mask", "text", "sketch"]  # the set of the conditions given
    assert manifest["outputs"]["images"][0]["conditions"]["sketch"] == str(sketch.resolve())
    w = load_file(str(out / "intermediates" / "000000.safetensors"))["weights"]
    assert w.shape[:2] == (3, 3) and torch.allclose(w.float().sum(1), torch.ones(()), atol=2e-3)
    r = runner.invoke(app, ["visualize", str(out), "--image", "000000"])
    assert r.exit_code == 0, r.output
    assert {f"influence_{m}.png" for m in ("mask", "text", "sketch")} <= {
        p.name for p in (out / "visualize" / "000000").iterdir()
    }
    # every method side by side: the three-way set, composable thirds, the pair set, each expert
    r = cli(
        "generate",
        "--run",
        run,
        *args[:6],
        "--num",
        1,
        "--steps",
        2,
        "--method",
        "all",
        "--out",
        tmp_path / "all",
    )
    assert r.exit_code == 0, r.output
    cols = json.loads(Image.open(tmp_path / "all" / "compare.png").info["layout"])["columns"]
    assert cols == [
        "mask",
        "sketch",
        "collaborative",
        "composable",
        "collaborative-mask-sketch",
        "collaborative-mask-text",
        "text",
        "mask",
        "sketch",
    ]
    pair = json.loads((tmp_path / "all" / "collaborative-mask-sketch" / "manifest.json").read_text())
    assert pair["settings"]["modalities"] == ["sketch", "mask"]
    thirds = json.loads((tmp_path / "all" / "composable" / "manifest.json").read_text())
    assert thirds["settings"]["weights"] == pytest.approx([1 / 3] * 3)
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    r = cli(
        "generate",
        "--run",
        run,
        "--sketch",
        tmp_path / "bad.png",
        "--method",
        "sketch",
        "--out",
        tmp_path / "x",
    )
    assert r.exit_code == 2 and "cannot read the sketch" in r.output
    # evaluation on mismatched triples: mask of face k, caption of face k+1, sketch of face k+2
    ev = run / "evaluation-three-way"
    methods = ["--method", "collaborative", "--method", "composable", "--method", "collaborative-mask-sketch"]
    r = cli(
        "evaluate",
        "--run",
        run,
        "--modalities",
        "mask,text,sketch",
        "--pairs",
        3,
        "--steps",
        2,
        *methods,
        "--out",
        ev,
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["settings"]["modalities"] == ["mask", "text", "sketch"]
    pair = metrics["pairs"][0]
    assert len({pair["mask_of"], pair["text_of"], pair["sketch_of"]}) == 3
    for method in ("collaborative", "composable", "collaborative-mask-sketch"):
        assert 0 <= metrics["methods"][method]["sketch_f"] <= 1
        low, high = metrics["intervals"][method]["sketch_f"]
        assert low <= metrics["methods"][method]["sketch_f"] <= high
    assert 0 < metrics["references"]["real faces"]["sketch_f"] <= 1
    claims = {(c["other"], c["metric"]) for c in metrics["claims"]}
    assert ("composable", "sketch_f") in claims
    assert ("collaborative-mask-sketch", "text_accuracy") in claims  # the pair on the caption it leaves out
    from cdiff.stages.evaluate_pages import claim_lines

    assert any("vs composable, sketch F-score: " in x and ", 3 triples): " in x for x in claim_lines(metrics))
    assert ("collaborative-mask-sketch", "mask_accuracy") not in claims
    from cdiff.stages.evaluate_pages import table_rows

    _, rows = table_rows(metrics, short=True)  # the terminal's table: each score with its interval
    assert "±" in rows[0][1] and "±" not in rows[-1][1]  # methods have intervals, reference rows none
    assert "(0." in (ev / "report.html").read_text().split("sketch F-score")[1]
    r = runner.invoke(app, ["report", "--run", str(run), "--force"])  # the run's page shows every set
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text()
    assert "dynamic diffusers (mask, sketch, text)" in page and "Evaluation: mask, text, sketch" in page


def test_edit_toward_a_sketch_and_a_mask(three_way, tmp_path):
    photo = _photo(three_way, tmp_path)
    sketch = _sketch_file(tmp_path)
    both = tmp_path / "both"
    r = cli(
        "edit",
        photo,
        "--run",
        three_way,
        "--target-sketch",
        sketch,
        "--target-mask",
        _mask_file(tmp_path, 32),
        "--alphas",
        "1",
        "--out",
        both,
        *EDIT_FAST,
    )
    assert r.exit_code == 0, r.output
    settings = json.loads((both / "manifest.json").read_text())["settings"]
    assert settings["method"] == "collaborative" and settings["modalities"] == ["sketch", "mask"]
    assert (both / "target_sketch.png").is_file()
    r = cli(
        "edit",
        photo,
        "--run",
        three_way,
        "--target-sketch",
        sketch,
        "--target-text",
        "a",
        "--out",
        tmp_path / "x",
        *EDIT_FAST,
    )
    assert r.exit_code == 2 and "no dynamic diffusers combining text, sketch (its sets: mask-text" in r.output


def test_demo_weights_ship_the_sketch_model_and_every_diffuser_set(three_way, tmp_path):
    from cdiff.stages import demo_weights

    shipped = tmp_path / "shipped"
    sizes = demo_weights.export(three_way, shipped)
    assert {"sketch", "diffuser-mask-sketch", "diffuser-mask-sketch-text"} <= set(sizes)
    record = json.loads((shipped / "diffuser-mask-sketch-text" / "config.json").read_text())
    assert set(record["experts"]) == {"mask", "text", "sketch"}  # naming the shipped (fp16) experts
    pairs = [json.loads(x) for x in (shipped / "examples" / "pairs.jsonl").read_text().splitlines()]
    assert all(len({p["mask_of"], p["caption_of"], p["sketch_of"]}) == 3 for p in pairs)  # three faces
    run2 = tmp_path / "run2"
    assert {"sketch", "diffuser-mask-sketch"} <= set(demo_weights.import_demo(run2, source=shipped))
    out = tmp_path / "g"
    r = cli(
        "generate",
        "--run",
        run2,
        "--modalities",
        "mask,text,sketch",
        "--method",
        "all",
        "--num",
        1,
        "--steps",
        2,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert (out / "collaborative-mask-sketch" / "grid.png").is_file() and (
        out / "sketches" / "000.png"
    ).is_file()


def test_studio_offers_a_sketch_canvas_with_a_sketch_model(three_way, tmp_path):
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install 'cdiff[app]'")
    from gradio_client import Client, handle_file

    from cdiff.app import canvas
    from cdiff.app.server import launch
    from cdiff.app.studio import Studio

    studio = Studio.from_run(three_way, device="cpu")
    assert studio.sketches and "collaborative-mask-sketch" in studio.methods()
    studio.warm_up()  # every method, without and with a sketch
    assert studio.methods(sketch=False) == ["collaborative", "composable", "text", "mask", "all"]
    sketch = _sketch_file(tmp_path)
    drawn = canvas.editor_to_sketch(
        {"background": np.asarray(Image.open(sketch).convert("RGBA")), "layers": []}
    )
    assert drawn is not None and canvas.editor_to_sketch(canvas.blank_sketch()) is None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(studio, port=port, block=False, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        mask = {"background": handle_file(str(_mask_file(tmp_path, 32))), "layers": [], "composite": None}
        page = {"background": handle_file(str(sketch)), "layers": [], "composite": None}
        args = {"mask": mask, "text": "a", "steps": 2, "seed": 3, "api_name": "/generate"}
        out = client.predict(**args, method="collaborative", sketch=page)
        details = out[9]
        assert set(details["mean_weight"]) == {"mask", "text", "sketch"}  # the three-way set
        out = client.predict(**args, method="collaborative")  # no sketch drawn: the pair
        assert set(out[9]["mean_weight"]) == {"mask", "text"}
        with pytest.raises(Exception, match="draw a sketch"):
            client.predict(**args, method="sketch")
        # the Edit tab: toward a target sketch and mask (the mask+sketch set), no optimising steps
        photo = handle_file(str(_photo(three_way, tmp_path)))
        status = client.predict(photo, "", mask, 0, 0, 2, 0, page, api_name="/edit")[0]
        assert status.startswith("edited toward the mask and sketch"), status
    finally:
        demo.close()
