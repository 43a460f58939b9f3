"""The run directory: one folder per pipeline, one subfolder per stage, atomic writes.

A stage builds its output in ``<out>.partial/`` (resumable), then renames it to ``<out>/``
once everything, ``manifest.json`` last, is written. So a finished folder is always whole,
an interrupted one is never mistaken for finished work, and finished work is replaced
only with ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from cdiff.errors import InputError

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
RUNS_ENV = "CDIFF_RUNS_DIR"  # where default run folders go (default ./runs)


def default_run_dir(preset: str) -> Path:
    """``$CDIFF_RUNS_DIR/<preset>`` (``runs/<preset>`` by default)."""
    return Path(os.environ.get(RUNS_ENV, "runs")) / Path(preset).stem


# ---- atomic files ---------------------------------------------------------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---- hashes ---------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def combine_hashes(items: Iterable[tuple[str, str]]) -> str:
    """One hash for many ``(name, sha256)`` pairs, independent of their order."""
    h = hashlib.sha256()
    for name, digest in sorted(items):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def hash_tree(folder: str | Path) -> dict[str, Any]:
    """``{"files": n, "sha256": combined}`` over every file under ``folder``."""
    folder = Path(folder)
    pairs = [(p.relative_to(folder).as_posix(), sha256_file(p)) for p in folder.rglob("*") if p.is_file()]
    return {"files": len(pairs), "sha256": combine_hashes(pairs)}


# ---- manifests ------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    names = ["cdiff", "torch", "diffusers", "transformers", "tokenizers", "accelerate", "numpy", "pillow"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_manifest(
    stage: str,
    config: dict[str, Any],
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    wall_time_s: float,
    **extra: Any,
) -> dict[str, Any]:
    """The record every stage leaves beside its outputs."""
    return {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": round(wall_time_s, 3),
        "config": config,
        "inputs": inputs,
        "outputs": outputs,
        **extra,
        "versions": package_versions(),
    }


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{folder} has no {MANIFEST}: it is not a finished cdiff stage output") from None
    except json.JSONDecodeError:
        raise InputError(f"{path} is corrupt (not JSON); rerun the stage that made it with --force") from None


def require_stage(folder: str | Path, stage: str, fix: str) -> dict[str, Any]:
    """Return the manifest of a finished stage output, or fail naming the command that makes it."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        partial = (
            " (an interrupted run is in its .partial folder: rerun to resume)"
            if partial_dir(folder).exists()
            else ""
        )
        raise InputError(f"no finished '{stage}' output in {folder}{partial}; run `{fix}` first")
    manifest = read_manifest(folder)
    if manifest.get("stage") != stage:
        raise InputError(f"{folder} holds '{manifest.get('stage')}' output, not '{stage}'; run `{fix}`")
    return manifest


# ---- stage folders --------------------------------------------------------------------------


def partial_dir(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _refuse_existing(final: Path, force: bool) -> None:
    """Without ``force``, fail if ``final`` exists (finished work or foreign files)."""
    if final.exists() and not force:
        what = (
            "finished work" if (final / MANIFEST).is_file() else "files that are not a finished cdiff stage"
        )
        raise InputError(
            f"{final} already holds {what}; pass --force to replace it, or choose another --run/--out"
        )


def check_writable(path: str | Path, *, folder: bool = True) -> None:
    """Fail unless ``path`` (a folder, or a file with ``folder=False``) can be written.

    ``path`` must not exist as the other kind, and the first existing folder above it must be
    writable (the output and its ``.partial`` sibling are created there).
    """
    path = Path(path)
    fix = "choose another --run/--out"
    if folder and path.is_file():
        raise InputError(f"cannot write {path}: it is a file, not a folder; {fix}")
    if not folder and path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder, not a file; {fix}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is a file, not a folder; {fix}")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: {parent} is not writable; {fix}")


def check_output(final: str | Path, force: bool) -> None:
    """The quick checks a stage makes before any set-up: can it write ``final``, may it replace it.

    Fails (one line, naming the fix) when ``final`` cannot be written (see :func:`check_writable`)
    or, without ``force``, already holds finished work or other files, as :func:`begin_stage`
    would after the set-up. An interrupted ``.partial`` run is left to :func:`begin_stage`.
    """
    final = Path(final)
    check_writable(final)
    _refuse_existing(final, force)


def begin_stage(final: str | Path, config_yaml: str, force: bool) -> tuple[Path, bool]:
    """Prepare ``<final>.partial/`` for a stage; return ``(partial, resumed)``.

    Refuses to touch finished work without ``force``. An interrupted run with the same
    resolved config is resumed; one with a different config needs ``force``.
    """
    final = Path(final)
    _refuse_existing(final, force)
    partial = partial_dir(final)
    resumed = False
    if partial.exists():
        old = (partial / CONFIG).read_text() if (partial / CONFIG).is_file() else None
        if old == config_yaml:
            resumed = True
        elif force:
            shutil.rmtree(partial)
        else:
            raise InputError(
                f"{partial} holds an interrupted run with other settings; rerun with the same settings "
                "to resume it, or pass --force to start over"
            )
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(partial / CONFIG, config_yaml)
    return partial, resumed


def finish_stage(partial: Path, final: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last, then move the finished folder into place (replacing old work)."""
    atomic_write_json(partial / MANIFEST, manifest)
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class StageOutput:
    """One stage's output folder, from the first check to the manifest.

    Made before any set-up (so finished work is refused at once, see :func:`check_output`), it
    times the stage, opens ``<out>.partial/`` with :meth:`begin` and writes the manifest and
    moves the folder into place with :meth:`finish`.
    """

    def __init__(self, out: Path, force: bool):
        check_output(out, force)
        self.out, self.force = out, force
        self.t0 = time.perf_counter()
        self.partial: Path | None = None

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self.t0

    def begin(self, cfg) -> Path:
        """The ``.partial`` folder for the resolved config ``cfg`` (see :func:`begin_stage`)."""
        from cdiff import config as cfg_mod  # here: the config modules may use this one

        self.partial, _ = begin_stage(self.out, cfg_mod.to_yaml(cfg), self.force)
        return self.partial

    def finish(self, stage: str, cfg, inputs: dict[str, Any], outputs: dict[str, Any], **extra: Any) -> None:
        """Write the manifest (see :func:`make_manifest`) and move the folder into place."""
        from cdiff import config as cfg_mod

        manifest = make_manifest(stage, cfg_mod.to_dict(cfg), inputs, outputs, self.elapsed(), **extra)
        finish_stage(self.partial, self.out, manifest)
