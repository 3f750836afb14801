"""The one owner of the DuckDB file: connections, locking behaviour, the schema and its migrations
(published runs, their ledger and views are movierec/runs.py's).

DuckDB lets one process write, or several processes read, never both at once. So:
- writers (`connect(settings)`) hold the file only as long as one command's work needs it, and wait up to
  `settings.write_wait` seconds for readers to let go;
- readers (`connect(settings, read_only=True)`) retry for `settings.lock_timeout` seconds while a writer
  holds the lock (the nightly batch only writes during its short publish window), then fail clearly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from movierec.config import Settings
from movierec.errors import BadInputError, BusyError, DamagedError, MovierecError, NotFoundError

T = TypeVar("T")

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
-- ingest_id: the ingest that wrote the row (`ingests`); NULL: stored before ingests were numbered, or
-- written by anything else. A CF update asks it what changed since its model's ingest instead of
-- comparing 25M pairs (cf.keras_cf), unless the NULL rows changed.
CREATE TABLE IF NOT EXISTS ratings(
    user_id   INTEGER NOT NULL,
    movie_id  INTEGER NOT NULL,
    rating    FLOAT NOT NULL,
    rated_at  TIMESTAMP,
    ingest_id INTEGER,
    -- first_ingest: the ingest that first wrote the (user, movie) pair; a changed rating keeps it (ingest_id
    -- moves): what users did after a run is the pairs first written after it (`movierec batch report`).
    first_ingest INTEGER
);
-- One row per ingest that committed; `token` tells two copies of a database apart once they diverge.
CREATE TABLE IF NOT EXISTS ingests(
    ingest_id   INTEGER PRIMARY KEY,
    token       VARCHAR NOT NULL,
    source      VARCHAR,
    ingested_at TIMESTAMP
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
    error            VARCHAR,
    -- Where the run's Parquet went (movierec/runs.py): its entry (`run-000042`) under the runs_uri it was
    -- written to (NULL: beside the database). Recorded at the start, so a run stays readable (and
    -- deletable) after `runs_uri` changes, and relative, so a copied home reads its own files.
    output           VARCHAR,
    runs_uri         VARCHAR,
    -- The last ingest whose ratings the run's lists saw (0: none; NULL: a run from before it was recorded):
    -- ratings of later ingests are what users did next (`movierec batch report`).
    last_ingest      INTEGER
);
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


def _migrate_run_paths(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    from movierec import runs

    # 0.1 databases have neither column, 0.2 ones only `output`, holding absolute paths.
    con.execute("ALTER TABLE batch_runs ADD COLUMN IF NOT EXISTS output VARCHAR")
    con.execute("ALTER TABLE batch_runs ADD COLUMN IF NOT EXISTS runs_uri VARCHAR")
    runs.migrate_relative_paths(con, db_path)


# Named, numbered changes to existing databases (sqlite-utils' `migrations` is the model): each runs once, in
# order, in one transaction with the new version recorded in `schema_info`. SCHEMA above creates what is
# missing (new tables and columns), so a migration only moves existing data.
def _number_ingests(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    # Rows stored before stay NULL: a model trained on them compares pairs once more, then numbers apply.
    con.execute("ALTER TABLE ratings ADD COLUMN IF NOT EXISTS ingest_id INTEGER")


def _runs_see_ingests(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    # Runs published before stay NULL: what users did after them is not known.
    con.execute("ALTER TABLE batch_runs ADD COLUMN IF NOT EXISTS last_ingest INTEGER")


def _first_ingests(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    # Rows stored before: their latest ingest is the best known (a pair re-rated earlier counts from it).
    con.execute("ALTER TABLE ratings ADD COLUMN IF NOT EXISTS first_ingest INTEGER")
    con.execute("UPDATE ratings SET first_ingest = ingest_id WHERE ingest_id IS NOT NULL")


MIGRATIONS: tuple[tuple[int, str, Callable[[duckdb.DuckDBPyConnection, Path], None]], ...] = (
    (2, "published runs recorded relative to their location, not by absolute path", _migrate_run_paths),
    (3, "ratings record the ingest that wrote them", _number_ingests),
    (4, "runs record the last ingest their lists saw", _runs_see_ingests),
    (5, "ratings record the ingest that first wrote their pair", _first_ingests),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version recorded by the last writer (0: before versions were recorded)."""
    row = con.execute("SELECT value FROM schema_info WHERE key = 'version'").fetchone()
    return int(row[0]) if row else 0


def ensure_schema(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Create missing tables (idempotent), apply pending migrations and point the views at the published
    runs that exist."""
    from movierec import runs

    con.execute(SCHEMA)
    version = schema_version(con)
    for number, _, migrate in MIGRATIONS:
        if number > version:
            with transaction(con):
                migrate(con, db_path)
                con.execute("INSERT OR REPLACE INTO schema_info VALUES ('version', ?)", [str(number)])
    runs.sync_views(con, db_path)
    runs.mark_dead_runs(con, db_path)


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?",
            [name],
        ).fetchall()
    )


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
        con = attempt()
    except duckdb.IOException as exc:
        if _is_lock_error(exc):
            raise _busy(path, exc) from exc
        raise _damaged(path, exc) from exc
    except duckdb.Error as exc:  # "Corrupt database file", a bad header or block, a foreign file
        if "in-memory database in read-only mode" in str(exc):  # a data file, opened read-only
            raise _not_duckdb(path) from exc
        raise _damaged(path, exc) from exc
    # DuckDB opens a .parquet (or .csv) path as an in-memory database over that file: writes would vanish
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")
    if row.fetchone()[0] is None:
        con.close()
        raise _not_duckdb(path)
    return con


def _not_duckdb(path: Path) -> BadInputError:
    return BadInputError(
        f"{path} is not a DuckDB database (DuckDB reads it as a data file): check --db / MOVIEREC_DB"
    )


def _damaged(path: Path, exc: BaseException) -> MovierecError:
    first = (str(exc).splitlines() or [""])[0][:300]
    environment = unwritable(first)
    if environment:  # the file is fine, the disk is not: never advise a rebuild
        return MovierecError(f"cannot write the database {path}: {environment}")
    return DamagedError(
        f"the database {path} cannot be opened ({first}): restore it from a backup, or move it away and "
        "rebuild with `movierec ingest DIR` (saved queries and run history are in it)"
    )


def unwritable(message: str) -> str | None:
    """What to do when an error message says the disk refuses writes (read-only, no permission, full);
    None for anything else. DuckDB and the vector engine report these as text, not errno."""
    low = message.lower()
    if "read-only file system" in low or "permission denied" in low:
        return (
            "its directory is not writable (read-only file system or no permission); movierec needs write "
            "access even to read: make it writable, or copy the data directory and use --home"
        )
    if "no space left" in low or "disk full" in low or "quota exceeded" in low:
        return "the disk is full: free space and run the command again"
    return None


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
        elif has_table(con, "batch_runs"):
            from movierec import runs

            runs.sync_views(con, path, temp=True)
            runs.mark_dead_runs(con, path, temp=True)
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


def confine(con: duckdb.DuckDBPyConnection, files: list[Path], memory_limit: str | None = None) -> None:
    """Lock a connection to reading the database and `files`: DuckDB's own external-access switch (no file
    reads or writes elsewhere, no ATTACH, COPY or EXPORT outside the list, no extension downloads), set
    before any user SQL and then locked so that SQL cannot set it back."""
    if files:
        listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(f"SET allowed_paths = [{listing}]")
    if memory_limit:  # one query must not take the machine's memory from the nightly job
        try:
            con.execute("SET memory_limit = ?", [memory_limit])
        except duckdb.Error as exc:  # a size too small to run in, or one DuckDB cannot parse
            raise BadInputError(
                f"MOVIEREC_SQL_MEMORY_LIMIT {memory_limit!r}: {str(exc).splitlines()[0]}"
            ) from None
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
    if not statements:  # only semicolons and blanks
        raise BadInputError("empty SQL query: no statement between the semicolons")
    if len(statements) > 1:  # only the last result would be shown: say so rather than drop the others
        raise BadInputError(f"one SQL statement at a time, got {len(statements)}: run each on its own")
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
    """A read-only connection for analysts' SQL, confined as `confine` says, to the published runs' files."""
    from movierec import runs

    with connect(settings, read_only=True) as con:
        files = runs.local_files(runs.published_files(con, settings.db_path))
        confine(con, files, settings.sql_memory_limit)
        yield con


def check_confined_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse what confined SQL must not run, and a read of the published lists while a run's files are
    missing or damaged (it would answer as if that run's users had no lists)."""
    from movierec import runs

    check_read_statements(con, query)
    if runs.reads_views(query):
        runs.require_all_readable(con)


def time_limited(con: duckdb.DuckDBPyConnection, seconds: float, work: Callable[[], T]) -> T:
    """`work()` (a query on `con`), interrupted after `seconds` or at Ctrl-C, either one BadInputError line.

    DuckDB has no statement timeout, and while a query runs in the main thread it sees Ctrl-C only at its
    own checks (or not at all), so the query runs in a helper thread while this one waits, interruptibly,
    and calls `con.interrupt()`."""
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.is_alive: a join cut by Ctrl-C leaves that wrong (Python 3.11)

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="movierec-sql", daemon=True).start()
    why = (
        f"SQL query stopped after the time limit of {seconds:g} s (setting sql_timeout, "
        "MOVIEREC_SQL_TIMEOUT): narrow it, or raise the limit"
    )
    try:
        finished = done.wait(seconds)
    except KeyboardInterrupt:
        finished, why = False, "SQL query interrupted"
    if not finished:
        # Again until the helper is done: an interrupt that lands before DuckDB has started the query (its
        # start clears the flag) is lost, and the query would then run to its end (seen under load).
        con.interrupt()
        while not done.wait(0.2):
            con.interrupt()
        raise BadInputError(why)
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_analyst_sql(
    settings: Settings, query: str, max_rows: int | None = None
) -> tuple[list[str], list[tuple], bool]:
    """(columns, rows, more) of a confined read-only query; our own one-line errors for anything refused.
    With `max_rows`, at most that many rows are fetched and `more` says whether the result had more: the
    rows become Python objects (hundreds of bytes each), and DuckDB's memory limit does not cover them."""
    with connect_confined(settings) as con:
        check_confined_query(con, query)
        try:

            def work() -> tuple[list[str], list[tuple], bool]:
                cur = con.execute(query)
                if cur.description is None:
                    return [], [], False
                columns = [d[0] for d in cur.description]
                if max_rows is None:
                    return columns, cur.fetchall(), False
                rows = cur.fetchmany(max_rows + 1)
                return columns, rows[:max_rows], len(rows) > max_rows

            return time_limited(con, settings.sql_timeout, work)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            hint = f" ({CONFINED})" if isinstance(exc, duckdb.PermissionException) else ""
            if isinstance(exc, duckdb.OutOfMemoryException):
                hint = f" (MOVIEREC_SQL_MEMORY_LIMIT is {settings.sql_memory_limit}; ask for less)"
            raise BadInputError(f"SQL failed: {first}{hint}") from None
