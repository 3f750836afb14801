"""One batch run per database at a time: an OS file lock next to the DuckDB file, naming the holder's PID."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from movierec.config import Settings
from movierec.locks import file_lock
from movierec.runs import batch_lock_path


@contextmanager
def batch_lock(settings: Settings) -> Iterator[None]:
    """Hold the batch lock for the block, or raise BusyError at once naming the holder."""
    busy = "another batch run is in progress ({holder}; lock {path}); wait for it to finish"
    with file_lock(batch_lock_path(settings.db_path), "the batch", wait=0, busy=busy):
        yield
