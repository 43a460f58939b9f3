"""Writing outputs safely: what cdiff wrote (and ``--force`` may replace), moving a finished
folder into place without its temp files, numbered folders claimed atomically, free space, and
the one-line message of a failed write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cdiff.errors import InputError

MANIFEST = "manifest.json"
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT})
FULL = ("No space left on device", "(os error 28)")  # how libraries without an errno say it
TORCH_WRITE = ("PytorchStreamWriter failed writing", "file write failed", "unexpected pos")  # torch.save's
T = TypeVar("T")


def written_by_cdiff(folder: str | Path) -> bool:
    """Whether ``folder`` is cdiff output that ``--force`` may replace.

    It holds a ``manifest.json`` that names its stage (or one damaged past reading, which cdiff's
    messages tell the user to replace with ``--force``) but not another tool's JSON object, or it is
    a ``generate --method all`` folder (``compare.html`` beside method folders of that kind).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except OSError:
            return False
        except (json.JSONDecodeError, UnicodeDecodeError):
            return True
        return not isinstance(data, dict) or isinstance(data.get("stage"), str)
    return (folder / "compare.html").is_file() and any(
        written_by_cdiff(sub) for sub in folder.iterdir() if sub.is_dir()
    )


# ---- finished folders ---------------------------------------------------------------------


def drop_temp_files(folder: Path) -> None:
    """Delete the ``*.tmp`` files under ``folder`` (what a killed or failed atomic write leaves)."""
    for path in folder.rglob("*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Delete a folder (recursively) or a file at ``path``, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ---- space and write errors -----------------------------------------------------------------


def check_free_space(path: str | Path, need_bytes: int, what: str = "the output") -> None:
    """Fail (one line) unless the disk that ``path`` (or its first existing folder above) is on has
    ``need_bytes`` free."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need_bytes:
        raise InputError(
            f"not enough space for {what} in {folder}: it needs about {_mib(need_bytes)}, {_mib(free)} "
            "free; free space or choose another --run/--out"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def write_error(exc: BaseException) -> str | None:
    """The one-line message for a failed write (a full disk, a read-only folder), else None."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        name = exc.filename or "the output"
        if exc.errno == errno.EACCES and exc.filename and Path(exc.filename).is_file():
            if not os.access(exc.filename, os.R_OK):
                return f"cannot read {name}: {exc.strerror}; make it readable or give another file"
        return f"cannot write {name}: {exc.strerror}; free space or choose another --run/--out"
    text = str(exc)
    if any(s in text for s in FULL):
        return "cannot write the output: No space left on device; free space or choose another --run/--out"
    if isinstance(exc, RuntimeError) and any(s in text for s in TORCH_WRITE):
        return "cannot write a checkpoint (the disk may be full); free space or choose another --run/--out"
    return None


def publish(partial: Path, final: Path) -> None:
    """Move the finished ``partial`` folder (less its temp files) to ``final``, replacing old work there."""
    drop_temp_files(partial)
    try:
        os.replace(partial, final)  # final absent, or an empty folder
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
            raise
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


# ---- numbered folders ---------------------------------------------------------------------


def next_output_dir(root: Path) -> Path:
    """Claim a new numbered folder ``root/000``, ``root/001``, ... (the one after the highest taken).

    Claimed with one atomic ``mkdir``: two runs that pick the same number at once get different
    folders (the second takes the next). The folder stays empty until its output is moved in.
    """
    root.mkdir(parents=True, exist_ok=True)
    while True:
        taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
        folder = root / f"{max(taken, default=-1) + 1:03d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another run claimed it first
            continue


def write_to(out: Path | None, root: Path, write_into: Callable[[Path], T]) -> T:
    """``write_into(out)``, or (``out`` None) into a newly claimed numbered folder under ``root``,
    which is given back (removed) when the write fails."""
    if out is not None:
        return write_into(out)
    folder = next_output_dir(root)
    try:
        return write_into(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()
        raise
