"""``cdiff evaluate``: score the methods on validation pairs."""

from __future__ import annotations

from enum import StrEnum
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
    Solver,
    _floats,
    app,
    err_console,
    handle_errors,
    out_console,
    resolve,
)
from cdiff.rundir import default_run_dir


class EvalMethod(StrEnum):
    collaborative = "collaborative"
    composable = "composable"
    text = "text"
    mask = "mask"
    released = "collaborative-released"


@app.command()
@handle_errors
def evaluate(
    method: Annotated[
        list[EvalMethod] | None,
        typer.Option(
            "--method",
            help="Methods to compare (repeatable); collaborative-released adds the release's re-weighting. "
            "\\[default: the preset's evaluate.methods]",
        ),
    ] = None,
    pairs: Annotated[
        int | None, typer.Option(help="Validation pairs N. \\[default: the preset's evaluate.pairs]")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Pairs and start noise (pair k: seed + k).")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampling steps. \\[default: the preset's]")] = None,
    solver: Annotated[Solver, typer.Option(help="DDIM (the release) or DPM-Solver++.")] = Solver.ddim,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per sampling batch.")] = None,
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
    weights: Annotated[
        str | None,
        typer.Option(
            help="composable: fixed weights per modality (diffuser.modalities order), e.g. 0.33,0.67."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder. \\[default: RUN/evaluation]")] = None,
    data: DataOpt = None,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Score each method on N validation pairs (the mask of one face, the caption of another).

    Mask accuracy (face parser vs the input mask, full size and 32×32), text accuracy (attribute classifier vs the caption), a Fréchet distance in the evaluator's features and, with the Inception weights, FID. Writes metrics.json, report.html and samples.png; needs [b]cdiff train-evaluator[/] first.
    """
    from cdiff.stages import evaluate as stage

    cfg = resolve(config, {}, set_)
    run_dir = run or default_run_dir(config)
    req = stage.EvaluateRequest(
        methods=[m.value for m in method] if method else list(cfg.evaluate.methods),
        pairs=pairs,
        seed=seed,
        steps=steps,
        solver=solver.value,
        guidance=guidance,
        batch_size=batch_size,
        inception=inception,
        fid_images=fid_images,
        weights=_floats(weights, "--weights"),
    )
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        out_console.print(
            f"would evaluate {', '.join(req.methods)} on {pairs or cfg.evaluate.pairs} validation pairs "
            f"({req.solver}, {steps or cfg.sample.steps} steps) into {out or run_dir / 'evaluation'}",
            highlight=False,
        )
        return
    report = stage.run(
        cfg,
        req,
        run_dir,
        data or run_dir / "data",
        out or run_dir / "evaluation",
        force=force,
        log=lambda m: err_console.print(m, highlight=False),
        progress=lambda m: err_console.print(f"generating: {m}", highlight=False),
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
    for note in report.notes:
        err_console.print(f"note: {note}", highlight=False)
    out_console.print(f"report: {report.out / 'report.html'}  ({report.wall_time_s:.0f} s)", highlight=False)
