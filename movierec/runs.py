"""The one owner of published runs: their ledger (`batch_runs`), on-disk layout, paths, retention, integrity
checks, the `recommendations` views and the schema of a published row.

Why a run is Parquet and not a table: DuckDB lets one process write or several read, never both, and
inserting 30M rows would lock analysts out for a minute. So a run's rows go to Parquet while readers keep
reading, and publishing only marks the run succeeded and repoints the views at the kept runs' files.

Layout, the same for every engine: a run is a directory of parts, `run-000042/part-q0003-s000012.parquet`
(one part per query and shard of users), in its location: by default `<db stem>.runs/` beside the database,
or `Settings.runs_uri` (a directory every Ray worker reaches, or a URI pyarrow opens). The ledger records
each run by its entry name (`run-000042`) and the `runs_uri` it was written under (NULL: beside the
database), never by absolute path: a copied or moved home reads and deletes only its own files. Runs of
0.1 homes (one file, `run-000042.parquet`) and of 0.2 homes (absolute paths) are still read.

Every part is complete (written under a temporary name, then renamed) before a view can name it, and a view
never names a run that retention deletes, so readers see the previous run or the new one, never part of one.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from movierec.config import Settings
from movierec.db import has_table
from movierec.errors import BadInputError, DamagedError, NotFoundError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

# --------------------------------------------------------------------------- the published row
# The one definition of a published row: (name, Arrow type, DuckDB type). Adding a column is one line here
# (views read every run with union_by_name, so older runs show NULL in a new column).
ROW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run_id", "int32", "INTEGER"),
    ("query_name", "dict_string", "VARCHAR"),
    ("user_id", "int32", "INTEGER"),
    ("rank", "int16", "SMALLINT"),
    ("movie_id", "int32", "INTEGER"),
    ("score", "float32", "FLOAT"),
    ("similarity", "float32", "FLOAT"),
    ("predicted_rating", "float32", "FLOAT"),
    ("source", "dict_string", "VARCHAR"),
    ("because_movie_id", "int32", "INTEGER"),  # the user's liked film that explains the row (cf.explore)
)
_KEY = ("run_id", "query_name", "user_id", "rank", "movie_id")  # before the movie's title in the latest view


@cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of a published part (pyarrow is imported only by those who write or check parts)."""
    import pyarrow as pa

    types = {"dict_string": pa.dictionary(pa.int8(), pa.string())}
    return pa.schema([(n, types.get(t) or getattr(pa, t)()) for n, t, _ in ROW_COLUMNS])


_SELECT = ", ".join(f"{n}::{s} AS {n}" for n, _, s in ROW_COLUMNS)
EMPTY_RECOMMENDATIONS = "SELECT " + ", ".join(f"NULL::{s} AS {n}" for n, _, s in ROW_COLUMNS) + " WHERE false"
LATEST_RECOMMENDATIONS = (
    "SELECT "
    + ", ".join(f"r.{n}" for n in _KEY)
    + ", m.title, m.year, m.genres, "
    + ", ".join(f"r.{n}" for n, _, _ in ROW_COLUMNS if n not in _KEY)
    + ", b.title AS because_title FROM recommendations r JOIN movies m USING (movie_id) "
    "LEFT JOIN movies b ON b.movie_id = r.because_movie_id "
    "WHERE r.run_id = (SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded')"
)

NO_ROWS = (
    "the run produced no rows (no candidates or no users): nothing was published; check the vector store "
    "and the data with `movierec check`"
)
RECOVER = "run `movierec batch run` to publish new lists"
DEAD_RUN = "the process stopped before publishing (killed or crashed)"
ROW_GROUP_ROWS = 256 * 1024  # small enough that user/query filters skip most of a file
TMP_SUFFIX = ".tmp"
_PARQUET_MAGIC = b"PAR1"
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_ENTRY = re.compile(r"^run-(\d+)(\.parquet)?$")  # a run's directory of parts (or a 0.1 run's one file)
_OLD_PARTS = "/*.parquet"  # 0.2 homes recorded a directory of parts as this glob


def entry_name(run_id: int) -> str:
    return f"run-{run_id:06d}"


def runs_dir(db_path: Path) -> Path:
    """The default location of runs: `<db stem>.runs/` beside the database."""
    return db_path.with_name(db_path.stem + ".runs")


def batch_lock_path(db_path: Path) -> Path:
    """The OS lock a batch run holds for its whole life (batch/lock.py): free means no run is alive."""
    return db_path.with_name(db_path.name + ".batch.lock")


# --------------------------------------------------------------------------- locations
def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


@dataclass(frozen=True)
class Location:
    """A directory of runs: local (`base` an absolute path) or on an object store (`scheme://base`)."""

    base: str
    scheme: str = ""

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """What a worker needs to reopen this location (`Location.at(uri)`)."""
        return self.base if self.is_local else f"{self.scheme}://{self.base}"

    @staticmethod
    def at(uri: str) -> Location:
        """A local directory (path or file:// URI) or any URI `pyarrow.fs.FileSystem.from_uri` opens."""
        if not _is_remote(uri):
            return Location(str(Path(uri.removeprefix("file://")).expanduser().resolve()))
        return Location(uri.split("://", 1)[1].rstrip("/"), uri.split("://", 1)[0])

    def fs(self) -> pafs.FileSystem:
        import pyarrow as pa
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem()
        try:
            return pafs.FileSystem.from_uri(self.uri)[0]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise BadInputError(f"runs_uri {self.uri!r}: pyarrow cannot open it: {exc}") from None

    def path(self, entry: str) -> str:
        """An entry's path inside `fs()`."""
        return f"{self.base}/{entry}"

    def for_duckdb(self, entry: str) -> str:
        return self.path(entry) if self.is_local else f"{self.scheme}://{self.path(entry)}"


def location(db_path: Path, runs_uri: str | None) -> Location:
    """Where runs recorded under `runs_uri` live (None: beside this database, wherever it is now)."""
    return Location.at(runs_uri) if runs_uri else Location(str(runs_dir(db_path).resolve()))


def current_location(settings: Settings) -> Location:
    return location(settings.db_path, settings.runs_uri)


@dataclass(frozen=True)
class RunRef:
    """Where a run's rows are: an entry (`run-000042`, a 0.1 run's `run-000042.parquet`) in a location."""

    run_id: int
    entry: str
    runs_uri: str | None

    def where(self, db_path: Path) -> Location:
        return location(db_path, self.runs_uri)

    def display(self, db_path: Path) -> str:
        return self.where(db_path).for_duckdb(self.entry)


def _relative(run_id: int, output: str | None, runs_uri: str | None, db_path: Path) -> RunRef:
    """A ledger row as a RunRef. 0.1 rows record nothing (one file beside the database); 0.2 rows
    recorded an absolute file or parts glob: a parent named like the default directory (`<db stem>.runs`)
    is taken as beside the database, wherever the home is now, anything else as an explicit runs_uri."""
    if output is None:  # 0.1 runs were one file each
        return RunRef(run_id, entry_name(run_id) + ".parquet", None)
    if "/" not in output:
        return RunRef(run_id, output, runs_uri)
    path = output.removesuffix(_OLD_PARTS)
    parent, _, entry = path.rstrip("/").rpartition("/")
    if not _is_remote(parent) and Path(parent.removeprefix("file://")).name == runs_dir(db_path).name:
        return RunRef(run_id, entry, None)
    return RunRef(run_id, entry, parent)


# --------------------------------------------------------------------------- the ledger
def _columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND table_name = 'batch_runs'"
    ).fetchall()
    return {r[0] for r in rows}


def refs(
    con: duckdb.DuckDBPyConnection, db_path: Path, status: str = "succeeded", run_ids: list[int] | None = None
) -> list[RunRef]:
    """Runs of one status (or `run_ids` among them), oldest first. A database no writer has opened since an
    upgrade may lack the newer columns; it is read as its version wrote it."""
    if not has_table(con, "batch_runs"):
        return []
    cols = _columns(con)
    output = "output" if "output" in cols else "NULL"
    uri = "runs_uri" if "runs_uri" in cols else "NULL"
    rows = con.execute(
        f"SELECT run_id, {output}, {uri} FROM batch_runs WHERE status = ? ORDER BY run_id", [status]
    ).fetchall()
    out = [_relative(r, o, u, db_path) for r, o, u in rows]
    return out if run_ids is None else [r for r in out if r.run_id in run_ids]


def succeeded_runs(con: duckdb.DuckDBPyConnection) -> list[int]:
    if not has_table(con, "batch_runs"):
        return []
    return [r[0] for r in con.execute(
        "SELECT run_id FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id").fetchall()]  # fmt: skip


def latest_run_id(con: duckdb.DuckDBPyConnection) -> int | None:
    return con.execute("SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded'").fetchone()[0]


RUN_FIELDS = ("run_id", "status", "started_at", "finished_at", "cf_model_version", "embedding_model", "alpha",
              "formula", "n_queries", "n_users", "n_rows", "error", "last_ingest")  # fmt: skip


def run_record(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> dict[str, Any]:
    """One run's ledger row (default: the latest succeeded), or NotFoundError saying what exists. A field
    the database does not have yet (read-only, before a writer migrated it) reads as None."""
    have = {d[0] for d in con.execute("SELECT * FROM batch_runs LIMIT 0").description}
    cols = ", ".join(f if f in have else f"NULL AS {f}" for f in RUN_FIELDS)
    if run_id is None:
        row = con.execute(
            f"SELECT {cols} FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise NotFoundError(
                "no successful batch run yet: run `movierec batch run` (or `movierec nightly`)"
            )
    else:
        row = con.execute(f"SELECT {cols} FROM batch_runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT run_id FROM batch_runs ORDER BY 1").fetchall()]
            raise NotFoundError(f"no batch run {run_id}; runs kept: {', '.join(map(str, known)) or 'none'}")
    return dict(zip(RUN_FIELDS, row, strict=True))


def latest_judgeable(con: duckdb.DuckDBPyConnection, other_than: int) -> int | None:
    """The newest succeeded run (not `other_than`) with (user, film) pairs first rated after its lists were
    computed: later ratings can judge it (`movierec batch report`). Not merely a later ingest: one that
    only changed ratings, tags or films brings nothing to judge a run by."""
    return con.execute(
        "SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded' AND run_id <> ? "
        "AND last_ingest < (SELECT coalesce(max(first_ingest), 0) FROM ratings)",
        [other_than],
    ).fetchone()[0]


def abandoned_after(con: duckdb.DuckDBPyConnection, run_id: int) -> list[tuple[int, datetime]]:
    return con.execute(
        "SELECT run_id, started_at FROM batch_runs WHERE status = 'abandoned' AND run_id > ? ORDER BY 1",
        [run_id],
    ).fetchall()


def history_sql() -> str:
    """Every recorded run, newest first (what `movierec.open().runs()` shows)."""
    return "SELECT * FROM batch_runs ORDER BY run_id DESC"


def mark_dead_runs(con: duckdb.DuckDBPyConnection, db_path: Path, temp: bool = False) -> None:
    """Runs recorded as 'running' while no process holds the batch lock are dead: writers mark them
    'abandoned'; a read-only connection sees them so through a TEMP view over `batch_runs`. Safe against a
    run starting meanwhile: a run records itself only after taking the lock, and only through a writer,
    which cannot open the file while this writer holds it."""
    from movierec.locks import is_locked

    if not con.execute("SELECT 1 FROM batch_runs WHERE status = 'running' LIMIT 1").fetchall():
        return
    if is_locked(batch_lock_path(db_path)):
        return
    if not temp:
        _abandon_running(con)
        return
    name = con.execute("SELECT current_database()").fetchone()[0].replace('"', '""')
    con.execute(
        "CREATE OR REPLACE TEMP VIEW batch_runs AS SELECT * REPLACE ("
        "CASE WHEN status = 'running' THEN 'abandoned' ELSE status END AS status, "
        f"CASE WHEN status = 'running' THEN coalesce(error, '{DEAD_RUN}') ELSE error END AS error) "
        f'FROM "{name}".main.batch_runs'
    )


def _abandon_running(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE batch_runs SET status = 'abandoned', error = coalesce(error, ?), "
        "finished_at = coalesce(finished_at, current_timestamp) WHERE status = 'running'",
        [DEAD_RUN],
    )


def migrate_relative_paths(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Schema migration 2: the ledger records runs relative to their location (entry name + runs_uri), not by
    absolute path, so a copied home stops reading (and, by retention, deleting) the original's files."""
    rows = con.execute("SELECT run_id, output, runs_uri FROM batch_runs WHERE output LIKE '%/%'").fetchall()
    for run_id, output, uri in rows:
        ref = _relative(run_id, output, uri, db_path)
        con.execute(
            "UPDATE batch_runs SET output = ?, runs_uri = ? WHERE run_id = ?",
            [ref.entry, ref.runs_uri, run_id],
        )


# --------------------------------------------------------------------------- integrity
def part_ok(path: Path) -> bool:
    """The file exists and looks whole (Parquet magic at both ends; a truncated copy loses its footer)."""
    try:
        size = path.stat().st_size
        if not path.is_file() or size < 12:
            return False
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(size - 4)
            return head == _PARQUET_MAGIC and fh.read(4) == _PARQUET_MAGIC
    except OSError:
        return False


def sources(ref: RunRef, db_path: Path) -> list[str] | None:
    """The files the views read for a run (sorted), or None when it is missing or damaged. A directory on an
    object store is read through a glob, taken as recorded (checking costs round trips per connection)."""
    where = ref.where(db_path)
    if not where.is_local:
        return [where.for_duckdb(ref.entry) + ("" if ref.entry.endswith(".parquet") else "/*.parquet")]
    path = Path(where.path(ref.entry))
    if ref.entry.endswith(".parquet"):  # a 0.1 run: one file
        return [str(path)] if part_ok(path) else None
    parts = sorted(path.glob("*.parquet")) if path.is_dir() else []
    if not parts or not all(part_ok(p) for p in parts):
        return None
    return [str(p) for p in parts]


def missing(
    con: duckdb.DuckDBPyConnection, db_path: Path, run_ids: list[int] | None = None
) -> dict[int, str]:
    """{run_id: where its files should be} of succeeded runs (or `run_ids`) whose parts are missing or
    damaged."""
    return {
        r.run_id: r.display(db_path)
        for r in refs(con, db_path, run_ids=run_ids)
        if sources(r, db_path) is None
    }


def require_readable(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> None:
    """DamagedError, naming the files and the way out, when run `run_id` (None: the latest succeeded) has
    lost its published files; reads of every other run go on working."""
    if run_id is None:
        run_id = latest_run_id(con)
        if run_id is None:
            return
    bad = missing(con, db_file(con), [run_id])
    if bad:
        raise DamagedError(
            f"run {run_id}'s published files {bad[run_id]} are missing or damaged: {RECOVER} "
            "(the other runs' lists are intact)"
        )


def db_file(con: duckdb.DuckDBPyConnection) -> Path:
    """The file a connection has open."""
    return Path(
        con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()[0]
    )


def check(settings: Settings, con: duckdb.DuckDBPyConnection, full: bool) -> tuple[list[int], dict[int, str]]:
    """(succeeded runs, {run_id: what is wrong}) for `movierec check`: every run's parts exist and look
    whole; with `full`, DuckDB also reads every row of them."""
    db_path = settings.db_path
    runs = refs(con, db_path)
    bad: dict[int, str] = {}
    for ref in runs:
        files = sources(ref, db_path)
        if files is None:
            bad[ref.run_id] = f"published files {ref.display(db_path)} are missing or damaged"
        elif full:
            try:
                con.execute("SELECT sum(score), count(*) FROM read_parquet(?)", [files]).fetchall()
            except duckdb.Error as exc:
                first = (str(exc).splitlines() or [""])[0][:300]
                bad[ref.run_id] = f"published files {ref.display(db_path)} cannot be read ({first})"
    return [r.run_id for r in runs], bad


# --------------------------------------------------------------------------- the views
def published_files(con: duckdb.DuckDBPyConnection, db_path: Path) -> list[str]:
    """What the views name: every file of every succeeded run whose files all exist and look whole."""
    out: list[str] = []
    for ref in refs(con, db_path):
        out += sources(ref, db_path) or []
    return out


def local_files(files: list[str]) -> list[Path]:
    """The local files among `files`: what confined SQL may read."""
    return [Path(f) for f in files if not _is_remote(f)]


def _view_files(con: duckdb.DuckDBPyConnection, temp: bool) -> list[str] | None:
    """The files the current `recommendations` view names, or None when the views are missing."""
    rows = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? "
        "AND view_name IN ('recommendations', 'latest_recommendations')",
        ["temp" if temp else con.execute("SELECT current_database()").fetchone()[0]],
    ).fetchall()
    views = dict(rows)
    if len(views) < 2 or "because_title" not in views["latest_recommendations"]:
        return None  # missing, or made before the row had its newest column: recreate them
    quoted = _QUOTED.findall(views["recommendations"])
    return [m.replace("''", "'") for m in quoted if m.endswith(".parquet")]


def sync_views(con: duckdb.DuckDBPyConnection, db_path: Path, temp: bool = False) -> list[str]:
    """Point `recommendations` (and `latest_recommendations` over it) at the published files that exist.

    Writers repair the stored views; a read-only connection gets TEMP views of the same names, which shadow
    stale stored ones for that connection only (a moved home, a file deleted since). Cheap: a query on
    batch_runs and a few stats, and nothing is written when the views already name those files. Every file
    is named (no globs for local runs), so confined SQL can be allowed exactly those. Returns them."""
    files = published_files(con, db_path)
    if _view_files(con, temp) == files:
        return files
    if temp and _view_files(con, False) == files:
        return files  # the stored views are right
    if files:
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # Parts written before a column existed lack it: the union by name with the empty, fully typed
        # relation gives them NULL there, even when no file has it yet.
        files_sql = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
        body = f"SELECT {_SELECT} FROM ({files_sql} UNION ALL BY NAME {EMPTY_RECOMMENDATIONS})"
    else:
        body = EMPTY_RECOMMENDATIONS
    kind = "TEMP VIEW" if temp else "VIEW"
    con.execute(f"CREATE OR REPLACE {kind} recommendations AS {body}")
    con.execute(f"CREATE OR REPLACE {kind} latest_recommendations AS {LATEST_RECOMMENDATIONS}")
    return files


_VIEW_NAME = re.compile(r'"table_name":"(latest_)?recommendations"', re.IGNORECASE)
_VIEW_WORD = re.compile(r"recommendations\b", re.IGNORECASE)


def reads_views(query: str) -> bool:
    """Whether a query reads the published lists (directly, in a subquery, or through
    `latest_recommendations`), from DuckDB's own parse tree; what it cannot serialize (EXPLAIN) is judged
    by the words, erring towards yes."""
    with duckdb.connect() as parser:  # parsing only: no database, no views to expand
        tree = parser.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchone()[0]
    if '"error":false' in tree[:20]:
        return bool(_VIEW_NAME.search(tree))
    return bool(_VIEW_WORD.search(query))


def require_all_readable(con: duckdb.DuckDBPyConnection) -> None:
    """DamagedError naming the first run whose files are missing or damaged: a query over every run must not
    answer as if that run's users had no lists."""
    bad = missing(con, db_file(con))
    if bad:
        run_id, where = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more runs)" if len(bad) > 1 else ""
        raise DamagedError(
            f"run {run_id}'s published files {where} are missing or damaged{more}, so the lists would be "
            f"incomplete: {RECOVER}"
        )


# --------------------------------------------------------------------------- writing a run
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


def part_name(query_index: int, shard_index: int) -> str:
    """Fixed by (query, shard): a shard re-run (a Ray worker died) rewrites the same part."""
    return f"part-q{query_index:04d}-s{shard_index:06d}.parquet"


def write_part(run_dir_uri: str, name: str, table: pa.Table) -> None:
    """One complete Parquet part in a run's directory: written under a temporary name, then renamed.
    `run_dir_uri` is `run_dir(...)`, so a Ray worker reopens the location with its own credentials."""
    import pyarrow.parquet as pq

    check_rows(table)
    where = Location.at(run_dir_uri)
    fs = where.fs()
    path = f"{where.base}/{name}"
    tmp = path + TMP_SUFFIX
    schema = arrow_schema()
    # Dictionary-encode only the two string columns: trying it on 30M distinct floats costs 3x the time.
    pq.write_table(
        table.select(schema.names).cast(schema), tmp, filesystem=fs, row_group_size=ROW_GROUP_ROWS,
        compression="zstd", use_dictionary=["query_name", "source"],
    )  # fmt: skip
    if where.is_local:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    fs.move(tmp, path)


def run_dir(settings: Settings, run_id: int) -> str:
    """The URI (or absolute path) of a new run's directory of parts; created."""
    where = current_location(settings)
    where.fs().create_dir(where.path(entry_name(run_id)), recursive=True)
    return where.for_duckdb(entry_name(run_id))


def count_parts(run_dir_uri: str) -> int:
    import pyarrow.fs as pafs

    where = Location.at(run_dir_uri)
    found = where.fs().get_file_info(pafs.FileSelector(where.base, allow_not_found=True))
    return sum(1 for f in found if f.base_name.endswith(".parquet"))


def _recorded_uri(settings: Settings) -> str | None:
    """What the ledger records of `runs_uri`: None beside the database (so a copied home reads its own
    runs), else the location made absolute (a relative path would move with the working directory)."""
    return None if settings.runs_uri is None else current_location(settings).uri


@dataclass(frozen=True)
class Leftovers:
    """What `begin` found to clean once committed: dead runs, and the ids of runs whose entries stay."""

    dead: list[RunRef]
    owned: set[int]


def begin(con: duckdb.DuckDBPyConnection, settings: Settings, **fields: Any) -> tuple[int, Leftovers]:
    """Inside the batch's first transaction, under the batch lock: mark runs left 'running' as abandoned and
    record a new 'running' run in the current location. Returns its id and what to clean
    (`remove_leftovers`, once committed)."""
    dead = refs(con, settings.db_path, status="running")
    _abandon_running(con)
    owned = set(succeeded_runs(con))  # by id: the same directory may be spelled two ways
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM batch_runs").fetchone()[0]
    fields = {"run_id": run_id, "started_at": datetime.now(), "status": "running", **fields,
              "output": entry_name(run_id), "runs_uri": _recorded_uri(settings)}  # fmt: skip
    con.execute(
        f"INSERT INTO batch_runs ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
        list(fields.values()),
    )
    return run_id, Leftovers(dead, owned | {run_id})


def remove_leftovers(settings: Settings, leftovers: Leftovers) -> None:
    """Delete dead runs' files (where they were written) and, in the current location, entries no succeeded
    or running run owns and temporary files. Call only under the batch lock, after `begin` committed."""
    import contextlib

    import pyarrow.fs as pafs

    for ref in leftovers.dead:
        with contextlib.suppress(OSError, BadInputError):  # best effort: a location gone stays gone
            _delete(ref, settings.db_path)
    where = current_location(settings)
    fs = where.fs()
    for info in fs.get_file_info(pafs.FileSelector(where.base, allow_not_found=True)):
        m = _ENTRY.match(info.base_name)
        if info.base_name.endswith(TMP_SUFFIX) or (m and int(m[1]) not in leftovers.owned):
            if info.type == pafs.FileType.Directory:
                fs.delete_dir(info.path)
            else:
                fs.delete_file(info.path)


def discard(run_dir_uri: str) -> None:
    """Delete a failed run's directory (best effort: the next run's `remove_leftovers` gets what is left)."""
    import contextlib

    where = Location.at(run_dir_uri)
    with contextlib.suppress(OSError):
        where.fs().delete_dir(where.base)


def _delete(ref: RunRef, db_path: Path) -> None:
    """Delete a run's directory (or 0.1 file) in its own location: beside this database for runs recorded
    without runs_uri, so another home's files are never touched."""
    import pyarrow.fs as pafs

    where = ref.where(db_path)
    fs = where.fs()
    path = where.path(ref.entry)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def publish(
    settings: Settings,
    run_id: int,
    query_rows: pa.Table,
    cf_model_version: str,
    n_users: int,
    n_rows: int,
    last_ingest: int | None = None,
) -> float:
    """The one write of the results: the run marked succeeded (with its per-query snapshot), runs whose files
    are gone recorded as lost, runs beyond `keep_runs` dropped, the views repointed, in one transaction;
    the dropped runs' files deleted once it committed. Returns how long other processes were locked out."""
    from movierec.db import connect, transaction

    db_path = settings.db_path
    with connect(settings) as con, transaction(con):
        t0 = time.perf_counter()  # the lock is taken: waiting for readers to let go is not part of the window
        con.register("_new_queries", query_rows)
        con.execute("INSERT INTO batch_run_queries BY NAME SELECT * FROM _new_queries")
        con.unregister("_new_queries")
        con.execute(
            "UPDATE batch_runs SET status = 'succeeded', finished_at = ?, cf_model_version = ?, "
            "n_users = ?, n_rows = ?, last_ingest = ? WHERE run_id = ?",
            [datetime.now(), cf_model_version, n_users, n_rows, last_ingest, run_id],
        )
        for lost, where in missing(con, db_path).items():  # deleted or damaged since: no longer served
            con.execute(
                "UPDATE batch_runs SET status = 'lost', error = ? WHERE run_id = ?",
                [f"its published files {where} were missing or damaged when a later run published", lost],
            )
        kept = [r[0] for r in con.execute(
            "SELECT run_id FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT ?",
            [settings.keep_runs]).fetchall()]  # fmt: skip
        oldest = min(kept)
        dropped = [r for status in ("succeeded", "lost", "failed", "abandoned")
                   for r in refs(con, db_path, status=status) if r.run_id < oldest]  # fmt: skip
        for table in ("batch_run_queries", "batch_runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id < ?", [oldest])
        sync_views(con, db_path)
    lock_s = time.perf_counter() - t0  # closing (checkpoint) still excludes readers, so it counts
    for ref in dropped:  # no view names them any more
        _delete(ref, db_path)
    return lock_s


def mark_failed(settings: Settings, run_id: int, message: str) -> None:
    """Best effort: record why the run failed. If even that fails, the next run marks it abandoned."""
    from movierec.db import connect

    try:
        with connect(settings) as con:
            con.execute(
                "UPDATE batch_runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ?",
                [datetime.now(), message[:1000], run_id],
            )
    except Exception:  # noqa: BLE001 - the original error matters more than this one
        pass
