"""What every tab of the page shares: messages instead of tracebacks, the theme and the style sheet.

Gradio is imported by the caller (:mod:`cdiff.app.server` imports it once, lazily, behind the
command's check that it is installed).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from cdiff.app import canvas
from cdiff.errors import InputError

log = logging.getLogger("cdiff.app")

MODELS = "models"  # the concurrency group of every event that runs the models: one job at a time

CSS = """
.cdiff-legend {display: flex; flex-wrap: wrap; gap: 4px 10px; font-size: 0.85em;}
.cdiff-swatch {display: inline-flex; align-items: center; gap: 4px; white-space: nowrap;}
.cdiff-swatch i {display: inline-block; width: 14px; height: 14px; border: 1px solid #888; border-radius: 2px;}
.cdiff-pixelated img {image-rendering: pixelated;}
#cdiff-preview img, #cdiff-photo img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}
.cdiff-note {color: #8a5a00;}
"""


def theme() -> gr.themes.Base:
    """The default look with the system's fonts: nothing is fetched from a font service (works offline)."""
    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    mono = ["ui-monospace", "monospace"]
    return gr.themes.Default(font=system, font_mono=mono)


def _message(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, InputError):
        return gr.Error(str(exc), print_exception=False)
    log.exception("internal error in the app")
    return gr.Error(f"internal error ({type(exc).__name__}: {exc}); the server's log has the details")


def messages(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a function or a generator function) with every error shown in the page as a message.

    :class:`~cdiff.errors.InputError` becomes its one line; anything else a short line naming the
    error (the traceback goes to the server's log, never to the page).
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _message(exc) from None

        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _message(exc) from None

    return call


def _unreadable(what: str, exc: Exception) -> gr.Error:
    return gr.Error(f"cannot read the {what} ({type(exc).__name__}): {HINTS[what]}", print_exception=False)


HINTS = {
    "mask picture": "give a PNG mask (class ids 0..18 or the palette colours) or a picture in the palette colours",
    "photo": "give a PNG or JPEG photo of a face",
}


def readable(component: gr.components.Component, what: str) -> gr.components.Component:
    """``component`` saying in one line that an upload is unreadable, instead of failing inside Gradio.

    Its ``preprocess`` is wrapped on the instance: a subclass of a Gradio component would make Gradio
    write a ``.pyi`` stub beside this module (into the installed package).
    """
    inner = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return inner(payload)
        except gr.Error:
            raise
        except Exception as exc:
            raise _unreadable(what, exc) from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def photo_input(**kwargs: Any) -> gr.Image:
    """An image input (a file path) that says in one line when an upload is unreadable."""
    return readable(gr.Image(**kwargs), "photo")


def mask_canvas(label: str, value: dict | None = None, elem_id: str | None = None) -> gr.ImageEditor:
    """A painting canvas: one brush per class (the palette's colours only), an eraser, uploads."""
    brush = gr.Brush(
        colors=canvas.brush_colours(), default_color=canvas.hex_colour(13), color_mode="fixed", default_size=8
    )
    return readable(_canvas(label, value, brush, 8, 420, elem_id), "mask picture")


def sketch_canvas(label: str, elem_id: str | None = None) -> gr.ImageEditor:
    """A drawing page for the sketch condition: a black pen, an eraser, uploads (either polarity)."""
    brush = gr.Brush(colors=["#000000"], default_color="#000000", color_mode="fixed", default_size=3)
    return readable(_canvas(label, canvas.blank_sketch(), brush, 12, 340, elem_id), "sketch picture")


def _canvas(
    label: str, value: dict | None, brush: gr.Brush, eraser: int, height: int, elem_id: str | None
) -> gr.ImageEditor:
    """An RGBA PNG canvas of ``canvas.CANVAS`` pixels: one layer, no transforms, uploads and pastes."""
    return gr.ImageEditor(
        value=value,
        label=label,
        type="numpy",
        image_mode="RGBA",
        format="png",  # palette colours must survive the round trip (webp would blur them)
        brush=brush,
        eraser=gr.Eraser(default_size=eraser),
        layers=False,
        transforms=(),
        sources=("upload", "clipboard"),
        canvas_size=(canvas.CANVAS, canvas.CANVAS),
        height=height,
        elem_id=elem_id,
    )


def notes_markdown(notes: list[str]) -> str:
    """Notes as a list for the page (and each also as a warning toast)."""
    for note in notes:
        gr.Warning(note, duration=8)
    return "\n".join(f"- {n}" for n in notes)


__all__ = ["CSS", "MODELS", "mask_canvas", "messages", "notes_markdown", "photo_input", "readable", "theme"]
