"""``cdiff prepare``: build the dataset."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    StageOptions,
    _print_table,
    _progress,
    app,
    handle_errors,
    out_option,
    say,
    stage_options,
)


class SourceName(StrEnum):
    synthetic = "synthetic"
    celeba = "celeba"
    codiff = "codiff"


class TokenizerName(StrEnum):
    wordpiece = "wordpiece"
    bert = "bert-base-uncased"


# ---- prepare's own options --------------------------------------------------------------------
SourceOpt = Annotated[
    SourceName | None, typer.Option(help="Where samples come from. \\[default: the preset's]")
]
NumOpt = Annotated[int | None, typer.Option(help="synthetic: number of samples.")]
ResolutionOpt = Annotated[int | None, typer.Option(help="Image and mask size in pixels.")]
SeedOpt = Annotated[int | None, typer.Option(help="synthetic: generator seed.")]
CelebahqOpt = Annotated[Path | None, typer.Option(help="celeba: CelebA-HQ-img/ (<n>.jpg).")]
MasksOpt = Annotated[
    Path | None,
    typer.Option(help="celeba: CelebAMask-HQ-mask-anno/ or combined <n>.png masks; codiff: .pt folder."),
]
CaptionsOpt = Annotated[Path | None, typer.Option(help="celeba: CelebA-Dialog captions_hq.json.")]
AttributesOpt = Annotated[Path | None, typer.Option(help="celeba: CelebA-Dialog fine-grained degrees table.")]
HqMappingOpt = Annotated[Path | None, typer.Option(help="celeba: CelebA-HQ-to-CelebA-mapping.txt.")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="codiff: the release's datasets/ folder.")]
TokenizerOpt = Annotated[
    TokenizerName | None, typer.Option(help="Caption tokenizer. \\[default: the preset's]")
]
TokenizerPathOpt = Annotated[Path | None, typer.Option(help="Local bert-base-uncased folder (vocab.txt).")]
WorkersOpt = Annotated[int | None, typer.Option(help="Processes; 0 = all cores.")]
DatasetOutOpt = out_option("RUN/data", what="Dataset folder")
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip and count unusable samples instead of stopping.")
]


@app.command()
@handle_errors
@stage_options()
def prepare(
    source: SourceOpt = None,
    num: NumOpt = None,
    resolution: ResolutionOpt = None,
    seed: SeedOpt = None,
    celebahq: CelebahqOpt = None,
    masks: MasksOpt = None,
    captions: CaptionsOpt = None,
    attributes: AttributesOpt = None,
    hq_mapping: HqMappingOpt = None,
    root_dir: RootOpt = None,
    tokenizer: TokenizerOpt = None,
    tokenizer_path: TokenizerPathOpt = None,
    workers: WorkersOpt = None,
    out: DatasetOutOpt = None,
    skip_bad: SkipBadOpt = False,
    *,
    opts: StageOptions,
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
    cfg = opts.resolve(shortcuts)
    out = out or opts.run_dir / "data"
    if opts.print_dry_run(cfg):
        _print_plan(stage.plan(cfg), out)
        return
    with _progress("preparing") as update:
        report = stage.run(cfg, out, force=opts.force, skip_bad=skip_bad, progress=update)
    _prepare_summary(report, cfg)


def _print_plan(plan: dict[str, Any], out: Path) -> None:
    say(
        f"would prepare {plan['samples']} {plan['source']} samples "
        f"({plan['train']} train, {plan['val']} val) into {out}"
    )


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
