"""The DuckDB owner: schema, transactions, and clear errors when another process holds the file."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from movierec import db
from movierec.config import Settings
from movierec.errors import BusyError, NotFoundError


def test_writer_creates_schema(settings: Settings) -> None:
    with db.connect(settings) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {
        "movies",
        "ratings",
        "tags",
        "cf_models",
        "saved_queries",
        "batch_runs",
        "recommendations",
    } <= tables
    assert "latest_recommendations" in tables


def test_reader_without_database_says_what_to_do(settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="movierec ingest"), db.connect(settings, read_only=True):
        pass


def test_transaction_rolls_back_on_error(settings: Settings) -> None:
    with db.connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (1, 'A (1999)', 1999, ['Drama'])")
        with pytest.raises(RuntimeError), db.transaction(con):
            con.execute("INSERT INTO movies VALUES (2, 'B (2000)', 2000, [])")
            raise RuntimeError("boom")
        assert con.execute("SELECT count(*) FROM movies").fetchone() == (1,)


def _hold_writer(settings: Settings, seconds: float) -> subprocess.Popen:
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.db_path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_busy_database_names_the_holder_after_the_one_wait_policy(settings: Settings) -> None:
    with db.connect(settings):
        pass
    proc = _hold_writer(settings, 30)
    try:
        quick = Settings(home=settings.home, lock_timeout=0.3, write_wait=0.6)
        for read_only, wait in ((False, 0.6), (True, 0.3)):  # writers wait write_wait, readers lock_timeout
            start = time.monotonic()
            with pytest.raises(BusyError, match=rf"locked.*PID {proc.pid}"), db.connect(quick, read_only):
                pass
            assert wait <= time.monotonic() - start < wait + 5  # it retried, then gave up
    finally:
        proc.kill()
        proc.communicate()


def test_writer_waits_for_a_short_holder(settings: Settings) -> None:
    """Regression (issue 9): a writer (ingest, train, nightly) used to fail at once while a reader held
    the file; now it waits up to write_wait seconds."""
    with db.connect(settings):
        pass
    proc = _hold_writer(settings, 1.0)
    try:
        with db.connect(Settings(home=settings.home, write_wait=15)) as con:
            con.execute("INSERT INTO movies VALUES (8, 'Eight (1995)', 1995, [])")
    finally:
        proc.communicate()


def test_reader_waits_for_a_short_writer(settings: Settings) -> None:
    with db.connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (7, 'Seven (1995)', 1995, ['Crime'])")
    proc = _hold_writer(settings, 1.0)
    try:
        with db.connect(Settings(home=settings.home, lock_timeout=15), read_only=True) as con:
            assert con.execute("SELECT title FROM movies").fetchone() == ("Seven (1995)",)
    finally:
        proc.communicate()
