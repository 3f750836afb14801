"""Published runs (movierec/runs.py): one row schema, one layout, paths relative to the home, and the four
bugs of issue 15 that the old split ownership allowed (each test fails on the code before it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import batch_world as world
import pytest
from click.testing import CliRunner

from movierec import runs
from movierec.batch.run import run_batch
from movierec.cli import main
from movierec.config import Settings
from movierec.db import SCHEMA_VERSION, connect, schema_version

RECOVER = "movierec batch run"


def _one_line_failure(result: object, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    return result.output


def test_one_row_schema_for_arrow_and_sql(settings: Settings) -> None:
    """The Arrow schema of a part and the columns of both views come from the one definition."""
    with connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (1, 'Toy Story (1995)', 1995, ['Animation'])")
        empty = [d[0] for d in con.execute("SELECT * FROM recommendations").description]
        latest = [d[0] for d in con.execute("SELECT * FROM latest_recommendations").description]
    names = [n for n, _, _ in runs.ROW_COLUMNS]
    assert runs.arrow_schema().names == names == empty
    assert sorted(latest) == sorted([*names, "title", "year", "genres", "because_title"])


def test_a_new_database_records_the_latest_schema_version(settings: Settings) -> None:
    with connect(settings) as con:
        assert schema_version(con) == SCHEMA_VERSION >= 2


@pytest.mark.parametrize(
    ("query", "reads"),
    [
        ("SELECT count(*) FROM latest_recommendations", True),
        ("WITH x AS (SELECT * FROM main.recommendations) SELECT * FROM x", True),
        ("SELECT * FROM batch_runs b JOIN (SELECT run_id FROM Recommendations) USING (run_id)", True),
        ("EXPLAIN SELECT * FROM recommendations", True),
        ("SELECT * FROM batch_runs WHERE error LIKE '%recommend%'", False),
        ("SELECT query_name, count(*) FROM batch_run_queries GROUP BY 1", False),
    ],
)
def test_which_queries_read_the_published_lists(query: str, reads: bool) -> None:
    """Bug 4's guard applies to every way of reading the views, and to nothing else."""
    assert runs.reads_views(query) is reads


@pytest.fixture
def planted(settings: Settings) -> Settings:
    return world.build(settings, (world.ZOMBIES, world.EVERYTHING))


@pytest.mark.slow
def test_check_after_a_run_under_runs_uri(planted: Settings, tmp_path: Path) -> None:
    """Bug 2: `check` looked for the run at the default path, not where it was recorded."""
    elsewhere = planted.replace(runs_uri=str(tmp_path / "shared-runs"))
    run_batch(elsewhere)
    assert not runs.runs_dir(planted.db_path).exists()
    result = CliRunner().invoke(main, ["check"])
    assert "FAIL run" not in result.output, result.output
    assert "1 runs, every file present and readable" in result.output


@pytest.mark.slow
def test_a_copied_home_keeps_the_originals_files_after_retention(
    planted: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug 3: runs were recorded by absolute path, so a copy read the original's files and its retention
    deleted them."""
    run_batch(planted)
    original = runs.runs_dir(planted.db_path)
    before = {p.relative_to(original): p.read_bytes() for p in original.rglob("*.parquet")}
    lists = world.lists(planted)
    copy_home = tmp_path / "copy"
    shutil.copytree(planted.home, copy_home, symlinks=True)
    copy = Settings(home=copy_home, keep_runs=1)
    monkeypatch.setenv("MOVIEREC_HOME", str(copy_home))
    run_batch(copy)
    run_batch(copy)
    assert {p.relative_to(original): p.read_bytes() for p in original.rglob("*.parquet")} == before
    assert sorted(p.name for p in runs.runs_dir(copy.db_path).iterdir()) == ["run-000003"]
    with connect(copy, read_only=True) as con:
        files = runs.published_files(con, copy.db_path)
    assert files and all(f.startswith(str(copy_home.resolve())) for f in files)
    assert world.lists(copy) == lists == world.lists(planted)


@pytest.mark.slow
def test_a_home_recorded_by_absolute_paths_is_migrated_and_its_copy_reads_its_own_files(
    planted: Settings, tmp_path: Path
) -> None:
    """A 0.2 database (schema version 1) recorded `output` as an absolute file or parts glob: readers
    take a path under a directory named like the default (`<db stem>.runs`) as beside the database, and
    the first writer rewrites the ledger (migration 2)."""
    run_batch(planted)
    run_batch(planted.replace(runs_uri=str(tmp_path / "shared")))
    default_dir = runs.runs_dir(planted.db_path).resolve()
    with connect(planted) as con:
        con.execute("UPDATE batch_runs SET output = ?, runs_uri = NULL WHERE run_id = 1",
                    [f"{default_dir}/run-000001/*.parquet"])  # fmt: skip
        con.execute("UPDATE batch_runs SET output = ?, runs_uri = NULL WHERE run_id = 2",
                    [f"{tmp_path}/shared/run-000002/*.parquet"])  # fmt: skip
        con.execute("UPDATE schema_info SET value = '1' WHERE key = 'version'")
    lists = world.lists(planted)
    copy_home = tmp_path / "copy"
    shutil.copytree(planted.home, copy_home, symlinks=True)
    copy = Settings(home=copy_home)
    shutil.rmtree(default_dir)  # the original's own files gone: the copy must not have been reading them
    with connect(copy, read_only=True) as con:  # before any writer: read as recorded
        assert schema_version(con) == 1
        assert runs.missing(con, copy.db_path) == {}
    with connect(copy) as con:
        assert schema_version(con) == SCHEMA_VERSION
        ledger = con.execute("SELECT run_id, output, runs_uri FROM batch_runs ORDER BY 1").fetchall()
    assert ledger == [(1, "run-000001", None), (2, "run-000002", f"{tmp_path}/shared")]
    assert world.lists(copy) == lists


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_sql_over_a_missing_or_damaged_run_fails_in_one_line(planted: Settings, damage: str) -> None:
    """Bug 4: `movierec sql` answered 0 rows, exit 0, where `show` and the API failed."""
    run_batch(planted)
    run_batch(planted)
    run2 = runs.runs_dir(planted.db_path) / "run-000002"
    if damage == "missing":
        shutil.rmtree(run2)
    else:
        part = next(run2.glob("*.parquet"))
        part.write_bytes(part.read_bytes()[:100])
    runner = CliRunner()
    for query in ("SELECT count(*) FROM latest_recommendations", "SELECT count(*) FROM recommendations"):
        _one_line_failure(runner.invoke(main, ["sql", query]), str(run2), RECOVER)
    # What does not read the lists still answers: the ledger shows what happened.
    ok = runner.invoke(main, ["sql", "SELECT run_id, status FROM batch_runs ORDER BY 1", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [
        {"run_id": 1, "status": "succeeded"},
        {"run_id": 2, "status": "succeeded"},
    ]
    _one_line_failure(runner.invoke(main, ["show", "1"]), str(run2), RECOVER)
    assert runner.invoke(main, ["batch", "run", "-q"]).exit_code == 0  # the recovery it names
    after = runner.invoke(main, ["sql", "SELECT count(*) AS n FROM latest_recommendations", "--json"])
    assert after.exit_code == 0 and json.loads(after.stdout) == [{"n": 7 * 2 + 7 * 3}]
