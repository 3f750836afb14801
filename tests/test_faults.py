"""Issue 9: faults and bad input. Nothing unusable becomes current, every failure is one clear line, and
the next ordinary command works without manual cleanup. Real DuckDB, Qdrant Edge, qdrant-client local
mode and real SIGKILLs; the `slow` ones load the offline text model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from movierec.catalog import Seen
from movierec.cf import KerasCF, Popularity, current_model, save_model
from movierec.cf.data import Ratings
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import DamagedError, ModelError
from movierec.runs import runs_dir
from movierec.store import open_store

DIM = 8


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    for n in needles:
        assert n in result.output, result.output


def _seed(settings: Settings) -> None:
    with connect(settings) as con:
        con.execute("INSERT INTO movies VALUES (1, 'Toy Story (1995)', 1995, ['Animation'])")


# --------------------------------------------------------------------------- sql confinement


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{home}/x.csv'",
        "COPY (SELECT 1 AS x) TO '{run}'",  # a published run file: the statement type stops it
        "ATTACH '{home}/other.duckdb' (READ_WRITE)",
        "EXPORT DATABASE '{home}/export'",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('{home}/../../etc/hostname')",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{run}'",
    ],
)
def test_sql_is_confined_to_the_database_and_run_files(settings: Settings, statement: str) -> None:
    _seed(settings)
    run = runs_dir(settings.db_path) / "run-000001" / "part-q0000-s000000.parquet"
    run.parent.mkdir(parents=True)
    with connect(settings) as con:  # a published run, as the batch would leave it
        con.execute(f"COPY (SELECT 1 AS run_id, 'q' AS query_name, 1 AS user_id, 1::SMALLINT AS rank, "
                    f"1 AS movie_id, 0.5 AS score, 0.5 AS similarity, NULL::FLOAT AS predicted_rating, "
                    f"'cf' AS source) TO '{run}'")  # fmt: skip
        con.execute(
            "INSERT INTO batch_runs (run_id, started_at, status, output) "
            "VALUES (1, now(), 'succeeded', 'run-000001')"
        )
    before = run.read_bytes()
    result = CliRunner().invoke(main, ["sql", statement.format(home=settings.home, run=run)])
    one_line_error(result)
    assert run.read_bytes() == before and not (settings.home / "x.csv").exists()
    ok = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM latest_recommendations", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output) == [{"n": 1}], ok.output


# --------------------------------------------------------------------------- damaged database


def test_garbled_database_is_one_line(settings: Settings) -> None:
    _seed(settings)
    data = bytearray(settings.db_path.read_bytes())
    data[0:4096] = os.urandom(4096)
    data[8192:16384] = os.urandom(8192)
    settings.db_path.write_bytes(bytes(data))
    for args in (["sql", "SELECT 1"], ["queries", "list"], ["queries", "add", "z", "zombies"]):
        one_line_error(CliRunner().invoke(main, args), str(settings.db_path))
    check = CliRunner().invoke(main, ["check", "--json"])
    assert check.exit_code == 1
    database = [f for f in json.loads(check.output)["findings"] if f["check"] == "database"]
    assert not database[0]["ok"]


def test_database_path_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dir.duckdb").mkdir()
    monkeypatch.setenv("MOVIEREC_DB", str(tmp_path / "dir.duckdb"))
    one_line_error(CliRunner().invoke(main, ["queries", "list"]), "is a directory")
    one_line_error(CliRunner().invoke(main, ["queries", "add", "z", "zombies"]), "is a directory")


# --------------------------------------------------------------------------- CF guard and model files


def _ratings(settings: Settings) -> Ratings:
    import cf_world

    data = cf_world.checkerboard()
    cf_world.write_ratings(settings, data)
    return data


def _factors_model(data: Ratings, scale: float, objective: str = "implicit") -> KerasCF:
    from movierec.cf.factors import Factors

    users, movies = np.unique(data.user_ids), np.unique(data.movie_ids)
    rng = np.random.default_rng(0)
    uv = rng.normal(size=(len(users), 4)).astype(np.float32) * scale
    mv = rng.normal(size=(len(movies), 4)).astype(np.float32) * scale
    f = Factors(users, movies, uv, mv, np.zeros(len(users), np.float32), np.zeros(len(movies), np.float32),
                objective=objective)  # fmt: skip
    return KerasCF.from_factors(f, Seen.from_pairs(data.user_ids, data.movie_ids))


def _planted_model(data: Ratings) -> KerasCF:
    """The checkerboard's right answer as factors: each user and movie on its taste group's axis."""
    from movierec.cf.factors import Factors

    users, movies = np.unique(data.user_ids), np.unique(data.movie_ids)
    uv = np.array([[3.0, 0.0] if u <= 20 else [0.0, 3.0] for u in users], np.float32)
    mv = np.array(
        [[1.0, 0.0] if m < 200 else [0.0, 1.0] if m < 300 else [0.0, 0.0] for m in movies], np.float32
    )
    f = Factors(users, movies, uv, mv, np.zeros(len(users), np.float32), np.zeros(len(movies), np.float32),
                objective="implicit")  # fmt: skip
    return KerasCF.from_factors(f, Seen.from_pairs(data.user_ids, data.movie_ids))


@pytest.mark.parametrize("spread", [1, 10**12])  # dense ids (a lookup table) and sparse ones (a search)
def test_guard_judges_exactly_the_sampled_users_ratings(spread: int) -> None:
    """The guard picks its sample's ratings out of all of them (`_members`): the same as np.isin."""
    from movierec.cf.guard import _members

    rng = np.random.default_rng(spread)
    values = rng.integers(1, 5000, 20_000).astype(np.int64) * spread
    ids = np.concatenate([rng.choice(values, 30), [-7, 6000 * spread]])  # two ids no rating has
    np.testing.assert_array_equal(_members(values, ids), np.isin(values, ids))
    if spread == 1:  # the saved seen lists hold int32 user ids; the sample is int64
        np.testing.assert_array_equal(_members(values.astype(np.int32), ids), np.isin(values, ids))
    assert not _members(values[:0], ids).any() and not _members(values, ids[:0]).any()


def test_guard_accepts_a_sane_model(settings: Settings) -> None:
    """The guard lets a sane model through: it is saved, recorded and made current over the previous one
    (`save_model`'s own record says `is_current=True` by default, so it is read back from the registry)."""
    import cf_world

    from movierec.cf import list_models, load_current_model

    data = _ratings(settings)
    previous = save_model(settings, Popularity().fit(data), snapshot=data.snapshot()).version
    saved = save_model(settings, _planted_model(data), snapshot=data.snapshot())
    assert saved.version != previous
    assert current_model(settings).version == saved.version
    assert {(m.version, m.is_current) for m in list_models(settings)} == {
        (previous, False),
        (saved.version, True),
    }
    record, loaded = load_current_model(settings)  # the saved factors, not the previous popularity model
    assert record.version == saved.version and isinstance(loaded, KerasCF)
    assert loaded.top(1, 1)[0][0] == cf_world.missing_movie(1)  # the planted answer, from these factors


def test_guard_refuses_nan_and_diverged_models_and_keeps_the_previous(settings: Settings) -> None:
    data = _ratings(settings)
    snapshot = data.snapshot()
    good = save_model(settings, Popularity().fit(data), snapshot=snapshot).version
    nan_model = _factors_model(data, 1.0)
    nan_model.factors.user_vecs[0, 0] = np.nan
    with pytest.raises(ModelError, match="non-finite"):
        save_model(settings, nan_model, snapshot=snapshot)
    with pytest.raises(ModelError, match="val_loss"):
        save_model(settings, _factors_model(data, 0.01), snapshot=snapshot, metrics={"val_loss": 3e12})
    with pytest.raises(ModelError, match="popularity"):  # random huge factors: saturated, ranks at chance
        save_model(settings, _factors_model(data, 1e4), snapshot=snapshot)
    with pytest.raises(ModelError, match="ends of the scale"):
        save_model(settings, _factors_model(data, 1e4, "rating"), snapshot=snapshot)
    assert current_model(settings).version == good
    left = [p.name for p in settings.models_path.iterdir() if p.name != ".train.lock"]
    assert left == [good]  # nothing half-made left


@pytest.mark.parametrize("damage", ["truncate", "garble", "pickle"])
def test_damaged_factors_file_is_one_line(settings: Settings, damage: str) -> None:
    data = _ratings(settings)
    record = save_model(settings, _planted_model(data), snapshot=data.snapshot())
    path = record.path / "factors.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garble":
        path.write_bytes(os.urandom(2000))
    else:
        np.savez(path, user_ids=np.array([object()], dtype=object))
    result = CliRunner().invoke(main, ["similar", "Movie 101 (2000)"])
    one_line_error(result, str(path), "movierec train")
    check = CliRunner().invoke(main, ["check"])
    assert check.exit_code == 1 and "FAIL CF model" in check.output and "movierec train" in check.output


# --------------------------------------------------------------------------- the vector store


def _points(n: int, seed: int = 0) -> tuple[list[int], np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = list(range(1, n + 1))
    return ids, v, [{"movie_id": i, "title": f"m{i}", "year": 2000, "genres": ["Drama"]} for i in ids]


def test_garbled_store_record_is_one_line_and_rebuild_recovers(settings: Settings) -> None:
    with open_store(settings) as store:
        store.rebuild("m", DIM, *_points(20))
    (settings.edge_path / "model.json").write_text("{garbage")
    with pytest.raises(DamagedError, match="embed --rebuild"), open_store(settings):
        pass
    with open_store(settings, repair=True) as store:
        store.rebuild("m", DIM, *_points(20))
    with open_store(settings) as store:
        assert store.model_info() == ("m", DIM) and store.count() == 20


def test_random_bytes_in_the_store_vector_file_never_reach_a_result(settings: Settings) -> None:
    """The issue's corruption: random bytes over the shard's vector storage. Whatever the engine then
    reads, a search either answers with cosine similarities in [-1, 1] or fails with one line saying how
    to rebuild; it never prints or publishes a 'similarity' of 6e37."""
    ids, v, payloads = _points(200)
    with open_store(settings) as store:
        store.rebuild("m", DIM, ids, v, payloads)
    chunks = sorted(settings.edge_path.rglob("chunk_*.mmap"))
    assert chunks, "the Edge shard keeps its vectors in chunk files"
    rng = np.random.default_rng(1)
    with open(chunks[0], "r+b") as fh:
        fh.write(rng.integers(0, 256, 200 * DIM * 4, dtype=np.uint8).tobytes())
    try:
        with open_store(settings) as store:
            hits = store.search(v[0], 20, None)
        assert all(-1.0 - 1e-3 <= h.score <= 1.0 + 1e-3 for h in hits)
    except DamagedError as exc:
        assert "\n" not in str(exc) and "embed --rebuild" in str(exc)


def test_non_finite_vectors_never_reach_the_store(settings: Settings) -> None:
    ids, v, payloads = _points(5)
    with open_store(settings) as store:
        store.rebuild("m", DIM, ids, v, payloads)
        bad = v.copy()
        bad[2, 3] = np.inf
        with pytest.raises(ModelError, match="non-finite"):
            store.rebuild("m", DIM, ids, bad, payloads)
        with pytest.raises(ModelError, match="non-finite"):
            store.upsert(ids, bad, payloads)
        assert store.count() == 5 and store.model_info() == ("m", DIM)


@pytest.mark.parametrize("backend", ["local-memory", "local-file"])
def test_client_store_switches_through_an_alias(tmp_path: Path, backend: str) -> None:
    url = ":memory:" if backend == "local-memory" else f"file:{tmp_path / 'qdrant-local'}"
    settings = Settings(home=tmp_path / "home", qdrant_url=url, collection=f"movies_{tmp_path.name}")
    with open_store(settings) as store:
        store.rebuild("old", DIM, *_points(10))
    with open_store(settings) as store:
        assert store.model_info() == ("old", DIM) and store.count() == 10
        store.rebuild("new", DIM, *_points(7, seed=1))
    with open_store(settings) as store:
        assert store.model_info() == ("new", DIM) and store.count() == 7
        names = [c.name for c in store._client.get_collections().collections]
        assert sum(n.startswith(settings.collection) for n in names) == 1  # the old one is gone


KILL_REBUILD = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_faults import _points
    from movierec.config import Settings
    from movierec.store import open_store
    settings = Settings(home={home!r})
    print("ready", flush=True)
    with open_store(settings) as store:
        store.rebuild("new", 8, *_points(6000, seed=2))
    print("done", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 2.5])
def test_sigkill_during_rebuild_leaves_old_or_new_store(settings: Settings, delay: float) -> None:
    with open_store(settings) as store:
        store.rebuild("old", DIM, *_points(50))
    code = KILL_REBUILD.format(tests=str(Path(__file__).parent), home=str(settings.home))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    with open_store(settings) as store:  # the next ordinary open works, without cleanup
        assert (store.model_info(), store.count()) in {(("old", DIM), 50), (("new", DIM), 6000)}
        store.search(_points(1)[1][0], 5)
    shards = [d.name for d in settings.edge_path.iterdir() if d.name.startswith("shard")]
    assert len(shards) == 1  # leftovers of the killed build are gone


# ------------------------------------------------------------------ published runs (slow: the text model)


@pytest.mark.slow
def test_run_files_missing_moved_or_truncated(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    import batch_world as world

    world.build(settings, (world.ZOMBIES,))
    runner = CliRunner()
    for _ in range(2):
        assert runner.invoke(main, ["batch", "run", "-q"]).exit_code == 0
    first = world.lists(settings)
    shutil.rmtree(runs_dir(settings.db_path) / "run-000001")  # an old run's files: nothing else may break
    for args in (["queries", "add", "space", "space adventure"], ["show", "2"], ["queries", "list"]):
        assert runner.invoke(main, args).exit_code == 0, args
    assert world.lists(settings) == first
    latest = runs_dir(settings.db_path) / "run-000002" / "part-q0000-s000000.parquet"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated: reads of run 2 fail with one line
    one_line_error(runner.invoke(main, ["show", "2"]), str(latest.parent), "movierec batch run")
    one_line_error(runner.invoke(main, ["batch", "report"]), str(latest.parent))
    check = runner.invoke(main, ["check", "--quick"])
    assert check.exit_code == 1 and "FAIL run 2" in check.output
    assert runner.invoke(main, ["batch", "run", "-q"]).exit_code == 0  # republishes
    assert world.lists(settings, "zombies") == first

    moved = tmp_path / "moved-home"  # the documented move: the views follow the files
    shutil.move(settings.home, moved)
    monkeypatch.setenv("MOVIEREC_HOME", str(moved))
    moved_settings = Settings(home=moved)
    assert world.lists(moved_settings, "zombies") == first  # readers see the moved files at once
    assert runner.invoke(main, ["show", "2"]).exit_code == 0
    assert runner.invoke(main, ["batch", "run", "-q"]).exit_code == 0
    assert runner.invoke(main, ["check"]).exit_code == 0, runner.invoke(main, ["check"]).output
    with connect(moved_settings, read_only=True) as con:
        statuses = con.execute("SELECT run_id, status FROM batch_runs ORDER BY 1").fetchall()
    assert statuses == [(3, "succeeded"), (4, "succeeded")]  # the lost runs, older, went with retention


@pytest.mark.slow
def test_garbage_scores_are_never_published(settings: Settings) -> None:
    import batch_world as world

    world.build(settings, (world.ZOMBIES,))
    assert CliRunner().invoke(main, ["batch", "run", "-q"]).exit_code == 0
    before = world.lists(settings)
    record = current_model(settings)
    f = np.load(record.path / "factors.npz")
    arrays = {k: f[k] for k in f.files}
    arrays["user_vecs"] = np.full_like(arrays["user_vecs"], np.nan)
    np.savez(record.path / "factors.npz", **arrays)
    one_line_error(CliRunner().invoke(main, ["batch", "run", "-q"]), "non-finite", "movierec train")
    assert world.lists(settings) == before


# --------------------------------------------------------------------------- numeric ranges


def one_error_line(result) -> str:
    """Exit code != 0, no traceback, and exactly one `Error:` line (click's usage errors add a usage hint)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


BIG = "99999999999"
INT32_PLUS = str(2**31)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["queries", "add", "q", "zombies", "--candidates", "3000000000"], "--candidates must be between 1"),
        (["queries", "add", "q", "zombies", "--candidates", "100001"], "100,000"),
        (["queries", "add", "q", "zombies", "--candidates", BIG, "--top-n", BIG], "--candidates"),
        (["queries", "add", "q", "zombies", "--year-min", BIG], "--year-min must be between 1 and 9,999"),
        (["queries", "add", "q", "zombies", "--year-max", "10000"], "--year-max must be between 1 and 9,999"),
        (
            ["queries", "add", "q", "zombies", "--user", INT32_PLUS],
            "user id must be between 1 and 2,147,483,647",
        ),
        (["queries", "update", "dup", "--candidates", BIG], "--candidates must be between 1"),
        (["queries", "update", "dup", "--year-min", BIG], "--year-min"),
        (["queries", "update", "dup", "--user", "1", "--user", INT32_PLUS], "user id"),
        (["recommend", INT32_PLUS, "zombies"], "user id must be between"),
        (["recommend", "1", "zombies", "--top-n", BIG, "--candidates", BIG], "--candidates"),
        (["recommend", "1", "zombies", "--year-max", BIG], "--year-max"),
        (["recommend", "1", "zombies", "--alpha", "nan"], "--alpha"),
        (["recommend", "1", "zombies", "--alpha", "inf"], "--alpha"),
        (["show", INT32_PLUS], "user id must be between"),
        (["show", "--", "-" + BIG], "user id must be between"),
        (["search", "zombies", "--limit", BIG], "--limit must be between 1 and 100,000"),
        (["search", "zombies", "--year-min", BIG], "--year-min"),
        (["similar", "1", "--limit", BIG], "--limit"),
        (["model", "show", "--limit", BIG], "--limit"),
        (["batch", "run", "--alpha", "nan"], "--alpha"),
        (["batch", "report", INT32_PLUS], "RUN_ID"),
        (["nightly", "--alpha", "inf"], "--alpha"),
        (["nightly", "--epochs", BIG], "--epochs"),
        (["train", "--dim", BIG], "--dim"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--l2", "inf"], "--l2"),
        (["train", "--seed", "-1"], "--seed"),
        (["embed", "--batch-size", BIG], "--batch-size"),
        (["data", "synth", "{tmp}/s", "--users", BIG], "--users"),
        (["data", "synth", "{tmp}/s", "--movies", INT32_PLUS], "--movies"),
        (["data", "synth", "{tmp}/s", "--ratings", BIG], "--ratings"),
        (["data", "synth", "{tmp}/s", "--seed", BIG], "--seed"),
    ],
)
def test_out_of_range_numbers_are_one_line(
    settings: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    _seed(settings)
    runner = CliRunner()
    assert runner.invoke(main, ["queries", "add", "dup", "zombies"]).exit_code == 0
    with connect(settings, read_only=True) as con:
        before = con.execute("SELECT * FROM saved_queries").fetchall()
    line = one_error_line(runner.invoke(main, [a.format(tmp=tmp_path) for a in args]))
    assert needle in line, line
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT * FROM saved_queries").fetchall() == before
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- ingest edge cases


def _movielens(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Animation\n2,Heat (1995),Crime\n"
    )
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.0,964982704\n2,1,5.0,964982705\n"
    )
    (root / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,funny,1445714994\n")
    return root


def _tables(settings: Settings) -> dict[str, list]:
    with connect(settings, read_only=True) as con:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("movies", "ratings", "tags")
        }


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("huge-timestamp", "ratings.csv:4: timestamp out of range"),
        ("negative-timestamp", "ratings.csv:2: timestamp out of range"),
        ("huge-tag-timestamp", "tags.csv:3: timestamp out of range"),
        ("ratings-is-a-directory", "ratings.csv: is a directory"),
        ("tags-is-a-directory", "tags.csv: is a directory"),
        ("17-MB-line", "movies.csv:4: line longer than 16 MB"),
    ],
)
def test_ingest_edge_cases_are_one_line_and_change_nothing(settings: Settings, tmp_path: Path, damage: str,
                                                           needle: str) -> None:  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "-q", str(_movielens(tmp_path / "good"))]).exit_code == 0
    before = _tables(settings)
    bad = _movielens(tmp_path / "bad")
    ratings, tags = bad / "ratings.csv", bad / "tags.csv"
    if damage == "huge-timestamp":
        ratings.write_text(ratings.read_text().replace("964982705", "99999999999999999"))
    elif damage == "negative-timestamp":
        ratings.write_text(ratings.read_text().replace("964982703", "-5"))
    elif damage == "huge-tag-timestamp":
        tags.write_text(tags.read_text() + "2,2,tense,99999999999999999\n")
    elif damage.endswith("is-a-directory"):
        path = ratings if damage.startswith("ratings") else tags
        path.unlink()
        path.mkdir()
    else:
        with (bad / "movies.csv").open("a") as fh:
            fh.write(f'3,"{"x" * (17 << 20)} (2000)",Drama\n')
    one_line_error(runner.invoke(main, ["ingest", "-q", str(bad)]), needle)
    assert _tables(settings) == before


def test_ingest_loads_a_5_mb_title_as_shipped(settings: Settings, tmp_path: Path) -> None:
    """A long title is odd but harmless: it loads exactly as shipped (lines up to 16 MB load)."""
    root = _movielens(tmp_path / "ml")
    title = "Long " * (1 << 20) + "(2000)"
    with (root / "movies.csv").open("a") as fh:
        fh.write(f'3,"{title}",Drama\n')
    assert CliRunner().invoke(main, ["ingest", "-q", str(root)]).exit_code == 0
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT title, year FROM movies WHERE movie_id = 3").fetchone() == (title, 2000)


def test_ingest_skips_bad_timestamps_with_skip_bad_rows(settings: Settings, tmp_path: Path) -> None:
    root = _movielens(tmp_path / "ml")
    (root / "ratings.csv").write_text(
        (root / "ratings.csv").read_text().replace("964982705", "99999999999999999")
    )
    result = CliRunner().invoke(main, ["ingest", "-q", "--skip-bad-rows", "--json", str(root)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ratings"] == 2 and report["skipped_reasons"] == {
        "ratings.csv: timestamp out of range 0..253402300799": 1
    }


def test_repeated_tag_keys_merge_into_one_tag(settings: Settings, tmp_path: Path) -> None:
    """Documented (README, Ingest): MovieLens ships a few repeated (user, movie, tag) rows; they are one
    tag with the latest time, not an error, unlike a repeated key in movies, ratings or links."""
    root = _movielens(tmp_path / "ml")
    with (root / "tags.csv").open("a") as fh:
        fh.write("1,1,funny,1445714999\n")
    assert CliRunner().invoke(main, ["ingest", "-q", str(root)]).exit_code == 0
    with connect(settings, read_only=True) as con:
        rows = con.execute("SELECT epoch(tagged_at)::BIGINT FROM tags WHERE tag = 'funny'").fetchall()
    assert rows == [(1445714999,)]


# ---------------------------------------------------------------- leftovers of killed or blocked saves


def test_next_save_cleans_dead_tmp_dirs_and_records_finished_models(settings: Settings) -> None:
    from movierec.cf import list_models

    data = _ratings(settings)
    snapshot = data.snapshot()
    orphan = save_model(settings, Popularity().fit(data), snapshot=snapshot).version
    with connect(settings) as con:  # as if killed between the rename and the insert
        con.execute("DELETE FROM cf_models")
    dead = settings.models_path / ".tmp-20250101-000000-dead00"
    dead.mkdir()
    (dead / "model.json").write_text("{")  # half-written
    new = save_model(settings, _planted_model(data), snapshot=snapshot).version
    assert not dead.exists()
    assert {(m.version, m.is_current) for m in list_models(settings)} == {(orphan, False), (new, True)}


def test_recover_leaves_a_save_in_progress_alone(settings: Settings) -> None:
    from movierec.cf import recover_models
    from movierec.cf.registry import _train_lock

    live = settings.models_path / ".tmp-live"
    live.mkdir(parents=True)
    with _train_lock(settings):  # another "process" is saving (flock is per open file)
        assert recover_models(settings) == []
        assert live.exists()
    assert recover_models(settings) == [] and not live.exists()


HOLD_DB = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_busy_registration_keeps_the_model_and_the_next_run_records_it(settings: Settings) -> None:
    from movierec.cf import recover_models
    from movierec.errors import BusyError

    data = _ratings(settings)
    old = save_model(settings, Popularity().fit(data), snapshot=data.snapshot()).version
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_DB, str(settings.db_path), "4"], stdout=subprocess.PIPE
    )
    assert reader.stdout.readline().strip() == b"open"
    impatient = Settings(home=settings.home, write_wait=0.5)
    with pytest.raises(BusyError, match="is kept in .* becomes current at the next `movierec train`") as err:
        save_model(impatient, _planted_model(data), snapshot=data.snapshot())
    assert "\n" not in str(err.value)
    kept = [d.name for d in settings.models_path.iterdir() if not d.name.startswith(".") and d.name != old]
    assert len(kept) == 1 and (settings.models_path / kept[0] / "factors.npz").exists()
    assert current_model(settings).version == old
    reader.communicate(timeout=30)
    assert recover_models(settings) == kept  # what `nightly` runs before deciding to train
    assert current_model(settings).version == kept[0]
    assert recover_models(settings) == []


# --------------------------------------------------------------------------- --quiet


def _movierec(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("movierec")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300, **kw)


# Conditions of processors where TensorFlow's oneDNN notice is on by default (AVX-512/AMX) and its log level
# is read too late: the notice forced on and the level left at "log everything", the worst case.
NOISY_CPU = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "0"}
TF_NOISE = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "port.cc")


@pytest.mark.slow
@pytest.mark.elsewhere  # TensorFlow's start-up lines differ by processor (issue 14)
@pytest.mark.parametrize("objective", ["implicit", "rating"])
def test_quiet_train_prints_nothing_on_stderr_not_even_tensorflow(
    settings: Settings, tmp_path: Path, objective: str
) -> None:
    """Issue 14: `-q` gave TensorFlow's C++ lines on a processor with oneDNN's custom operations on."""
    assert _movierec("data", "synth", str(tmp_path / "syn"), "--users", "60", "--movies", "200",
                     "--ratings", "3000").returncode == 0  # fmt: skip
    assert _movierec("ingest", "-q", str(tmp_path / "syn")).returncode == 0
    env = {**os.environ, **NOISY_CPU}
    done = _movierec("train", "-q", "--objective", objective, "--epochs", "1", "--dim", "8", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.slow
@pytest.mark.elsewhere  # TensorFlow's start-up lines differ by processor (issue 14)
def test_train_progress_comes_without_tensorflow_notices(settings: Settings, tmp_path: Path) -> None:
    """Without -q the user sees our progress and none of TensorFlow's start-up notices, on every processor."""
    assert _movierec("data", "synth", str(tmp_path / "syn"), "--users", "60", "--movies", "200",
                     "--ratings", "3000").returncode == 0  # fmt: skip
    assert _movierec("ingest", "-q", str(tmp_path / "syn")).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = _movierec("train", "--epochs", "1", "--dim", "8", env={**env, "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert done.returncode == 0, done.stderr
    assert "training implicit model" in done.stderr
    assert not [n for n in TF_NOISE if n in done.stderr], done.stderr


def test_native_lines_written_while_tensorflow_loads_are_filtered(capfd: pytest.CaptureFixture) -> None:
    """What C++ code writes to descriptor 2 inside the capture: informational lines dropped, errors kept;
    with quiet, nothing."""
    from movierec.cli.tflogs import captured_stderr_fd

    lines = (  # noqa: UP012 - bytes, as C++ code writes them
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796117530.077228    4730 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1796117530.1    4730 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow\n"
        "E0000 00:00:1796117530.2    4730 cuda_blas.cc:1] something real went wrong\n"
    ).encode()
    error = "E0000 00:00:1796117530.2    4730 cuda_blas.cc:1] something real went wrong\n"
    for quiet, expected in [(False, error), (True, "")]:
        capfd.readouterr()
        with captured_stderr_fd(quiet):
            os.write(2, lines)
        assert capfd.readouterr().err == expected


# --------------------------------------------------------------------------- SIGKILL (item 8)


@pytest.mark.slow
def test_sigkill_during_train_then_the_next_train_just_works(settings: Settings, tmp_path: Path) -> None:
    from movierec.cf import list_models

    assert _movierec("data", "synth", str(tmp_path / "syn"), "--users", "200", "--movies", "400",
                     "--ratings", "20000").returncode == 0  # fmt: skip
    assert _movierec("ingest", "-q", str(tmp_path / "syn")).returncode == 0
    exe = Path(sys.executable).with_name("movierec")
    proc = subprocess.Popen(
        # The rating objective: a long fit (the implicit one finishes before the kill at this size).
        [str(exe), "train", "--objective", "rating", "--epochs", "200", "--dim", "8"],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # progress on stderr: kill once fitting has begun
        if "training" in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert current_model(settings) is None
    done = _movierec("train", "-q", "--epochs", "1", "--dim", "8")
    assert done.returncode == 0, done.stderr
    assert [m.is_current for m in list_models(settings)] == [True]
    assert not list(settings.models_path.glob(".tmp-*"))


# --------------------------------------------------------------------------- writers wait; kills mid-nightly


def _synth(tmp_path: Path, ratings: int = 3000, users: int = 60) -> Path:
    out = tmp_path / f"syn-{ratings}"
    assert _movierec("data", "synth", str(out), "--users", str(users), "--movies", "200",
                     "--ratings", str(ratings)).returncode == 0  # fmt: skip
    return out


@pytest.mark.slow
def test_nightly_waits_for_a_reader_and_gives_up_in_one_line(settings: Settings, tmp_path: Path) -> None:
    """Regression (issue 9): nightly's ingest failed after 1 s while an analyst's reader held the file."""
    data = _synth(tmp_path)
    assert _movierec("ingest", "-q", str(data)).returncode == 0
    before = _tables(settings)
    reader = subprocess.Popen([sys.executable, "-c", HOLD_DB, str(settings.db_path), "20"],
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert reader.stdout.readline().strip() == b"open"
        impatient = {**os.environ, "MOVIEREC_WRITE_WAIT": "1"}
        gave_up = _movierec("nightly", "-q", str(data), env=impatient)
        assert gave_up.returncode == 1
        assert gave_up.stderr.count("\n") == 1 and "nightly stopped at ingest" in gave_up.stderr
        assert f"PID {reader.pid}" in gave_up.stderr, gave_up.stderr
    finally:
        reader.kill()
        reader.communicate()
    assert _tables(settings) == before
    short = subprocess.Popen([sys.executable, "-c", HOLD_DB, str(settings.db_path), "3"],
                             stdout=subprocess.PIPE)  # fmt: skip
    assert short.stdout.readline().strip() == b"open"
    waited = _movierec("nightly", "-q", str(data))  # the default wait outlasts a short reader
    short.communicate(timeout=30)
    assert waited.returncode == 0, waited.stderr
    assert current_model(settings) is not None


@pytest.mark.slow
def test_sigkill_during_ingest_then_the_next_ingest_loads_everything(
    settings: Settings, tmp_path: Path
) -> None:
    data = _synth(tmp_path, ratings=400_000, users=5000)
    exe = Path(sys.executable).with_name("movierec")
    for delay in (0.3, 1.0):
        proc = subprocess.Popen([str(exe), "ingest", "-q", str(data)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        done = _movierec("ingest", "-q", "--json", str(data))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ratings"] == 400_000


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["embed", "train", "batch"])
def test_sigkill_during_nightly_keeps_the_published_lists(
    settings: Settings, tmp_path: Path, stage: str
) -> None:
    """Killed as a stage begins, the nightly leaves yesterday's lists; the next nightly just works."""
    data = _synth(tmp_path)
    assert _movierec("nightly", "-q", str(data)).returncode == 0
    assert _movierec("queries", "add", "all", "good films").returncode == 0
    assert _movierec("batch", "run", "-q").returncode == 0
    with connect(settings, read_only=True) as con:
        before = con.execute("SELECT * FROM latest_recommendations ORDER BY ALL").fetchall()
    # New ratings (a second snapshot) so that every stage has work to do.
    more = tmp_path / "more"
    shutil.copytree(data, more)
    first, second = [
        line.split(",")[0] for line in (more / "movies.csv").read_text(encoding="utf-8").splitlines()[1:3]
    ]
    with open(more / "ratings.csv", "a") as fh:
        fh.write(f"999,{first},4.0,1700000000\n999,{second},3.5,1700000001\n")
    exe = Path(sys.executable).with_name("movierec")
    proc = subprocess.Popen([str(exe), "nightly", "--retrain", str(more)], stderr=subprocess.PIPE, text=True)
    reached = False
    for line in proc.stderr:
        if f"nightly: {stage}..." in line:
            reached = True
            break
    assert reached, f"the nightly ended before its {stage} stage"
    time.sleep(0.1)  # inside the stage: a batch of this size is done in well under a second
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT * FROM latest_recommendations ORDER BY ALL").fetchall() == before
    done = _movierec("nightly", "-q", "--json", str(more))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["published"] is True
    assert not list(settings.models_path.glob(".tmp-*"))
