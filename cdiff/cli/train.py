"""The training commands: ``train-vae``, ``train-unimodal``, ``train-diffuser``, ``train-evaluator``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    DataOpt,
    DeviceOpt,
    MinutesOpt,
    ResumeOpt,
    StageOptions,
    StepsOpt,
    _print_parameters,
    _print_table,
    _training_summary,
    app,
    err_console,
    handle_errors,
    log,
    option,
    parse_modalities,
    stage_options,
    with_options,
)
from cdiff.errors import InputError

VaeStepsOpt = Annotated[
    int | None, typer.Option(help="Optimiser steps. \\[default: the preset's vae.train.steps]")
]
DiffuserModalitiesOpt = Annotated[
    str | None,
    typer.Option(
        "--modalities",
        help="The experts the diffusers combine, comma-separated, two or more (mask,text,sketch). "
        "\\[default: the preset's diffuser.modalities]",
    ),
]
ModalityOpt = Annotated[
    str, typer.Option(help="Which condition drives the model: a registered modality (text, mask, ...).")
]


@dataclass(frozen=True)
class Training:
    """A training command's options: ``--data``, ``--steps``, ``--minutes``, ``--resume`` and the stage's."""

    data: Path | None
    steps: int | None
    minutes: float | None
    resume: bool
    opts: StageOptions

    @property
    def run_dir(self) -> Path:
        return self.opts.run_dir

    @property
    def data_dir(self) -> Path:
        """``--data``, else RUN/data."""
        return self.data or self.run_dir / "data"


def training_options(steps: Any = StepsOpt) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--data``, ``--steps``, ``--minutes``, ``--resume``, then the stage options, after a command's own.

    The command receives them as ``job: Training``; ``steps`` is the type of ``--steps``.
    """
    extra = [
        option("data", DataOpt, None),
        option("steps", steps, None),
        option("minutes", MinutesOpt, None),
        option("resume", ResumeOpt, False),
    ]

    def adapt(kwargs: dict[str, Any]) -> dict[str, Any]:
        job = Training(**{p.name: kwargs.pop(p.name) for p in extra}, opts=kwargs.pop("opts"))
        return {**kwargs, "job": job}

    return lambda fn: stage_options()(with_options(fn, extra, adapt, hidden=("job",)))


def _train(
    job: Training,
    section: str,
    counts: Callable[[cfg_mod.Config], dict[str, int]],
    run: Callable[..., Any],
    *lead: Any,
    out: str | Callable[[cfg_mod.Config], str] | None = None,
    shortcuts: dict[str, Any] | None = None,
    **stage_kwargs: Any,
) -> Any | None:
    """A training stage: ``--steps``/``--minutes`` set ``SECTION.train.*``; the stage's report.

    With ``--dry-run``, the config and the parameter counts instead (and None). ``run`` is the stage's,
    called as ``run(cfg, *lead, data, RUN/out)`` (``out``: default ``section``; a function of the config).
    ``shortcuts``: the command's own options, by config key.
    """
    opts = job.opts
    cfg = opts.resolve(
        {f"{section}.train.steps": job.steps, f"{section}.train.minutes": job.minutes, **(shortcuts or {})}
    )
    if opts.print_dry_run(cfg):
        _print_parameters(counts(cfg))
        return None
    out_dir = job.run_dir / ((out(cfg) if callable(out) else out) or section)
    return run(
        cfg, *lead, job.data_dir, out_dir, force=opts.force, resume=job.resume, log=log, **stage_kwargs
    )


@app.command("train-vae")
@handle_errors
@training_options(steps=VaeStepsOpt)
def train_vae(*, job: Training) -> None:
    """Train the KL autoencoder (L1 + perceptual + KL, seed eq. 1) and compute its latent scale factor."""
    from cdiff.stages import train_vae as stage

    report = _train(job, "vae", stage.parameter_counts, stage.run)
    if report is None:
        return
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


def _dry_run_vocab(cfg: cfg_mod.Config, folder: Path, modality: str) -> int | None:
    """The vocabulary size to count parameters with (``_prepared_vocab``), saying when BERT's is assumed."""
    from cdiff import modalities

    vocab = _prepared_vocab(folder, modality)
    has_vocab = modalities.get(modality).has_vocabulary
    if vocab is None and has_vocab and cfg.unimodal.text_encoder.vocab_size is None:
        err_console.print("note: no prepared tokenizer yet; counting with BERT's 30,522-token vocabulary")
    return vocab


@app.command("train-unimodal")
@handle_errors
@training_options()
def train_unimodal(modality: ModalityOpt, *, job: Training) -> None:
    """Train a text- or mask-driven latent diffusion model (UNet + condition encoder) from scratch."""
    from cdiff.stages import train_unimodal as stage

    def counts(cfg: cfg_mod.Config) -> dict[str, int]:
        return stage.parameter_counts(cfg, modality, _dry_run_vocab(cfg, job.data_dir, modality))

    report = _train(job, "unimodal", counts, stage.run, modality, job.run_dir, out=modality)
    if report is None:
        return
    _training_summary(
        f"{modality} model → {report.out}", report, [("final loss", f"{report.final_loss:.4f}")]
    )


@app.command("train-diffuser")
@handle_errors
@training_options()
def train_diffuser(modalities: DiffuserModalitiesOpt = None, *, job: Training) -> None:
    """Train the dynamic diffusers over the frozen uni-modal models (--modalities, default diffuser.modalities).

    The set of mask and text lives in RUN/diffuser, every other set in RUN/diffuser-<its modalities> (e.g. RUN/diffuser-mask-sketch-text), so one run holds several.
    """
    from cdiff.stages import train_diffuser as stage
    from cdiff.stages.run import set_part

    mods = parse_modalities(modalities)
    report = _train(
        job,
        "diffuser",
        stage.parameter_counts,
        stage.run,
        job.run_dir,
        out=lambda cfg: set_part(cfg.diffuser.modalities),
        shortcuts={"diffuser.modalities": mods},
    )
    if report is None:
        return
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
@training_options()
def train_evaluator(device: DeviceOpt = "auto", *, job: Training) -> None:
    """Train the evaluator models for [b]cdiff evaluate[/]: a face parser (19 classes) and an attribute classifier (gender, beard, age).

    Reports their accuracy on the validation images and on the VAE's reconstructions of them. --device: where the VAE reconstructs the images and the validation runs; training goes through accelerate (the GPU when there is one; --device cpu keeps it on the CPU).
    """
    from cdiff.devices import resolve_device
    from cdiff.stages import train_evaluator as stage

    dev = resolve_device(device)

    def counts(cfg: cfg_mod.Config) -> dict[str, int]:
        return stage.parameter_counts(cfg, resolution=cfg.data.resolution)

    report = _train(job, "evaluator", counts, stage.run, job.run_dir, device=dev)
    if report is None:
        return
    rows = [(f"parameters: {name}", f"{n:,}") for name, n in report.parameters.items()]
    rows.append(("steps", f"{report.steps}"))
    for key, value in report.val.items():
        rec = (report.val_reconstructed or {}).get(key)
        shown = f"{value:.3f}" + (f" ({rec:.3f} on VAE reconstructions)" if rec is not None else "")
        rows.append((f"validation {key.replace('_', ' ')}", shown))
    rows += [("samples/s", f"{report.samples_per_s:.1f}"), ("wall time", f"{report.wall_time_s:.1f} s")]
    _print_table(f"evaluator models → {report.out}", rows)
