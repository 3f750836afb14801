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

from movierec.config import Settings

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
    return settings.db_path.with_name(settings.db_path.stem + ".runs")


def run_file(settings: Settings, run_id: int) -> Path:
    return runs_dir(settings) / f"run-{run_id:06d}.parquet"


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
        self._writer.write_table(table.cast(ARROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    def finish(self) -> Path:
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


def point_views(con: Any, settings: Settings, keep_runs: int) -> list[Path]:
    """Inside the publish transaction: keep the newest `keep_runs` succeeded runs, repoint the view at their
    files, drop older runs' rows. Returns the files to delete once the transaction has committed."""
    kept = [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT ?",
            [keep_runs],
        ).fetchall()
    ]
    files = [run_file(settings, r) for r in sorted(kept)]
    listing = ", ".join("'" + str(f.resolve()).replace("'", "''") + "'" for f in files)
    con.execute(
        "CREATE OR REPLACE VIEW recommendations AS SELECT run_id::INTEGER AS run_id, "
        "query_name::VARCHAR AS query_name, user_id, rank, movie_id, score, similarity, predicted_rating, "
        f"source::VARCHAR AS source FROM read_parquet([{listing}])"
    )
    oldest = min(kept)
    dropped = [
        r[0] for r in con.execute("SELECT run_id FROM batch_runs WHERE run_id < ?", [oldest]).fetchall()
    ]
    for table in ("batch_run_queries", "batch_runs"):
        con.execute(f"DELETE FROM {table} WHERE run_id < ?", [oldest])
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
