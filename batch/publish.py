"""Publishing a run without locking readers out for long.

DuckDB lets one process write or several read, never both, so the time a writer holds the file is the time
analysts cannot query it. Inserting 30M rows into a table takes tens of seconds; so instead each run's rows
go to a Parquet file next to the database (`<db>.runs/run-000042.parquet`) while readers keep reading, and
the publish transaction only repoints the `recommendations` view at the kept runs' files and marks the run
succeeded: milliseconds. The file is complete (written under a temporary name, then renamed) before the
view can name it, and a view never names a file that retention deletes, so readers see the previous run or
the new one, never part of one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from movierec import db
from movierec.config import Settings
from movierec.errors import DamagedError

ROW_GROUP_ROWS = 256 * 1024  # small enough that user/query filters skip most of a file
ARROW_SCHEMA = pa.schema(
    [
        ("run_id", pa.int32()),
        ("query_name", pa.dictionary(pa.int8(), pa.string())),
        ("user_id", pa.int32()),
        ("rank", pa.int16()),
        ("movie_id", pa.int32()),
        ("score", pa.float32()),
        ("similarity", pa.float32()),
        ("predicted_rating", pa.float32()),
        ("source", pa.dictionary(pa.int8(), pa.string())),
    ]
)
_RUN_FILE = re.compile(r"run-(\d+)\.parquet$")


def runs_dir(settings: Settings) -> Path:
    return db.runs_dir(settings.db_path)


def run_file(settings: Settings, run_id: int) -> Path:
    return db.run_file(settings.db_path, run_id)


class RunWriter:
    """Streams a run's Arrow tables into its Parquet file; `finish()` makes the file appear complete."""

    def __init__(self, settings: Settings, run_id: int) -> None:
        self.path = run_file(settings, run_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_suffix(".parquet.tmp")
        # Dictionary-encode only the two string columns: trying it on 30M distinct floats costs 3x the time.
        self._writer = pq.ParquetWriter(
            self.tmp, ARROW_SCHEMA, compression="zstd", use_dictionary=["query_name", "source"]
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        check_rows(table)
        self._writer.write_table(table.cast(ARROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    def finish(self) -> Path:
        if self.rows == 0:
            raise DamagedError(
                "the run produced no rows (no candidates or no users): nothing was published; check the "
                "vector store and the data with `movierec check`"
            )
        self._writer.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def check_rows(table: pa.Table) -> None:
    """Refuse values no sane model or store gives: non-finite scores, cosine similarities outside [-1, 1]."""
    import numpy as np

    score = table.column("score").to_numpy(zero_copy_only=False)
    sim = table.column("similarity").to_numpy(zero_copy_only=False)
    rating = table.column("predicted_rating").to_numpy(zero_copy_only=False)
    bad = []
    if not np.isfinite(score).all():
        bad.append("non-finite scores (a diverged CF model? retrain with `movierec train`)")
    if not (np.isfinite(sim).all() and (np.abs(sim) <= 1.0 + 1e-3).all()):
        bad.append("similarities outside [-1, 1] (a damaged vector store? run `movierec embed --rebuild`)")
    if np.isinf(rating).any():
        bad.append("infinite predicted ratings (retrain with `movierec train`)")
    if bad:
        raise DamagedError(f"the run would publish {' and '.join(bad)}; nothing was published")


def point_views(con: Any, settings: Settings, keep_runs: int) -> list[Path]:
    """Inside the publish transaction: keep the newest `keep_runs` succeeded runs, repoint the view at their
    files, drop older runs' rows. Returns the files to delete once the transaction has committed."""
    lost = db.missing_run_files(con, settings.db_path)
    for run_id, path in lost.items():  # deleted or damaged since: recorded, and no longer kept or served
        con.execute(
            "UPDATE batch_runs SET status = 'lost', error = ? WHERE run_id = ?",
            [f"its published file {path} was missing or damaged when a later run published", run_id],
        )
    kept = [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT ?",
            [keep_runs],
        ).fetchall()
    ]
    oldest = min(kept)
    dropped = [
        r[0] for r in con.execute("SELECT run_id FROM batch_runs WHERE run_id < ?", [oldest]).fetchall()
    ]
    for table in ("batch_run_queries", "batch_runs"):
        con.execute(f"DELETE FROM {table} WHERE run_id < ?", [oldest])
    db.sync_views(con, settings.db_path)  # the kept runs' files that exist; a lost one is left out
    return [run_file(settings, r) for r in dropped]


def remove_orphans(settings: Settings, succeeded: set[int]) -> list[Path]:
    """Delete run files no succeeded run owns (a killed run's leftovers). Call only under the batch lock."""
    gone = []
    directory = runs_dir(settings)
    if not directory.exists():
        return gone
    for f in directory.iterdir():
        m = _RUN_FILE.search(f.name)
        if f.name.endswith(".tmp") or (m and int(m[1]) not in succeeded):
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone
