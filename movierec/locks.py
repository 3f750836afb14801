"""The one file-lock helper: an OS lock (flock, through portalocker) on a small file that names its holder.

The kernel drops an flock when its process dies, even by SIGKILL, so a crash never leaves a stale lock;
the file's text only says who holds it now, for the error message.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import portalocker

from movierec.errors import BusyError

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


@contextmanager
def file_lock(path: Path, what: str, wait: float = 0.0, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, waiting up to `wait` seconds for another holder.

    Raises BusyError "`what` is in use by PID 42 (movierec embed, since ...); try again when it finishes"
    when it stays held, or `busy` with `{holder}` filled in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = portalocker.Lock(
        path, mode="a+", timeout=wait, check_interval=CHECK_INTERVAL, fail_when_locked=wait <= 0
    )
    try:
        fh = lock.acquire()
    except portalocker.exceptions.LockException as exc:
        who = holder(path) or "another process"
        template = busy or "{what} is in use by {holder}; try again when it finishes"
        raise BusyError(template.format(what=what, holder=who, path=path)) from exc
    try:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) if sys.argv else "python"
        fh.seek(0)
        fh.truncate()
        fh.write(f"PID {os.getpid()} ({command}, since {datetime.now().isoformat(timespec='seconds')})\n")
        fh.flush()
        yield
    finally:
        with suppress(OSError, ValueError):
            fh.seek(0)
            fh.truncate()
        lock.release()
