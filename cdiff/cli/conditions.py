"""The condition options of ``generate`` and ``edit``, one per registered modality.

``--text``/``--mask`` (generate) and ``--target-text``/``--target-mask`` (edit) are not written
by hand: each modality declares its option (:attr:`cdiff.modalities.Modality.option`,
``target_option``), and :func:`condition_options` adds them to a command, in registry order.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cdiff import modalities


def _param(m: modalities.Modality, target: bool) -> inspect.Parameter:
    flag, help_ = (m.target_option, m.target_help) if target else (m.option, m.option_help)
    kind = m.option_type | None if target else list[m.option_type] | None
    name = flag.lstrip("-").replace("-", "_")
    annotation = Annotated[kind, typer.Option(flag, help=help_)]
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation
    )


def condition_options(
    *, target: bool = False, after: int = 0
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add each modality's option after the command's first ``after`` parameters.

    The command receives them as ``conditions: dict[str, list[str]]`` (generate: the values given,
    per modality) or, with ``target``, ``targets: dict[str, str | None]`` (edit: one per modality).
    """
    mods = [m for m in map(modalities.get, modalities.names()) if (m.target_option if target else m.option)]
    params = {m.name: _param(m, target) for m in mods}
    hidden = "targets" if target else "conditions"

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != hidden]
        order = own[:after] + list(params.values()) + own[after:]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {m: kwargs.pop(p.name) for m, p in params.items()}
            if target:
                kwargs[hidden] = {m: None if v is None else str(v) for m, v in given.items()}
            else:
                kwargs[hidden] = {m: [str(x) for x in v] for m, v in given.items() if v}
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=order)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in order}
        del wrapper.__wrapped__  # typer must read the new signature
        return wrapper

    return decorate
