"""The ``cdiff`` command line: one thin command per pipeline stage.

Conventions shared by every stage: ``--config`` (a packaged preset or a YAML path),
``--run`` (the run directory), ``--set a.b=value`` overrides, ``--dry-run`` (print the
resolved config and exit without writing) and ``--force`` (replace finished work).
Bad input ends with a one-line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cdiff import __version__
from cdiff import config as cfg_mod
from cdiff.errors import InputError
from cdiff.rundir import default_run_dir

app = typer.Typer(
    name="cdiff",
    help="Collaborative Diffusion for multi-modal face generation and editing.\n\n"
    "Pipeline: prepare → train-vae → train-unimodal → train-diffuser → generate / edit / visualize. "
    "Every stage writes into one run directory (--run, default runs/<preset>).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)

# ---- options every stage shares -------------------------------------------------------------
ConfigOpt = Annotated[
    str, typer.Option("--config", "-c", help="Preset (demo, celeba256, celeba512) or a YAML file.")
]
RunOpt = Annotated[
    Path | None,
    typer.Option("--run", help="Run directory. \\[default: runs/<preset>, or $CDIFF_RUNS_DIR/<preset>]"),
]
ModelRunOpt = Annotated[
    Path | None,
    typer.Option(
        "--run",
        help="Run directory with the models. \\[default: the demo models shipped in the package (demo preset), "
        "else runs/<preset>]",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value, e.g. --set data.num=500 (repeatable)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the resolved config and plan, write nothing.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace finished work (never done without it).")]


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`InputError` into a one-line message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def resolve(preset: str, shortcuts: dict[str, Any], sets: list[str] | None) -> cfg_mod.Config:
    """Preset, then command-line shortcuts (those given), then ``--set`` overrides."""
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in shortcuts.items() if v is not None}
    _name, raw = cfg_mod.read_preset(preset)
    raw = cfg_mod.apply_overrides(raw, given)
    raw = cfg_mod.apply_overrides(raw, list(sets or []))
    return cfg_mod.build(cfg_mod.Config, raw)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cdiff {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Collaborative Diffusion for multi-modal face generation and editing."""


# ---- prepare --------------------------------------------------------------------------------


class SourceName(StrEnum):
    synthetic = "synthetic"
    celeba = "celeba"
    codiff = "codiff"


class TokenizerName(StrEnum):
    wordpiece = "wordpiece"
    bert = "bert-base-uncased"


@app.command()
@handle_errors
def prepare(
    source: Annotated[
        SourceName | None, typer.Option(help="Where samples come from. \\[default: the preset's]")
    ] = None,
    num: Annotated[int | None, typer.Option(help="synthetic: number of samples.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Image and mask size in pixels.")] = None,
    seed: Annotated[int | None, typer.Option(help="synthetic: generator seed.")] = None,
    celebahq: Annotated[Path | None, typer.Option(help="celeba: CelebA-HQ-img/ (<n>.jpg).")] = None,
    masks: Annotated[
        Path | None,
        typer.Option(help="celeba: CelebAMask-HQ-mask-anno/ or combined <n>.png masks; codiff: .pt folder."),
    ] = None,
    captions: Annotated[Path | None, typer.Option(help="celeba: CelebA-Dialog captions_hq.json.")] = None,
    attributes: Annotated[
        Path | None, typer.Option(help="celeba: CelebA-Dialog fine-grained degrees table.")
    ] = None,
    hq_mapping: Annotated[Path | None, typer.Option(help="celeba: CelebA-HQ-to-CelebA-mapping.txt.")] = None,
    root_dir: Annotated[
        Path | None, typer.Option("--root", help="codiff: the release's datasets/ folder.")
    ] = None,
    tokenizer: Annotated[
        TokenizerName | None, typer.Option(help="Caption tokenizer. \\[default: the preset's]")
    ] = None,
    tokenizer_path: Annotated[
        Path | None, typer.Option(help="Local bert-base-uncased folder (vocab.txt).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes; 0 = all cores.")] = None,
    out: Annotated[Path | None, typer.Option(help="Dataset folder. \\[default: RUN/data]")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip and count unusable samples instead of stopping.")
    ] = False,
    config: ConfigOpt = "demo",
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Build the dataset: images, index-PNG masks, captions, splits and tokenizer.

    Sources: [b]synthetic[/] (the embedded generator), [b]celeba[/] (CelebA-HQ + CelebAMask-HQ + CelebA-Dialog), [b]codiff[/] (the authors' preprocessed datasets/ folder). An interrupted run resumes when started again with the same settings.
    """
    from cdiff.stages import prepare as stage

    shortcuts = {
        "data.source": source.value if source else None,
        "data.num": num,
        "data.resolution": resolution,
        "data.seed": seed,
        "data.celebahq": celebahq,
        "data.masks": masks,
        "data.captions": captions,
        "data.attributes": attributes,
        "data.hq_mapping": hq_mapping,
        "data.root": root_dir,
        "data.tokenizer": tokenizer.value if tokenizer else None,
        "data.tokenizer_path": tokenizer_path,
        "data.workers": workers,
    }
    cfg = resolve(config, shortcuts, set_)
    out = out or (run or default_run_dir(config)) / "data"
    if dry_run:
        typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        plan = stage.plan(cfg)
        out_console.print(
            f"would prepare {plan['samples']} {plan['source']} samples "
            f"({plan['train']} train, {plan['val']} val) into {out}",
            highlight=False,
        )
        return
    with _progress("preparing") as update:
        report = stage.run(cfg, out, force=force, skip_bad=skip_bad, progress=update)
    _prepare_summary(report, cfg)


ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")
]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Prepared dataset folder. \\[default: RUN/data]")
]


def _print_table(
    title: str, rows: list[tuple[str, str]], header: tuple[str, str] = ("what", "value")
) -> None:
    """A two-column rich summary table on stdout."""
    table = Table(title=title)
    table.add_column(header[0])
    table.add_column(header[1], justify="right")
    for name, value in rows:
        table.add_row(name, value)
    out_console.print(table)


def _training_summary(title: str, report: Any, losses: list[tuple[str, str]]) -> None:
    """The summary table of a diffusion training stage: parameters, steps, losses, speed, time."""
    _print_table(
        title,
        [
            *[(f"parameters: {name}", f"{n:,}") for name, n in report.parameters.items()],
            ("steps", f"{report.steps}"),
            *losses,
            ("samples/s", f"{report.samples_per_s:.1f}"),
            ("wall time", f"{report.wall_time_s:.1f} s"),
        ],
    )


def _print_parameters(counts: dict[str, int]) -> None:
    _print_table("parameters", [(name, f"{n:,}") for name, n in counts.items()], ("model", "parameters"))


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


def _prepared_vocab(folder: Path) -> int | None:
    """The prepared tokenizer's vocabulary size, if the dataset exists."""
    from cdiff.data.prepared import PreparedDataset

    try:
        return len(PreparedDataset.open(folder).tokenizer())
    except InputError:
        return None


class Modality(StrEnum):
    text = "text"
    mask = "mask"


class Solver(StrEnum):
    ddim = "ddim"
    dpm = "dpm"


@app.command("train-unimodal")
@handle_errors
def train_unimodal(
    modality: Annotated[Modality, typer.Option(help="Which condition drives the model.")],
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
        vocab = _prepared_vocab(data or run_dir / "data") if modality is Modality.text else None
        if modality is Modality.text and vocab is None and cfg.unimodal.text_encoder.vocab_size is None:
            err_console.print("note: no prepared tokenizer yet; counting with BERT's 30,522-token vocabulary")
        _print_parameters(stage.parameter_counts(cfg, modality.value, vocab))
        return
    report = stage.run(
        cfg,
        modality.value,
        run_dir,
        data or run_dir / "data",
        run_dir / modality.value,
        force=force,
        resume=resume,
        log=lambda m: err_console.print(m, highlight=False),
    )
    _training_summary(
        f"{modality.value} model → {report.out}", report, [("final loss", f"{report.final_loss:.4f}")]
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


class Method(StrEnum):
    collaborative = "collaborative"
    composable = "composable"
    text = "text"
    mask = "mask"
    all = "all"


def _model_run(run: Path | None, config: str) -> tuple[Path, Path | None]:
    """(run directory with the models, root for numbered outputs or None for the run's own folder).

    Without --run, the demo preset uses the demo models shipped inside the package and writes
    to ./outputs; other presets use runs/<preset>.
    """
    if run is not None:
        return run, None
    if Path(config).stem == "demo":
        from cdiff.stages.demo_weights import shipped_run

        return shipped_run(), Path("outputs")
    return default_run_dir(config), None


class Reweight(StrEnum):
    none = "none"
    released = "released"


def _floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"{option} expects comma-separated numbers, e.g. 0.5,0.5; got '{value}'") from None


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


@app.command("import-official")
@handle_errors
def import_official(
    sources: Annotated[
        list[Path],
        typer.Argument(help="The folder with the released {res}_*.ckpt files, or the files themselves."),
    ],
    resolution: Annotated[int, typer.Option(help="256 or 512: which release to import.")],
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            help="bert-base-uncased folder (vocab.txt). \\[default: the Hugging Face cache, offline]"
        ),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Unpickle everything (can run code): only for files you trust."),
    ] = False,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Preset or YAML file. \\[default: celeba256 / celeba512]"),
    ] = None,
    run: RunOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
) -> None:
    """Turn the authors' released checkpoints into a run that generate, edit and visualize use."""
    from cdiff.stages import import_official as stage

    run_dir = run or default_run_dir(f"celeba{resolution}")
    tok = str(tokenizer) if tokenizer else None
    if dry_run:
        typer.echo(cfg_mod.to_yaml(stage.resolve_config(resolution, set_, tok, config)), nl=False)
        for path in stage.find_files(sources, resolution):
            typer.echo(f"# would import {path} into {run_dir}")
        return
    report = stage.run(
        sources,
        resolution,
        run_dir,
        tokenizer=tok,
        sets=set_,
        preset=config,
        trust_pickle=trust_pickle,
        force=force,
        log=lambda m: err_console.print(m, highlight=False),
    )
    rows = [
        (f"{part} (from {kind})", f"{report.parameters[part]:,} parameters")
        for part, kind in report.parts.items()
    ]
    rows += [("keys mapped", str(report.mapped))]
    rows += [(f"dropped: {reason}", str(n)) for reason, n in report.dropped.items()]
    rows += [("wall time", f"{report.wall_time_s:.1f} s")]
    _print_table(f"released checkpoints → {report.run_dir}", rows)


@app.command("import-demo")
@handle_errors
def import_demo(run: RunOpt = None, force: ForceOpt = False) -> None:
    """Put the demo models shipped inside the package (VAE, text, mask, diffusers, evaluator) into a run."""
    from cdiff.stages import demo_weights as stage

    run_dir = run or default_run_dir("demo")
    parts = stage.import_demo(run_dir, force=force)
    _print_table(
        f"shipped demo weights → {run_dir}",
        [(p, str(run_dir / p)) for p in parts],
        ("model", "folder"),
    )


@app.command()
@handle_errors
def visualize(
    generation: Annotated[
        Path, typer.Argument(help="A folder written by `cdiff generate --save-intermediates`.")
    ],
    image: Annotated[
        list[str] | None, typer.Option("--image", help="Only this image (file name or stem; repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder. \\[default: GENERATION/visualize]")] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Run directory with the VAE. \\[default: the generation's]")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Influence maps over the steps, decoded x_t and x_0, the mask over the result, a GIF and an HTML page."""
    from cdiff.stages import visualize as stage

    with _progress("visualising") as update:
        report = stage.run(generation, out, images=image, run_dir=run, force=force, progress=update)
    out_console.print(
        f"wrote {len(report.images)} visualisations and index.html to {report.out} in {report.wall_time_s:.1f} s",
        highlight=False,
    )


@app.command()
@handle_errors
def report(
    run: Annotated[Path, typer.Option("--run", help="The run directory to report on.")] = Path("runs/demo"),
    force: ForceOpt = False,
) -> None:
    """One page for a run: RUN/report.html with its models, the evaluation table, samples, influence maps and edits."""
    from cdiff.stages import report as stage

    result = stage.run(run, force=force)
    out_console.print(f"wrote {result.path} ({', '.join(result.sections)})", highlight=False)


def _prepare_summary(report: Any, cfg: cfg_mod.Config) -> None:
    rows = [(f"kept: {split}", str(report.kept.get(split, 0))) for split in ("train", "val")]
    rows += [(f"skipped: {reason}", str(n)) for reason, n in sorted(report.skipped.items())]
    if report.resumed_from:
        rows.append(("resumed (already done)", str(report.resumed_from)))
    rows += [
        ("tokenizer vocabulary", f"{report.vocab_size} ({cfg.data.tokenizer})"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    _print_table(f"prepared {cfg.data.source} data → {report.out}", rows, ("what", "count"))


class _progress:
    """A rich progress bar on stderr, exposed as an ``update(done, total)`` callback."""

    def __init__(self, label: str):
        self.bar = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.bar.add_task(label, total=None)

    def __enter__(self) -> Callable[[int, int], None]:
        self.bar.start()
        return lambda done, total: self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def main() -> None:
    app()
