"""Saved queries: CRUD through the CLI and every validation case, each with a clear one-line error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect


@pytest.fixture
def catalogue(settings: Settings) -> Settings:
    with connect(settings) as con:
        con.execute(
            "INSERT INTO movies VALUES (1, 'Night of the Living Dead (1968)', 1968, ['Horror']), "
            "(2, 'Toy Story (1995)', 1995, ['Animation', 'Comedy']), (3, 'Heat (1995)', 1995, ['Action'])"
        )
    return settings


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_add_list_show_update_enable_remove(catalogue: Settings) -> None:
    code, out = run(
        "queries",
        "add",
        "zombies",
        "zombie films",
        "--genre",
        "horror",
        "--year-min",
        "1960",
        "--candidates",
        "100",
        "--top-n",
        "5",
    )
    assert code == 0, out
    code, out = run("queries", "add", "fun", "funny cartoons", "--user", "3", "--user", "1")
    assert code == 0, out

    code, out = run("queries", "list", "--json")
    listed = {q["name"]: q for q in json.loads(out)}
    assert listed["zombies"]["genres"] == ["Horror"]  # stored in the catalogue's spelling
    assert listed["zombies"]["candidates"] == 100 and listed["zombies"]["top_n"] == 5
    assert listed["zombies"]["users"] is None and listed["fun"]["users"] == [1, 3]
    assert listed["zombies"]["enabled"] is True

    code, out = run("queries", "update", "zombies", "--text", "undead horror", "--top-n", "8", "--no-years")
    assert code == 0, out
    code, out = run("queries", "show", "zombies", "--json")
    shown = json.loads(out)
    assert shown["text"] == "undead horror" and shown["top_n"] == 8
    assert shown["year_min"] is None and shown["genres"] == ["Horror"] and shown["candidates"] == 100

    assert run("queries", "disable", "zombies")[0] == 0
    assert json.loads(run("queries", "show", "zombies", "--json")[1])["enabled"] is False
    assert run("queries", "enable", "zombies")[0] == 0
    assert json.loads(run("queries", "show", "zombies", "--json")[1])["enabled"] is True

    code, out = run("queries", "update", "fun", "--all-users")
    assert json.loads(run("queries", "show", "fun", "--json")[1])["users"] is None

    assert run("queries", "remove", "fun")[0] == 0
    assert [q["name"] for q in json.loads(run("queries", "list", "--json")[1])] == ["zombies"]
    code, out = run("queries", "list")
    assert "zombies" in out and "undead horror" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["queries", "add", "q", "   "], "text is empty"),
        (["queries", "add", "", "zombies"], "name is empty"),
        (
            ["queries", "add", "q", "zombies", "--genre", "Zombiecore"],
            "unknown genre 'Zombiecore'; known genres: Action, Animation, Comedy, Horror",
        ),
        (["queries", "add", "q", "zombies", "--exclude-genre", "Western"], "unknown genre 'Western'"),
        (["queries", "add", "q", "zombies", "--top-n", "300"], "--top-n 300 is larger than --candidates 250"),
        (["queries", "add", "q", "zombies", "--candidates", "0"], "--candidates must be a positive number"),
        (["queries", "add", "q", "zombies", "--top-n", "-1"], "--top-n must be a positive number"),
        (  # published ranks are SMALLINT: a longer list would wrap to negative ranks
            ["queries", "add", "q", "zombies", "--candidates", "40000", "--top-n", "40000"],
            "--top-n must be between 1 and 32,767, got 40000",
        ),
        (["queries", "add", "q", "zombies", "--year-min", "0"], "--year-min must be a positive year"),
        (
            ["queries", "add", "q", "zombies", "--year-min", "2000", "--year-max", "1990"],
            "is after --year-max",
        ),
        (["queries", "add", "q", "zombies", "--user", "0"], "user ids must be positive"),
        (
            ["queries", "add", "q", "zombies", "--genre", "Horror", "--exclude-genre", "Horror"],
            "both wanted and excluded",
        ),
        (["queries", "add", "dup", "again"], "already exists"),
        (["queries", "update", "dup", "--top-n", "0"], "--top-n must be a positive number"),
        (["queries", "update", "dup", "--candidates", "5"], "--top-n 10 is larger than --candidates 5"),
        (["queries", "update", "dup", "--text", " "], "text is empty"),
        (["queries", "update", "nope", "--top-n", "3"], "no saved query named 'nope'; saved queries: dup"),
        (["queries", "remove", "nope"], "no saved query named 'nope'"),
        (["queries", "show", "nope"], "no saved query named 'nope'"),
        (["queries", "enable", "nope"], "no saved query named 'nope'"),
    ],
)
def test_validation_errors_are_one_line_and_change_nothing(
    catalogue: Settings, args: list[str], message: str
) -> None:
    assert run("queries", "add", "dup", "duplicate me")[0] == 0
    before = run("queries", "list", "--json")[1]
    code, out = run(*args)
    assert code == 1
    assert out.startswith("Error: ") and message in out and out.count("\n") == 1, out
    assert run("queries", "list", "--json")[1] == before


@pytest.mark.parametrize(
    "args",
    [
        ["--no-years", "--year-min", "2000"],
        ["--year-max", "1999", "--no-years"],
        ["--no-genres", "--genre", "Action"],
        ["--no-exclude-genres", "--exclude-genre", "Action"],
        ["--all-users", "--user", "3"],
    ],
)
def test_update_refuses_a_field_both_dropped_and_set(catalogue: Settings, args: list[str]) -> None:
    """Before, `--year-min 2000 --no-years` said "updated" and kept the year: one of the two was ignored."""
    assert run("queries", "add", "z", "zombie films", "--year-min", "1960", "--genre", "Horror")[0] == 0
    before = run("queries", "show", "z", "--json")[1]
    code, out = run("queries", "update", "z", *args)
    assert code == 2 and "contradict each other" in out, out
    assert run("queries", "show", "z", "--json")[1] == before


def test_names_and_texts_are_sql_parameters(catalogue: Settings) -> None:
    nasty = "x'); DROP TABLE saved_queries; --"
    assert run("queries", "add", nasty, nasty)[0] == 0
    shown = json.loads(run("queries", "show", nasty, "--json")[1])
    assert shown["name"] == nasty and shown["text"] == nasty


def test_list_on_a_fresh_database_says_how_to_add(catalogue: Settings) -> None:
    code, out = run("queries", "list")
    assert code == 0 and "movierec queries add" in out
