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
from contextlib import contextmanager
from pathlib import Path

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from movierec.config import Settings
from movierec.errors import BusyError, NotFoundError

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
-- A view, not a table: each batch run writes its rows to a Parquet file next to the database while
-- readers keep reading, then publishing points this view at the kept runs' files in one short
-- transaction (batch/publish.py). Writing 30M rows into a table would lock readers out for a minute.
-- Until the first run it is empty, with these columns.
CREATE VIEW IF NOT EXISTS recommendations AS
SELECT NULL::INTEGER AS run_id, NULL::VARCHAR AS query_name, NULL::INTEGER AS user_id,
       NULL::SMALLINT AS rank, NULL::INTEGER AS movie_id, NULL::FLOAT AS score, NULL::FLOAT AS similarity,
       NULL::FLOAT AS predicted_rating, NULL::VARCHAR AS source
WHERE false;
CREATE OR REPLACE VIEW latest_recommendations AS
SELECT r.run_id, r.query_name, r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres,
       r.score, r.similarity, r.predicted_rating, r.source
FROM recommendations r
JOIN movies m USING (movie_id)
WHERE r.run_id = (SELECT max(run_id) FROM batch_runs WHERE status = 'succeeded');
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and views (idempotent)."""
    con.execute(SCHEMA)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('version', ?)",
        [str(SCHEMA_VERSION)],
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

    try:
        return attempt()
    except duckdb.IOException as exc:
        if _is_lock_error(exc):
            raise _busy(path, exc) from exc
        raise


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
            ensure_schema(con)
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
