"""Publishing a run without locking readers out for long.

DuckDB lets one process write or several read, never both, so the time a writer holds the file is the time
analysts cannot query it. Inserting 30M rows into a table takes tens of seconds; so instead each run's rows
go to Parquet while readers keep reading, and the publish transaction only repoints the `recommendations`
view at the kept runs' files and marks the run succeeded: milliseconds.

Where runs go (`RunsLocation`): by default a directory beside the database (`<db>.runs/`); with
`Settings.runs_uri`, any directory every Ray worker can reach (a shared filesystem path) or a URI pyarrow
opens (`s3://bucket/prefix`, ...). A run is either one file, `run-000042.parquet` (the local engine), or a
directory of parts, `run-000042/part-*.parquet` (the Ray engine: one part per task); the view reads both.
Every file is complete (written under a temporary name, then renamed) before the view can name it, and a
view never names a run that retention deletes, so readers see the previous run or the new one, never part
of one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from movierec import db
from movierec.config import Settings
from movierec.errors import BadInputError, DamagedError

NO_ROWS = (
    "the run produced no rows (no candidates or no users): nothing was published; check the vector store "
    "and the data with `movierec check`"
)
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
        ("because_movie_id", pa.int32()),  # issue 18: the liked film that explains the row (null: none)
    ]
)
_RUN_ENTRY = re.compile(r"^run-(\d+)(\.parquet)?$")  # a run's file or its directory of parts
TMP_SUFFIX = ".tmp"


def runs_dir(settings: Settings) -> Path:
    """The default location of runs: a directory beside the database."""
    return db.runs_dir(settings.db_path)


@dataclass(frozen=True)
class RunsLocation:
    """A directory of runs on a pyarrow filesystem: local, a shared mount, or an object store."""

    fs: pafs.FileSystem
    base: str  # path inside `fs` (absolute for local directories)
    scheme: str = ""  # "" for local paths, else the URI scheme ("s3", "gs", ...) DuckDB needs

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """What a Ray worker needs to reopen this location (`runs_location_at(uri)`)."""
        return self.base if self.is_local else f"{self.scheme}://{self.base}"

    def file(self, run_id: int) -> str:
        return f"{self.base}/run-{run_id:06d}.parquet"

    def parts_dir(self, run_id: int) -> str:
        return f"{self.base}/run-{run_id:06d}"

    def for_duckdb(self, path: str) -> str:
        return path if self.is_local else f"{self.scheme}://{path}"

    def sources(self, run_id: int) -> str:
        """The path or glob the view reads for this run: its file, else its directory of parts."""
        if self.fs.get_file_info(self.file(run_id)).type == pafs.FileType.File:
            return self.for_duckdb(self.file(run_id))
        return self.for_duckdb(self.parts_dir(run_id) + "/*.parquet")

    def output(self, run_id: int, parts: bool) -> str:
        """What the view reads for a run written here: its file, or the glob of its parts."""
        return self.for_duckdb(self.parts_dir(run_id) + "/*.parquet" if parts else self.file(run_id))


def runs_location(settings: Settings) -> RunsLocation:
    if settings.runs_uri is None:
        return RunsLocation(pafs.LocalFileSystem(), str(runs_dir(settings).resolve()))
    return runs_location_at(settings.runs_uri)


def runs_location_at(uri: str) -> RunsLocation:
    """A local directory (path or file:// URI) or any URI `pyarrow.fs.FileSystem.from_uri` opens."""
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser().resolve()
        return RunsLocation(pafs.LocalFileSystem(), str(path))
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise BadInputError(f"runs_uri {uri!r}: pyarrow cannot open it: {exc}") from None
    return RunsLocation(fs, path.rstrip("/"), uri.split("://", 1)[0])


def _open_output(output: str) -> tuple[RunsLocation, str, bool]:
    """(location, path inside its filesystem, is a directory of parts) of a recorded output."""
    parts = output.endswith("/*.parquet")
    path = output.removesuffix("/*.parquet")
    location = runs_location_at(path.rsplit("/", 1)[0])
    return location, path if location.is_local else path.split("://", 1)[1], parts


def output_exists(output: str) -> bool:
    location, inner, parts = _open_output(output)
    kind = pafs.FileType.Directory if parts else pafs.FileType.File
    return location.fs.get_file_info(inner).type == kind


def delete_output(output: str) -> None:
    """Delete what `RunsLocation.output` named (a file, or the directory of a glob), wherever it is."""
    location, inner, parts = _open_output(output)
    info = location.fs.get_file_info(inner)
    if parts and info.type == pafs.FileType.Directory:
        location.fs.delete_dir(inner)
    elif not parts and info.type == pafs.FileType.File:
        location.fs.delete_file(inner)


def write_table(location: RunsLocation, path: str, table: pa.Table) -> None:
    """One complete Parquet file at `path`: written under a temporary name, then renamed."""
    check_rows(table)
    tmp = path + TMP_SUFFIX
    pq.write_table(
        table.cast(ARROW_SCHEMA), tmp, filesystem=location.fs, row_group_size=ROW_GROUP_ROWS,
        compression="zstd", use_dictionary=["query_name", "source"],
    )  # fmt: skip
    if location.is_local:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    location.fs.move(tmp, path)


class RunWriter:
    """Streams a run's Arrow tables into its one Parquet file; `finish()` makes the file appear complete."""

    def __init__(self, settings: Settings, run_id: int) -> None:
        self.location = runs_location(settings)
        self.location.fs.create_dir(self.location.base, recursive=True)
        self.path = self.location.file(run_id)
        self.tmp = self.path + TMP_SUFFIX
        # Dictionary-encode only the two string columns: trying it on 30M distinct floats costs 3x the time.
        self._writer = pq.ParquetWriter(
            self.tmp, ARROW_SCHEMA, filesystem=self.location.fs, compression="zstd",
            use_dictionary=["query_name", "source"],
        )  # fmt: skip
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        check_rows(table)
        self._writer.write_table(table.cast(ARROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    def finish(self) -> str:
        if self.rows == 0:
            raise DamagedError(NO_ROWS)
        self._writer.close()
        if self.location.is_local:
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
        self.location.fs.move(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            if self.location.fs.get_file_info(self.tmp).type == pafs.FileType.File:
                self.location.fs.delete_file(self.tmp)


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


def point_views(con: Any, settings: Settings, keep_runs: int) -> list[str]:
    """Inside the publish transaction: record runs whose files are gone as lost, keep the newest `keep_runs`
    succeeded runs, drop older runs' rows and repoint the views at the kept runs' files that exist. Returns
    the outputs to delete (`delete_output`) once it has committed."""
    lost = db.missing_run_files(con, settings.db_path)
    for run_id, path in lost.items():  # deleted or damaged since: recorded, and no longer kept or served
        con.execute(
            "UPDATE batch_runs SET status = 'lost', error = ? WHERE run_id = ?",
            [f"its published file {path} was missing or damaged when a later run published", run_id],
        )
    location = runs_location(settings)
    kept = [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT ?",
            [keep_runs],
        ).fetchall()
    ]
    oldest = min(kept)
    dropped = [
        output or location.sources(run_id)
        for run_id, output in con.execute(
            "SELECT run_id, output FROM batch_runs WHERE run_id < ?", [oldest]
        ).fetchall()
    ]
    for table in ("batch_run_queries", "batch_runs"):
        con.execute(f"DELETE FROM {table} WHERE run_id < ?", [oldest])
    db.sync_views(con, settings.db_path)  # the kept runs' files that exist; a lost one is left out
    return dropped


def remove_orphans(settings: Settings, succeeded: set[int]) -> list[str]:
    """Delete runs' files and part directories no succeeded run owns (a killed or failed run's leftovers)
    and temporary files. Call only under the batch lock."""
    location = runs_location(settings)
    listing = location.fs.get_file_info(pafs.FileSelector(location.base, allow_not_found=True))
    gone = []
    for info in listing:
        m = _RUN_ENTRY.match(info.base_name)
        if info.base_name.endswith(TMP_SUFFIX) or (m and int(m[1]) not in succeeded):
            if info.type == pafs.FileType.Directory:
                location.fs.delete_dir(info.path)
            else:
                location.fs.delete_file(info.path)
            gone.append(info.path)
    return gone
