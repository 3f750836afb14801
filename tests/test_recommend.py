"""`movierec recommend` (live, same code path as the batch), `movierec show` (published lists) and
`movierec batch report`, on the planted world of tests/batch_world.py."""

from __future__ import annotations

import json
from pathlib import Path

import batch_world as world
import pytest
from click.testing import CliRunner

from movierec.batch.run import run_batch
from movierec.cli import main
from movierec.config import Settings

pytestmark = pytest.mark.slow  # loads the offline sentence-transformers model

KEYS = {"rank", "movie_id", "title", "year", "genres", "score", "similarity", "source"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("recommend") / "home"
    settings = world.build(Settings(home=home), (world.ZOMBIES, world.EVERYTHING))
    run_batch(settings)
    return settings


def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--home", str(settings.home)])
    return result.exit_code, result.stdout, result.stderr


def test_recommend_json_matches_the_batch_for_the_same_query(planted: Settings) -> None:
    code, out, err = invoke(
        planted,
        "recommend",
        "2",
        "zombie horror films",
        "--genre",
        "Horror",
        "--candidates",
        "4",
        "--top-n",
        "2",
        "--json",
    )
    assert code == 0, err
    items = json.loads(out)
    assert all(set(i) == KEYS for i in items)
    assert [i["movie_id"] for i in items] == [101, 102]
    assert [i["rank"] for i in items] == [1, 2] and items[0]["score"] >= items[1]["score"]
    assert items[0]["title"] == "Zombie Apocalypse (2004)" and items[0]["genres"] == ["Horror"]
    assert {i["source"] for i in items} == {"cf"}

    code, out, _ = invoke(planted, "show", "2", "--query", "zombies", "--json")
    shown = json.loads(out)
    assert all(set(i) == KEYS | {"query", "because_movie_id", "because_title"} for i in shown)
    assert [i["movie_id"] for i in shown] == [i["movie_id"] for i in items]
    assert [i["score"] for i in shown] == pytest.approx([i["score"] for i in items], rel=1e-5)


def test_recommend_table_shows_history_first_and_hides_seen(planted: Settings) -> None:
    code, out, _ = invoke(
        planted, "recommend", "1", "zombie horror films", "--genre", "Horror", "--top-n", "3"
    )
    assert code == 0
    history, recs = out.split("Recommended for user 1")
    assert "highest-rated" in history and "Zombie Apocalypse" in history  # user 1 rated 101 with 5 stars
    first_row = recs.splitlines()[3]  # the heading's tail, column names, a rule, then rank 1
    assert "Zombie Apocalypse" not in recs and "Dawn of the Undead" in first_row


def test_recommend_with_nothing_to_list_says_why(planted: Settings) -> None:
    """Filters no film passes: an empty list and a note on stderr, as `search` gives (before: a bare
    empty table)."""
    code, out, err = invoke(planted, "recommend", "1", "zombie films", "--year-min", "2999", "--json")
    assert code == 0 and json.loads(out) == [] and "no movies to recommend" in err
    code, _, err = invoke(planted, "recommend", "1", "zombie horror films", "--genre", "Horror")
    assert code == 0 and "no movies to recommend" not in err


def test_unknown_user_gets_cold_start_list_with_notice(planted: Settings) -> None:
    code, out, err = invoke(planted, "recommend", "999", "zombie horror films", "--genre", "Horror", "--json")
    assert code == 0
    items = json.loads(out)
    assert items and {i["source"] for i in items} == {"cold_start"}
    assert "user 999 has no ratings" in err and "cold-start" in err
    # The most similar horror title leads the cold-start list (similarity with a popularity prior).
    sims = [i["similarity"] for i in items]
    assert items[0]["similarity"] >= sorted(sims)[len(sims) // 2]


def test_user_new_since_training_is_cold_start_in_show(planted: Settings) -> None:
    code, out, _ = invoke(planted, "show", str(world.COLD), "--json")
    shown = json.loads(out)
    assert {i["source"] for i in shown} == {"cold_start"}
    assert {i["query"] for i in shown} == {"zombies", "everything"}
    assert 101 not in [i["movie_id"] for i in shown]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "424242"], "no recommendations for user 424242"),
        (["show", "2", "--query", "nope"], "has no query 'nope'; it has: everything, zombies"),
        (["recommend", "2", "  "], "text is empty"),
        (["recommend", "2", "zombies", "--genre", "Zombiecore"], "unknown genre 'Zombiecore'"),
        (["recommend", "2", "zombies", "--top-n", "0"], "--top-n must be a positive number"),
        (["recommend", "2", "zombies", "--alpha", "-1"], "--alpha must be between 0 and 1"),
        (["batch", "report", "99"], "no batch run 99"),
    ],
)
def test_bad_input_is_one_line(planted: Settings, args: list[str], message: str) -> None:
    code, out, err = invoke(planted, *args)
    assert code == 1
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("args", [["recommend", "-5", "zombies"], ["show", "-12"], ["similar", "-3"],
                                  ["batch", "report", "-23"], ["recommend", "5", "-1984"]])  # fmt: skip
def test_a_negative_id_is_named_as_such(planted: Settings, args: list[str]) -> None:
    """click read `-5` as an unknown option ("No such option '-5'"; of `-12` it named `-1`); it is a usage
    error naming the whole token, and saying how to pass a text that starts with '-'."""
    code, _, err = invoke(planted, *args)
    bad = next(a for a in args if a.startswith("-"))
    assert code == 2 and f"{bad} is not an id: ids are whole numbers from 1" in err and "`--`" in err, err


def test_report_json_and_chart(planted: Settings, tmp_path: Path) -> None:
    chart = tmp_path / "report.png"
    code, out, err = invoke(planted, "batch", "report", "--json", "--chart", str(chart))
    assert code == 0, err
    rep = json.loads(out)
    assert rep["run"]["status"] == "succeeded" and rep["catalogue_movies"] == len(world.MOVIES)
    by_name = {q["query"]: q for q in rep["queries"]}
    z, e = by_name["zombies"], by_name["everything"]
    assert z["candidates_found"] == 4 and z["users_served"] == 7 and z["rows"] == 14
    assert z["genre_precision"] == 1.0 and e["genre_precision"] is None
    # Two tastes get different lists: personalisation is well above 0 but below 1.
    assert 0.2 < z["personalisation"] < 1.0
    assert z["distinct_movies"] == 4 and z["coverage"] == pytest.approx(4 / 8)
    assert z["cold_start_share"] == pytest.approx(2 / 14, abs=1e-4)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = invoke(planted, "batch", "report")
    assert code == 0 and "zombies" in out and "personalisation" in out
