"""``cdiff evaluate``: score the methods on validation pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cdiff.cli.common import (
    DataOpt,
    ModalitiesOpt,
    StageOptions,
    _progress,
    app,
    handle_errors,
    log,
    out_console,
    out_option,
    parse_modalities,
    pipeline,
    print_notes,
    say,
    stage_options,
)
from cdiff.cli.sampling import sampling_options
from cdiff.rundir import check_output

# ---- evaluate's own options -------------------------------------------------------------------
MethodsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--method",
        help="Methods to compare (repeatable): collaborative, composable, a modality's model alone (text, "
        "mask, ...), collaborative-<set> (a smaller diffuser set of the run: its modalities joined by -), "
        "collaborative-released (the release's re-weighting), all (every method the run has models for). "
        "\\[default: the preset's evaluate.methods]",
    ),
]
PairsOpt = Annotated[
    int | None, typer.Option(help="Validation pairs N. \\[default: the preset's evaluate.pairs]")
]
SeedOpt = Annotated[int | None, typer.Option(help="Pairs and start noise (pair k: seed + k).")]
InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        help="The FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth; needs "
        "pip install 'cdiff\\[fid]'). \\[default: torch hub's cache, else no FID]"
    ),
]
FidImagesOpt = Annotated[
    int | None,
    typer.Option(help="FID on the first K images too (the paper: 50). \\[default: the preset's]"),
]
EvaluationOutOpt = out_option("RUN/evaluation")


@app.command()
@handle_errors
@sampling_options("steps", "eta", "solver", "guidance", "batch_size", "weights", "compile")
@stage_options()
def evaluate(
    method: MethodsOpt = None,
    pairs: PairsOpt = None,
    seed: SeedOpt = None,
    inception: InceptionOpt = None,
    fid_images: FidImagesOpt = None,
    modalities: ModalitiesOpt = None,
    out: EvaluationOutOpt = None,
    data: DataOpt = None,
    *,
    opts: StageOptions,
    sample: dict[str, Any],
    device: str,
    dtype: str,
) -> None:
    """Score each method on N validation pairs (the mask of one face, the caption of another).

    Mask accuracy (face parser vs the input mask, full size and 32×32), text accuracy (attribute classifier vs the caption), a Fréchet distance in the evaluator's features and, with the Inception weights, FID. Writes metrics.json, report.html and samples.png; needs [b]cdiff train-evaluator[/] first.
    """
    from cdiff.stages import evaluate as stage
    from cdiff.stages.evaluate_plan import planned_methods

    cfg = opts.resolve(sample)
    run_dir = opts.run_dir
    out = out or run_dir / "evaluation"
    req = stage.EvaluateRequest(
        methods=list(method) if method else list(cfg.evaluate.methods),
        pairs=pairs,
        seed=seed,
        inception=inception,
        fid_images=fid_images,
        modalities=parse_modalities(modalities),
    )
    if opts.print_dry_run(cfg):
        say(
            f"would evaluate {', '.join(planned_methods(req.methods, run_dir, req.modalities))} on {pairs or cfg.evaluate.pairs} validation pairs "
            f"({cfg.sample.solver}, {cfg.sample.steps} steps) into {out}"
        )
        return
    check_output(out, opts.force)  # before any model loads
    pipe, _ = pipeline(run_dir, opts.config, cfg, device, dtype)
    report = stage.run(
        cfg,
        req,
        pipe.run,
        data or run_dir / "data",
        out,
        force=opts.force,
        log=log,
        progress=lambda m: _progress(f"generating: {m}"),
    )
    if report.metrics:  # the main process's (the others of an accelerate launch job only sample)
        _print_report(report)


def _print_report(report: Any) -> None:
    """The metrics table, what they say about the paper's claims, the notes, and where the report is."""
    from cdiff.stages.evaluate_pages import claim_lines, judged, sets_word, table_rows

    header, rows = table_rows(report.metrics, short=True)
    sets = sets_word(judged(report.metrics))
    table = Table(title=f"evaluation: {report.metrics['settings']['pairs']} validation {sets} → {report.out}")
    for i, h in enumerate(header):
        table.add_column(
            h, justify="left" if i == 0 else "right", no_wrap=i == 0, min_width=0 if i == 0 else 5
        )
    for r in rows:
        table.add_row(*r)
    out_console.print(table)
    for line in claim_lines(report.metrics):
        say(line)
    print_notes(report.notes)
    say(f"report: {report.out / 'report.html'}  ({report.wall_time_s:.0f} s)")
