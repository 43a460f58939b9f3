"""The sampling options, declared once: ``generate``, ``edit`` and ``evaluate`` take them with
:func:`sampling_options`, and each maps straight onto its ``sample.*`` config key (validated by
:func:`cdiff.config.check_sample`). Given options override the preset; absent ones leave it alone,
so 0 is never silently replaced by a default. ``--device`` and ``--dtype`` come with them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from cdiff.cli.common import DeviceOpt, _floats, option, with_options


class Solver(StrEnum):
    ddim = "ddim"
    dpm = "dpm"


class Reweight(StrEnum):
    none = "none"
    released = "released"


class Dtype(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def _weights(value: str) -> list[float] | None:
    return _floats(value, "--weights")


# name → (type, help, how a given value becomes the config value); every key is sample.<name>
OPTIONS: dict[str, tuple[Any, str, Callable[[Any], Any]]] = {
    "steps": (int, "Sampling steps (1 … T-1 for ddim, 1 … T for dpm). \\[default: sample.steps, 50]", int),
    "eta": (
        float,
        "DDIM eta (1.0 as the release, 0 deterministic; dpm ignores it). \\[default: sample.eta]",
        float,
    ),
    "guidance": (
        float,
        "Classifier-free guidance scale (models trained with dropout). \\[default: sample.guidance: 3 in the "
        "demo preset, 1 (none) at paper scale]",
        float,
    ),
    "solver": (Solver, "ddim (the release) or dpm (DPM-Solver++). \\[default: sample.solver, ddim]", str),
    "batch_size": (
        int,
        "Images per forward pass (results do not depend on it). \\[default: sample.batch_size]",
        int,
    ),
    "weights": (
        str,
        "composable: one weight per modality in diffuser.modalities order, e.g. 0.33,0.67. \\[default: equal]",
        _weights,
    ),
    "reweight": (
        Reweight,
        "collaborative: 'released' applies the release's mask-early/text-late schedule. \\[default: sample.reweight]",
        str,
    ),
    "influence_every": (
        int,
        "collaborative: run the diffusers every k steps, reuse their maps between. \\[default: 1]",
        int,
    ),
    "compile": (
        bool,
        "torch.compile the experts and diffusers: the first batch waits for the compiler (about 2 min "
        "for the demo on 2 CPU cores, less with its cache), later steps are faster (1.9x for one demo image, 1.15x at batch 16); "
        "needs a C++ compiler on CPUs. \\[default: off]",
        bool,
    ),
}
DTYPE_HELP = "Inference precision of the diffusion models (the VAE stays float32); float16 on GPUs only."


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


def _typer_option(name: str) -> Any:
    """A value option, or a plain flag for the on/off ones (``--compile``: no ``--no-compile``)."""
    if OPTIONS[name][0] is bool:
        return typer.Option(f"--{name.replace('_', '-')}", help=OPTIONS[name][1])
    return typer.Option(help=OPTIONS[name][1])


def sampling_options(*names: str, device: bool = True) -> Callable:
    """Add the options ``names`` (default: all) and ``--device``/``--dtype`` to a command.

    The command receives ``sample: dict`` (``{"sample.steps": 20, ...}``, the options given),
    and ``device: str`` and ``dtype: str`` when ``device`` is true.
    """
    chosen = names or tuple(OPTIONS)
    extra = [option(n, Annotated[OPTIONS[n][0] | None, _typer_option(n)], None) for n in chosen]
    if device:
        extra += [
            option("device", DeviceOpt, "auto"),
            option("dtype", Annotated[Dtype, typer.Option(help=DTYPE_HELP)], Dtype.float32),
        ]

    def adapt(kwargs: dict[str, Any]) -> dict[str, Any]:
        given = {}
        for n in chosen:
            value = kwargs.pop(n, None)
            if value is not None:
                given[f"sample.{n}"] = OPTIONS[n][2](_plain(value))
        if device:
            kwargs["dtype"] = str(_plain(kwargs["dtype"]))
        return {**kwargs, "sample": given}

    return lambda fn: with_options(fn, extra, adapt, hidden=("sample", "device", "dtype"))
