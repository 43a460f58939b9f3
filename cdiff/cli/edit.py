"""``cdiff edit``: edit a real photo toward a caption, a mask or both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ModelRunOpt,
    StageOptions,
    _floats,
    _print_table,
    _progress,
    app,
    handle_errors,
    out_option,
    pipeline,
    print_notes,
    say,
    stage_options,
)
from cdiff.cli.conditions import condition_options
from cdiff.cli.sampling import sampling_options
from cdiff.errors import InputError


def _alphas(value: str | None) -> list[float] | None:
    return _floats(value, "--alphas")


# ---- edit's own options -----------------------------------------------------------------------
PhotoArg = Annotated[
    Path | None, typer.Argument(help="The photo to edit (any size; centre-cropped and resized).")
]
FromDirOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--from",
        help="An earlier edit folder: render (more) alphas without optimising. Repeat it to combine "
        "single-target edits of one photo into the collaborative edit toward all their targets.",
    ),
]
AlphasOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated alphas (e = a*e_tgt + (1-a)*e_opt). \\[default: edit.alphas / edit.collab_alphas]"
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the start noise and the sampler.")]
EmbedStepsOpt = Annotated[
    int | None, typer.Option(help="Embedding optimisation steps. \\[default: edit.embed_steps]")
]
EmbedLrOpt = Annotated[float | None, typer.Option(help="Its Adam learning rate. \\[default: edit.embed_lr]")]
FinetuneStepsOpt = Annotated[
    int | None, typer.Option(help="UNet fine-tuning steps. \\[default: edit.finetune_steps]")
]
FinetuneLrOpt = Annotated[
    float | None, typer.Option(help="Its Adam learning rate. \\[default: edit.finetune_lr]")
]
IntermediatesOpt = Annotated[
    bool, typer.Option("--save-intermediates", help="Keep each step's maps, x_t and x_0 (for visualize).")
]
EditsOutOpt = out_option("RUN/edits/NNN; ./outputs/NNN without --run; EDIT_DIR/renders/NNN with one --from")


@app.command()
@handle_errors
@sampling_options("steps", "eta", "solver", "batch_size")
@stage_options(run=ModelRunOpt)
@condition_options(target=True, after=1)  # --target-text, --target-mask, ... after the photo
def edit(
    photo: PhotoArg = None,
    from_dir: FromDirOpt = None,
    alphas: AlphasOpt = None,
    seed: SeedOpt = 0,
    embed_steps: EmbedStepsOpt = None,
    embed_lr: EmbedLrOpt = None,
    finetune_steps: FinetuneStepsOpt = None,
    finetune_lr: FinetuneLrOpt = None,
    save_intermediates: IntermediatesOpt = False,
    out: EditsOutOpt = None,
    *,
    targets: dict[str, str | None],
    opts: StageOptions,
    sample: dict[str, Any],
    device: str,
    dtype: str,
) -> None:
    """Edit a real photo toward a target caption, a target mask, or both (Imagic; both: collaborative)."""
    from cdiff.stages import edit as stage

    cfg = opts.resolve(sample)
    if opts.print_dry_run(cfg):
        return
    req = stage.EditRequest(
        photo=photo,
        targets=targets,
        from_dir=(from_dir[0] if len(from_dir) == 1 else list(from_dir)) if from_dir else None,
        alphas=_alphas(alphas),
        seed=seed,
        sample_given={k.split(".", 1)[1]: v for k, v in sample.items()},
        embed_steps=embed_steps,
        embed_lr=embed_lr,
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        save_intermediates=save_intermediates,
    )
    result = _run_edit(cfg, req, out, opts, device, dtype)
    print_notes(result.notes)
    if result.metrics:
        _print_table(
            f"edit → {result.out}", [(k, f"{v:.4f}") for k, v in result.metrics.items()], ("measure", "value")
        )
    say(
        f"wrote {len(result.images)} alphas ({', '.join(f'{a:g}' for a in result.alphas)}) and grid.png to "
        f"{result.out} in {result.wall_time_s:.1f} s"
    )


def _run_edit(
    cfg: cfg_mod.Config, req: Any, out: Path | None, opts: StageOptions, device: str, dtype: str
) -> Any:
    """Optimise and render with the models of ``--run``, or (``--from``) re-render an earlier edit."""
    from cdiff.stages import edit as stage

    if req.from_dir is not None:  # --from re-renders with the models of the edit's own run
        return stage.run(cfg, req, None, out, force=opts.force, progress=_progress, device=(device, dtype))
    if out is not None and out.exists() and not opts.force:  # before any model loads
        raise InputError(f"{out} already exists; choose another --out or pass --force to replace it")
    pipe, outputs_root = pipeline(opts.run, opts.config, cfg, device, dtype)
    return stage.run(cfg, req, pipe.run, out, force=opts.force, progress=_progress, outputs_root=outputs_root)
