"""The one file-lock helper: an OS lock (flock, through portalocker) on a small file that names its holder.

The kernel drops an flock when its process dies, even by SIGKILL, so a crash never leaves a stale lock;
the file's text only says who holds it now, for the error message.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import portalocker

from movierec.errors import BusyError, LockFileError

CHECK_INTERVAL = 0.05  # seconds between attempts while waiting


def holder(path: Path) -> str:
    """Who holds (or last held) the lock at `path`, as written by `file_lock`; '' when unknown."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def is_locked(path: Path) -> bool:
    """True while some live process holds the lock (probes without waiting)."""
    if not path.exists():
        return False
    try:
        with portalocker.Lock(path, mode="a", timeout=0, fail_when_locked=True):
            return False
    except portalocker.exceptions.LockException:
        return True


def lock_file_error(path: Path, what: str, exc: OSError) -> LockFileError:
    """One line for a lock file that cannot be opened: a read-only or full disk is said so, with no advice
    to rebuild anything (the data is fine); a directory in the lock file's place can go (it holds no data)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return LockFileError(
            f"cannot create the lock file {path} for {what} ({reason}): movierec needs write access to "
            "its data directory even to read; make it writable, or copy it and use --home"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LockFileError(f"cannot write the lock file {path} for {what}: disk full; free space and retry")
    if exc.errno == errno.ENOTDIR:
        return LockFileError(f"{path.parent} is not a directory: check the settings that point there")
    if path.is_dir():
        return LockFileError(
            f"the lock file {path} for {what} cannot be opened ({reason}): something else is in its "
            f"place; remove it (`rm -r {path}`, a lock file holds no data) and retry"
        )
    return LockFileError(f"cannot open the lock file {path} for {what} ({reason})")


@contextmanager
def file_lock(path: Path, what: str, wait: float = 0.0, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, waiting up to `wait` seconds for another holder.

    Raises BusyError "`what` is in use by PID 42 (movierec embed, since ...); try again when it finishes"
    when it stays held, or `busy` with `{holder}` filled in."""
    lock = portalocker.Lock(
        path, mode="a+", timeout=wait, check_interval=CHECK_INTERVAL, fail_when_locked=wait <= 0
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = lock.acquire()
    except OSError as exc:
        raise lock_file_error(path, what, exc) from None
    except portalocker.exceptions.LockException as exc:
        who = holder(path) or "another process"
        template = busy or "{what} is in use by {holder}; try again when it finishes"
        raise BusyError(template.format(what=what, holder=who, path=path)) from exc
    try:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) if sys.argv else "python"
        line = f"PID {os.getpid()} ({command}, since {datetime.now().isoformat(timespec='seconds')})\n"
        # Unbuffered and best effort: the holder line only serves error messages, and on a full disk a
        # buffered write would fail here and again when the lock is released (a second, confusing line)
        with suppress(OSError):
            os.ftruncate(fh.fileno(), 0)
            os.pwrite(fh.fileno(), line.encode(errors="backslashreplace"), 0)
        yield
    finally:
        with suppress(OSError, ValueError):
            os.ftruncate(fh.fileno(), 0)
        lock.release()
