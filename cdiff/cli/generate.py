"""``cdiff generate``: faces from masks and captions (and any other registered modality)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ConfigOpt,
    DryRunOpt,
    ForceOpt,
    ModelRunOpt,
    SetOpt,
    _progress,
    app,
    handle_errors,
    out_console,
    pipeline,
    print_notes,
    resolve,
)
from cdiff.cli.sampling import sampling_options
from cdiff.errors import InputError


def parse_conditions(
    text: list[str] | None, mask: list[Path] | None, cond: list[str] | None
) -> dict[str, list]:
    """``--text``/``--mask`` and ``--cond NAME=VALUE`` (any registered modality) → values per modality."""
    from cdiff import modalities

    given: dict[str, list] = {}
    if text:
        given["text"] = list(text)
    if mask:
        given["mask"] = [str(p) for p in mask]
    for item in cond or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(
                f"--cond expects NAME=VALUE (NAME one of {', '.join(modalities.names())}), got '{item}'"
            )
        given.setdefault(modalities.get(name.strip()).name, []).append(value)
    return given


@app.command()
@handle_errors
@sampling_options()
def generate(
    text: Annotated[list[str] | None, typer.Option("--text", help="A caption (repeatable).")] = None,
    mask: Annotated[
        list[Path] | None,
        typer.Option("--mask", help="A mask: index PNG, palette RGB PNG or .pt (repeatable)."),
    ] = None,
    cond: Annotated[
        list[str] | None,
        typer.Option("--cond", help="A condition of any registered modality, NAME=VALUE (repeatable)."),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", help='JSONL, one condition set per line: {"mask": "m.png", "text": "..."}.'
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="collaborative (dynamic diffusers), composable (fixed weights), a modality's model alone "
            "(text, mask, ...), or all side by side."
        ),
    ] = "collaborative",
    modality: Annotated[
        str | None, typer.Option(help="Uni-modal sampling: the same as --method text|mask.")
    ] = None,
    num: Annotated[int, typer.Option(help="Images per condition (seeds SEED, SEED+1, ...).")] = 4,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
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
    sample: dict | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> None:
    """Generate faces from a mask and a caption together (collaborative), or from one of them.

    Without conditions, the first validation pairs of the run's data are used.
    """
    from cdiff.stages import generate as stage

    cfg = resolve(config, sample or {}, set_)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        return
    if modality is not None:
        if method not in ("collaborative", modality):
            raise InputError(f"--modality {modality} and --method {method} disagree; give one of them")
        method = modality
    stage.check_out(out, force)  # before any model loads
    req = stage.GenerateRequest(
        method=method,
        conditions=parse_conditions(text, mask, cond),
        pairs=stage.read_pairs_file(from_file) if from_file is not None else [],
        num=num,
        seed=seed,
        save_intermediates=save_intermediates,
    )
    pipe, outputs_root = pipeline(run, config, cfg, device, dtype)
    with _progress("sampling") as update:
        result = stage.run(
            pipe.config, req, pipe.run, out, force=force, outputs_root=outputs_root, progress=update
        )
    print_notes(result.notes)
    out_console.print(
        f"wrote {len(result.images)} images and grid.png to {result.out} in {result.wall_time_s:.1f} s",
        highlight=False,
    )
