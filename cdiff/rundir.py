"""The run directory: one folder per pipeline, one subfolder per stage, atomic writes.

A stage builds its output in ``<out>.partial/`` (resumable), then renames it to ``<out>/``
once everything, ``manifest.json`` last, is written. So a finished folder is always whole,
an interrupted one is never mistaken for finished work, and finished work is replaced
only with ``--force``, which never deletes a folder cdiff did not write. One writer at a time:
``<out>.lock`` is held from the first check to the rename (:mod:`cdiff.locks`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from cdiff import locks
from cdiff.errors import InputError
from cdiff.outputs import (  # noqa: F401  (the stages import them from here)
    MANIFEST,
    check_free_space,
    drop_temp_files,
    publish,
    remove,
    write_error,
    written_by_cdiff,
)

CONFIG = "config.yaml"
RUNS_ENV = "CDIFF_RUNS_DIR"  # where default run folders go (default ./runs)
_UMASK = threading.Lock()


def default_run_dir(preset: str) -> Path:
    """``$CDIFF_RUNS_DIR/<preset>`` (``runs/<preset>`` by default)."""
    return Path(os.environ.get(RUNS_ENV, "runs")) / Path(preset).stem


# ---- atomic files ---------------------------------------------------------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask); a failed write names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())  # mkstemp's 0600 → what any other new file gets
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process's umask."""
    try:
        with open("/proc/self/status") as f:
            umask = next((int(line.split()[1], 8) for line in f if line.startswith("Umask:")), None)
    except (OSError, ValueError, IndexError):
        umask = None
    if umask is None:
        with _UMASK:
            umask = os.umask(0o022)
            os.umask(umask)
    return 0o666 & ~umask


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
    """The manifest of ``folder``: a JSON object with an ``outputs`` object, or a one-line error."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{folder} has no {MANIFEST}: it is not a finished cdiff stage output") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is corrupt (not JSON); rerun the stage that made it with --force") from None
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", bool: "true/false", type(None): "null"}.get(type(data), "number")
        raise InputError(
            f"{path} is not a cdiff manifest (it holds a JSON {kind}, not an object); rerun the stage with --force"
        )
    if not isinstance(data.get("outputs"), dict):
        raise InputError(
            f"{path} is not a cdiff manifest (no 'outputs' object); rerun the stage with --force"
        )
    return data


def output_sha(folder: str | Path, name: str) -> str:
    """The sha256 that the manifest of ``folder`` records for its output file ``name``."""
    record = read_manifest(folder)["outputs"].get(name)
    sha = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(sha, str):
        raise InputError(
            f"{Path(folder) / MANIFEST} records no sha256 of {name}; rerun the stage with --force"
        )
    return sha


def require_stage(folder: str | Path, stage: str, fix: str) -> dict[str, Any]:
    """Return the manifest of a finished stage output, or fail naming the command that makes it.

    A stage still running (its lock held) is told from an interrupted one (a ``.partial`` folder
    that nobody holds), so the advice never starts a second writer.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        holder = locks.running(folder)
        if holder is not None:
            raise InputError(
                f"'{stage}' is still being written in {folder} by {holder}; wait for it to finish"
            )
        partial = partial_dir(folder)
        if partial.exists():
            how = (
                f"run `{fix} --resume` to continue it or `{fix} --force` to start over"
                if stage.startswith("train-")
                else f"run `{fix}` again to resume it, or add --force to start over"
            )
            raise InputError(
                f"no finished '{stage}' output in {folder}: it was interrupted ({partial}); {how}"
            )
        raise InputError(f"no finished '{stage}' output in {folder}; run `{fix}` first")
    manifest = read_manifest(folder)
    if manifest.get("stage") != stage:
        raise InputError(f"{folder} holds '{manifest.get('stage')}' output, not '{stage}'; run `{fix}`")
    return manifest


# ---- stage folders --------------------------------------------------------------------------


def partial_dir(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _refuse_existing(final: Path, force: bool, option: str = "--run/--out") -> None:
    """Fail if ``final`` holds files cdiff did not write (even with ``force``), or finished work without it."""
    if not final.is_dir() or not any(final.iterdir()):
        return
    if not written_by_cdiff(final):
        raise InputError(f"{final} holds files cdiff did not write; choose an empty or new {option}")
    if not force:
        raise InputError(
            f"{final} already holds finished work; pass --force to replace it, or choose another {option}"
        )


def check_writable(path: str | Path, *, folder: bool = True, option: str = "--run/--out") -> None:
    """Fail unless ``path`` (a folder, or a file with ``folder=False``) can be written.

    ``path`` must not exist as the other kind, and the first existing folder above it must be
    writable (the output and its ``.partial`` sibling are created there).
    """
    path = Path(path)
    fix = f"choose another {option}"
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


def check_output(final: str | Path, force: bool, option: str = "--run/--out") -> int:
    """The quick checks a stage makes before any set-up, and its lock: returns the lock's token.

    Fails (one line, naming the fix) when ``final`` cannot be written (see :func:`check_writable`),
    when another process is writing it (see :mod:`cdiff.locks`), when it holds files cdiff did not
    write, or, without ``force``, finished work. The lock is then held until :func:`finish_stage`
    (or the end of the process). An interrupted ``.partial`` run is left to :func:`begin_stage`.
    """
    final = Path(final)
    check_writable(final, option=option)
    token = locks.acquire(final)
    try:
        _refuse_existing(final, force, option)
    except InputError:
        locks.release(final)
        raise
    return token


def begin_stage(final: str | Path, config_yaml: str, force: bool) -> tuple[Path, bool]:
    """Lock ``final`` and prepare ``<final>.partial/`` for a stage; return ``(partial, resumed)``.

    Refuses to touch finished work without ``force``. An interrupted run with the same
    resolved config is resumed; with ``force`` it is deleted and the stage starts over.
    """
    final = Path(final)
    locks.acquire(final)
    return _begin(final, config_yaml, force)


def _begin(final: Path, config_yaml: str, force: bool) -> tuple[Path, bool]:
    try:
        _refuse_existing(final, force)
        partial = partial_dir(final)
        resumed = False
        if partial.exists():
            old = (partial / CONFIG).read_text() if (partial / CONFIG).is_file() else None
            if force:
                if locks.main_process():  # the other processes of a job wait for it (training_common)
                    remove(partial)
            elif old == config_yaml:
                resumed = True
            else:
                raise InputError(
                    f"{partial} holds an interrupted run with other settings; rerun with the same settings "
                    "to resume it, or pass --force to start over"
                )
    except InputError:
        locks.release(final)
        raise
    partial.mkdir(parents=True, exist_ok=True)
    if locks.main_process():
        atomic_write_text(partial / CONFIG, config_yaml)
    return partial, resumed


def finish_stage(partial: Path, final: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last, move the finished folder into place (replacing old work), unlock."""
    atomic_write_json(partial / MANIFEST, manifest)
    publish(partial, final)
    locks.release(final)


@contextmanager
def fresh_output(
    out: str | Path, option: str = "--out", need_bytes: int = 0, what: str = "the output"
) -> Iterator[Path]:
    """A folder written in one go (not resumable): yields ``<out>.partial/``, moved to ``out`` when the
    block ends without error, removed when it fails (a full disk, Ctrl-C): nothing half-written is left.

    The caller has refused finished work without ``--force`` (:func:`check_output`); here ``out`` is
    locked (or kept locked), refused if it holds files cdiff did not write, and refused when the disk
    has less than ``need_bytes`` free (:func:`check_free_space`). The lock is released at the end.
    """
    out = Path(out)
    check_output(out, True, option)
    partial = partial_dir(out)
    try:
        check_free_space(out, need_bytes, what)
        remove(partial)  # what a killed run left: this one holds the lock now
        partial.mkdir(parents=True)
        yield partial
        publish(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        locks.release(out)


class StageOutput:
    """One stage's output folder, from the first check to the manifest.

    Made before any set-up (so finished work, or another writer, is refused at once, see
    :func:`check_output`), it locks the output, times the stage, opens ``<out>.partial/`` with
    :meth:`begin` and writes the manifest, moves the folder into place and unlocks with :meth:`finish`.
    A run that fails lets go of the lock when its ``StageOutput`` is dropped (or its process ends).
    """

    def __init__(self, out: Path, force: bool):
        token = check_output(out, force)
        weakref.finalize(self, locks.release, out, token)
        self.out, self.force = out, force
        self.t0 = time.perf_counter()
        self.partial: Path | None = None

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self.t0

    def begin(self, cfg) -> Path:
        """The ``.partial`` folder for the resolved config ``cfg`` (see :func:`begin_stage`)."""
        from cdiff import config as cfg_mod  # here: the config modules may use this one

        self.partial, _ = _begin(self.out, cfg_mod.to_yaml(cfg), self.force)
        return self.partial

    def finish(self, stage: str, cfg, inputs: dict[str, Any], outputs: dict[str, Any], **extra: Any) -> None:
        """Write the manifest (see :func:`make_manifest`) and move the folder into place."""
        from cdiff import config as cfg_mod

        manifest = make_manifest(stage, cfg_mod.to_dict(cfg), inputs, outputs, self.elapsed(), **extra)
        finish_stage(self.partial, self.out, manifest)
