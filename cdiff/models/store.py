"""One model store: a trained model is a folder of safetensors files beside a ``config.json``.

The record's ``"kind"`` (``vae``, ``unimodal``, ``diffuser``, ``evaluator``) names a :class:`Kind`:
how to rebuild the untrained model from the record and which module each weights file holds.
:func:`save` and :func:`load` are the only code that writes or reads model folders::

    store.save(folder, "vae", vae, {"vae": ..., "scale_factor": 0.18, ...})
    vae, record = store.load(folder, "vae", device="cuda")

Each model module registers its kind when imported; :func:`kind` imports it on first use.

A folder that a stage finished also holds ``manifest.json``, whose ``outputs`` give each weights
file's sha256: :func:`load` checks them, so a damaged file is an error rather than a silently wrong
model. Hashes it has verified are remembered by (path, size, mtime) in ``$CDIFF_CACHE_DIR`` (see
:func:`cache_dir`), so loading the same files again does not read them twice.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cdiff.errors import InputError
from cdiff.rundir import MANIFEST, atomic_write_json, sha256_file

CONFIG = "config.json"
CACHE_ENV = "CDIFF_CACHE_DIR"  # where the verified hashes are remembered
HASH_CACHE = "verified-hashes.json"
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
    verify(folder, k)
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


# ---- integrity ------------------------------------------------------------------------------


def verify(folder: str | Path, name: str | Kind) -> None:
    """Check each weights file of ``folder`` against the sha256 its ``manifest.json`` records.

    A folder without a manifest (a model saved by hand), or a manifest without a file's hash, is
    not checked. A mismatch is a one-line :class:`InputError` naming the file and the command
    that remakes it.
    """
    folder = Path(folder)
    k = name if isinstance(name, Kind) else kind(name)
    expected = _manifest_hashes(folder, k)
    if not expected:
        return
    cache = _HashCache.open()
    for file, want in expected.items():
        got = cache.sha256(folder / file)
        if got != want:  # hash again: the cache may be what is wrong
            got = cache.sha256(folder / file, fresh=True)
        if got != want:
            raise InputError(
                f"{folder / file} does not match its manifest (sha256 {got[:12]}…, expected {want[:12]}…); "
                f"the file is damaged: {_remake(folder, k)}"
            )
    cache.save()


def _manifest_hashes(folder: Path, k: Kind) -> dict[str, str]:
    """``{weights file: sha256}`` from the folder's manifest (empty without one)."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        outputs = json.loads(path.read_text()).get("outputs", {})
        return {f: outputs[f]["sha256"] for f in k.files if "sha256" in outputs.get(f, {})}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise InputError(_unreadable(folder, k, exc, MANIFEST)) from None


def _remake(folder: Path, k: Kind) -> str:
    """The fix for a damaged weights file: retrain it (or, for the shipped demo weights, reinstall)."""
    shipped = Path(str(resources.files("cdiff") / "weights")).resolve()
    if folder.resolve().is_relative_to(shipped):
        return "reinstall cdiff (these are its shipped demo weights), or pass --run RUN"
    return f"retrain it with `{k.command(folder)} --force`"


def cache_dir() -> Path:
    """``$CDIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/cdiff``, else ``~/.cache/cdiff``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cdiff"


class _HashCache:
    """File hashes computed before, keyed by absolute path and valid while size and mtime match.

    Best effort: an unreadable or corrupt cache is an empty one, and one that cannot be written is
    not written; loading never fails because of it.
    """

    def __init__(self, path: Path, entries: dict[str, Any]):
        self.path, self.entries, self.changed = path, entries, False

    @classmethod
    def open(cls) -> _HashCache:
        path = cache_dir() / HASH_CACHE
        try:
            entries = json.loads(path.read_text()).get("files", {})
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def sha256(self, file: Path, fresh: bool = False) -> str:
        """The sha256 of ``file``: remembered when its size and mtime are the ones hashed before
        (``fresh``: hashed again in any case)."""
        key, st = str(file.resolve()), file.stat()
        seen = self.entries.get(key)
        if not fresh and isinstance(seen, dict) and isinstance(seen.get("sha256"), str):
            if (seen.get("size"), seen.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
                return seen["sha256"]
        digest = sha256_file(file)
        self.entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.changed = True
        return digest

    def save(self) -> None:
        """Write the cache (files that no longer exist forgotten) when it learnt a hash."""
        if not self.changed:
            return
        kept = {p: e for p, e in self.entries.items() if os.path.isfile(p)}
        try:
            atomic_write_json(self.path, {"version": 1, "files": kept})
        except OSError:
            pass  # a read-only cache: the next load hashes again


__all__ = ["CONFIG", "Kind", "cache_dir", "kind", "load", "read_record", "register", "save", "verify"]
