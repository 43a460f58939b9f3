"""The sampling options, declared once: ``generate``, ``edit`` and ``evaluate`` take them with
:func:`sampling_options`, and each maps straight onto its ``sample.*`` config key (validated by
:func:`cdiff.config.check_sample`). Given options override the preset; absent ones leave it alone,
so 0 is never silently replaced by a default. ``--device`` and ``--dtype`` come with them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from cdiff.errors import InputError


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


def _weights(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"--weights expects comma-separated numbers, e.g. 0.5,0.5; got '{value}'") from None


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
}
DEVICE_HELP = "Where the models run: auto (CUDA when available), cpu, cuda, cuda:N or mps."
DTYPE_HELP = "Inference precision of the diffusion models (the VAE stays float32); float16 on GPUs only."


def sampling_options(*names: str, device: bool = True) -> Callable:
    """Add the options ``names`` (default: all) and ``--device``/``--dtype`` to a command.

    The command receives ``sample: dict`` (``{"sample.steps": 20, ...}``, the options given),
    and ``device: str`` and ``dtype: str`` when ``device`` is true.
    """
    chosen = names or tuple(OPTIONS)

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        base = [p for p in sig.parameters.values() if p.name not in ("sample", "device", "dtype")]
        extra = [
            inspect.Parameter(
                n,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[OPTIONS[n][0] | None, typer.Option(help=OPTIONS[n][1])],
            )
            for n in chosen
        ]
        if device:
            extra += [
                inspect.Parameter(
                    "device",
                    inspect.Parameter.KEYWORD_ONLY,
                    default="auto",
                    annotation=Annotated[str, typer.Option(help=DEVICE_HELP)],
                ),
                inspect.Parameter(
                    "dtype",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=Dtype.float32,
                    annotation=Annotated[Dtype, typer.Option(help=DTYPE_HELP)],
                ),
            ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {}
            for n in chosen:
                value = kwargs.pop(n, None)
                if value is not None:
                    given[f"sample.{n}"] = OPTIONS[n][2](value.value if isinstance(value, StrEnum) else value)
            if device:
                kwargs["dtype"] = str(
                    kwargs["dtype"].value if isinstance(kwargs["dtype"], StrEnum) else kwargs["dtype"]
                )
            return fn(*args, sample=given, **kwargs)

        params = base + extra
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
        return wrapper

    return decorate
