"""One model store: a trained model is a folder of safetensors files beside a ``config.json``.

The record's ``"kind"`` (``vae``, ``unimodal``, ``diffuser``, ``evaluator``) names a :class:`Kind`:
how to rebuild the untrained model from the record and which module each weights file holds.
:func:`save` and :func:`load` are the only code that writes or reads model folders::

    store.save(folder, "vae", vae, {"vae": ..., "scale_factor": 0.18, ...})
    vae, record = store.load(folder, "vae", device="cuda")

Each model module registers its kind when imported; :func:`kind` imports it on first use.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cdiff.errors import InputError

CONFIG = "config.json"
_HOMES = {  # kind → the module that registers it
    "vae": "cdiff.models.vae",
    "unimodal": "cdiff.models.unimodal",
    "diffuser": "cdiff.models.collab",
    "evaluator": "cdiff.models.evaluator",
}
_KINDS: dict[str, Kind] = {}
_UNREADABLE = (OSError, KeyError, TypeError, ValueError, RuntimeError, SafetensorError)


@dataclass(frozen=True)
class Kind:
    """How one kind of model is rebuilt from its record and which files hold its weights."""

    name: str
    label: str  # "trained VAE", in messages
    build: Callable[[dict[str, Any]], nn.Module]  # record → the model, untrained
    parts: Callable[[nn.Module], dict[str, nn.Module]]  # model → {weights file: module}
    files: tuple[str, ...]  # the weights files ``parts`` names
    command: Callable[[Path], str]  # folder → the command that makes it


def register(k: Kind) -> Kind:
    _KINDS[k.name] = k
    return k


def kind(name: str) -> Kind:
    """The registered kind ``name`` (its model module imported on first use)."""
    if name not in _KINDS and name in _HOMES:
        importlib.import_module(_HOMES[name])
    if name not in _KINDS:
        raise InputError(f"unknown model kind {name!r}; known: {', '.join(sorted(_HOMES))}")
    return _KINDS[name]


def save(folder: str | Path, name: str, model: nn.Module, record: dict[str, Any]) -> None:
    """Write ``model``'s weights (safetensors) and ``{"kind": name, **record}`` into ``folder``."""
    folder, k = Path(folder), kind(name)
    folder.mkdir(parents=True, exist_ok=True)
    for file, module in k.parts(model).items():
        state = {key: v.detach().contiguous().cpu() for key, v in module.state_dict().items()}
        save_file(state, str(folder / file), metadata={"format": "pt"})  # one key: byte-identical files
    (folder / CONFIG).write_text(json.dumps({"kind": name, **record}, indent=2) + "\n")


def read_record(folder: str | Path, name: str) -> dict[str, Any]:
    """The ``config.json`` record of a ``name`` model folder (one-line errors when absent or wrong)."""
    folder, k = Path(folder), kind(name)
    if not (folder / CONFIG).is_file() or any(not (folder / f).is_file() for f in k.files):
        raise InputError(f"no {k.label} in {folder}; make it first: {k.command(folder)}")
    try:
        record = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(_unreadable(folder, k, exc, CONFIG)) from None
    if not isinstance(record, dict):
        raise InputError(_unreadable(folder, k, TypeError(), CONFIG))
    found = record.get("kind", name)  # records written before kinds were recorded: the caller's kind
    if found != name:
        raise InputError(f"{folder} holds a {found} model, not a {k.label}; make one: {k.command(folder)}")
    return record


def load(folder: str | Path, name: str, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model in ``folder`` (eval mode, frozen, on ``device``) and its ``config.json`` record."""
    folder, k = Path(folder), kind(name)
    record = read_record(folder, name)
    try:
        model = k.build(record)
        for file, module in k.parts(model).items():
            module.load_state_dict(load_file(str(folder / file)))
    except _UNREADABLE as exc:
        raise InputError(_unreadable(folder, k, exc)) from None
    return model.to(device).eval().requires_grad_(False), record


def _unreadable(folder: Path, k: Kind, exc: BaseException, file: str = "") -> str:
    where = folder / file if file else folder
    return f"the {k.label} in {where} cannot be read ({type(exc).__name__}); remake it: {k.command(folder)} --force"


__all__ = ["CONFIG", "Kind", "kind", "load", "read_record", "register", "save"]
