"""The one owner of the DuckDB file: connections, locking behaviour and the schema.

DuckDB lets one process write, or several processes read, never both at once. So:
- writers (`connect(settings)`) hold the file only as long as one command's work needs it, and wait up to
  `settings.write_wait` seconds for readers to let go;
- readers (`connect(settings, read_only=True)`) retry for `settings.lock_timeout` seconds while a writer
  holds the lock (the nightly batch only writes during its short publish window), then fail clearly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from movierec.config import Settings
from movierec.errors import BadInputError, BusyError, DamagedError, NotFoundError

SCHEMA_VERSION = 1

# Every table of the project, in one place. Stages add their SQL queries next to their code,
# but tables are created here so that any command can open any table.
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info(key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS movies(
    movie_id INTEGER PRIMARY KEY,
    title    VARCHAR NOT NULL,
    year     INTEGER,
    genres   VARCHAR[] NOT NULL
);
-- No PRIMARY KEY: an ART index over 25M rows costs more than the ingest itself. Ingest keeps
-- (user_id, movie_id) unique by upserting with an anti-join; the unique-key test guards it.
CREATE TABLE IF NOT EXISTS ratings(
    user_id  INTEGER NOT NULL,
    movie_id INTEGER NOT NULL,
    rating   FLOAT NOT NULL,
    rated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS tags(
    user_id   INTEGER NOT NULL,
    movie_id  INTEGER NOT NULL,
    tag       VARCHAR NOT NULL,
    tagged_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS links(
    movie_id INTEGER PRIMARY KEY,
    imdb_id  VARCHAR,
    tmdb_id  INTEGER
);

CREATE TABLE IF NOT EXISTS cf_models(
    version    VARCHAR PRIMARY KEY,
    trained_at TIMESTAMP NOT NULL,
    objective  VARCHAR NOT NULL,
    metrics    JSON,
    path       VARCHAR NOT NULL,
    is_current BOOLEAN NOT NULL DEFAULT false,
    -- data snapshot the model was trained on, so a stale model is visible in SQL
    n_ratings    BIGINT,
    max_rated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS saved_queries(
    name           VARCHAR PRIMARY KEY,
    text           VARCHAR NOT NULL,
    genres         VARCHAR[],
    exclude_genres VARCHAR[],
    year_min       INTEGER,
    year_max       INTEGER,
    candidates     INTEGER NOT NULL DEFAULT 250,
    top_n          INTEGER NOT NULL DEFAULT 10,
    users          INTEGER[],
    enabled        BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS batch_runs(
    run_id           INTEGER PRIMARY KEY,
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP,
    status           VARCHAR NOT NULL,
    cf_model_version VARCHAR,
    embedding_model  VARCHAR,
    alpha            DOUBLE,
    formula          VARCHAR,
    n_queries        INTEGER,
    n_users          INTEGER,
    n_rows           BIGINT,
    error            VARCHAR
);
-- Where the run's Parquet went: its file, or its directory of parts as a glob (batch/publish.py). Recorded
-- at the start, so a run stays readable (and deletable) after `runs_uri` changes.
ALTER TABLE batch_runs ADD COLUMN IF NOT EXISTS output VARCHAR;
-- What each run asked and found, per saved query (a snapshot: queries may change after the run).
CREATE TABLE IF NOT EXISTS batch_run_queries(
    run_id            INTEGER NOT NULL,
    query_name        VARCHAR NOT NULL,
    text              VARCHAR NOT NULL,
    genres            VARCHAR[],
    exclude_genres    VARCHAR[],
    year_min          INTEGER,
    year_max          INTEGER,
    candidates        INTEGER NOT NULL,
    top_n             INTEGER NOT NULL,
    candidates_found  INTEGER NOT NULL,
    users_served      INTEGER NOT NULL,
    n_rows            BIGINT NOT NULL,
    PRIMARY KEY (run_id, query_name)
);
"""


def ensure_schema(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Create missing tables (idempotent) and point the views at the published run files that exist."""
    con.execute(SCHEMA)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('version', ?)",
        [str(SCHEMA_VERSION)],
    )
    sync_views(con, db_path)
    mark_dead_runs(con, db_path)


# --------------------------------------------------------------------------- published runs and their views
# Each batch run writes its rows to a Parquet file next to the database while readers keep reading; the
# `recommendations` view names the succeeded runs' files (batch/publish.py). Writing 30M rows into a table
# would lock readers out for a minute. The views are derived state: every connection (re)creates them from
# the runs recorded and the files that exist, so a missing, damaged or moved file never stops a command;
# only reads of that run fail (`missing_run_files` tells them which), and the next batch run republishes.
RUN_COLUMNS = (
    "run_id::INTEGER AS run_id, query_name::VARCHAR AS query_name, user_id, rank, movie_id, score, "
    "similarity, predicted_rating, source::VARCHAR AS source, because_movie_id::INTEGER AS because_movie_id"
)
# Runs published before `because_movie_id` existed lack the column: a union by name with this empty
# relation gives them NULL there (and still works when no file has it).
_BECAUSE_FILLER = "UNION ALL BY NAME SELECT NULL::INTEGER AS because_movie_id WHERE false"
EMPTY_RECOMMENDATIONS = (
    "SELECT NULL::INTEGER AS run_id, NULL::VARCHAR AS query_name, NULL::INTEGER AS user_id, "
    "NULL::SMALLINT AS rank, NULL::INTEGER AS movie_id, NULL::FLOAT AS score, NULL::FLOAT AS similarity, "
    "NULL::FLOAT AS predicted_rating, NULL::VARCHAR AS source, NULL::INTEGER AS because_movie_id WHERE false"
)
LATEST_RECOMMENDATIONS = """
SELECT r.run_id, r.query_name, r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres,
       r.score, r.similarity, r.predicted_rating, r.source, r.because_movie_id, b.title AS because_title
FROM recommendations r
JOIN movies m USING (movie_id)
LEFT JOIN movies b ON b.movie_id = r.because_movie_id
WHERE r.run_id = (SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded')
"""
_PARQUET_MAGIC = b"PAR1"
_QUOTED_PATH = re.compile(r"'((?:[^']|'')*)'")


def batch_lock_path(db_path: Path) -> Path:
    """The OS lock a batch run holds for its whole life (batch/lock.py): free means no run is alive."""
    return db_path.with_name(db_path.name + ".batch.lock")


DEAD_RUN = "the process stopped before publishing (killed or crashed)"


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
        con.execute(
            "UPDATE batch_runs SET status = 'abandoned', error = coalesce(error, ?), "
            "finished_at = coalesce(finished_at, current_timestamp) WHERE status = 'running'",
            [DEAD_RUN],
        )
        return
    name = con.execute("SELECT current_database()").fetchone()[0].replace('"', '""')
    con.execute(
        "CREATE OR REPLACE TEMP VIEW batch_runs AS SELECT * REPLACE ("
        "CASE WHEN status = 'running' THEN 'abandoned' ELSE status END AS status, "
        f"CASE WHEN status = 'running' THEN coalesce(error, '{DEAD_RUN}') ELSE error END AS error) "
        f'FROM "{name}".main.batch_runs'
    )


def db_file(con: duckdb.DuckDBPyConnection) -> Path:
    """The file a connection has open."""
    return Path(
        con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()[0]
    )


def require_run_file(con: duckdb.DuckDBPyConnection, run_id: int | None) -> None:
    """DamagedError, naming the file and the way out, when run `run_id` (None: the latest succeeded) has
    lost its published file; reads of every other run go on working."""
    if run_id is None:
        run_id = con.execute("SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded'").fetchone()[0]
        if run_id is None:
            return
    path = db_file(con)
    bad = missing_run_files(con, path, [run_id]) if run_id in succeeded_runs(con) else {}
    if bad:
        raise DamagedError(
            f"run {run_id}'s published file {bad[run_id]} is missing or damaged: run `movierec batch run` "
            "to publish new lists (the other runs' lists are intact)"
        )


def runs_dir(db_path: Path) -> Path:
    """Where the database's published run files live: `<db stem>.runs/` beside it."""
    return db_path.with_name(db_path.stem + ".runs")


def run_file(db_path: Path, run_id: int) -> Path:
    return runs_dir(db_path) / f"run-{run_id:06d}.parquet"


def run_file_ok(path: Path) -> bool:
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


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?",
            [name],
        ).fetchall()
    )


def succeeded_runs(con: duckdb.DuckDBPyConnection) -> list[int]:
    return list(_recorded_outputs(con))


PARTS = "/*.parquet"  # a run written as a directory of parts (the Ray engine) is read through this glob


def _recorded_outputs(con: duckdb.DuckDBPyConnection) -> dict[int, str | None]:
    """{run_id: where the run recorded its Parquet (None before runs recorded it)} of succeeded runs."""
    if not _has_table(con, "batch_runs"):
        return {}
    has_output = con.execute(
        "SELECT 1 FROM duckdb_columns() WHERE database_name = current_database() "
        "AND table_name = 'batch_runs' AND column_name = 'output'"
    ).fetchall()
    output = "output" if has_output else "NULL"
    rows = con.execute(
        f"SELECT run_id, {output} FROM batch_runs WHERE status = 'succeeded' ORDER BY run_id"
    ).fetchall()
    return dict(rows)


def _source_ok(source: str) -> bool:
    """A run's file, or every part of its directory, exists and looks whole. An object-store URI is taken
    as recorded (checking would cost a round trip per run and per connection)."""
    if "://" in source and not source.startswith("file://"):
        return True
    source = source.removeprefix("file://")
    if source.endswith(PARTS):
        directory = Path(source.removesuffix(PARTS))
        parts = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
        return bool(parts) and all(run_file_ok(p) for p in parts)
    return run_file_ok(Path(source))


def run_sources(
    con: duckdb.DuckDBPyConnection, db_path: Path, run_ids: list[int] | None = None
) -> dict[int, str | None]:
    """{run_id: the file or parts glob the run is read from, None when missing or damaged} of succeeded
    runs (or of `run_ids`): where the run recorded it, else beside the database now (a moved data
    directory keeps its runs under the same names)."""
    out = {}
    for run_id, output in _recorded_outputs(con).items():
        if run_ids is not None and run_id not in run_ids:
            continue
        here = str(run_file(db_path, run_id).resolve())
        candidates = [output] if output else []
        candidates += [here, here.removesuffix(".parquet") + PARTS]
        out[run_id] = next((c for c in candidates if _source_ok(c)), None)
    return out


def missing_run_files(
    con: duckdb.DuckDBPyConnection, db_path: Path, run_ids: list[int] | None = None
) -> dict[int, str]:
    """{run_id: recorded output or file} of succeeded runs (or `run_ids`) whose Parquet is missing or
    damaged."""
    recorded = _recorded_outputs(con)
    return {
        r: recorded.get(r) or str(run_file(db_path, r))
        for r, source in run_sources(con, db_path, run_ids).items()
        if source is None
    }


def published_files(con: duckdb.DuckDBPyConnection, db_path: Path) -> list[str]:
    """What the views should name: every succeeded run's file (or parts glob) that exists and looks whole."""
    return [s for s in run_sources(con, db_path).values() if s is not None]


def readable_files(sources: list[str]) -> list[Path]:
    """The local files behind `sources` (parts globs expanded): what confined SQL may read."""
    files: list[Path] = []
    for source in sources:
        if "://" in source and not source.startswith("file://"):
            continue
        source = source.removeprefix("file://")
        if source.endswith(PARTS):
            files += sorted(Path(source.removesuffix(PARTS)).glob("*.parquet"))
        else:
            files.append(Path(source))
    return files


def _view_files(con: duckdb.DuckDBPyConnection, temp: bool) -> list[str] | None:
    """The files the current `recommendations` view names, or None when the views are missing."""
    rows = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? "
        "AND view_name IN ('recommendations', 'latest_recommendations')",
        ["temp" if temp else con.execute("SELECT current_database()").fetchone()[0]],
    ).fetchall()
    views = dict(rows)
    if len(views) < 2 or "because_title" not in views["latest_recommendations"]:
        return None  # missing, or written before the views had `because_movie_id`: recreate them
    quoted = _QUOTED_PATH.findall(views["recommendations"])
    return [m.replace("''", "'") for m in quoted if m.endswith(".parquet")]  # files and parts globs


def sync_views(con: duckdb.DuckDBPyConnection, db_path: Path, temp: bool = False) -> list[str]:
    """Point `recommendations` (and `latest_recommendations` over it) at the published files that exist.

    Writers repair the stored views; a read-only connection gets TEMP views of the same names, which shadow
    stale stored ones for that connection only (a moved data directory, a file deleted since). Cheap: a
    query on batch_runs and a few stats, and nothing is written when the views already name those files.
    Returns the files named."""
    files = published_files(con, db_path)
    if _view_files(con, temp) == files:
        return files
    if temp and _view_files(con, False) == files:
        return files  # the stored views are right
    if files:
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        files_sql = f"FROM read_parquet([{listing}], union_by_name = true) {_BECAUSE_FILLER}"
        body = f"SELECT {RUN_COLUMNS} FROM ({files_sql})"
    else:
        body = EMPTY_RECOMMENDATIONS
    kind = "TEMP VIEW" if temp else "VIEW"
    con.execute(f"CREATE OR REPLACE {kind} recommendations AS {body}")
    con.execute(f"CREATE OR REPLACE {kind} latest_recommendations AS {LATEST_RECOMMENDATIONS}")
    return files


_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>\S+) \(PID (?P<pid>\d+)\)")


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _busy(path: Path, exc: BaseException) -> BusyError:
    m = _HOLDER.search(str(exc))
    who = f" by {m['prog']} (PID {m['pid']})" if m else ""
    return BusyError(
        f"database {path} is locked{who}: another process has it open; try again when it finishes"
    )


def _open(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise NotFoundError(f"no database at {path}: run `movierec ingest DIR` first (or pass --db)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)

    @retry(
        retry=retry_if_exception(_is_lock_error),
        stop=stop_after_delay(wait),
        wait=wait_exponential(multiplier=0.02, max=0.5),
        reraise=True,
    )
    def attempt() -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(path), read_only=read_only)

    if path.is_dir():
        raise DamagedError(
            f"the database path {path} is a directory, not a DuckDB file: check --db / MOVIEREC_DB"
        )
    try:
        return attempt()
    except duckdb.IOException as exc:
        if _is_lock_error(exc):
            raise _busy(path, exc) from exc
        raise _damaged(path, exc) from exc
    except duckdb.Error as exc:  # "Corrupt database file", a bad header or block, a foreign file
        raise _damaged(path, exc) from exc


def _damaged(path: Path, exc: BaseException) -> DamagedError:
    first = (str(exc).splitlines() or [""])[0][:300]
    return DamagedError(
        f"the database {path} cannot be opened ({first}): restore it from a backup, or move it away and "
        "rebuild with `movierec ingest DIR` (saved queries and run history are in it)"
    )


@contextmanager
def connect(
    settings: Settings, read_only: bool = False, wait: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the project database for one unit of work and close it straight after.

    One waiting policy for every command: while another process holds the file, readers retry for
    `settings.lock_timeout` seconds and writers for `settings.write_wait` (readers hold it briefly, the
    nightly's writes take milliseconds), then BusyError names the holder. Writers create the file and
    schema on first use.
    """
    path = settings.db_path
    if wait is None:
        wait = settings.lock_timeout if read_only else settings.write_wait
    con = _open(path, read_only, wait)
    try:
        if not read_only:
            ensure_schema(con, path)
        elif _has_table(con, "batch_runs"):
            sync_views(con, path, temp=True)
            mark_dead_runs(con, path, temp=True)
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit on success, roll back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# --------------------------------------------------------------------------- analysts' SQL, confined
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", re.IGNORECASE)
CONFINED = (
    "movierec sql only reads: SELECT statements (and EXPLAIN of one) over the database and the published "
    "run files"
)


def confine(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    """Lock a connection to reading the database and `files`: DuckDB's own external-access switch (no file
    reads or writes elsewhere, no ATTACH, COPY or EXPORT outside the list, no extension downloads), set
    before any user SQL and then locked so that SQL cannot set it back."""
    if files:
        listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(f"SET allowed_paths = [{listing}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_statements(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Only SELECT (DESCRIBE, SHOW, SUMMARIZE and FROM-first queries are SELECTs) or EXPLAIN of one: a COPY
    could overwrite a published run file, which the view needs to be able to read."""
    if not query.strip():
        raise BadInputError("empty SQL query")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise BadInputError(f"SQL failed: {str(exc).splitlines()[0]}") from None
    for st in statements:
        kind = st.type.name
        if kind == "EXPLAIN":
            inner = _EXPLAIN.sub("", st.query, count=1)
            with suppress(duckdb.Error):
                kind = con.extract_statements(inner)[0].type.name if inner != st.query else kind
        if kind != "SELECT":
            raise BadInputError(f"{CONFINED}; this is a {kind} statement")


@contextmanager
def connect_confined(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for analysts' SQL, confined as `confine` says."""
    with connect(settings, read_only=True) as con:
        confine(con, readable_files(published_files(con, settings.db_path)))
        yield con


def run_analyst_sql(settings: Settings, query: str) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of a confined read-only query; our own one-line errors for anything refused."""
    with connect_confined(settings) as con:
        check_read_statements(con, query)
        try:
            cur = con.execute(query)
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            hint = f" ({CONFINED})" if isinstance(exc, duckdb.PermissionException) else ""
            raise BadInputError(f"SQL failed: {first}{hint}") from None
