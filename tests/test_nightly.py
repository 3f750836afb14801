"""End to end on the real ml-latest-small: `movierec nightly` ingests, embeds, trains, publishes; reruns
skip training when the ratings did not change; a failing stage stops the job and keeps yesterday's lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from movierec.batch.report import report
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.pipeline import nightly


def _latest(settings: Settings) -> list[tuple]:
    with connect(settings, read_only=True) as con:
        return con.execute(
            "SELECT run_id, query_name, user_id, rank, movie_id FROM latest_recommendations ORDER BY ALL"
        ).fetchall()


@pytest.mark.slow
@pytest.mark.realdata
def test_nightly_end_to_end_on_ml_latest_small(settings: Settings, ml_small: Path, tmp_path: Path) -> None:
    quick = {"epochs": 2, "dim": 32}
    # Without saved queries (a first run after install) every stage runs and the batch is skipped,
    # saying so: the job succeeds but publishes nothing.
    first = nightly(settings, ml_small, train_options=quick)
    assert [s["stage"] for s in first.stages] == ["ingest", "embed", "train", "batch"]
    assert not first.published and first.stages[-1]["note"].startswith("skipped: no enabled saved queries")
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ratings").fetchone()[0] == 100_004
        assert con.execute("SELECT count(*) FROM cf_models").fetchone()[0] == 1

    runner = CliRunner()
    for args in (
        ["zombies", "Horror films with zombies", "--genre", "Horror"],
        ["space", "space adventure", "--genre", "Sci-Fi", "--year-min", "1990", "--top-n", "5"],
    ):
        assert runner.invoke(main, ["queries", "add", *args]).exit_code == 0

    result = runner.invoke(main, ["nightly", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["published"] and out["run_id"] == 1
    notes = {s["stage"]: s["note"] for s in out["stages"]}
    assert notes["train"].startswith("skipped, ratings unchanged") and "run 1:" in notes["batch"]

    with connect(settings, read_only=True) as con:
        per_query = dict(
            con.execute("SELECT query_name, count(*) FROM latest_recommendations GROUP BY 1").fetchall()
        )
        seen = con.execute(
            "SELECT count(*) FROM latest_recommendations JOIN ratings USING (user_id, movie_id)"
        ).fetchone()[0]
        wrong = con.execute(
            "SELECT count(*) FROM latest_recommendations WHERE (query_name = 'zombies' AND NOT "
            "list_contains(genres, 'Horror')) OR (query_name = 'space' AND (NOT list_contains(genres, "
            "'Sci-Fi') OR year < 1990))"
        ).fetchone()[0]
        sources = con.execute("SELECT DISTINCT source FROM latest_recommendations").fetchall()
    assert per_query == {"zombies": 671 * 10, "space": 671 * 5}
    assert seen == 0 and wrong == 0 and sources == [("cf",)]
    rep = {q["query"]: q for q in report(settings)["queries"]}
    assert rep["zombies"]["genre_precision"] == 1.0 and rep["zombies"]["candidates_found"] == 250
    assert rep["zombies"]["personalisation"] > 0.2

    # --retrain fits from scratch (never an update of the current model), then a new run.
    result = runner.invoke(main, ["nightly", "--retrain", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["run_id"] == 2 and "--retrain" in {s["stage"]: s["note"] for s in out["stages"]}["train"]
    with connect(settings, read_only=True) as con:
        metrics = con.execute("SELECT metrics FROM cf_models WHERE is_current").fetchone()[0]
    assert json.loads(metrics)["mode"] == "full" and json.loads(metrics)["epochs_run"] == 10  # ALS sweeps

    # A broken snapshot stops the job at ingest; yesterday's lists stay published.
    before = _latest(settings)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    (bad / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,not-a-number,964982703\n")
    result = runner.invoke(main, ["nightly", str(bad), "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: nightly stopped at ingest:") and result.output.count("\n") == 1
    assert _latest(settings) == before


def test_training_is_due_when_ratings_change(settings: Settings) -> None:
    """Pins down when `nightly` retrains (the registry's rule): no model, another count, a newer rating."""
    from movierec.cf import Popularity, save_model
    from movierec.cf import stale_reason as ratings_changed
    from movierec.cf.data import load_ratings

    with connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (1, 'A (1999)', 1999, ['Drama'])")
        con.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (1, 1, 4.0, TIMESTAMP '2020-01-01'), "
            "(2, 1, 3.0, TIMESTAMP '2020-01-02')"
        )
    assert ratings_changed(settings) == "no CF model yet"
    data = load_ratings(settings)
    v1 = save_model(settings, Popularity().fit(data), snapshot=data.snapshot()).version
    assert ratings_changed(settings) is None
    with connect(settings) as con:  # a rating updated later: same count, newer timestamp
        con.execute("UPDATE ratings SET rating = 5.0, rated_at = TIMESTAMP '2020-02-01' WHERE user_id = 1")
    assert f"newer than model {v1}" in ratings_changed(settings)
    with connect(settings) as con:
        con.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (3, 1, 2.0, TIMESTAMP '2020-01-03')"
        )
    assert f"3 ratings now, model {v1} saw 2" in ratings_changed(settings)
