"""``cdiff edit``: edit a real photo toward a caption, a mask or both."""

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
    _floats,
    _print_table,
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


def _alphas(value: str | None) -> list[float] | None:
    return _floats(value, "--alphas")


@app.command()
@handle_errors
@sampling_options("steps", "eta", "solver", "batch_size")
def edit(
    photo: Annotated[
        Path | None, typer.Argument(help="The photo to edit (any size; centre-cropped and resized).")
    ] = None,
    target_text: Annotated[
        str | None, typer.Option("--target-text", help="The caption to edit toward.")
    ] = None,
    target_mask: Annotated[
        Path | None,
        typer.Option("--target-mask", help="The mask to edit toward (index PNG, palette RGB PNG or .pt)."),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="An earlier edit folder: render (more) alphas without optimising."),
    ] = None,
    alphas: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated alphas (e = a*e_tgt + (1-a)*e_opt). \\[default: edit.alphas / edit.collab_alphas]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the start noise and the sampler.")] = 0,
    embed_steps: Annotated[
        int | None, typer.Option(help="Embedding optimisation steps. \\[default: edit.embed_steps]")
    ] = None,
    embed_lr: Annotated[
        float | None, typer.Option(help="Its Adam learning rate. \\[default: edit.embed_lr]")
    ] = None,
    finetune_steps: Annotated[
        int | None, typer.Option(help="UNet fine-tuning steps. \\[default: edit.finetune_steps]")
    ] = None,
    finetune_lr: Annotated[
        float | None, typer.Option(help="Its Adam learning rate. \\[default: edit.finetune_lr]")
    ] = None,
    save_intermediates: Annotated[
        bool, typer.Option("--save-intermediates", help="Keep each step's maps, x_t and x_0 (for visualize).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder. \\[default: RUN/edits/NNN; ./outputs/NNN without --run; EDIT_DIR/renders/NNN]"
        ),
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
    """Edit a real photo toward a target caption, a target mask, or both (Imagic; both: collaborative)."""
    from cdiff.stages import edit as stage

    cfg = resolve(config, sample or {}, set_)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        return
    req = stage.EditRequest(
        photo=photo,
        targets={"mask": str(target_mask) if target_mask else None, "text": target_text},
        from_dir=from_dir,
        alphas=_alphas(alphas),
        seed=seed,
        sample_given={k.split(".", 1)[1]: v for k, v in (sample or {}).items()},
        embed_steps=embed_steps,
        embed_lr=embed_lr,
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        save_intermediates=save_intermediates,
    )
    if from_dir is not None:  # --from re-renders with the models of the edit's own run
        result = stage.run(cfg, req, None, out, force=force, progress=_progress, device=(device, dtype))
    else:
        if out is not None and out.exists() and not force:  # before any model loads
            raise InputError(f"{out} already exists; choose another --out or pass --force to replace it")
        pipe, outputs_root = pipeline(run, config, cfg, device, dtype)
        result = stage.run(
            cfg, req, pipe.run, out, force=force, progress=_progress, outputs_root=outputs_root
        )
    print_notes(result.notes)
    if result.metrics:
        _print_table(
            f"edit → {result.out}", [(k, f"{v:.4f}") for k, v in result.metrics.items()], ("measure", "value")
        )
    out_console.print(
        f"wrote {len(result.images)} alphas ({', '.join(f'{a:g}' for a in result.alphas)}) and grid.png to "
        f"{result.out} in {result.wall_time_s:.1f} s",
        highlight=False,
    )
