"""``cdiff visualize`` and ``cdiff report``: pages from a generation or a whole run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdiff.cli.common import DeviceOpt, ForceOpt, _progress, app, handle_errors, out_option, say

VisualizeOutOpt = out_option("GENERATION/visualize")


@app.command()
@handle_errors
def visualize(
    generation: Annotated[
        Path, typer.Argument(help="A folder written by `cdiff generate --save-intermediates`.")
    ],
    image: Annotated[
        list[str] | None, typer.Option("--image", help="Only this image (file name or stem; repeatable).")
    ] = None,
    out: VisualizeOutOpt = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Run directory with the VAE. \\[default: the generation's]")
    ] = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Influence maps over the steps, decoded x_t and x_0, the mask over the result, a GIF and an HTML page."""
    from cdiff.devices import resolve_device
    from cdiff.stages import visualize as stage

    dev = resolve_device(device)
    with _progress("visualising") as update:
        report = stage.run(
            generation, out, images=image, run_dir=run, force=force, progress=update, device=dev
        )
    say(
        f"wrote {len(report.images)} visualisations and index.html to {report.out} in {report.wall_time_s:.1f} s"
    )


@app.command()
@handle_errors
def report(
    run: Annotated[Path, typer.Option("--run", help="The run directory to report on.")] = Path("runs/demo"),
    force: ForceOpt = False,
) -> None:
    """One page for a run: RUN/report.html with its models, the evaluation table, samples, influence maps and edits."""
    from cdiff.stages import report as stage

    result = stage.run(run, force=force)
    say(f"wrote {result.path} ({', '.join(result.sections)})")
