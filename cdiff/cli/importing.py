"""``cdiff import-official`` and ``cdiff import-demo``: models from elsewhere into a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdiff import config as cfg_mod
from cdiff.cli.common import (
    DryRunOpt,
    ForceOpt,
    RunOpt,
    SetOpt,
    _print_table,
    app,
    handle_errors,
    log,
)
from cdiff.rundir import default_run_dir


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
        log=log,
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
