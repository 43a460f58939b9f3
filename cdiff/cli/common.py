"""The ``cdiff`` Typer app and what its commands share: consoles, options, helpers."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cdiff import __version__, locks
from cdiff import config as cfg_mod
from cdiff.errors import InputError
from cdiff.rundir import default_run_dir, write_error

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

ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")
]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Prepared dataset folder. \\[default: RUN/data]")
]
StepsOpt = Annotated[int | None, typer.Option(help="Optimiser steps. \\[default: the preset's]")]
MinutesOpt = Annotated[float | None, typer.Option(help="Wall-clock budget in minutes.")]
ModalitiesOpt = Annotated[
    str | None,
    typer.Option(
        "--modalities",
        help="Which models combine, two or more, comma-separated (e.g. mask,text,sketch): picks the "
        "diffuser set. \\[default: those of the conditions given (generate), else RUN/diffuser's or the "
        "run's only set]",
    ),
]
DEVICE_HELP = "Where the models run: auto (CUDA when available), cpu, cuda, cuda:N or mps."
DeviceOpt = Annotated[str, typer.Option(help=DEVICE_HELP)]


def out_option(default: str, what: str = "Output folder") -> Any:
    """The ``--out`` option type of a command: ``WHAT. [default: DEFAULT]``."""
    return Annotated[Path | None, typer.Option(help=f"{what}. \\[default: {default}]")]


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword-only command parameter; ``annotation`` is its option type (``Annotated[..., typer.Option]``)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_options(
    fn: Callable[..., Any],
    extra: list[inspect.Parameter],
    adapt: Callable[[dict[str, Any]], dict[str, Any]],
    hidden: tuple[str, ...] = (),
) -> Callable[..., Any]:
    """``fn`` as typer sees it with the options ``extra`` after its own (less the ``hidden`` parameters).

    ``adapt`` turns the keyword arguments typer passes into those of ``fn`` (it takes the ``extra`` ones out
    and gives what ``fn`` expects in the ``hidden`` ones).
    """
    sig = inspect.signature(fn, eval_str=True)
    params = [p for p in sig.parameters.values() if p.name not in hidden] + extra

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **adapt(kwargs))

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
    return wrapper


@dataclass(frozen=True)
class StageOptions:
    """What every pipeline stage takes: ``--config``, ``--run``, ``--set``, ``--dry-run``, ``--force``."""

    config: str
    run: Path | None
    set_: list[str] | None
    dry_run: bool
    force: bool

    @property
    def run_dir(self) -> Path:
        """``--run``, else the preset's default run directory."""
        return self.run or default_run_dir(self.config)

    def resolve(self, shortcuts: dict[str, Any]) -> cfg_mod.Config:
        """The preset, then the command's ``shortcuts`` (those given), then the ``--set`` overrides."""
        return resolve(self.config, shortcuts, self.set_)

    def print_dry_run(self, cfg: cfg_mod.Config) -> bool:
        """With ``--dry-run``: print the resolved config and say so (the command then shows its plan and stops)."""
        if self.dry_run:
            typer.echo(cfg_mod.to_yaml(cfg), nl=False)
        return self.dry_run


def stage_options(run: Any = RunOpt) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--config``, ``--run``, ``--set``, ``--dry-run`` and ``--force`` after a command's own options.

    The command receives them as ``opts: StageOptions``; ``run`` is the type of ``--run`` (``ModelRunOpt``
    for the commands that sample with a run's models).
    """
    extra = [
        option("config", ConfigOpt, "demo"),
        option("run", run, None),
        option("set_", SetOpt, None),
        option("dry_run", DryRunOpt, False),
        option("force", ForceOpt, False),
    ]

    def adapt(kwargs: dict[str, Any]) -> dict[str, Any]:
        opts = StageOptions(**{p.name: kwargs.pop(p.name) for p in extra})
        return {**kwargs, "opts": opts}

    return lambda fn: with_options(fn, extra, adapt, hidden=("opts",))


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`InputError`, and a failed write (a full disk, a read-only folder: see
    :func:`~cdiff.rundir.write_error`), into a one-line message and exit code 2 (no traceback).

    Whatever the outcome, the command's output locks are released when it returns.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            _fail(str(exc))
        except Exception as exc:
            message = write_error(exc)
            if message is None:
                raise
            _fail(message)
        finally:
            locks.release_thread()

    return wrapper


def _fail(message: str) -> NoReturn:
    console = err_console
    if console.quiet:  # a process of a job other than the main one: its errors still show, named
        console = Console(stderr=True)
        message = f"(process {os.environ.get('RANK', '?')}) {message}"
    # the message is text, not markup: "cdiff[fid]" keeps its brackets and a path with "[/x]" cannot break it
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2) from None


def resolve(preset: str, shortcuts: dict[str, Any], sets: list[str] | None) -> cfg_mod.Config:
    """Preset, then command-line shortcuts (those given), then ``--set`` overrides."""
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in shortcuts.items() if v is not None}
    return cfg_mod.load_config(preset, given, sets)


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


def _floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"{option} expects comma-separated numbers, e.g. 0.5,0.5; got '{value}'") from None


def parse_modalities(value: str | None) -> list[str] | None:
    """``--modalities mask,text`` → ["mask", "text"] (registered names, two or more); None stays None."""
    if value is None:
        return None
    from cdiff import modalities

    names = [v.strip() for v in value.split(",") if v.strip()]
    modalities.check(names, "--modalities")
    if len(set(names)) < 2:
        raise InputError(f"--modalities needs two or more of {', '.join(modalities.names())}, got '{value}'")
    return list(dict.fromkeys(names))


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
            disable=not err_console.is_terminal,  # quiet in logs and pipes
        )
        self.task = self.bar.add_task(label, total=None)

    def __enter__(self) -> Callable[[int, int], None]:
        self.bar.start()
        return lambda done, total: self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def pipeline(run: Path | None, config: str, cfg: cfg_mod.Config, device: str, dtype: str):
    """The API's Pipeline over the command's run (``_model_run``) with its resolved config."""
    from cdiff.api import Pipeline
    from cdiff.devices import resolve_device, resolve_dtype
    from cdiff.stages.run import Run

    dev = resolve_device(device)
    run_dir, outputs_root = _model_run(run, config)
    if not Path(run_dir).is_dir():
        raise InputError(f"run directory not found: {run_dir}; pass --run RUN (the folder with the models)")
    return Pipeline(Run(run_dir, dev, resolve_dtype(dtype, dev)), cfg), outputs_root


def print_notes(notes: list[str]) -> None:
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, markup=False)


def say(message: str) -> None:
    """A line of the command's result on stdout."""
    out_console.print(message, highlight=False, markup=False)


def log(message: str) -> None:
    """A stage's progress message on stderr."""
    err_console.print(message, highlight=False, markup=False)


def main() -> None:
    if os.environ.get("RANK", "0") != "0":  # the other processes of an accelerate launch job: errors only
        out_console.quiet = err_console.quiet = True
    app()
