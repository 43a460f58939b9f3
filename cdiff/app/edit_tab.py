"""The Edit tab: a photo toward a caption and/or a mask (Imagic), then α re-rendered without optimising.

``Edit`` runs :meth:`cdiff.api.Pipeline.edit` with a progress bar through its stages (optimising each
target's embedding, fine-tuning its UNet, rendering the α sweep) and keeps the
:class:`~cdiff.api.EditSession` for the visitor; the α slider then calls
:meth:`~cdiff.api.EditSession.render` on it. API endpoints: ``/edit`` and ``/render``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from cdiff.api import EditSession
from cdiff.app import canvas, page, views
from cdiff.app.page import MODELS, messages, notes_markdown
from cdiff.app.studio import Studio
from cdiff.data.masks import read_mask
from cdiff.errors import InputError
from cdiff.imageio import save_png
from cdiff.stages.generate import next_output_dir

ALPHA_RANGE = (-1.0, 3.0)


def build(studio: Studio) -> None:
    """The tab's components and events (inside a ``gr.Blocks``)."""
    photos, target = _examples(studio)
    with gr.Row():
        with gr.Column(scale=5):
            ins = _inputs(studio, photos, target)
        with gr.Column(scale=6):
            outs = _outputs()
    quiet = {"concurrency_limit": None, "api_name": False}
    ins["photos"].click(lambda k: photos[int(k)], ins["photos"], ins["photo"], **quiet)
    ins["example_mask"].click(messages(lambda: _example_mask(studio)), None, ins["mask"], **quiet)
    ins["no_mask"].click(lambda: None, None, ins["mask"], **quiet)
    names = ("photo", "text", "mask", "embed_steps", "finetune_steps", "steps", "seed")
    names += ("sketch",) if ins["sketch"] is not None else ()
    if ins["sketch"] is not None:
        ins["clear_sketch"].click(canvas.blank_sketch, None, ins["sketch"], **quiet)
    ins["go"].click(
        messages(_editor(studio)),
        [ins[k] for k in names],
        [outs[k] for k in ("status", "sweep", "files", "notes", "metrics", "session", "rendered")],
        api_name="edit",
        concurrency_id=MODELS,
        concurrency_limit=1,
    )
    outs["alpha"].release(
        messages(_renderer(studio)),
        [outs["session"], outs["alpha"]],
        [outs["rendered"], outs["files"]],
        api_name="render",
        concurrency_id=MODELS,
        concurrency_limit=1,
        show_progress="minimal",
    )


def _inputs(studio: Studio, photos: list[str], target: dict[str, Any]) -> dict[str, Any]:
    first = photos[0] if photos else None
    photo = page.photo_input(
        label="photo to edit",
        type="filepath",
        sources=("upload", "clipboard"),
        value=first,
        height=260,
        elem_id="cdiff-photo",
    )
    photo_set = gr.Dataset(
        label="example photos (validation faces)",
        components=[gr.Image(render=False)],
        samples=[[p] for p in photos],
        type="index",
    )
    text = gr.Textbox(target.get("target_text", ""), label="target caption (empty: none)", lines=2)
    mask = page.mask_canvas("target mask (empty: none)", None, "cdiff-edit-mask")
    with gr.Row():
        example_mask = gr.Button("Use the example target mask", size="sm")
        no_mask = gr.Button("No target mask", size="sm")
    sketch = clear = None
    if studio.sketches:  # the run has a sketch model: a target sketch too
        sketch = page.sketch_canvas("target sketch (blank: none)", "cdiff-edit-sketch")
        clear = gr.Button("Clear target sketch", size="sm")
    ec = studio.pipe.config.edit
    with gr.Row():
        embed = gr.Slider(
            0, 1000, value=ec.embed_steps, step=10, label="embedding steps", elem_id="cdiff-embed-steps"
        )
        finetune = gr.Slider(
            0,
            1000,
            value=ec.finetune_steps,
            step=10,
            label="fine-tuning steps",
            elem_id="cdiff-finetune-steps",
        )
    with gr.Row():
        steps = gr.Slider(
            1, 100, value=20, step=1, label="sampling steps (DPM-Solver++)", elem_id="cdiff-edit-steps"
        )
        seed = gr.Number(0, precision=0, minimum=0, label="seed")
    go = gr.Button("Edit", variant="primary", elem_id="cdiff-edit")
    return {
        "photo": photo,
        "photos": photo_set,
        "text": text,
        "mask": mask,
        "example_mask": example_mask,
        "no_mask": no_mask,
        "embed_steps": embed,
        "finetune_steps": finetune,
        "steps": steps,
        "seed": seed,
        "go": go,
        "sketch": sketch,
        "clear_sketch": clear,
    }


def _outputs() -> dict[str, Any]:
    status = gr.Markdown(
        "Pick a photo and a target, press Edit (the demo's settings take about a minute).",
        elem_id="cdiff-edit-status",
    )
    small = {"format": "png", "interactive": False, "elem_classes": "cdiff-pixelated"}
    sweep = gr.Gallery(
        label="α sweep (0: the photo as reconstructed; 1: the target)",
        columns=6,
        object_fit="contain",
        height=220,
        elem_id="cdiff-sweep",
        **small,
    )
    alpha = gr.Slider(
        *ALPHA_RANGE,
        value=1.0,
        step=0.1,
        label="α (re-rendered from the saved edit state)",
        interactive=True,
        elem_id="cdiff-alpha",
    )
    rendered = gr.Image(label="at this α", height=260, elem_id="cdiff-rendered", **small)
    files = gr.File(label="downloads", file_count="multiple", interactive=False)
    notes = gr.Markdown(elem_classes="cdiff-note")
    with gr.Accordion("metrics", open=False):
        metrics = gr.JSON()
    session = gr.State(None, time_to_live=3600)
    return {
        "status": status,
        "sweep": sweep,
        "alpha": alpha,
        "rendered": rendered,
        "files": files,
        "notes": notes,
        "metrics": metrics,
        "session": session,
    }


def _examples(studio: Studio) -> tuple[list[str], dict[str, Any]]:
    """The run's example photos (the edit's own first) and ``edit.json`` (target caption, target mask)."""
    folder = studio.pipe.run.root / "examples"
    first = [folder / "edit_photo.png"] if (folder / "edit_photo.png").is_file() else []
    photos = first + sorted((folder / "photos").glob("*.png"))
    spec = json.loads((folder / "edit.json").read_text()) if (folder / "edit.json").is_file() else {}
    return [str(p) for p in photos], spec


def _example_mask(studio: Studio) -> dict:
    path = studio.pipe.run.root / "examples" / "edit_target_mask.png"
    if not path.is_file():
        raise InputError("this run has no example target mask; upload or paint one")
    return canvas.editor_value(read_mask(path))


def progress_bars(progress: gr.Progress) -> Callable[[str], Any]:
    """The API's ``bar(label)`` factory, reporting to the page's progress bar."""

    @contextmanager
    def bar(label: str) -> Iterator[Callable[[int, int], None]]:
        progress(0, desc=label)
        yield lambda done, total: progress((done, total), desc=label, unit="steps")

    return bar


def _targets(
    text: str | None, mask: dict | None, sketch: dict | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``Pipeline.edit``'s target keywords from the caption box and the canvases (any may be empty)."""
    targets: dict[str, Any] = {}
    notes: list[str] = []
    if text and text.strip():
        targets["target_text"] = text
    if not canvas.is_empty(mask):
        targets["target_mask"], notes = canvas.editor_to_label(mask)
    drawing = canvas.editor_to_sketch(sketch) if sketch is not None else None
    if drawing is not None:
        targets["targets"] = {"sketch": drawing}
    if not targets:
        raise InputError(
            "give a target caption, a target mask" + (", a target sketch" if sketch else "") + ", or several"
        )
    return targets, notes


def _editor(studio: Studio):
    def edit(
        photo: str | None,
        text: str | None,
        mask: dict | None,
        embed_steps: float,
        finetune_steps: float,
        steps: float,
        seed: float | None,
        sketch: dict | None = None,
        request: gr.Request = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio's way of asking for the bar)
    ):
        if not photo:
            raise InputError("give a photo to edit: upload one or pick an example")
        targets, notes = _targets(text, mask, sketch if studio.sketches else None)
        if seed is None:
            raise InputError("give a seed (a whole number from 0)")
        ed = studio.call(
            studio.pipe.edit,
            photo,
            **targets,
            seed=int(seed),
            embed_steps=int(embed_steps),
            finetune_steps=int(finetune_steps),
            solver="dpm",
            steps=int(steps),
            progress=progress_bars(progress),
        )
        folder = studio.visitor_dir(getattr(request, "session_hash", None)) / "edits"
        out = studio.call(ed.save, next_output_dir(folder))
        sweep = [(str(out / f), f"α = {a:g}") for a, f in zip(ed.alphas, _alpha_files(out), strict=True)]
        notes += [n for n in ed.notes if not n.startswith("mask <array")]  # the canvas is resized
        kind = " and ".join(
            k.removeprefix("target_") for k in [*targets, *targets.get("targets", {})] if k != "targets"
        )
        status = f"edited toward the {kind}: {len(ed.alphas)} α rendered; move α to render more"
        one = np.asarray(ed.images[min(range(len(ed.alphas)), key=lambda k: abs(ed.alphas[k] - 1.0))])
        state = {"session": ed, "out": out}
        return status, sweep, _downloads(out), notes_markdown(notes), ed.metrics, state, views.shown(one)

    return edit


def _alpha_files(out: Path) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [rec["file"] for rec in manifest["outputs"]["images"]]


def _downloads(out: Path) -> list[str]:
    return [str(p) for p in sorted(out.rglob("*.png")) if p.is_file()]


def _renderer(studio: Studio):
    def render(state: dict | None, alpha: float):
        if not state:
            raise InputError("run an edit first: α re-renders its saved state")
        ed: EditSession = state["session"]
        image = np.asarray(studio.call(ed.render, [float(alpha)], progress=False)[0])
        path = state["out"] / f"render_alpha_{float(alpha):+.2f}.png"
        save_png(path, image, {"alpha": f"{float(alpha):g}", "settings": ed.state.settings})
        return views.shown(image), _downloads(state["out"])

    return render


__all__ = ["build", "progress_bars"]
