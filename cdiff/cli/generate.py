"""``cdiff generate``: faces from masks and captions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ConfigOpt,
    DryRunOpt,
    ForceOpt,
    Modality,
    ModelRunOpt,
    SetOpt,
    Solver,
    _floats,
    _model_run,
    app,
    err_console,
    handle_errors,
    out_console,
    resolve,
)
from cdiff.errors import InputError


class Method(StrEnum):
    collaborative = "collaborative"
    composable = "composable"
    text = "text"
    mask = "mask"
    all = "all"


class Reweight(StrEnum):
    none = "none"
    released = "released"


@app.command()
@handle_errors
def generate(
    text: Annotated[list[str] | None, typer.Option("--text", help="A caption (repeatable).")] = None,
    mask: Annotated[
        list[Path] | None,
        typer.Option("--mask", help="A mask: index PNG, palette RGB PNG or .pt (repeatable)."),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", help='JSONL, one condition set per line: {"mask": "m.png", "text": "..."}.'
        ),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            help="collaborative (dynamic diffusers), composable (fixed weights), text or mask only."
        ),
    ] = Method.collaborative,
    weights: Annotated[
        str | None,
        typer.Option(
            help="composable: one weight per modality in diffuser.modalities order. \\[default: equal]"
        ),
    ] = None,
    reweight: Annotated[
        Reweight | None,
        typer.Option(
            help="collaborative: 'released' applies the release's mask-early/text-late schedule. "
            "\\[default: sample.reweight]"
        ),
    ] = None,
    influence_every: Annotated[
        int | None,
        typer.Option(
            help="collaborative: run the diffusers every k steps, reuse their maps between. \\[default: 1]"
        ),
    ] = None,
    modality: Annotated[
        Modality | None, typer.Option(help="Uni-modal sampling: the same as --method text|mask.")
    ] = None,
    num: Annotated[int, typer.Option(help="Images per condition (seeds SEED, SEED+1, ...).")] = 4,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Sampling steps. \\[default: 50]")] = None,
    eta: Annotated[float | None, typer.Option(help="DDIM eta (1.0 as the release, 0 deterministic).")] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Classifier-free guidance scale (models trained with dropout). \\[default: sample.guidance: "
            "3 in the demo preset, 1 (none) at paper scale]"
        ),
    ] = None,
    solver: Annotated[Solver, typer.Option(help="ddim (the release) or dpm (DPM-Solver++).")] = Solver.ddim,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per forward pass (results do not depend on it).")
    ] = None,
    save_intermediates: Annotated[
        bool,
        typer.Option(
            "--save-intermediates", help="Keep each step's influence maps, x_t and x_0 (for visualize)."
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder. \\[default: RUN/samples/NNN; ./outputs/NNN without --run]"),
    ] = None,
    config: ConfigOpt = "demo",
    run: ModelRunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Generate faces from a mask and a caption together (collaborative), or from one of them.

    Without conditions, the first validation pairs of the run's data are used.
    """
    from cdiff.stages import generate as stage

    cfg = resolve(config, {}, set_)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        return
    if modality is not None:
        if method not in (Method.collaborative, Method(modality.value)):
            raise InputError(
                f"--modality {modality.value} and --method {method.value} disagree; give one of them"
            )
        method = Method(modality.value)
    req = stage.GenerateRequest(
        method=method.value,
        texts=list(text or []),
        masks=list(mask or []),
        pairs=stage.read_pairs_file(from_file) if from_file is not None else [],
        num=num,
        seed=seed,
        steps=steps,
        eta=eta,
        guidance=guidance,
        solver=solver.value,
        batch_size=batch_size,
        weights=_floats(weights, "--weights"),
        reweight=reweight.value if reweight is not None else None,
        influence_every=influence_every,
        save_intermediates=save_intermediates,
    )
    run_dir, outputs_root = _model_run(run, config)
    result = stage.run(cfg, req, run_dir, out, force=force, outputs_root=outputs_root)
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False)
    out_console.print(
        f"wrote {len(result.images)} images and grid.png to {result.out} in {result.wall_time_s:.1f} s",
        highlight=False,
    )
