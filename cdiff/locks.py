"""One writer per output: an exclusive ``flock`` on ``<out>.lock`` while ``<out>`` is written.

The writer holds ``flock(LOCK_EX | LOCK_NB)`` on the lock file beside its output (the file says
its pid and start time) from its first check until the output is finished or the run failed; the
kernel drops the lock when the process dies, so a lock file left by a killed run is no obstacle.
A second writer fails at once, naming the first. The lock file is removed when the lock is
released (a new writer that finds its file removed under it takes a new one).

Within one process the locks are kept per output and are re-entrant for the thread that holds
them (the command line checks an output, then the stage checks it again); a thread that ended
without releasing one (a failed run) leaves it to the next that asks. Under ``torchrun`` or
``accelerate launch`` only the main process (rank 0) takes the lock.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cdiff.errors import InputError

SUFFIX = ".lock"
ATTEMPTS = 5  # a holder that is only probing (see running) lets go within microseconds
RETRY_S = 0.02
_tokens = itertools.count(1)


@dataclass
class _Held:
    path: Path
    fd: int
    since: str
    thread: threading.Thread
    token: int
    made: list[Path] = field(default_factory=list)  # folders made for the lock file: removed if left empty
    pid: int = field(default_factory=os.getpid)


_HELD: dict[str, _Held] = {}
_MUTEX = threading.Lock()


def lock_path(final: str | Path) -> Path:
    """``<final>.lock``, beside the output."""
    final = Path(final)
    return final.with_name(final.name + SUFFIX)


def main_process() -> bool:
    """False in the processes of a ``torchrun``/``accelerate launch`` job other than rank 0."""
    return os.environ.get("RANK", "0") == "0"


def acquire(final: str | Path) -> int:
    """Take the lock of ``final`` (or keep it, when this thread holds it); return a token for :func:`release`.

    Fails with one line when another process (or another live thread) is writing ``final``.
    """
    final = Path(final)
    if not main_process():
        return 0
    path = lock_path(final)
    key = os.path.abspath(path)
    with _MUTEX:
        held = _HELD.get(key)
        if held is not None and held.pid == os.getpid():
            if held.thread is not threading.current_thread() and held.thread.is_alive():
                raise InputError(_busy(final, f"{os.getpid()} {held.since}"))
            held.thread, held.token = threading.current_thread(), next(_tokens)
            return held.token
        made = _make_folders(path.parent)
        try:
            fd, since = _open_locked(final, path, made)
        except BaseException:
            _remove_empty(made)
            raise
        _HELD[key] = _Held(path, fd, since, threading.current_thread(), next(_tokens), made)
        return _HELD[key].token


def release(final: str | Path, token: int | None = None) -> None:
    """Let go of the lock of ``final`` (only if ``token`` is still the holder's, when given) and remove its file."""
    key = os.path.abspath(lock_path(final))
    with _MUTEX:
        held = _HELD.get(key)
        if held is None or held.pid != os.getpid() or (token is not None and token != held.token):
            return
        del _HELD[key]
    _drop(held)


def release_thread() -> None:
    """Let go of every lock this thread holds (the end of a command, whatever its outcome)."""
    me = threading.current_thread()
    with _MUTEX:
        mine = [k for k, h in _HELD.items() if h.thread is me and h.pid == os.getpid()]
        dropped = [_HELD.pop(k) for k in mine]
    for held in dropped:
        _drop(held)


def running(final: str | Path) -> str | None:
    """``"pid N (since HH:MM)"`` when another process is writing ``final`` now, else None."""
    path = lock_path(final)
    if os.path.abspath(path) in _HELD:
        return None  # this process writes it
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.pread(fd, 200, 0).decode(errors="replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _busy(final: Path, text: str) -> str:
    return f"{final} is already being written by {_holder(text)}; wait for it or stop it"


def _holder(text: str) -> str:
    """``pid N (since HH:MM)`` from a lock file's ``"<pid> <ISO start time>"``."""
    parts = text.split()
    if len(parts) < 2 or not parts[0].isdigit():
        return "another process"
    return f"pid {parts[0]} (since {parts[1][11:16] or parts[1]})"


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and the missing folders above it; return those made, deepest last."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made = []
    for f in reversed(missing):
        try:
            f.mkdir()
            made.append(f)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(f"cannot write {f}: {exc.strerror}; choose another --run/--out") from None
    return made


def _open_locked(final: Path, path: Path, made: list[Path]) -> tuple[int, str]:
    """An open, locked lock file at ``path`` holding this process's pid and start time (folders
    made on the way are added to ``made``)."""
    text = ""
    for _ in range(ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # its folder was just removed by a writer that finished
            made += _make_folders(path.parent)
            continue
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror}; choose another --run/--out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 200, 0).decode(errors="replace")
            os.close(fd)
            time.sleep(RETRY_S)
            continue
        if not _same_file(fd, path):  # the holder before us removed it as we opened it
            os.close(fd)
            continue
        since = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {since}\n".encode(), 0)
        return fd, since
    raise InputError(_busy(final, text))


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _drop(held: _Held) -> None:
    """Remove the lock file (while still holding the lock), let go, remove the folders made for it if empty."""
    try:
        if _same_file(held.fd, held.path):
            held.path.unlink()
    except OSError:
        pass
    os.close(held.fd)
    _remove_empty(held.made)


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders ``made`` (outermost first in the list) that are still empty, deepest first."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break


@atexit.register
def _release_all() -> None:
    """At exit (a failed command, Ctrl-C), remove this process's lock files; the kernel would drop the locks anyway."""
    with _MUTEX:
        dropped = [h for h in _HELD.values() if h.pid == os.getpid()]
        _HELD.clear()
    for held in dropped:
        _drop(held)
