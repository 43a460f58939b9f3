"""``cdiff evaluate``: score the methods on validation pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ConfigOpt,
    DataOpt,
    DryRunOpt,
    ForceOpt,
    RunOpt,
    SetOpt,
    _progress,
    app,
    err_console,
    handle_errors,
    out_console,
    pipeline,
    print_notes,
    resolve,
)
from cdiff.cli.sampling import sampling_options
from cdiff.rundir import check_output, default_run_dir


@app.command()
@handle_errors
@sampling_options("steps", "eta", "solver", "guidance", "batch_size", "weights")
def evaluate(
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="Methods to compare (repeatable): collaborative, composable, a modality's model alone (text, "
            "mask, ...), collaborative-released (the release's re-weighting). "
            "\\[default: the preset's evaluate.methods]",
        ),
    ] = None,
    pairs: Annotated[
        int | None, typer.Option(help="Validation pairs N. \\[default: the preset's evaluate.pairs]")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Pairs and start noise (pair k: seed + k).")] = None,
    inception: Annotated[
        Path | None,
        typer.Option(
            help="The FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth; needs "
            "pip install 'cdiff[fid]'). \\[default: torch hub's cache, else no FID]"
        ),
    ] = None,
    fid_images: Annotated[
        int | None,
        typer.Option(help="FID on the first K images too (the paper: 50). \\[default: the preset's]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder. \\[default: RUN/evaluation]")] = None,
    data: DataOpt = None,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
    sample: dict | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> None:
    """Score each method on N validation pairs (the mask of one face, the caption of another).

    Mask accuracy (face parser vs the input mask, full size and 32×32), text accuracy (attribute classifier vs the caption), a Fréchet distance in the evaluator's features and, with the Inception weights, FID. Writes metrics.json, report.html and samples.png; needs [b]cdiff train-evaluator[/] first.
    """
    from cdiff.stages import evaluate as stage

    cfg = resolve(config, sample or {}, set_)
    run_dir = run or default_run_dir(config)
    req = stage.EvaluateRequest(
        methods=list(method) if method else list(cfg.evaluate.methods),
        pairs=pairs,
        seed=seed,
        inception=inception,
        fid_images=fid_images,
    )
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        out_console.print(
            f"would evaluate {', '.join(req.methods)} on {pairs or cfg.evaluate.pairs} validation pairs "
            f"({cfg.sample.solver}, {cfg.sample.steps} steps) into {out or run_dir / 'evaluation'}",
            highlight=False,
        )
        return
    check_output(out or run_dir / "evaluation", force)  # before any model loads
    pipe, _ = pipeline(run_dir, config, cfg, device, dtype)
    report = stage.run(
        cfg,
        req,
        pipe.run,
        data or run_dir / "data",
        out or run_dir / "evaluation",
        force=force,
        log=lambda m: err_console.print(m, highlight=False),
        progress=lambda m: _progress(f"generating: {m}"),
    )
    header, rows = stage.table_rows(report.metrics, short=True)
    table = Table(title=f"evaluation: {report.metrics['settings']['pairs']} validation pairs → {report.out}")
    for i, h in enumerate(header):
        table.add_column(
            h, justify="left" if i == 0 else "right", no_wrap=i == 0, min_width=0 if i == 0 else 5
        )
    for r in rows:
        table.add_row(*r)
    out_console.print(table)
    for line in stage.claim_lines(report.metrics):
        out_console.print(line, highlight=False)
    print_notes(report.notes)
    out_console.print(f"report: {report.out / 'report.html'}  ({report.wall_time_s:.0f} s)", highlight=False)
