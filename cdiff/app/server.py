"""Build the page (two tabs over one :class:`~cdiff.app.studio.Studio`), queue it, serve it.

- One job at a time on the models: every event that samples or optimises is in the ``models``
  concurrency group with a limit of 1 (and the queue's default limit is 1), so visitors wait in the
  queue and see their position; events that only draw (the timestep slider, play, examples, the
  caption check) run beside them.
- Files: each visitor's in ``RUN/app/<session>/`` (a temporary folder when the run is not writable or
  is the package's own weights); Gradio's uploads and served copies in a private temporary folder.
- Offline: no analytics, no font service (the system's fonts), no server-side rendering, no share link.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "GRADIO_TEMP_DIR" not in os.environ:  # before Gradio is imported: its upload folder is read then
    _CACHE = tempfile.mkdtemp(prefix="cdiff-gradio-")
    os.environ["GRADIO_TEMP_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import gradio as gr  # noqa: E402

from cdiff.app import edit_tab, generate_tab  # noqa: E402
from cdiff.app.page import CSS, theme  # noqa: E402
from cdiff.app.studio import Studio  # noqa: E402

TITLE = "cdiff studio"
INTRO = (
    "# cdiff studio\n"
    "Collaborative Diffusion: a text-driven and a mask-driven diffusion model make one face together; "
    "the *dynamic diffusers* decide, per pixel and per step, how much each model counts (the influence maps)."
)


def build(studio: Studio) -> gr.Blocks:
    """The page: the Generate and Edit tabs, queued so that one job runs on the models at a time."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Generate", id="generate"):
            generate_tab.build(studio)
        with gr.Tab("Edit", id="edit"):
            edit_tab.build(studio)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def launch(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    block: bool = True,
    quiet: bool = False,
) -> gr.Blocks:
    """Serve the page on ``host:port`` (``block=False``: return once it is up, as the tests do)."""
    demo = build(studio)
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        allowed_paths=allowed_paths(studio),
        show_error=True,  # gr.Error messages reach the page and the API clients
        ssr_mode=False,
        share=False,
        quiet=quiet,
        theme=theme(),
        css=CSS,
        footer_links=["api"],
        run_history=False,
        mcp_server=False,
        inbrowser=False,
    )
    return demo


def allowed_paths(studio: Studio) -> list[str]:
    """What the page may serve besides Gradio's own cache: the visitors' files and the example masks."""
    paths = [studio.out_root]
    paths += [Path(ex["mask"]).parent for ex in studio.pipe.examples() if "mask" in ex]
    return sorted({str(Path(p).resolve()) for p in paths})


__all__ = ["build", "launch"]
