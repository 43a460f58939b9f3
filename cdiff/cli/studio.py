"""``cdiff app``: cdiff studio, the web page over :class:`cdiff.Pipeline` (the optional ``app`` extra).

The module is not called ``app``: ``cdiff.cli.app`` is the Typer application itself.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from cdiff.cli.common import DeviceOpt, ModelRunOpt, StageOptions, app, handle_errors, pipeline, stage_options
from cdiff.errors import InputError

MISSING = "the app needs Gradio: pip install 'cdiff[app]'"

HostOpt = Annotated[
    str, typer.Option(help="Address to listen on (0.0.0.0: every interface; mind who can reach it).")
]
PortOpt = Annotated[int, typer.Option(help="Port to listen on.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for the models. \\[default: all cores but one (at least 1): the page's server needs one]"
    ),
]


def model_threads(threads: int | None) -> int:
    """The models' CPU threads: as asked, else every core but one, left to the web server's threads (a
    thread team over every core stalls when anything else wants them: measured in docs/app.md)."""
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be at least 1, got {threads}")
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def require_gradio() -> None:
    """Gradio imports, or a one-line error naming the extra that installs it (exit code 2)."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        typer.echo(f"error: {MISSING}", err=True)  # not rich markup: it would eat "[app]"
        raise typer.Exit(2) from None


@app.command("app")
@handle_errors
@stage_options(run=ModelRunOpt)
def serve_app(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 7860,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    *,
    opts: StageOptions,
) -> None:
    """Serve cdiff studio: paint a mask, type a caption, watch the models collaborate; edit photos.

    --config and --set give the settings the page does not show (eta, composable weights, ...).
    Each job writes a new numbered folder under RUN/app/<visitor>/, so --force replaces nothing.
    """
    require_gradio()
    cfg = opts.resolve({})
    if opts.print_dry_run(cfg):
        typer.echo(
            f"# would serve cdiff studio on http://{host}:{port} with the models of {opts.run or 'the package'}"
        )
        return
    import torch

    from cdiff.app.server import launch
    from cdiff.app.studio import Studio

    torch.set_num_threads(model_threads(threads))
    pipe, _ = pipeline(opts.run, opts.config, cfg, device, "float32")
    studio = Studio.from_pipeline(pipe, shipped=opts.run is None and opts.config == "demo")
    typer.echo(
        f"cdiff studio: models of {pipe.run.root} on {pipe.run.device} ({torch.get_num_threads()} CPU threads)"
    )
    studio.warm_up()
    where = "a temporary folder, removed when the server stops" if studio.temporary else "the run"
    typer.echo(f"visitors' files go to {studio.out_root} ({where}); open http://{host}:{port}", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean exit: temporary folders are removed
    try:
        launch(studio, host, port)
    except OSError as exc:  # the port is taken, the address is not this machine's
        raise InputError(f"cannot serve on {host}:{port}: {exc}; pass another --port or --host") from None
