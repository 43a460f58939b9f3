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
    Solver,
    _floats,
    _model_run,
    _print_table,
    _progress,
    app,
    err_console,
    handle_errors,
    out_console,
    resolve,
)


def _alphas(value: str | None) -> list[float] | None:
    return _floats(value, "--alphas")


@app.command()
@handle_errors
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
    steps: Annotated[int | None, typer.Option(help="Sampling steps. \\[default: 50]")] = None,
    eta: Annotated[float | None, typer.Option(help="DDIM eta (1.0 as the release).")] = None,
    solver: Annotated[Solver, typer.Option(help="ddim (the release) or dpm (DPM-Solver++).")] = Solver.ddim,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per forward pass (results do not depend on it).")
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
) -> None:
    """Edit a real photo toward a target caption, a target mask, or both (Imagic; both: collaborative)."""
    from cdiff.stages import edit as stage

    cfg = resolve(config, {}, set_)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        return
    req = stage.EditRequest(
        photo=photo,
        target_text=target_text,
        target_mask=target_mask,
        from_dir=from_dir,
        alphas=_alphas(alphas),
        seed=seed,
        steps=steps,
        eta=eta,
        solver=solver.value,
        batch_size=batch_size,
        embed_steps=embed_steps,
        embed_lr=embed_lr,
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        save_intermediates=save_intermediates,
    )
    # --from re-renders with the models of the edit's own run
    run_dir, outputs_root = (run, None) if from_dir is not None else _model_run(run, config)
    result = stage.run(cfg, req, run_dir, out, force=force, progress=_progress, outputs_root=outputs_root)
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False)
    if result.metrics:
        _print_table(
            f"edit → {result.out}", [(k, f"{v:.4f}") for k, v in result.metrics.items()], ("measure", "value")
        )
    out_console.print(
        f"wrote {len(result.images)} alphas ({', '.join(f'{a:g}' for a in result.alphas)}) and grid.png to "
        f"{result.out} in {result.wall_time_s:.1f} s",
        highlight=False,
    )
