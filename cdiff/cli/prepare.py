"""``cdiff prepare``: build the dataset."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    ConfigOpt,
    DryRunOpt,
    ForceOpt,
    RunOpt,
    SetOpt,
    _print_table,
    _progress,
    app,
    handle_errors,
    out_console,
    resolve,
)
from cdiff.rundir import default_run_dir


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
