"""`movierec sql`: read-only queries for analysts."""

from __future__ import annotations

import json

from click.testing import CliRunner

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect


def _seed(settings: Settings) -> None:
    with connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (1, 'Toy Story (1995)', 1995, ['Animation', 'Children'])")
        con.execute("INSERT INTO movies VALUES (2, 'Heat (1995)', 1995, ['Crime'])")


def test_sql_prints_rows_as_table_and_json(settings: Settings) -> None:
    _seed(settings)
    runner = CliRunner()
    q = "SELECT movie_id, title, genres FROM movies ORDER BY movie_id"
    table = runner.invoke(main, ["sql", q])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["movie_id", "title", "genres"]
    assert "Animation|Children" in lines[2] and lines[3].split()[0] == "2"
    rows = json.loads(runner.invoke(main, ["sql", q, "--json"]).output)
    assert rows == [
        {"movie_id": 1, "title": "Toy Story (1995)", "genres": ["Animation", "Children"]},
        {"movie_id": 2, "title": "Heat (1995)", "genres": ["Crime"]},
    ]


def test_sql_json_is_strict_json_with_nan_and_infinity_as_null(settings: Settings) -> None:
    _seed(settings)
    query = "SELECT ln(0) AS a, 'NaN'::DOUBLE AS b, 1.5::DOUBLE AS c"
    out = CliRunner().invoke(main, ["sql", query, "--json"])
    assert out.exit_code == 0, out.output

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    assert json.loads(out.output, parse_constant=refuse) == [{"a": None, "b": None, "c": 1.5}]


def test_sql_cannot_write(settings: Settings) -> None:
    _seed(settings)
    result = CliRunner().invoke(main, ["sql", "DELETE FROM movies"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: movierec sql only reads") and result.output.count("\n") == 1
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM movies").fetchone() == (2,)


def test_sql_errors_are_one_line(settings: Settings) -> None:
    _seed(settings)
    runner = CliRunner()
    bad = runner.invoke(main, ["sql", "SELECT nope FROM movies"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: SQL failed:")
    empty = runner.invoke(main, ["sql", "  "])
    assert empty.exit_code == 1 and "empty SQL query" in empty.output


def test_sql_without_database_says_what_to_do() -> None:
    result = CliRunner().invoke(main, ["sql", "SELECT 1"])
    assert result.exit_code == 1 and "movierec ingest" in result.output
