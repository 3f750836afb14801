"""One batch run per database at a time: an OS file lock next to the DuckDB file, holding the owner's PID.

The lock is an flock (via portalocker), so the kernel releases it when the process dies, even by SIGKILL:
a stale lock file never blocks the next night's run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import portalocker

from movierec.config import Settings
from movierec.errors import BusyError


def lock_path(settings: Settings) -> Path:
    return settings.db_path.with_name(settings.db_path.name + ".batch.lock")


@contextmanager
def batch_lock(settings: Settings) -> Iterator[None]:
    """Hold the batch lock for the duration of the block, or raise BusyError naming the holder."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = portalocker.Lock(path, mode="a+", timeout=0, fail_when_locked=True)
    try:
        fh = lock.acquire()
    except portalocker.exceptions.LockException as exc:
        holder = path.read_text().strip() if path.exists() else ""
        raise BusyError(
            f"another batch run is in progress ({holder or 'holder unknown'}; lock {path}); "
            "wait for it to finish"
        ) from exc
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"PID {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}\n")
        fh.flush()
        yield
    finally:
        fh.seek(0)
        fh.truncate()
        lock.release()
