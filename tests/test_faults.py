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
from movierec.db import connect, run_file
from movierec.errors import DamagedError, ModelError
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
    run = run_file(settings.db_path, 1)
    run.parent.mkdir(parents=True)
    with connect(settings) as con:  # a published run, as the batch would leave it
        con.execute(f"COPY (SELECT 1 AS run_id, 'q' AS query_name, 1 AS user_id, 1::SMALLINT AS rank, "
                    f"1 AS movie_id, 0.5 AS score, 0.5 AS similarity, NULL::FLOAT AS predicted_rating, "
                    f"'cf' AS source) TO '{run}'")  # fmt: skip
        con.execute("INSERT INTO batch_runs (run_id, started_at, status) VALUES (1, now(), 'succeeded')")
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
    assert not json.loads(check.output)["findings"][0]["ok"]


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


def test_guard_accepts_a_sane_model(settings: Settings) -> None:
    data = _ratings(settings)
    assert save_model(settings, _planted_model(data), snapshot=data.snapshot()).is_current


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
    assert [p.name for p in settings.models_path.iterdir()] == [good]  # nothing half-made left


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
    run_file(settings.db_path, 1).unlink()  # an old run's file: nothing else may break
    for args in (["queries", "add", "space", "space adventure"], ["show", "2"], ["queries", "list"]):
        assert runner.invoke(main, args).exit_code == 0, args
    assert world.lists(settings) == first
    latest = run_file(settings.db_path, 2)
    latest.write_bytes(latest.read_bytes()[:100])  # truncated: reads of run 2 fail with one line
    one_line_error(runner.invoke(main, ["show", "2"]), str(latest), "movierec batch run")
    one_line_error(runner.invoke(main, ["batch", "report"]), str(latest))
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
