"""Load a MovieLens directory into DuckDB in one transaction: stage, validate, upsert.

1. Stage: each file is read by DuckDB's CSV reader into a temporary table (its rowids follow the file's
   order: DuckDB preserves insertion order); malformed lines land in a rejects table with their line number.
2. Validate in SQL: missing values, ratings outside 0.5..5, ratings/tags/links for unknown movies,
   duplicate keys within a file. Any problem aborts with the first bad line (file:line: why), and the
   transaction rolls back; with `skip_bad_rows` the bad rows are dropped and counted by reason.
3. Upsert by key: only new or changed rows are written, so re-ingesting the same snapshot writes nothing
   and a newer snapshot updates changed ratings in place of duplicating them. Rows absent from the newer
   snapshot are kept (MovieLens snapshots only grow). Each ingest takes the next number (a row of
   `ingests`, with a random token) and the ratings it writes carry it (`ingest_id`): what changed since a
   model's ingest is then a query, not a comparison of every pair (the CF update's change detection).

Readers are locked out only while rows are written: the big files (ratings, tags) are parsed, checked and
compared with the stored rows (which of them are new or changed) before the database is opened for
writing, on a read-only connection that readers share; the ingest lock keeps another ingest from writing
in between. At ml-25m size the comparison is the long part (a join of 25M rows with 25M).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.config import Settings
from movierec.db import connect, has_table, transaction
from movierec.errors import BadInputError
from movierec.ingest.formats import (
    MAX_LINE,
    MAX_TIMESTAMP,
    Source,
    detect,
    header_lines,
    read_arrow,
    select_sql,
)
from movierec.locks import file_lock
from movierec.progress import bar

# Key columns and compared value columns of each table.
_KEYS = {
    "movies": (("movie_id",), ("title", "year", "genres")),
    "ratings": (("user_id", "movie_id"), ("rating", "rated_at")),
    "tags": (("user_id", "movie_id", "tag"), ("tagged_at",)),
    "links": (("movie_id",), ("imdb_id", "tmdb_id")),
}
_NOT_NULL = {
    "movies": ("movie_id", "title"),
    "ratings": ("user_id", "movie_id", "rating"),
    "tags": ("user_id", "movie_id", "tag"),
    "links": ("movie_id",),
}
_ORDER = ("movies", "links", "ratings", "tags")


@dataclass
class IngestReport:
    """What an ingest did. Totals are rows in the database afterwards; `new`/`updated` count writes."""

    source: str
    format: str
    movies: int = 0
    ratings: int = 0
    users: int = 0
    tags: int = 0
    links: int = 0
    read: dict[str, int] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Problem:
    path: Path
    line: int
    reason: str
    detail: str


def ingest_dir(
    settings: Settings,
    directory: Path | str,
    *,
    fmt: str | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
) -> IngestReport:
    """Load `directory` into the project database (`settings.db_path`) in one transaction.

    The big files are parsed, checked and compared with the stored rows before the database is opened for
    writing: readers are locked out only while the changes are written (at ml-25m size, parsing
    ratings.csv takes ~10 s and comparing it with the stored ratings a few more)."""
    source = detect(directory, fmt)
    with file_lock(ingest_lock_path(settings.db_path), "the database's ingest", wait=settings.write_wait):
        parsed = {table: prepare_fast(source, table) for table in _FAST if table in source.files}
        changed = _compare(settings, parsed)
        with connect(settings) as con:
            return load(
                con, source, skip_bad_rows=skip_bad_rows, progress=progress, parsed=parsed, changed=changed
            )


def ingest_lock_path(db_path: Path) -> Path:
    """Held by an ingest from its comparison with the stored rows until its commit: the comparison stays
    true while the database is open to readers in between."""
    return db_path.with_name(db_path.name + ".ingest.lock")


@dataclass(frozen=True)
class Diff:
    """A file's new and changed rows (`_changed_sql`), found before the write, and the stored row count
    they were found against: the write uses them only if the table still has that many rows (a writer
    that bypassed the ingest lock, e.g. `load()` from another process, would otherwise get rows twice)."""

    rows: pa.Table
    stored: int


def _compare(settings: Settings, parsed: dict[str, pa.Table | None]) -> dict[str, Diff]:
    """For each prepared table with stored rows: its `Diff`, computed on a read-only connection (readers
    are not locked out). Nothing for a fresh database or table: the write is then a plain insert."""
    todo = [table for table, data in parsed.items() if data is not None]
    if not todo or not settings.db_path.exists():
        return {}
    out: dict[str, Diff] = {}
    # An ingest is a writer: it waits for another writer as long as writers wait (not a reader's timeout).
    with connect(settings, read_only=True, wait=settings.write_wait) as con:
        for table in todo:
            stored = _count(con, f"SELECT count(*) FROM {table}") if has_table(con, table) else 0
            if not stored:
                continue
            stage = _ARROW_PREFIX + table
            con.register(stage, parsed[table])
            out[table] = Diff(con.sql(_changed_sql(table, stage)).to_arrow_table(), stored)
            con.unregister(stage)
    return out


def load(
    con: duckdb.DuckDBPyConnection,
    directory: Path | str | Source,
    *,
    fmt: str | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
    parsed: dict[str, pa.Table | None] | None = None,
    changed: dict[str, Diff] | None = None,
) -> IngestReport:
    """Ingest `directory` through connection `con` (schema already present). All or nothing. `parsed`:
    `prepare_fast` of the files, done before `con` was opened (else done here); `changed`: their new and
    changed rows against the stored ones, computed then too (`_compare`), used when that file is staged
    from `parsed`."""
    started = time.perf_counter()
    source = directory if isinstance(directory, Source) else detect(directory, fmt)
    parsed = {} if parsed is None else parsed  # popped as used: each table freed once written
    changed = {} if changed is None else changed  # the same
    report = IngestReport(source=str(source.directory), format=source.format)
    reasons: Counter[str] = Counter()
    total_bytes = sum(p.stat().st_size for p in source.files.values())
    con.execute("SET enable_progress_bar = false")  # our own bar on stderr, or silence
    with (
        bar(total=total_bytes, unit="B", unit_scale=True, desc="ingest", enabled=progress) as pbar,
        transaction(con),
    ):
        ingest = _next_ingest(con, source.directory)
        for table in _ORDER:
            if table not in source.files:
                continue
            pbar.set_postfix_str(f"reading {source.files[table].name}")
            data = parsed.pop(table) if table in parsed else prepare_fast(source, table)
            stage = _fast_stage(con, table, data)
            diff = changed.pop(table, None) if stage is not None else None
            problems: list[_Problem] = []
            if stage is None:  # the DuckDB reader: slower, but it finds every bad line
                stage = _stage(con, source, table)
                problems = _validate(con, source, table, stage, skip_bad_rows, reasons)
            report.read[table] = _count(con, f"SELECT count(*) FROM {stage}")
            if problems:
                first = min(problems, key=lambda p: p.line)
                total = sum(reasons[k] for k in reasons if k.startswith(first.path.name + ": "))
                more = f"; {total - 1:,} more bad rows" if total > 1 else ""
                raise BadInputError(
                    f"{first.path}:{first.line}: {first.reason} ({first.detail}){more}; nothing was loaded "
                    "(fix the file, or pass --skip-bad-rows to load the rest)"
                )
            pbar.set_postfix_str(f"writing {table}")
            report.new[table], report.updated[table] = _upsert(con, table, stage, diff, ingest)
            if stage.startswith(_ARROW_PREFIX):
                con.unregister(stage)
            else:
                con.execute(f"DROP TABLE {stage}")
            pbar.update(source.files[table].stat().st_size)
            pbar.set_postfix_str(f"{table}: {report.read[table]:,} rows")
    report.skipped = sum(reasons.values())
    report.skipped_reasons = dict(sorted(reasons.items()))
    report.movies = _count(con, "SELECT count(*) FROM movies")
    report.ratings, report.users = con.execute(
        "SELECT count(*), count(DISTINCT user_id) FROM ratings"
    ).fetchall()[0]
    report.tags = _count(con, "SELECT count(*) FROM tags")
    report.links = _count(con, "SELECT count(*) FROM links")
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _next_ingest(con: duckdb.DuckDBPyConnection, source: Path) -> int:
    """This ingest's number, recorded in `ingests` in the same transaction as its rows (rolled back with
    them), with a random token: two copies of one database that each ingest again get the same number
    but not the same token, so a model trained on one cannot trust the other's numbers."""
    number = _count(con, "SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests")
    at = datetime.now(UTC).replace(tzinfo=None)
    con.execute(
        "INSERT INTO ingests VALUES (?, ?, ?, ?)", [number, uuid.uuid4().hex, str(Path(source).resolve()), at]
    )
    return number


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


_ARROW_PREFIX = "_arrow_"


_FAST = ("ratings", "tags")


def prepare_fast(source: Source, table: str) -> pa.Table | None:
    """Ratings and tags through pyarrow when the file is clean: parsed in parallel and checked with
    whole-column operations, with no database open. None when anything is off (or the file has no fast
    path), so that the DuckDB path (`_stage` + `_validate`) finds the bad lines or skips the bad rows."""
    data = read_arrow(source, table)
    if data is None or not data.num_rows or any(data[c].null_count for c in _NOT_NULL[table]):
        return None
    if table == "ratings":
        rating = data["rating"]
        in_range = pc.and_(pc.greater_equal(rating, 0.5), pc.less_equal(rating, 5.0))  # NaN -> false
        if not pc.all(in_range).as_py() or _has_duplicate_pairs(data):
            return None
    return data


def _fast_stage(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table | None) -> str | None:
    """A prepared table, scanned by DuckDB without a copy, once its movies are known to the catalogue."""
    if data is None:
        return None
    con.register("_movie_ids", pa.table({"movie_id": pc.unique(data["movie_id"])}))
    unknown = _count(con, "SELECT count(*) FROM _movie_ids r ANTI JOIN movies m USING (movie_id)")
    con.unregister("_movie_ids")
    if unknown:
        return None
    stage = _ARROW_PREFIX + table
    con.register(stage, data)
    return stage


def _has_duplicate_pairs(table: pa.Table) -> bool:
    """GroupLens sorts ratings by user, then movie: a strictly increasing key proves uniqueness in one
    vector pass. Unsorted files pay for a hash aggregate instead (in an in-memory DuckDB)."""
    key = (table["user_id"].to_numpy().astype(np.int64) << 32) | table["movie_id"].to_numpy()
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
        return False
    with duckdb.connect() as con:
        con.register("_pairs", table.select(["user_id", "movie_id"]))
        return bool(
            _count(con, "SELECT count(*) FROM (SELECT 1 FROM _pairs GROUP BY ALL HAVING count(*) > 1)")
        )


def _stage(con: duckdb.DuckDBPyConnection, source: Source, table: str) -> str:
    stage = f"_stage_{table}"
    sql = select_sql(source, table, f"_rejects_{table}")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS {sql}")
    # e.g. an invalid encoding: not a per-line problem DuckDB can put in the rejects table
    except duckdb.InvalidInputException as exc:
        path = source.files[table]
        mixed = mixed_line_endings(path)
        if mixed is not None:  # DuckDB says only "the CSV Parser state machine reached an invalid state"
            raise BadInputError(
                f"{path}: cannot read: mixed line endings (line 1 ends with {mixed[1]}, line {mixed[0]:,} "
                f"with {mixed[2]}; e.g. a row appended with `echo` to a GroupLens file); save it with one "
                "kind (`dos2unix FILE`)"
            ) from exc
        raise BadInputError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from exc
    return stage


def mixed_line_endings(path: Path, chunk: int = 1 << 24) -> tuple[int, str, str] | None:
    """(line number, first kind, other kind) of the first line whose ending differs from line 1's (CRLF
    or LF), or None. Only read on the error path: a pass over the file at disk speed (blocks that hold
    one kind are counted, not walked)."""
    kinds = {True: "CRLF", False: "LF"}
    first: bool | None = None
    line, carry = 1, b""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            data, skip = carry + block, len(carry)  # carry: a CR that ended the previous block
            n_lf = data.count(b"\n", skip)
            n_crlf = data.count(b"\r\n", max(skip - 1, 0))
            if n_lf and first is None:
                at = data.find(b"\n", skip)
                first = at > 0 and data[at - 1 : at] == b"\r"
            if n_lf and n_crlf in (0, n_lf) and (n_crlf > 0) == first:
                line += n_lf  # the whole block has the first line's kind
            elif n_lf:
                at = data.find(b"\n", skip)
                while at >= 0:
                    crlf = at > 0 and data[at - 1 : at] == b"\r"
                    if crlf != first:
                        return line, kinds[bool(first)], kinds[crlf]
                    line += 1
                    at = data.find(b"\n", at + 1)
            carry = block[-1:]
    return None


def _bad_rows_sql(table: str, stage: str) -> str:
    """SELECT ord, reason, detail for each staged row with a missing value, bad rating or unknown movie."""
    keys, _ = _KEYS[table]
    checks = [f"WHEN s.{c} IS NULL THEN 'missing {c}'" for c in _NOT_NULL[table]]
    detail = _detail(table)
    joins = ""
    if table in ("ratings", "tags"):  # the raw value is only in the DuckDB path's stage (_ts)
        time_col = "rated_at" if table == "ratings" else "tagged_at"
        bad_time = f"s._ts IS NOT NULL AND s.{time_col} IS NULL"
        checks.append(f"WHEN {bad_time} THEN 'timestamp out of range 0..{MAX_TIMESTAMP}'")
    if table == "ratings":
        checks.append("WHEN NOT (s.rating BETWEEN 0.5 AND 5) THEN 'rating out of range 0.5..5'")
    if table == "movies":  # a NUL cuts the title short in C-string consumers and breaks printed tables
        checks.append("WHEN contains(s.title, chr(0)) THEN 'NUL byte in title'")
    if table != "movies":
        # Known movies: this snapshot's (upserted just before) plus those already stored.
        joins = "LEFT JOIN movies k ON k.movie_id = s.movie_id"
        checks.append("WHEN k.movie_id IS NULL THEN 'unknown movie'")
    return (
        f"SELECT * FROM (SELECT s.rowid AS ord, CASE {' '.join(checks)} END AS reason, {detail} AS detail "
        f"FROM {stage} s {joins}) WHERE reason IS NOT NULL"
    )


def _detail(table: str) -> str:
    keys, _ = _KEYS[table]
    shown = keys + (("rating",) if table == "ratings" else ())
    return " || ', ' || ".join(f"'{c}=' || coalesce(s.{c}::VARCHAR, 'NULL')" for c in shown)


def _duplicates_sql(table: str, stage: str) -> str | None:
    """Second and later rows of a key repeated within the file, or None when there are none.
    A hash aggregate answers "any?" cheaply; the window runs only over the repeated keys."""
    keys, _ = _KEYS[table]
    key_list = ", ".join(keys)
    on = " AND ".join(f"d.{k} = s.{k}" for k in keys)
    return (
        f"SELECT s.rowid AS ord, 'duplicate key' AS reason, {_detail(table)} AS detail FROM {stage} s "
        f"SEMI JOIN (SELECT {key_list} FROM {stage} GROUP BY ALL HAVING count(*) > 1) d ON {on} "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join('s.' + k for k in keys)} ORDER BY s.rowid) > 1"
    )


def _validate(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    table: str,
    stage: str,
    skip: bool,
    reasons: Counter[str],
) -> list[_Problem]:
    """Count bad rows by reason; drop them when skipping, else return the first few as problems."""
    path = source.files[table]
    rejects = con.execute(
        f"SELECT line, arg_min(error_type, coalesce(column_idx, 0)), "
        f"arg_min(error_message, coalesce(column_idx, 0)) "
        f"FROM _rejects_{table} GROUP BY line ORDER BY line"
    ).fetchall()
    for _, kind, _ in rejects:
        reasons[f"{path.name}: {_reject_reason(kind)}"] += 1
    if table in ("movies", "ratings") and not rejects and not _count(con, f"SELECT count(*) FROM {stage}"):
        raise BadInputError(f"{path}: empty file (no rows)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _bad AS {_bad_rows_sql(table, stage)}")
    if table != "tags":  # MovieLens repeats a few tags; the upsert keeps the latest of each
        con.execute(f"INSERT INTO _bad {_duplicates_sql(table, stage)}")
    for reason, n in con.execute("SELECT reason, count(*) FROM _bad GROUP BY reason").fetchall():
        reasons[f"{path.name}: {reason}"] += n
    problems: list[_Problem] = []
    if skip:
        con.execute(f"DELETE FROM {stage} WHERE rowid IN (SELECT ord FROM _bad)")
    else:
        problems = [
            _Problem(path, int(line), _reject_reason(kind), (message or str(kind)).splitlines()[0])
            for line, kind, message in rejects[:1]
        ]
        # Inside a transaction rowids start at a large base; they are consecutive in file order.
        base = f"(SELECT min(rowid) FROM {stage})"
        first_sql = f"SELECT ord - {base}, reason, detail FROM _bad ORDER BY ord LIMIT 1"
        for first in con.execute(first_sql).fetchall():
            excluded = [int(r[0]) for r in rejects]
            line = _line_of(int(first[0]), path, header_lines(source), excluded)
            problems.append(_Problem(path, line, first[1], first[2]))
    con.execute("DROP TABLE _bad")
    con.execute(f"DROP TABLE IF EXISTS _rejects_{table}")
    con.execute(f"DROP TABLE IF EXISTS _rejects_{table}_scan")
    return problems


def _reject_reason(kind: str) -> str:
    return {
        "CAST": "malformed value",
        "MISSING COLUMNS": "malformed line (too few fields)",
        "TOO MANY COLUMNS": "malformed line (too many fields)",
        "UNQUOTED VALUE": "malformed line (bad quoting)",
        "INVALID ENCODING": "invalid text encoding",
        "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE >> 20} MB",
    }.get(kind, f"malformed line ({str(kind).lower()})")


def _line_of(ordinal: int, path: Path, header: int, rejected: list[int]) -> int:
    """Line number of the `ordinal`-th (0-based) accepted row: the rows DuckDB accepted are the file's
    lines minus the header, the rejected lines and the blank lines it skips. Only on the error path."""
    excluded = np.union1d(np.array(rejected + list(range(1, header + 1)), dtype=np.int64), _blank_lines(path))
    line = ordinal + 1
    while True:  # converges in a few steps: each pass adds the excluded lines before the guess
        guess = ordinal + 1 + int(np.searchsorted(excluded, line, side="right"))
        if guess == line:
            return line
        line = guess


def _blank_lines(path: Path) -> np.ndarray:
    """1-based numbers of empty lines (DuckDB skips them without a reject)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    ends = np.flatnonzero(data == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (data[np.minimum(starts, len(data) - 1)] == 13))
    return np.flatnonzero(blank) + 1


def _source(table: str, stage: str) -> str:
    """The rows of `stage` to store: for tags, the latest of repeated (user, movie, tag)."""
    if table == "tags":
        return f"(SELECT {', '.join(_KEYS[table][0])}, max(tagged_at) AS tagged_at FROM {stage} GROUP BY ALL)"
    return stage


def _changed_sql(table: str, stage: str) -> str:
    """The rows of `stage` that are new to `table` or differ from the stored row, with `existed`."""
    keys, values = _KEYS[table]
    on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    differs = " OR ".join(f"t.{v} IS DISTINCT FROM s.{v}" for v in values)
    return (
        f"SELECT s.*, t.{keys[0]} IS NOT NULL AS existed FROM {_source(table, stage)} s "
        f"LEFT JOIN {table} t ON {on} WHERE t.{keys[0]} IS NULL OR {differs}"
    )


def _upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    stage: str,
    diff: Diff | None = None,
    ingest: int | None = None,
) -> tuple[int, int]:
    """Write new and changed rows of `stage` into `table`; return (new, updated). `diff`: those rows, when
    they were found before the database was opened for writing (`_compare`) and the table is unchanged
    since (same row count; else they are found again here). Ratings written carry `ingest`'s number."""
    keys, values = _KEYS[table]
    cols = ", ".join(keys + values)
    number = "NULL" if ingest is None else str(int(ingest))
    into, select = (
        (f"{cols}, ingest_id, first_ingest", f"{cols}, {number}, {number}")
        if table == "ratings"
        else (cols, cols)
    )
    stored = _count(con, f"SELECT count(*) FROM {table}")
    if stored == 0:
        # Fresh table: everything is new, no join needed (the fast path at ml-25m scale).
        return _count(con, f"INSERT INTO {table} ({into}) SELECT {select} FROM {_source(table, stage)}"), 0
    if diff is not None and diff.stored != stored:
        diff = None
    if diff is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _changed AS {_changed_sql(table, stage)}")
    else:
        con.register("_changed", diff.rows)
    new, updated = con.execute(
        "SELECT count(*) FILTER (NOT existed), count(*) FILTER (existed) FROM _changed"
    ).fetchall()[0]
    if table in ("movies", "links"):  # primary key: replace in place
        con.execute(f"INSERT OR REPLACE INTO {table} ({into}) SELECT {select} FROM _changed")
    else:  # no index on ratings/tags: delete the old version of changed keys, insert the new
        match = " AND ".join(f"t.{k} = c.{k}" for k in keys)
        source = "_changed"
        if updated and table == "ratings":  # a changed rating keeps the ingest that first wrote its pair
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _first AS SELECT c.*, t.first_ingest AS _kept "
                f"FROM _changed c LEFT JOIN ratings t ON c.existed AND {match}"
            )
            source, select = "_first", f"{cols}, {number}, CASE WHEN existed THEN _kept ELSE {number} END"
        if updated:
            con.execute(f"DELETE FROM {table} t USING _changed c WHERE c.existed AND {match}")
        con.execute(f"INSERT INTO {table} ({into}) SELECT {select} FROM {source}")
        if source == "_first":
            con.execute("DROP TABLE _first")
    if diff is None:
        con.execute("DROP TABLE _changed")
    else:
        con.unregister("_changed")
    return int(new), int(updated)
