"""``cdiff generate``: faces from masks and captions (and any other registered modality)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cdiff.cli.common import (
    ModalitiesOpt,
    ModelRunOpt,
    StageOptions,
    _progress,
    app,
    handle_errors,
    out_option,
    parse_modalities,
    pipeline,
    print_notes,
    say,
    stage_options,
)
from cdiff.cli.conditions import condition_options
from cdiff.cli.sampling import sampling_options
from cdiff.errors import InputError


def parse_conditions(given: dict[str, list[str]], cond: list[str] | None) -> dict[str, list]:
    """The modalities' options (``--text``, ``--mask``, ...) and ``--cond NAME=VALUE`` (any registered
    modality) → values per modality."""
    from cdiff import modalities

    given = {m: list(v) for m, v in given.items()}
    for item in cond or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(
                f"--cond expects NAME=VALUE (NAME one of {', '.join(modalities.names())}), got '{item}'"
            )
        given.setdefault(modalities.get(name.strip()).name, []).append(value)
    return given


def _method(method: str, modality: str | None) -> str:
    """``--method``, or the model of ``--modality`` (the two must not disagree)."""
    if modality is None:
        return method
    if method not in ("collaborative", modality):
        raise InputError(f"--modality {modality} and --method {method} disagree; give one of them")
    return modality


# ---- generate's own options (each modality's, --text, --mask, ..., come from cli/conditions.py) --
CondOpt = Annotated[
    list[str] | None,
    typer.Option("--cond", help="A condition of any registered modality, NAME=VALUE (repeatable)."),
]
FromFileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", help='JSONL, one condition set per line: {"mask": "m.png", "text": "..."}.'),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        help="collaborative (dynamic diffusers), composable (fixed weights), a modality's model alone "
        "(text, mask, ...), collaborative-<set> (another diffuser set of the run: its modalities joined by -), "
        "or all side by side."
    ),
]
ModalityOpt = Annotated[str | None, typer.Option(help="Uni-modal sampling: the same as --method text|mask.")]
NumOpt = Annotated[int, typer.Option(help="Images per condition (seeds SEED, SEED+1, ...).")]
SeedOpt = Annotated[int, typer.Option(help="First seed.")]
IntermediatesOpt = Annotated[
    bool,
    typer.Option(
        "--save-intermediates", help="Keep each step's influence maps, x_t and x_0 (for visualize)."
    ),
]
SamplesOutOpt = out_option("RUN/samples/NNN; ./outputs/NNN without --run")


@app.command()
@handle_errors
@sampling_options()
@stage_options(run=ModelRunOpt)
@condition_options()
def generate(
    cond: CondOpt = None,
    from_file: FromFileOpt = None,
    method: MethodOpt = "collaborative",
    modality: ModalityOpt = None,
    modalities: ModalitiesOpt = None,
    num: NumOpt = 4,
    seed: SeedOpt = 0,
    save_intermediates: IntermediatesOpt = False,
    out: SamplesOutOpt = None,
    *,
    conditions: dict[str, list[str]],
    opts: StageOptions,
    sample: dict[str, Any],
    device: str,
    dtype: str,
) -> None:
    """Generate faces from a mask and a caption together (collaborative), or from one of them.

    Without conditions, the first validation pairs of the run's data are used.
    """
    from cdiff.stages import generate as stage

    cfg = opts.resolve(sample)
    if opts.print_dry_run(cfg):
        return
    method = _method(method, modality)
    stage.check_out(out, opts.force)  # before any model loads
    req = stage.GenerateRequest(
        method=method,
        conditions=parse_conditions(conditions, cond),
        pairs=stage.read_pairs_file(from_file) if from_file is not None else [],
        num=num,
        seed=seed,
        save_intermediates=save_intermediates,
        modalities=parse_modalities(modalities),
    )
    pipe, outputs_root = pipeline(opts.run, opts.config, cfg, device, dtype)
    with _progress("sampling") as update:
        result = stage.run(
            pipe.config, req, pipe.run, out, force=opts.force, outputs_root=outputs_root, progress=update
        )
    print_notes(result.notes)
    say(f"wrote {len(result.images)} images and grid.png to {result.out} in {result.wall_time_s:.1f} s")
