"""The training commands: ``train-vae``, ``train-unimodal``, ``train-diffuser``, ``train-evaluator``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ConfigOpt,
    DataOpt,
    DryRunOpt,
    ForceOpt,
    ResumeOpt,
    RunOpt,
    SetOpt,
    _print_parameters,
    _print_table,
    _training_summary,
    app,
    err_console,
    handle_errors,
    resolve,
)
from cdiff.errors import InputError
from cdiff.rundir import default_run_dir


@app.command("train-vae")
@handle_errors
def train_vae(
    data: DataOpt = None,
    steps: Annotated[
        int | None, typer.Option(help="Optimiser steps. \\[default: the preset's vae.train.steps]")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget in minutes.")] = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train the KL autoencoder (L1 + perceptual + KL, seed eq. 1) and compute its latent scale factor."""
    from cdiff.stages import train_vae as stage

    cfg = resolve(config, {"vae.train.steps": steps, "vae.train.minutes": minutes}, set_)
    run_dir = run or default_run_dir(config)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        _print_parameters(stage.parameter_counts(cfg))
        return
    report = stage.run(
        cfg,
        data or run_dir / "data",
        run_dir / "vae",
        force=force,
        resume=resume,
        log=lambda m: err_console.print(m, highlight=False),
    )
    _print_table(
        f"VAE → {report.out}",
        [
            ("steps", f"{report.steps}"),
            ("parameters", f"{report.parameters:,}"),
            ("validation L1", f"{report.val_l1:.4f}"),
            ("validation PSNR", f"{report.val_psnr:.2f} dB"),
            ("latent scale factor", f"{report.scale_factor:.4f}"),
            ("samples/s", f"{report.samples_per_s:.1f}"),
            ("wall time", f"{report.wall_time_s:.1f} s"),
        ],
    )


def _prepared_vocab(folder: Path, modality: str) -> int | None:
    """The modality's vocabulary size from the prepared dataset, if it has one and the dataset exists."""
    from cdiff import modalities
    from cdiff.data.prepared import PreparedDataset

    kind = modalities.get(modality)
    if not kind.has_vocabulary:
        return None
    try:
        return kind.vocab_size(PreparedDataset.open(folder))
    except InputError:
        return None


@app.command("train-unimodal")
@handle_errors
def train_unimodal(
    modality: Annotated[
        str, typer.Option(help="Which condition drives the model: a registered modality (text, mask, ...).")
    ],
    data: DataOpt = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps. \\[default: the preset's]")] = None,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget in minutes.")] = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train a text- or mask-driven latent diffusion model (UNet + condition encoder) from scratch."""
    from cdiff.stages import train_unimodal as stage

    cfg = resolve(config, {"unimodal.train.steps": steps, "unimodal.train.minutes": minutes}, set_)
    run_dir = run or default_run_dir(config)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        vocab = _prepared_vocab(data or run_dir / "data", modality)
        from cdiff import modalities

        has_vocab = modalities.get(modality).has_vocabulary
        if vocab is None and has_vocab and cfg.unimodal.text_encoder.vocab_size is None:
            err_console.print("note: no prepared tokenizer yet; counting with BERT's 30,522-token vocabulary")
        _print_parameters(stage.parameter_counts(cfg, modality, vocab))
        return
    report = stage.run(
        cfg,
        modality,
        run_dir,
        data or run_dir / "data",
        run_dir / modality,
        force=force,
        resume=resume,
        log=lambda m: err_console.print(m, highlight=False),
    )
    _training_summary(
        f"{modality} model → {report.out}", report, [("final loss", f"{report.final_loss:.4f}")]
    )


@app.command("train-diffuser")
@handle_errors
def train_diffuser(
    data: DataOpt = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps. \\[default: the preset's]")] = None,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget in minutes.")] = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train the dynamic diffusers over the frozen uni-modal models (diffuser.modalities)."""
    from cdiff.stages import train_diffuser as stage

    cfg = resolve(config, {"diffuser.train.steps": steps, "diffuser.train.minutes": minutes}, set_)
    run_dir = run or default_run_dir(config)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        _print_parameters(stage.parameter_counts(cfg))
        return
    report = stage.run(
        cfg,
        run_dir,
        data or run_dir / "data",
        run_dir / "diffuser",
        force=force,
        resume=resume,
        log=lambda m: err_console.print(m, highlight=False),
    )
    _training_summary(
        f"dynamic diffusers → {report.out}",
        report,
        [
            ("final loss (collaborative)", f"{report.final_loss:.4f}"),
            ("same batches, plain average of the experts", f"{report.final_loss_average:.4f}"),
        ],
    )


@app.command("train-evaluator")
@handle_errors
def train_evaluator(
    data: DataOpt = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps. \\[default: the preset's]")] = None,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget in minutes.")] = None,
    resume: ResumeOpt = False,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train the evaluator models for [b]cdiff evaluate[/]: a face parser (19 classes) and an attribute classifier (gender, beard, age).

    Reports their accuracy on the validation images and on the VAE's reconstructions of them.
    """
    from cdiff.stages import train_evaluator as stage

    cfg = resolve(config, {"evaluator.train.steps": steps, "evaluator.train.minutes": minutes}, set_)
    run_dir = run or default_run_dir(config)
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        _print_parameters(stage.parameter_counts(cfg, resolution=cfg.data.resolution))
        return
    report = stage.run(
        cfg,
        run_dir,
        data or run_dir / "data",
        run_dir / "evaluator",
        force=force,
        resume=resume,
        log=lambda m: err_console.print(m, highlight=False),
    )
    rows = [(f"parameters: {name}", f"{n:,}") for name, n in report.parameters.items()]
    rows.append(("steps", f"{report.steps}"))
    for key, value in report.val.items():
        rec = (report.val_reconstructed or {}).get(key)
        shown = f"{value:.3f}" + (f" ({rec:.3f} on VAE reconstructions)" if rec is not None else "")
        rows.append((f"validation {key.replace('_', ' ')}", shown))
    rows += [("samples/s", f"{report.samples_per_s:.1f}"), ("wall time", f"{report.wall_time_s:.1f} s")]
    _print_table(f"evaluator models → {report.out}", rows)
