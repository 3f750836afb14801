"""Pausing the first task of a Ray batch run, from test code, so a test can SIGKILL its worker (or the
driver) mid-run at a known point: the product has no hook for it.

`paused_task(directory)` wraps `ray_engine._task`, the function `map_shards` sends to the workers. A test
puts the wrapper in its place before the run: with monkeypatch in this process, or through `driver()` for
a `movierec` driver in a subprocess. The task of the run's first shard (query 0, users shard 0) writes its
worker's PID to `directory/<pid>.pid` and waits for a file `directory/go`; once that exists (Ray's retry
after the kill) it runs at once. Every other task runs as it would.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from movierec.batch import ray_engine
from movierec.batch.engine import Shard


def paused_task(directory: Path | str) -> Callable[..., Any]:
    """`ray_engine._task`, the first shard's task paused until `directory/go` exists."""
    real = ray_engine._task
    go = Path(directory) / "go"

    # A nested function, and no functools.wraps: cloudpickle sends it to the workers by value. A function
    # importable by name (module-level, or wrapped to look like `ray_engine._task`) goes by reference, and
    # the workers, where nothing is patched, would run the real task unpaused.
    def task(model: Any, query: Any, users: Any, shard: Shard, params: Any, folded: Any, explain: Any) -> Any:
        if (shard.query_index, shard.shard_index) == (0, 0) and not go.exists():
            (go.parent / f"{os.getpid()}.pid").write_text(str(os.getpid()))
            deadline = time.monotonic() + 300
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return real(model, query, users, shard, params, folded, explain)

    return task


def driver(directory: Path, *args: str) -> list[str]:
    """The command line of `python -m movierec.cli ARGS` with the first Ray task paused in `directory`."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from ray_pause import paused_task; "
        "from movierec.batch import ray_engine; ray_engine._task = paused_task(sys.argv[2]); "
        "from movierec.cli import main; main(sys.argv[3:])"
    )
    return [sys.executable, "-c", code, str(Path(__file__).parent), str(directory), *args]
