"""The Generate tab: paint a mask, type a caption, watch the models collaborate.

Its ``generate`` event is also the app's API endpoint ``/generate`` (``mask``, ``text``, ``method``,
``solver``, ``steps``, ``seed``, ``random_seed``, ``guidance``, and ``sketch`` when the run has a sketch
model): a streaming function that yields a
preview of the predicted x_0 while sampling and then the images, the influence maps, the mean
weight of each model over t, the mask over the result and the files to download.
"""

from __future__ import annotations

import dataclasses
import time

import gradio as gr
import numpy as np
from PIL import Image

from cdiff.app import canvas, page, results, views
from cdiff.app.page import MODELS, messages, notes_markdown
from cdiff.app.studio import ALL, Preview, Settings, Studio
from cdiff.app.studio import random_seed as draw_seed
from cdiff.errors import InputError

SOLVERS = [(name, value) for value, name in results.SOLVER_NAMES.items()]
PLAY_FRAME_S = 0.15


@dataclasses.dataclass
class Inputs:
    """The generate event's inputs, in the API's order (``/generate``), and the controls beside them."""

    mask: gr.ImageEditor
    text: gr.Textbox
    method: gr.Radio
    solver: gr.Radio
    steps: gr.Slider
    seed: gr.Number
    random_seed: gr.Checkbox
    guidance: gr.Slider
    examples: gr.Dataset
    upload: gr.UploadButton
    blank: gr.Button
    caption_note: gr.Markdown
    go: gr.Button
    sketch: gr.ImageEditor | None = None  # only when the run has a sketch model
    clear_sketch: gr.Button | None = None

    def all(self) -> list[gr.components.Component]:
        return [
            self.mask,
            self.text,
            self.method,
            self.solver,
            self.steps,
            self.seed,
            self.random_seed,
            self.guidance,
            *([self.sketch] if self.sketch is not None else []),
        ]


@dataclasses.dataclass
class Outputs:
    """The generate event's outputs, in the order :meth:`cdiff.app.results.Shown.outputs` gives them."""

    preview: gr.Image
    status: gr.Markdown
    images: gr.Gallery
    influence: gr.Image
    timestep: gr.Slider
    plot: gr.Image
    overlay: gr.Image
    files: gr.File
    notes: gr.Markdown
    details: gr.JSON
    seed: gr.Number
    maps: gr.State
    play: gr.Button

    def all(self) -> list[gr.components.Component]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)][:-1]


def build(studio: Studio) -> None:
    """The tab's components and events (inside a ``gr.Blocks``)."""
    examples = studio.examples()
    with gr.Row():
        with gr.Column(scale=5):
            ins = _inputs(studio, examples)
        with gr.Column(scale=6):
            outs = _outputs(ins.seed)
    quiet = {"concurrency_limit": None, "show_progress": "hidden", "api_name": False}
    ins.text.change(
        messages(lambda t: _caption_note(studio, t)),
        ins.text,
        ins.caption_note,
        trigger_mode="always_last",
        **quiet,
    )
    loaded = [ins.mask, ins.text, *([ins.sketch] if ins.sketch is not None else [])]
    ins.examples.click(
        messages(lambda k: _load_example(examples, k, ins.sketch is not None)), ins.examples, loaded, **quiet
    )
    if ins.clear_sketch is not None:
        ins.clear_sketch.click(canvas.blank_sketch, None, ins.sketch, **quiet)
    ins.upload.upload(messages(_upload), ins.upload, [ins.mask, outs.notes], **quiet)
    ins.blank.click(lambda: canvas.editor_value(np.zeros((8, 8), np.uint8)), None, ins.mask, **quiet)
    ins.steps.change(lambda n: gr.Slider(maximum=max(int(n), 2)), ins.steps, outs.timestep, **quiet)
    ins.go.click(
        messages(_generator(studio)),
        ins.all(),
        outs.all(),
        api_name="generate",
        concurrency_id=MODELS,
        concurrency_limit=1,
    )
    outs.timestep.input(
        messages(_frame), [outs.maps, outs.timestep], outs.influence, trigger_mode="always_last", **quiet
    )
    outs.play.click(messages(_play), [outs.maps, outs.timestep], [outs.timestep, outs.influence], **quiet)


def _inputs(studio: Studio, examples: list[dict]) -> Inputs:
    first = examples[0] if examples else None
    start = canvas.editor_value(first["label"]) if first else None
    mask = page.mask_canvas("mask (paint with a class's colour; eraser: background)", start, "cdiff-canvas")
    gr.HTML(canvas.legend_html(), label="classes")
    with gr.Row():
        upload = gr.UploadButton("Upload a mask (PNG)", file_types=["image"], size="sm")
        blank = gr.Button("Blank canvas", size="sm")
    text = gr.Textbox(first["text"] if first else "", label="caption", lines=2, elem_id="cdiff-caption")
    caption_note = gr.Markdown(elem_classes="cdiff-note", elem_id="cdiff-caption-note")
    sketch = clear = None
    if studio.sketches:  # a third condition: the run has a sketch model
        sketch = page.sketch_canvas(
            "sketch (optional: draw lines in black; with a sketch, collaborative uses the three-way diffusers)",
            "cdiff-sketch",
        )
        clear = gr.Button("Clear sketch", size="sm")
    with gr.Row():
        method = gr.Radio(studio.methods(), value="collaborative", label="method (all: side by side)")
        solver = gr.Radio(SOLVERS, value="dpm", label="solver")
    with gr.Row():
        steps = gr.Slider(1, 100, value=20, step=1, label="steps")
        guidance = gr.Slider(1.0, 10.0, value=studio.pipe.config.sample.guidance, step=0.5, label="guidance")
    with gr.Row():
        seed = gr.Number(0, precision=0, minimum=0, label="seed")
        rnd = gr.Checkbox(False, label="random seed")
    go = gr.Button("Generate", variant="primary", elem_id="cdiff-generate")
    example_set = gr.Dataset(
        label="examples: the demo's validation faces (one face's mask, another's caption); click to load",
        components=[gr.Image(render=False), gr.Textbox(render=False)],
        headers=["mask", "caption"],
        samples=[[ex["mask"], ex["text"]] for ex in examples],
        type="index",
        samples_per_page=4,
        elem_id="cdiff-examples",
    )
    return Inputs(
        mask,
        text,
        method,
        solver,
        steps,
        seed,
        rnd,
        guidance,
        example_set,
        upload,
        blank,
        caption_note,
        go,
        sketch,
        clear,
    )


def _outputs(seed: gr.Number) -> Outputs:
    status = gr.Markdown("Paint or load a mask, type a caption, press Generate.", elem_id="cdiff-status")
    small = {"format": "png", "interactive": False, "elem_classes": "cdiff-pixelated"}
    with gr.Row():
        preview = gr.Image(label="predicted x_0 while sampling", height=260, elem_id="cdiff-preview", **small)
        images = gr.Gallery(
            label="result", columns=4, height=260, object_fit="contain", elem_id="cdiff-result", **small
        )
    influence = gr.Image(label="influence maps", elem_id="cdiff-influence", **small)
    with gr.Row():
        timestep = gr.Slider(
            1,
            20,
            value=20,
            step=1,
            label="sampler step (t falls as it grows)",
            elem_id="cdiff-timestep",
            interactive=True,
            scale=4,
        )
        play = gr.Button("▶ play", size="sm", scale=1, elem_id="cdiff-play")
    plot = gr.Image(label="mean weight of each model over t", elem_id="cdiff-plot", **small)
    overlay = gr.Image(label="mask | result | mask over the result", elem_id="cdiff-overlay", **small)
    files = gr.File(
        label="downloads (PNGs with their conditions and settings in the metadata)",
        file_count="multiple",
        interactive=False,
        elem_id="cdiff-files",
    )
    notes = gr.Markdown(elem_classes="cdiff-note", elem_id="cdiff-notes")
    with gr.Accordion("details", open=False):
        details = gr.JSON(label="settings, seed, mean weights")
    state = gr.State(None, time_to_live=3600)
    return Outputs(
        preview, status, images, influence, timestep, plot, overlay, files, notes, details, seed, state, play
    )


# ---- handlers ------------------------------------------------------------------------------------


def _caption_note(studio: Studio, text: str | None) -> str:
    notes = studio.caption_notes(text or "")
    return "\n".join(f"⚠ {n}" for n in notes)


def _load_example(examples: list[dict], k: int, sketch: bool = False) -> tuple:
    """An example's mask and caption (and, with a sketch canvas, its sketch when it has one)."""
    ex = examples[int(k)]
    if not sketch:
        return canvas.editor_value(ex["label"]), ex["text"]
    page = canvas.blank_sketch()
    if ex.get("sketch"):
        with Image.open(ex["sketch"]) as im:
            big = im.convert("RGBA").resize((canvas.CANVAS,) * 2, Image.Resampling.NEAREST)
        page = {"background": np.asarray(big), "layers": [], "composite": None}
    return canvas.editor_value(ex["label"]), ex["text"], page


def _upload(path: str | None) -> tuple[dict, str]:
    if not path:
        raise InputError("no file was uploaded")
    label, notes = canvas.read_upload(path)
    return canvas.editor_value(label), notes_markdown(notes)


def _generator(studio: Studio):
    def generate(
        mask: dict | None,
        text: str | None,
        method: str = "collaborative",
        solver: str = "dpm",
        steps: float = 20,
        seed: float | None = 0,
        random_seed: bool = False,
        guidance: float = 3.0,
        sketch: dict | None = None,
        request: gr.Request = None,
    ):
        label, notes = canvas.editor_to_label(mask)
        drawing = canvas.editor_to_sketch(sketch) if studio.sketches else None
        if seed is None and not random_seed:
            raise InputError("give a seed (a whole number from 0) or tick 'random seed'")
        chosen = draw_seed() if random_seed else int(seed)
        caption = text if isinstance(text, str) else None
        s = Settings(caption, method, solver, int(steps), chosen, float(guidance), drawing)
        folder = studio.visitor_dir(getattr(request, "session_hash", None))
        t0, shown = time.perf_counter(), None
        for event in studio.generate(label, s, folder):
            if isinstance(event, Preview):
                yield _preview_update(event, s, t0)
            elif event.folder is None:  # sampled: show the images at once
                shown = results.shown(event, notes)
                yield shown.outputs(None, None)
            else:  # saved: the downloads too (and everything again, for API clients' last message)
                yield shown.outputs(results.files(event), results.details(event, shown.means), event.folder)

    return generate


def _preview_update(p: Preview, s: Settings, t0: float) -> tuple:
    """The preview and the status line; the other outputs cleared for the coming result.

    Plain values, not ``gr.skip()``: Gradio rebuilds a component for every skipped output of every
    yield (measured: the larger part of the page's overhead per preview).
    """
    line = (
        f"sampling **{p.method}**: step {p.step} of {p.steps} (t = {p.t}), {time.perf_counter() - t0:.1f} s"
    )
    return (p.image, line, None, None, s.steps, None, None, None, "", None, s.seed, None)


def _frame(maps: dict | None, step: float) -> np.ndarray | None:
    if not maps:
        return None
    return views.influence_frame(maps["weights"], maps["ts"], int(step) - 1, maps["names"])


def _play(maps: dict | None, step: float):
    """The influence maps step by step, from the slider's step (from the first when at the end)."""
    if not maps:
        raise InputError(
            "generate with the collaborative method (or all) first: its influence maps play here"
        )
    n = len(maps["ts"])
    start = 1 if int(step) >= n else int(step)
    for k in range(start, n + 1):
        if k > start:
            time.sleep(PLAY_FRAME_S)
        yield k, _frame(maps, k)


__all__ = ["ALL", "build"]
