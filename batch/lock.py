"""One batch run per database at a time: an OS file lock next to the DuckDB file, naming the holder's PID."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from movierec.config import Settings
from movierec.db import batch_lock_path
from movierec.locks import file_lock, is_locked


def lock_path(settings: Settings) -> Path:
    return batch_lock_path(settings.db_path)


@contextmanager
def batch_lock(settings: Settings) -> Iterator[None]:
    """Hold the batch lock for the block, or raise BusyError at once naming the holder."""
    busy = "another batch run is in progress ({holder}; lock {path}); wait for it to finish"
    with file_lock(lock_path(settings), "the batch", wait=0, busy=busy):
        yield


def batch_running(settings: Settings) -> bool:
    """True while a live process holds the batch lock (a run whose process died holds nothing)."""
    return is_locked(lock_path(settings))
