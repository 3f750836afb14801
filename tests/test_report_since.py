"""`movierec batch report`: a published run judged by the ratings ingested after it (what users did next),
on the planted world of tests/batch_world.py, through a real ingest of later ratings."""

from __future__ import annotations

import json
from pathlib import Path

import batch_world as world
import pytest
from click.testing import CliRunner

from movierec.batch.report import report
from movierec.batch.run import run_batch
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.ingest.load import ingest_dir

pytestmark = pytest.mark.slow  # loads the offline sentence-transformers model


def _later(tmp_path: Path, ratings: list[tuple[int, int, float]]) -> Path:
    """A MovieLens (ml-latest) directory: the same catalogue, these ratings on 2021-01-01."""
    d = tmp_path / "later"
    d.mkdir()
    movies = "".join(f'{m},"{t}",{"|".join(g)}\n' for m, t, _, g in world.MOVIES)
    (d / "movies.csv").write_text("movieId,title,genres\n" + movies)
    rows = "".join(f"{u},{m},{r},1609459200\n" for u, m, r in ratings)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + rows)
    return d


def test_a_runs_lists_are_judged_by_the_ratings_ingested_after_it(tmp_path: Path) -> None:
    settings = world.build(Settings(home=tmp_path / "home"), (world.ZOMBIES,))
    run_batch(settings)
    rep = report(settings)
    assert rep["run"]["last_ingest"] == 0 and rep["since"]["ratings"] == 0  # nothing ingested yet
    assert any("no new ratings ingested since" in n for n in rep["notes"])

    lists = {u: [m for m, _ in ms] for u, ms in world.lists(settings).items()}
    top_n = world.ZOMBIES.top_n
    # After the run: users 2 and 6 like the first film of their lists, user 3 watches its first film and
    # dislikes it, user 5 likes a comedy no zombie list holds. Four active users, two hits. User 4 only
    # changes its rating of a film rated before the run (4.5 -> 5.0): not a new watch, not active, and no
    # credit to the baseline (whose list could hold the film: lists leave out what users had rated).
    later = [(2, lists[2][0], 5.0), (3, lists[3][0], 2.0), (5, 201, 4.5), (6, lists[6][0], 4.0)]
    rerated = [(u, m, 5.0 if m == 104 else r) for u, m, r in world.RATINGS if u == 4]
    ingest_dir(settings, _later(tmp_path, later + rerated))
    rep = report(settings, 1)
    assert (rep["since"]["ingests"], rep["since"]["ratings"], rep["since"]["users"]) == (1, 4, 4)
    with connect(settings, read_only=True) as con:  # the ingest did write user 4's changed rating
        assert (
            con.execute("SELECT rating FROM ratings WHERE user_id = 4 AND movie_id = 104").fetchone()[0]
            == 5.0
        )
    z = rep["queries"][0]
    assert z["active_since"] == 4
    assert z["hit_rate_since"] == pytest.approx(2 / 4, abs=1e-4)
    assert z["precision_since"] == pytest.approx(2 / (4 * top_n), abs=1e-4)
    # The baseline: the films the run listed most (ties by id) to everyone, minus what each had rated.
    counts: dict[int, int] = {}
    for ms in lists.values():
        for m in ms:
            counts[m] = counts.get(m, 0) + 1
    most = sorted(counts, key=lambda m: (-counts[m], m))[: 3 * top_n]
    rated = {(u, m) for u, m, _ in world.RATINGS}
    liked = {(u, m) for u, m, r in later if r >= 4}
    hits = sum(
        any((u, m) in liked for m in [m for m in most if (u, m) not in rated][:top_n]) for u in (2, 3, 5, 6)
    )
    assert hits >= 1  # user 6's film is the most listed of all (ties elsewhere fall either way)
    assert z["same_list_hit_rate_since"] == pytest.approx(hits / 4, abs=1e-4)

    out = CliRunner().invoke(main, ["batch", "report", "1", "--home", str(settings.home)])
    assert out.exit_code == 0 and "what users did next: 4 ratings by 4 users" in out.output, out.output
    js = json.loads(
        CliRunner().invoke(main, ["batch", "report", "1", "--json", "--home", str(settings.home)]).stdout
    )
    assert js["queries"][0]["hit_rate_since"] == z["hit_rate_since"]

    # A run after the ingest saw it: nothing has happened since that run yet, and the report says which
    # run the later ratings can judge.
    run_batch(settings)
    now = report(settings)
    assert now["run"]["last_ingest"] == 1 and now["since"]["ratings"] == 0
    assert now["queries"][0]["active_since"] == 0
    assert any("`movierec batch report 1`" in n for n in now["notes"]), now["notes"]
    # An ingest that only changes a rating brings no new watch: run 2 (which saw ingest 1) still has
    # nothing to be judged by, so a later run's report still names run 1.
    (tmp_path / "again").mkdir()
    ingest_dir(settings, _later(tmp_path / "again", [(4, 104, 4.0)]))
    run_batch(settings)
    assert any("`movierec batch report 1`" in n for n in report(settings)["notes"])
    assert report(settings, 2)["since"]["ratings"] == 0
    # A run published before runs recorded their last ingest: what came next is not known, and said.
    with connect(settings) as con:
        con.execute("UPDATE batch_runs SET last_ingest = NULL WHERE run_id = 1")
    old = report(settings, 1)
    assert old["since"] is None and old["queries"][0]["hit_rate_since"] is None
    assert any("not known for this run" in n for n in old["notes"])
