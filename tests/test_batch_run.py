"""`movierec batch run` on a planted world: known answers, all-or-nothing publish under SIGKILL, a reader
process that never sees a partial run, a second run refused, retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import batch_world as world
import pytest
from click.testing import CliRunner

from movierec.batch.run import run_batch
from movierec.cf import current_model
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.runs import runs_dir

pytestmark = pytest.mark.slow  # loads the offline sentence-transformers model


@pytest.fixture
def planted(settings: Settings) -> Settings:
    return world.build(settings, (world.ZOMBIES, world.EVERYTHING))


def _runs(settings: Settings) -> list[tuple]:
    with connect(settings, read_only=True) as con:
        return con.execute("SELECT run_id, status, n_rows, error FROM batch_runs ORDER BY run_id").fetchall()


def test_known_answer_seen_removed_cold_start_flagged(planted: Settings) -> None:
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0"])  # the planted CF order alone
    assert result.exit_code == 0, result.output
    assert "run 1:" in result.output and "locked for writing" in result.output

    zombies = world.lists(planted, "zombies")
    assert [m for m, _ in zombies[2]] == [101, 102] and zombies[3] == [(101, "cf"), (102, "cf")]
    assert [m for m, _ in zombies[5]] == [103, 104]
    assert zombies[1][0] == (102, "cf")  # 101 is user 1's favourite, but already rated
    assert zombies[4][0] == (103, "cf") and 104 not in [m for m, _ in zombies[4]]
    assert all(src == "cold_start" for _, src in zombies[world.COLD])
    assert 101 not in [m for m, _ in zombies[world.COLD]]  # user 7 rated it
    assert set(zombies) == {1, 2, 3, 4, 5, 6, 7}

    with connect(planted, read_only=True) as con:
        seen_hits = con.execute(
            "SELECT count(*) FROM latest_recommendations l JOIN ratings r USING (user_id, movie_id)"
        ).fetchone()[0]
        genres_ok = con.execute(
            "SELECT bool_and(list_contains(genres, 'Horror')) FROM latest_recommendations "
            "WHERE query_name = 'zombies'"
        ).fetchone()[0]
        run = con.execute(
            "SELECT status, alpha, formula, n_queries, n_users, n_rows, cf_model_version, embedding_model "
            "FROM batch_runs"
        ).fetchone()
        per_query = dict(
            con.execute(
                "SELECT query_name, candidates_found FROM batch_run_queries WHERE run_id = 1"
            ).fetchall()
        )
        total = con.execute("SELECT count(*) FROM latest_recommendations").fetchone()[0]
    assert seen_hits == 0
    assert genres_ok
    status, alpha, formula, n_queries, n_users, n_rows, version, emb = run
    current = current_model(planted).version
    assert (status, alpha, n_queries, n_users, version, emb) == (
        "succeeded",
        0.0,
        2,
        7,
        current,
        "offline-minilm",
    )
    assert "minmax_user(cf_logit)" in formula and "cold start" in formula
    assert n_rows == total == 7 * 2 + 7 * 3
    assert per_query == {"zombies": 4, "everything": 8}


def test_alpha_is_stored_and_validated(planted: Settings) -> None:
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["alpha"] == 0.5 and summary["run_id"] == 1 and summary["n_rows"] == 7 * 2 + 7 * 3
    assert summary["lock_seconds"] < summary["seconds"]
    assert {q["query_name"]: q["users_served"] for q in summary["queries"]} == {"zombies": 7, "everything": 7}
    assert "score and write Parquet" in summary["stages"]
    with connect(planted, read_only=True) as con:
        assert con.execute("SELECT alpha FROM batch_runs").fetchone()[0] == 0.5
        # Blended scores: every CF score lies between the two normalised parts' extremes [0, 1].
        lo, hi = con.execute("SELECT min(score), max(score) FROM latest_recommendations").fetchone()
    assert 0.0 <= lo <= hi <= 1.0
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "2"])
    assert result.exit_code == 1 and "--alpha must be between 0 and 1" in result.output


def test_alpha_setting_is_the_default_and_the_flag_wins(planted: Settings) -> None:
    env = {"MOVIEREC_ALPHA": "0.4"}
    result = CliRunner().invoke(main, ["batch", "run", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha"] == 0.4
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha"] == 0.0
    result = CliRunner().invoke(main, ["batch", "run", "--json"])  # no setting: the default
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha"] == 0.1  # chosen by `movierec evaluate --lists`
    bad = CliRunner().invoke(main, ["batch", "run"], env={"MOVIEREC_ALPHA": "1.5"})
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit), bad.output
    assert bad.output.startswith("Error: bad setting alpha") and bad.output.count("\n") == 1, bad.output


def test_the_popularity_weight_is_a_setting_the_run_records(
    planted: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MOVIEREC_POPULARITY_WEIGHT (issue 18) mixes the candidates' log popularity into known users' lists;
    the run's formula records it, and with --alpha it may not leave the CF side a negative weight."""
    monkeypatch.setenv("MOVIEREC_POPULARITY_WEIGHT", "0.6")
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0.5"])
    assert result.exit_code == 1 and "plus the popularity weight's size 0.6 exceeds 1" in result.output
    monkeypatch.setenv("MOVIEREC_POPULARITY_WEIGHT", "-0.6")  # a discount takes its share from CF too
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0.5"])
    assert result.exit_code == 1 and "size 0.6 exceeds 1" in result.output
    monkeypatch.setenv("MOVIEREC_POPULARITY_WEIGHT", "0.6")
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    with connect(planted, read_only=True) as con:
        assert (
            "beta = 0.6"
            in con.execute("SELECT formula FROM batch_runs WHERE status = 'succeeded'").fetchone()[0]
        )
    monkeypatch.setenv("MOVIEREC_POPULARITY_WEIGHT", "1.5")
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code != 0 and "popularity_weight" in result.output and "Traceback" not in result.output


def test_no_saved_queries_is_a_clear_error(settings: Settings) -> None:
    world.build(settings, ())
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code == 1
    assert "no enabled saved queries" in result.output and "movierec queries add" in result.output
    assert _runs(settings) == []


def test_a_query_no_film_matches_is_named_not_called_damage(settings: Settings) -> None:
    """Filters that exclude every film are the user's choice to revisit, not a damaged store."""
    from movierec.batch.queries import SavedQuery

    world.build(settings, (SavedQuery("future", "zombie films", genres=("Horror",), year_min=2999),))
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code == 1
    assert "no film matches saved query 'future'" in result.output and "movierec check" not in result.output
    assert [r[1] for r in _runs(settings)] == ["failed"]


def test_a_run_that_publishes_warns_of_an_empty_query_and_unknown_users(settings: Settings) -> None:
    """One query's filters match nothing while another publishes, and a query names a user id with no
    ratings: the run succeeds, and says both on stderr and in --json (before: silence)."""
    from movierec.batch.queries import SavedQuery

    queries = (world.ZOMBIES, SavedQuery("future", "zombie films", year_min=2999),
               SavedQuery("some", "movies", users=(1, 99999999)))  # fmt: skip
    world.build(settings, queries)
    result = CliRunner().invoke(main, ["batch", "run", "--json"])
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 2, warnings
    assert "'future' found no film" in warnings[0] and "99999999" in warnings[1] and "'some'" in warnings[1]
    assert all(f"batch: warning: {w}" in result.stderr for w in warnings)
    for args in (["queries", "disable", "future"], ["queries", "update", "some", "--all-users"]):
        assert CliRunner().invoke(main, args).exit_code == 0
    clean = CliRunner().invoke(main, ["batch", "run", "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["warnings"] == [] and "warning" not in clean.stderr


def test_retention_keeps_last_n_runs(planted: Settings) -> None:
    keep2 = Settings(home=planted.home, keep_runs=2)
    for _ in range(3):
        run_batch(keep2)
    with connect(planted, read_only=True) as con:
        kept = [
            r[0] for r in con.execute("SELECT DISTINCT run_id FROM recommendations ORDER BY 1").fetchall()
        ]
        runs = [r[0] for r in con.execute("SELECT run_id FROM batch_runs ORDER BY 1").fetchall()]
        latest = con.execute("SELECT DISTINCT run_id FROM latest_recommendations").fetchall()
    assert kept == [2, 3] and runs == [2, 3] and latest == [(3,)]
    assert sorted(f.name for f in runs_dir(planted.db_path).iterdir()) == ["run-000002", "run-000003"]


def test_second_run_while_one_runs_is_refused(planted: Settings) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
            import sys, time
            from movierec.batch.lock import batch_lock
            from movierec.config import Settings
            with batch_lock(Settings()):
                print('locked', flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOVIEREC_HOME": str(planted.home)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["batch", "run"])
        assert result.exit_code == 1
        assert "another batch run is in progress" in result.output and f"PID {holder.pid}" in result.output
        assert _runs(planted) == []
    finally:
        holder.kill()
        holder.communicate()
    # The kernel drops the lock with its holder: no stale lock file blocks the next run.
    assert run_batch(planted).run_id == 1


def _batch_subprocess(settings: Settings) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "batch", "run", "--quiet"],
        env={**os.environ, "MOVIEREC_HOME": str(settings.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_run_leaves_previous_results_and_is_marked_abandoned(planted: Settings) -> None:
    run_batch(planted)
    before = world.lists(planted, "zombies")

    proc = _batch_subprocess(planted)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(status == "running" for _, status, _, _ in _runs(planted)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the batch ended before it could be killed: {proc.communicate()[1]!r}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    assert world.lists(planted, "zombies") == before
    # Issue 9: a reader sees the dead run as abandoned at once (its batch lock is free), not 'running'.
    assert [(r, s) for r, s, _, _ in _runs(planted)] == [(1, "succeeded"), (2, "abandoned")]
    report = CliRunner().invoke(main, ["batch", "report"])
    assert report.exit_code == 0 and "run 2 (started" in report.output and "abandoned" in report.output

    # What a kill during the write would leave behind: a partial part and one no view names.
    (runs_dir(planted.db_path) / "run-000002").mkdir(exist_ok=True)
    (runs_dir(planted.db_path) / "run-000002" / "part-q0000-s000000.parquet.tmp").write_bytes(b"partial")
    (runs_dir(planted.db_path) / "run-000002" / "part-q0000-s000001.parquet").write_bytes(b"never published")
    (runs_dir(planted.db_path) / "run-000004.parquet.tmp").write_bytes(b"partial")
    run_batch(planted)
    runs = _runs(planted)
    assert [(r, s) for r, s, _, _ in runs] == [(1, "succeeded"), (2, "abandoned"), (3, "succeeded")]
    assert "killed or crashed" in runs[1][3]
    with connect(planted, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM recommendations WHERE run_id = 2").fetchone()[0] == 0
    # Whatever the killed run had written is gone; only succeeded runs own files.
    assert sorted(f.name for f in runs_dir(planted.db_path).iterdir()) == ["run-000001", "run-000003"]


def test_failed_run_is_recorded_and_previous_results_stay(planted: Settings) -> None:
    run_batch(planted)
    before = world.lists(planted, "zombies")
    with connect(planted) as con:
        path = con.execute("SELECT path FROM cf_models WHERE is_current").fetchone()[0]
    (Path(path) / "factors.npz").unlink()
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code == 1 and "no factors" in result.output
    runs = _runs(planted)
    assert [(r, s) for r, s, _, _ in runs] == [(1, "succeeded"), (2, "failed")]
    assert "no factors" in runs[1][3]
    assert world.lists(planted, "zombies") == before


READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from movierec.config import Settings
    from movierec.db import connect
    stop, seen, bad = Path(sys.argv[1]), {}, []
    while not stop.exists():
        with connect(Settings(lock_timeout=60), read_only=True) as con:
            rows = con.execute(
                "SELECT l.run_id, count(*), any_value(b.n_rows) FROM latest_recommendations l "
                "JOIN batch_runs b USING (run_id) GROUP BY l.run_id"
            ).fetchall()
        if len(rows) != 1 or rows[0][1] != rows[0][2]:
            bad.append(rows)
        for run_id, n, _ in rows:
            seen[run_id] = seen.get(run_id, 0) + 1
        time.sleep(0.005)
    print(json.dumps({"seen": seen, "bad": bad}))
""")


def test_reader_process_never_sees_a_partial_run(planted: Settings, tmp_path: Path) -> None:
    run_batch(planted)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(stop)],
        env={**os.environ, "MOVIEREC_HOME": str(planted.home)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        summaries = [run_batch(planted) for _ in range(3)]
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=120)
    observed = json.loads(out)
    assert observed["bad"] == []
    assert int(max(observed["seen"], key=int)) >= 2, observed  # it kept reading across publishes
    assert all(s.lock_seconds < 5 for s in summaries)


def test_sigkill_after_the_run_file_is_written_but_before_publish(planted: Settings) -> None:
    """The latest possible kill: scoring done and the Parquet part in place, publish not committed. A reader
    holding the database keeps the job waiting at that point, so the kill lands there deterministically."""
    run_batch(planted)
    before = world.lists(planted, "zombies")
    proc = _batch_subprocess(planted)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ("running" not in [s for _, s, _, _ in _runs(planted)]):
            time.sleep(0.05)
        with connect(planted, read_only=True):  # the job cannot publish while we read
            file2 = runs_dir(planted.db_path) / "run-000002" / "part-q0001-s000000.parquet"  # its last part
            while time.monotonic() < deadline and not file2.exists() and proc.poll() is None:
                time.sleep(0.05)
            assert file2.exists() and proc.poll() is None, proc.communicate()[1]
            time.sleep(0.3)  # now retrying the publish
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert world.lists(planted, "zombies") == before
    # Issue 9: a reader sees the dead run as abandoned at once (its batch lock is free), not 'running'.
    assert [(r, s) for r, s, _, _ in _runs(planted)] == [(1, "succeeded"), (2, "abandoned")]
    report = CliRunner().invoke(main, ["batch", "report"])
    assert report.exit_code == 0 and "run 2 (started" in report.output and "abandoned" in report.output
    run_batch(planted)
    assert [(r, s) for r, s, _, _ in _runs(planted)] == [(1, "succeeded"), (2, "abandoned"), (3, "succeeded")]
    assert not file2.exists()


def test_fresh_user_is_folded_in_by_an_implicit_model(planted: Settings) -> None:
    """User 7 rated movies after the model was trained. An implicit (ALS) model folds them in from those
    ratings: a personal list marked 'fold_in' in the batch and in `recommend`, not the cold-start list.
    User 7 rated 101 (taste A, 4 stars), so 102, the other taste-A zombie film, comes first."""
    from dataclasses import replace

    from movierec.batch.recommend import recommend

    implicit = replace(world.planted_factors(), objective="implicit", reg=0.1, alpha=1.0)
    world.register_model(planted, implicit)
    result = CliRunner().invoke(main, ["batch", "run"])
    assert result.exit_code == 0, result.output
    zombies = world.lists(planted, "zombies")
    assert zombies[world.COLD][0] == (102, "fold_in")
    assert {src for _, src in zombies[world.COLD]} == {"fold_in"}
    assert zombies[1][0] == (102, "cf")  # trained users keep source 'cf'
    adhoc = recommend(planted, world.COLD, "zombie horror films", genres=("Horror",), top_n=2)
    assert [i["source"] for i in adhoc.items] == ["fold_in", "fold_in"]
    assert adhoc.items[0]["movie_id"] == 102 and "folded in" in adhoc.notice
