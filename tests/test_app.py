"""cdiff studio through its API (gradio_client against the app started in this process), and its parts.

The app serves a copy of the shipped demo run, so its visitors' folders go to ``RUN/app/<session>/``.
Sampling uses DPM-Solver++ with few steps to stay quick.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("gradio", reason="the app extra is not installed: pip install 'cdiff[app]'")
pytest.importorskip("gradio_client", reason="the app extra is not installed: pip install 'cdiff[app]'")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import Status  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from cdiff import Pipeline  # noqa: E402
from cdiff.app import canvas  # noqa: E402
from cdiff.app.server import launch  # noqa: E402
from cdiff.app.studio import Studio, output_root, sanitise_session  # noqa: E402
from cdiff.cli import app as cli  # noqa: E402
from cdiff.data.masks import CLASS_ID, PALETTE, colorize, read_mask, write_mask  # noqa: E402
from cdiff.errors import InputError  # noqa: E402
from cdiff.stages.demo_weights import shipped_dir  # noqa: E402

STEPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app on a free port over a copy of the demo run, with the working folder set to an empty one."""
    run = tmp_path_factory.mktemp("run") / "demo"
    shutil.copytree(shipped_dir(), run)
    before = tree(run)
    cwd, old = tmp_path_factory.mktemp("cwd"), Path.cwd()
    os.chdir(cwd)
    studio = Studio.from_run(run, device="cpu")
    demo = launch(studio, port=free_port(), block=False, quiet=True)
    url = demo.local_url
    try:
        yield SimpleNamespace(
            run=run, before=before, cwd=cwd, studio=studio, url=url, client=Client(url, verbose=False)
        )
    finally:
        demo.close()
        os.chdir(old)


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_run(device="cpu")  # the shipped demo models, loaded apart from the app's


def editor(path: str | Path) -> dict:
    return {"background": handle_file(str(path)), "layers": [], "composite": None}


def example(served) -> dict:
    return served.studio.pipe.examples()[0]


def png(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def generate(served, client: Client | None = None, **kw):
    ex = example(served)
    args = {
        "mask": editor(ex["mask"]),
        "text": ex["text"],
        "method": "collaborative",
        "seed": 7,
        "steps": STEPS,
    }
    return (client or served.client).predict(**{**args, **kw}, api_name="/generate")


# ---- the generate endpoint -----------------------------------------------------------------------


def test_generate_gives_the_pipelines_pixels_and_the_influence(served, pipe):
    ex = example(served)
    out = generate(served)
    preview, status, images, influence, step, plot, overlay, files, notes, details, seed, *_ = out
    assert status.startswith("done") and seed == 7 and step == STEPS
    want = pipe.generate(mask=ex["mask"], text=ex["text"], seed=7, solver="dpm", steps=STEPS, guidance=3.0)
    assert np.array_equal(png(images[0]["image"]), np.asarray(want.images[0]))  # pixel for pixel
    for picture in (influence, plot, overlay):
        assert png(picture).shape[0] > 64
    names = [Path(f).name for f in files]
    assert "000007.png" in names and "000007.safetensors" in names and "grid.png" in names
    weights = load_file(next(f for f in files if f.endswith(".safetensors")))["weights"].float()
    assert weights.shape == (STEPS, 2, 16, 16)
    assert torch.allclose(weights.sum(1), torch.ones(STEPS, 16, 16), atol=2e-3)  # fp16 on disk
    means = details["mean_weight"]
    assert set(means) == {"mask", "text"} and len(means["text"]) == STEPS
    assert all(abs(a + b - 1) < 1e-3 for a, b in zip(means["mask"], means["text"], strict=True))
    meta = Image.open(next(f for f in files if f.endswith("000007.png"))).info
    assert json.loads(meta["seed"]) == 7 and "mask" in json.loads(meta["conditions"])


def test_the_preview_streams_before_the_image(served):
    ex = example(served)
    job = served.client.submit(
        mask=editor(ex["mask"]), text=ex["text"], seed=3, steps=STEPS, api_name="/generate"
    )
    updates = list(job)
    previews = [u for u in updates if str(u[1]).startswith("sampling")]
    assert previews and previews[0][0] and "step 1 of 4" in previews[0][1]
    assert png(previews[0][0]).shape == (64, 64, 3)  # the predicted x_0, decoded
    first_image = next(k for k, u in enumerate(updates) if u[2])
    assert first_image > updates.index(previews[-1])


def test_all_methods_side_by_side_match_the_pipeline(served, pipe):
    ex = example(served)
    out = generate(served, method="all", steps=2, seed=1)
    want = pipe.generate(mask=ex["mask"], text=ex["text"], method="all", seed=1, solver="dpm", steps=2)
    got = {im["caption"].split(" ·")[0]: png(im["image"]) for im in out[2]}
    assert set(got) == set(want.generation) == {"collaborative", "composable", "text", "mask"}
    for method, g in want.generation.items():
        assert np.array_equal(got[method], g.images[0]), method
    assert any(Path(f).name == "compare.png" for f in out[7])


def test_a_painted_canvas_is_read_as_classes(served, pipe):
    ex = example(served)
    label = read_mask(ex["mask"])
    stroke = np.zeros((*label.shape, 4), np.uint8)
    stroke[2:8, 20:44] = [*PALETTE[CLASS_ID["hat"]], 255]
    layer = served.cwd.parent / "stroke.png"
    Image.fromarray(stroke).save(layer)
    value = {"background": handle_file(ex["mask"]), "layers": [handle_file(str(layer))], "composite": None}
    out = served.client.predict(mask=value, text=ex["text"], seed=2, steps=2, api_name="/generate")
    painted = label.copy()
    painted[2:8, 20:44] = CLASS_ID["hat"]
    want = pipe.generate(mask=painted, text=ex["text"], seed=2, solver="dpm", steps=2)
    assert np.array_equal(png(out[2][0]["image"]), np.asarray(want.images[0]))


def test_bad_inputs_are_messages_not_tracebacks(served, tmp_path):
    ex = example(served)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    cases = {
        "the caption must be text": {"text": None},
        "type a caption": {"text": "  "},
        "cannot read the mask picture": {"mask": editor(bad)},
        "seed must be": {"seed": 2**63},
        "collaborative": {"method": "nonsense"},
    }
    for expected, kw in cases.items():
        with pytest.raises(AppError) as err:
            generate(served, **kw)
        message = str(err.value)
        assert expected in message and "Traceback" not in message and 'File "' not in message, message
    with pytest.raises(AppError, match="give a target caption, a target mask, a target sketch, or several"):
        served.client.predict(
            photo=handle_file(ex["mask"]),
            text="",
            mask=None,
            embed_steps=1,
            finetune_steps=1,
            steps=1,
            seed=0,
            api_name="/edit",
        )


def test_a_jpeg_mask_is_snapped_with_a_note(served, tmp_path):
    ex = example(served)
    jpeg = tmp_path / "mask.jpg"
    Image.fromarray(colorize(read_mask(ex["mask"]))).resize((256, 256), Image.NEAREST).save(jpeg, quality=80)
    out = generate(served, mask=editor(jpeg), steps=2)
    assert out[1].startswith("done") and "snapped to the nearest class colour" in out[8]


def test_one_job_at_a_time(served):
    spans: list[tuple[float, float]] = []
    studio, sample = served.studio, served.studio._sample

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return sample(*args, **kwargs)
        finally:
            spans.append((t0, time.perf_counter()))

    studio._sample = timed
    ex = example(served)
    try:
        clients = [served.client, Client(served.url, verbose=False)]  # two visitors
        jobs = [
            c.submit(mask=editor(ex["mask"]), text=ex["text"], seed=k, steps=12, api_name="/generate")
            for k, c in enumerate(clients)
        ]
        queued = []  # whichever of the two the server took second waits in the queue meanwhile
        while not all(job.done() for job in jobs):
            for job in jobs:
                status = job.status()
                if status.code == Status.IN_QUEUE:
                    queued.append(status.rank)  # the page shows it as the position
            time.sleep(0.02)
        for job in jobs:
            job.result()
    finally:
        del studio._sample
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0  # the second waited in the queue until the first was done
    assert queued and queued[0] is not None


def test_edit_then_alpha_renders_the_same_pixels(served):
    folder = served.run / "examples"
    spec = json.loads((folder / "edit.json").read_text())
    status, sweep, files, notes, metrics, rendered = served.client.predict(
        photo=handle_file(str(folder / "edit_photo.png")),
        text=spec["target_text"],
        mask=None,
        embed_steps=2,
        finetune_steps=2,
        steps=2,
        seed=0,
        api_name="/edit",
    )
    assert status.startswith("edited toward the text") and "text: reconstruction loss with e_opt" in metrics
    assert len(sweep) == 6 and any(Path(f).name == "grid.png" for f in files)
    _, files = served.client.predict(alpha=1.0, api_name="/render")  # from the saved state: no optimising
    alone = png(next(f for f in files if Path(f).name == "render_alpha_+1.00.png"))
    in_sweep = png(next(f for f in files if Path(f).name == "alpha_+1.00.png"))
    # the same image: a lone alpha is a batch of one, the sweep a batch of six (convolutions round apart)
    assert np.abs(alone.astype(int) - in_sweep).max() <= 1 and (alone != in_sweep).mean() < 0.01
    served.client.predict(alpha=0.5, api_name="/render")
    _, files = served.client.predict(alpha=1.0, api_name="/render")
    assert np.array_equal(png(next(f for f in files if Path(f).name == "render_alpha_+1.00.png")), alone)
    half = png(next(f for f in files if Path(f).name == "render_alpha_+0.50.png"))
    assert (
        np.abs(half.astype(int) - png(next(f for f in files if Path(f).name == "alpha_+0.50.png"))).max() <= 1
    )
    assert not np.array_equal(half, alone)


def test_nothing_is_written_outside_the_visitors_folder(served):
    generate(served, steps=1)  # at least one job, whatever ran before
    new = tree(served.run) - served.before
    assert new and all(f.startswith("app/") for f in new)
    sessions = {f.split("/")[1] for f in new}
    assert all(s == sanitise_session(s) for s in sessions)
    assert tree(served.cwd) == set()
    assert tree(served.run) >= served.before
    package = Path(canvas.__file__).parent  # nothing beside the app's modules (Gradio writes .pyi stubs of
    assert {p.suffix for p in package.iterdir() if p.is_file()} == {".py"}  # component subclasses: none here


# ---- the parts -----------------------------------------------------------------------------------


def test_on_step_watches_without_changing_the_pixels(pipe):
    seen = []
    mask = pipe.examples()[0]["mask"]
    kw = {"mask": mask, "text": "He is in his thirties.", "seed": 5, "solver": "dpm", "steps": 3}
    with_hook = pipe.generate(**kw, on_step=seen.append)
    assert [i.index for i in seen] == [0, 1, 2] and seen[0].pred_x0.shape == (1, 3, 16, 16)
    assert "weights" in seen[0].extras
    assert np.array_equal(np.asarray(with_hook.images[0]), np.asarray(pipe.generate(**kw).images[0]))
    with pytest.raises(InputError, match="once per method"):
        pipe.generate(**kw, method="all", on_step=seen.append)


def test_canvas_layers_paint_over_the_background():
    label = np.zeros((32, 32), np.uint8)
    label[8:24, 8:24] = CLASS_ID["skin"]
    stroke = np.zeros((32, 32, 4), np.uint8)
    stroke[0:4, :] = [*PALETTE[CLASS_ID["hat"]], 255]
    stroke[4, :] = [*PALETTE[CLASS_ID["hat"]], 60]  # a soft edge: not painted
    value = {"background": colorize(label), "layers": [stroke], "composite": None}
    got, notes = canvas.editor_to_label(value)
    want = label.copy()
    want[0:4, :] = CLASS_ID["hat"]
    assert np.array_equal(got, want) and notes == []
    assert canvas.is_empty(None) and canvas.is_empty({"background": None, "layers": [], "composite": None})
    assert not canvas.is_empty(value)
    with pytest.raises(InputError, match="canvas is empty"):
        canvas.editor_to_label({"background": None, "layers": [], "composite": None})


def test_uploads_index_png_exact_jpeg_snapped(tmp_path):
    label = read_mask(Path(shipped_dir()) / "examples" / "masks" / "3600.png")
    write_mask(tmp_path / "m.png", label)
    got, notes = canvas.read_upload(tmp_path / "m.png")
    assert np.array_equal(got, label) and notes == []
    buf = io.BytesIO()
    Image.fromarray(colorize(label)).save(buf, format="JPEG", quality=85)
    (tmp_path / "m.jpg").write_bytes(buf.getvalue())
    got, notes = canvas.read_upload(tmp_path / "m.jpg")
    assert (got == label).mean() > 0.9 and "snapped" in notes[0]
    (tmp_path / "x.png").write_text("nope")
    with pytest.raises(InputError, match="cannot read x.png as a mask"):
        canvas.read_upload(tmp_path / "x.png")


def test_visitor_folders_are_safe_and_the_package_is_never_written(tmp_path):
    assert sanitise_session("../../etc") == "etc" and sanitise_session(None) == "local"
    root, temporary = output_root(shipped_dir(), shipped=True)
    assert temporary and shipped_dir() not in root.parents
    root.rmdir()
    assert output_root(tmp_path, shipped=False) == (tmp_path / "app", False)


def test_caption_notes_name_unknown_words(served):
    notes = served.studio.caption_notes("He has a magnificent mustachio.")
    assert notes and "mustachio" in notes[0]
    assert served.studio.caption_notes(example(served)["text"]) == []


# ---- the command ---------------------------------------------------------------------------------


def test_the_command_has_help_and_says_when_gradio_is_missing(monkeypatch):
    runner = CliRunner()
    r = runner.invoke(cli, ["app", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "--host" in r.output and "--run" in r.output
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio → ImportError
    r = runner.invoke(cli, ["app"])
    assert r.exit_code == 2 and "the app needs Gradio: pip install 'cdiff[app]'" in r.output


def test_cdiff_help_does_not_import_gradio():
    code = "import sys; from cdiff.cli import app; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
