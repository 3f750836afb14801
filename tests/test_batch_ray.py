"""`movierec batch run --engine ray` on a real local Ray cluster (2 CPUs): the same lists as the local engine,
a worker killed mid-run (Ray retries, or the run fails with nothing published), the driver killed (nothing
published, the next run marks it abandoned), a shared runs location, a cluster joined by address, and the
one-line failures (unreachable address, missing extra)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import batch_world as world
import numpy as np
import pytest
import ray_pause
from click.testing import CliRunner

from movierec.batch.queries import SavedQuery, add_query
from movierec.batch.run import run_batch
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import EngineError
from movierec.runs import runs_dir

ROWS = (
    "SELECT run_id, query_name, user_id, rank, movie_id, score, similarity, predicted_rating, source "
    "FROM recommendations WHERE run_id = ? ORDER BY query_name, user_id, rank"
)


def _rows(settings: Settings, run_id: int) -> list[tuple]:
    with connect(settings, read_only=True) as con:
        return [r[1:] for r in con.execute(ROWS, [run_id]).fetchall()]


def _runs(settings: Settings) -> list[tuple]:
    with connect(settings, read_only=True) as con:
        return con.execute("SELECT run_id, status, error FROM batch_runs ORDER BY run_id").fetchall()


def _same_lists(a: list[tuple], b: list[tuple], tie: float = 1e-6) -> None:
    """The same lists: every (query, user) list has the same length, and the same (movie, source) at each
    rank, except within a near-tie (neighbouring scores within `tie`), compared as a set: the Ray workers
    run BLAS on one thread (Ray sets OMP_NUM_THREADS=1) and the local engine on several, so a float32
    score may differ in its last bits and two movies that tie within that noise may come in either order.
    Scores, similarities and predicted ratings per (query, user, movie) agree to float32 rounding."""
    assert len(a) == len(b) > 0
    assert [row[:3] for row in a] == [row[:3] for row in b]  # (query, user, rank): same users, same lengths
    lists_a: dict[tuple, list[tuple]] = {}
    lists_b: dict[tuple, list[tuple]] = {}
    for rows, lists in ((a, lists_a), (b, lists_b)):
        for q, u, _, m, score, *_, s in rows:
            lists.setdefault((q, u), []).append((m, s, score))
    for key, la in lists_a.items():
        lb, start = lists_b[key], 0
        for end in range(1, len(la) + 1):
            if end < len(la) and la[end - 1][2] - la[end][2] <= tie:
                continue
            assert {x[:2] for x in la[start:end]} == {x[:2] for x in lb[start:end]}, (key, la, lb)
            start = end
    values_b = {(q, u, m): row for q, u, _, m, *row in b}
    for q, u, _, m, *row in a:
        # rtol=1e-6: float32 products summed in another order with another BLAS thread count.
        np.testing.assert_allclose(
            np.array(row[:3], dtype=np.float64), np.array(values_b[q, u, m][:3], dtype=np.float64),
            rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=str((q, u, m)),
        )  # fmt: skip


# --------------------------------------------------------------------------- fast: no cluster needed


def test_unreachable_ray_address_fails_in_seconds_and_records_nothing(settings: Settings) -> None:
    with connect(settings) as con:
        add_query(con, SavedQuery("films", "films"))
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["batch", "run", "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    seconds = time.perf_counter() - t0
    assert result.exit_code == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in result.output and "ray status" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert seconds < 10, seconds
    assert _runs(settings) == []  # nothing was recorded as running
    # The nightly checks before its first stage, not after hours of training.
    result = CliRunner().invoke(main, ["nightly", "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.output
    assert "nightly:" not in result.output


def test_ray_address_without_the_ray_engine_is_refused(settings: Settings) -> None:
    result = CliRunner().invoke(main, ["batch", "run", "--ray-address", "127.0.0.1:6379"])
    assert result.exit_code == 1 and "--engine ray" in result.output


def test_missing_ray_extra_says_what_to_install(settings: Settings) -> None:
    """A machine without the extra: `import ray` fails (None in sys.modules makes it raise ImportError)."""
    code = (
        "import sys; sys.modules['ray'] = None; from movierec.cli import main; "
        "main(['batch', 'run', '--engine', 'ray'])"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 1
    assert "pip install 'movierec[ray]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert seconds < 5, seconds  # interpreter start and the CLI included


def test_ray_version_mismatch_is_one_line_naming_both_versions() -> None:
    """Ray's own text when versions differ (ray/_private/utils.py check_version_info), as it raises it."""
    from movierec.batch.ray_engine import join_error

    ray_says = RuntimeError(
        "Version mismatch: The cluster was started with:\n    Ray: 2.41.0\n    Python: 3.11.7\n"
        "This process on node 10.0.0.9 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n"
    )
    message = str(join_error(ray_says, "10.0.0.5:6379", "2.60.0"))
    assert "\n" not in message
    assert message.startswith("Ray version mismatch with the cluster at 10.0.0.5:6379")
    assert "Ray: 2.41.0" in message and "ray 2.60.0" in message


def test_engine_setting_precedence_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().engine == "local"
    monkeypatch.setenv("MOVIEREC_ENGINE", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    s = Settings()
    assert (s.engine, s.ray_address) == ("ray", "10.0.0.5:6379")
    assert s.replace(engine="local").engine == "local" and s.replace(engine=None).engine == "ray"
    monkeypatch.setenv("MOVIEREC_ENGINE", "spark")
    with pytest.raises(ValueError, match="engine"):
        Settings()


# --------------------------------------------------------------------------- on a real local Ray cluster

NO_RAY = "the `ray` extra is not installed (`make install` installs it)"


@pytest.fixture(scope="module")
def cluster() -> object:
    """One local Ray cluster of 2 CPUs for the module; run_batch in this process joins it."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture
def planted(settings: Settings) -> Settings:
    world.build(settings, (world.ZOMBIES, world.EVERYTHING))
    return Settings(home=settings.home, engine="ray", ray_shard_users=2)  # 4 shards per query


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_lists(planted: Settings, cluster: object) -> None:
    local = run_batch(planted.replace(engine="local"))
    remote = run_batch(planted)
    _same_lists(_rows(planted, local.run_id), _rows(planted, remote.run_id))
    assert (remote.n_rows, remote.n_users) == (local.n_rows, local.n_users) == (7 * 2 + 7 * 3, 7)
    assert [(q.query_name, q.users_served, q.n_rows) for q in remote.queries] == [
        (q.query_name, q.users_served, q.n_rows) for q in local.queries
    ]
    # The known answers hold (batch_world): seen movies removed, cold start flagged.
    zombies = world.lists(planted, "zombies")
    assert zombies[1][0] == (102, "cf") and all(s == "cold_start" for _, s in zombies[world.COLD])
    # One layout for both engines: a directory of parts (2 queries x 4 shards) per run.
    assert sorted(p.name for p in runs_dir(planted.db_path).iterdir()) == ["run-000001", "run-000002"]
    for run in ("run-000001", "run-000002"):
        parts = sorted(p.name for p in (runs_dir(planted.db_path) / run).iterdir())
        assert parts == [f"part-q{q:04d}-s{s:06d}.parquet" for q in range(2) for s in range(4)]


@pytest.mark.slow
def test_a_ray_run_is_queried_by_sql_and_passes_check(planted: Settings, cluster: object) -> None:
    """Issue 15, bugs 1 and 2: after a Ray run, confined `movierec sql` read its parts ("file system
    operations are disabled by configuration" on the parts glob) and `check` failed it ("missing or
    damaged": it looked at the local engine's file name)."""
    remote = run_batch(planted)
    result = CliRunner().invoke(
        main, ["sql", "SELECT query_name, user_id, rank, movie_id FROM latest_recommendations", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == remote.n_rows == 7 * 2 + 7 * 3
    check = CliRunner().invoke(main, ["check"])
    assert "FAIL run" not in check.output and "1 runs, every file present and readable" in check.output


def _random_world(settings: Settings, data_dir: Path) -> Settings:
    """Random but real: a synthetic MovieLens, random movie vectors in Qdrant Edge, random factors missing
    some users (cold start) and some movies (newer than the model), queries with and without filters."""
    from movierec.catalog import Seen
    from movierec.cf import KerasCF, save_model
    from movierec.cf.factors import Factors
    from movierec.ingest.load import ingest_dir
    from movierec.ingest.synth import synthesize
    from movierec.store import open_store

    synthesize(data_dir, users=1500, movies=600, ratings=40_000, seed=0)
    ingest_dir(settings, data_dir)
    with connect(settings, read_only=True) as con:
        movies = con.execute("SELECT movie_id, title, year, genres FROM movies ORDER BY movie_id").fetchall()
        rated = con.execute("SELECT user_id, movie_id FROM ratings").fetchnumpy()
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(movies), 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with open_store(settings) as store:
        store.reset("offline-minilm", 384)
        payloads = [{"movie_id": m, "title": t, "year": y, "genres": list(g)} for m, t, y, g in movies]
        store.upsert([m[0] for m in movies], vecs, payloads)
    users = np.unique(rated["user_id"]).astype(np.int64)[:-100]  # the last 100 users are cold
    movie_ids = np.array([m[0] for m in movies], dtype=np.int64)[:-30]  # the last 30 movies are new
    dim = 16
    factors = Factors(
        users, movie_ids,
        (rng.standard_normal((len(users), dim)) * 0.5).astype(np.float32),
        (rng.standard_normal((len(movie_ids), dim)) * 0.5).astype(np.float32),
        (rng.standard_normal(len(users)) * 0.1).astype(np.float32),
        (rng.standard_normal(len(movie_ids)) * 0.1).astype(np.float32),
        objective="rating",
    )  # fmt: skip
    save_model(settings, KerasCF.from_factors(factors, Seen.from_pairs(rated["user_id"], rated["movie_id"])),
               snapshot={"n_ratings": len(rated["user_id"])})  # fmt: skip
    with connect(settings) as con:
        add_query(con, SavedQuery("horror", "zombie horror", genres=("Horror",), candidates=120, top_n=10))
        add_query(con, SavedQuery("anything", "a good film", candidates=200, top_n=15))
        add_query(con, SavedQuery("some", "space adventure", candidates=50, top_n=5,
                                  users=tuple(int(u) for u in range(1, 1500, 7))))  # fmt: skip
    return settings


@pytest.mark.slow
def test_ray_engine_congruent_on_a_random_world_with_cold_users_and_new_movies(
    settings: Settings, tmp_path: Path, cluster: object
) -> None:
    _random_world(settings, tmp_path / "synth")
    for alpha in (0.0, 0.3):
        local = run_batch(settings, alpha=alpha)
        remote = run_batch(settings.replace(engine="ray", ray_shard_users=97), alpha=alpha)
        a, b = _rows(settings, local.run_id), _rows(settings, remote.run_id)
        _same_lists(a, b)
        assert {r[-1] for r in a} == {"cf", "cold_start"}
        assert remote.n_rows == local.n_rows and remote.n_users == local.n_users


def _pause_dir(tmp_path: Path) -> Path:
    pause = tmp_path / "pause"
    pause.mkdir()
    return pause


def _pause_first_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's runs pause their first task until `go` is in the directory returned (ray_pause)."""
    from movierec.batch import ray_engine

    pause = _pause_dir(tmp_path)
    monkeypatch.setattr(ray_engine, "_task", ray_pause.paused_task(pause))
    return pause


def _wait_for(predicate: Callable[[], bool], seconds: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _paused_pid(pause: Path) -> int:
    _wait_for(lambda: any(pause.glob("*.pid")), what="the first task to pause")
    return int(next(pause.glob("*.pid")).read_text())


def _run_in_thread(settings: Settings) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["summary"] = run_batch(settings)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


@pytest.mark.slow
def test_worker_killed_mid_run_is_retried_and_the_lists_are_the_same(
    planted: Settings, cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _rows(planted, run_batch(planted.replace(engine="local")).run_id)
    pause = _pause_first_task(tmp_path, monkeypatch)
    thread, outcome = _run_in_thread(planted)
    pid = _paused_pid(pause)
    parts = runs_dir(planted.db_path) / "run-000002"
    _wait_for(lambda: len(list(parts.glob("*.parquet"))) == 7, what="the other tasks' parts")  # 8 - paused
    os.kill(pid, signal.SIGKILL)  # mid-task: the worker dies holding the first shard of "everything"
    (pause / "go").touch()
    thread.join(120)
    assert "error" not in outcome, outcome
    assert outcome["summary"].run_id == 2
    _same_lists(_rows(planted, 2), reference)
    assert [(r, s) for r, s, _ in _runs(planted)] == [(1, "succeeded"), (2, "succeeded")]


@pytest.mark.slow
def test_worker_killed_without_retries_fails_the_run_and_publishes_nothing(
    planted: Settings, cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec.batch import ray_engine

    run_batch(planted)
    before = _rows(planted, 1)
    monkeypatch.setattr(ray_engine, "MAX_RETRIES", 0)
    pause = _pause_first_task(tmp_path, monkeypatch)
    thread, outcome = _run_in_thread(planted)
    pid = _paused_pid(pause)
    _wait_for(
        lambda: len(list((runs_dir(planted.db_path) / "run-000002").glob("*.parquet"))) == 7, what="parts"
    )
    os.kill(pid, signal.SIGKILL)
    (pause / "go").touch()
    thread.join(120)
    assert isinstance(outcome.get("error"), EngineError), outcome
    assert "Ray task for query 'everything' (users shard 0) failed" in str(outcome["error"])
    runs = _runs(planted)
    assert [(r, s) for r, s, _ in runs] == [(1, "succeeded"), (2, "failed")] and "EngineError" in runs[1][2]
    with connect(planted, read_only=True) as con:
        latest = con.execute("SELECT DISTINCT run_id FROM latest_recommendations").fetchall()
    assert latest == [(1,)] and _rows(planted, 1) == before
    assert not (runs_dir(planted.db_path) / "run-000002").exists()  # the 7 parts written are gone


@pytest.mark.slow
def test_driver_killed_publishes_nothing_and_the_next_run_marks_it_abandoned(
    planted: Settings, cluster: object, tmp_path: Path
) -> None:
    """The driver is a `movierec batch run --engine ray` process with its own local cluster (started by
    ray_pause.driver, which pauses its first task); SIGKILL it while its tasks run. Its cluster goes down
    with it; readers see the run abandoned at once, and the next run (here through the module's cluster)
    records it so and deletes the parts it had written."""
    run_batch(planted)
    before = _rows(planted, 1)
    pause = _pause_dir(tmp_path)
    env = {**os.environ, "MOVIEREC_HOME": str(planted.home), "MOVIEREC_RAY_SHARD_USERS": "2"}
    driver = subprocess.Popen(
        ray_pause.driver(pause, "batch", "run", "--engine", "ray", "--quiet"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        worker = _paused_pid(pause)
        parts = runs_dir(planted.db_path) / "run-000002"
        _wait_for(lambda: len(list(parts.glob("*.parquet"))) == 7, what="the other tasks' parts")
        assert [(r, s) for r, s, _ in _runs(planted)] == [(1, "succeeded"), (2, "running")]
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    # Its local cluster shares the driver's fate: the paused worker goes too.
    _wait_for(lambda: not _alive(worker), seconds=60, what=f"worker {worker} to exit with its driver")
    assert _rows(planted, 1) == before
    # Its process is gone, so readers already see the run as abandoned (no process holds the batch lock).
    assert [(r, s) for r, s, _ in _runs(planted)] == [(1, "succeeded"), (2, "abandoned")]
    run_batch(planted)
    runs = _runs(planted)
    assert [(r, s) for r, s, _ in runs] == [(1, "succeeded"), (2, "abandoned"), (3, "succeeded")]
    assert not parts.exists()
    _same_lists(_rows(planted, 3), before)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_runs_go_to_a_shared_location_and_the_view_reads_them_there(
    planted: Settings, cluster: object, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-runs"
    ray_run = run_batch(planted.replace(runs_uri=str(shared)))
    local_run = run_batch(planted.replace(runs_uri=f"file://{shared}", engine="local"))
    assert sorted(p.name for p in shared.iterdir()) == ["run-000001", "run-000002"]
    assert not runs_dir(planted.db_path).exists()  # nothing beside the database
    _same_lists(_rows(planted, ray_run.run_id), _rows(planted, local_run.run_id))
    with connect(planted, read_only=True) as con:
        view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'recommendations'").fetchone()[0]
    assert f"{shared}/run-000001/part-q0000-s000000.parquet" in view
    assert f"{shared}/run-000002/part-q0001-s000003.parquet" in view


@pytest.mark.slow
def test_parts_a_worker_wrote_where_the_driver_cannot_see_fail_the_run(
    planted: Settings, cluster: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-node cluster with the default (driver-local) runs location: workers on other machines write
    their parts to their own disks. Simulated by deleting one part after the tasks ran: the run must fail,
    not publish a run with lists missing."""
    from movierec.batch import ray_engine

    real_check = ray_engine._check_parts

    def lose_one_part(run_dir: str, n_tasks: int) -> None:
        victim = sorted(Path(run_dir).glob("*.parquet"))[0]
        victim.unlink()
        return real_check(run_dir, n_tasks)

    monkeypatch.setattr(ray_engine, "_check_parts", lose_one_part)
    with pytest.raises(EngineError, match="1 of 8 Ray tasks' Parquet parts are missing .* set runs_uri"):
        run_batch(planted)
    assert [(r, s) for r, s, _ in _runs(planted)] == [(1, "failed")]
    assert not (runs_dir(planted.db_path) / "run-000001").exists()


@pytest.mark.slow
def test_changing_runs_uri_keeps_earlier_runs_readable_and_retention_finds_them(
    planted: Settings, cluster: object, tmp_path: Path
) -> None:
    """Each run records where it went (batch_runs.output under batch_runs.runs_uri): moving `runs_uri` does
    not break the view, and retention deletes an old run where it was written."""
    first = run_batch(planted.replace(engine="local"))  # beside the database
    second = run_batch(planted.replace(runs_uri=str(tmp_path / "a")))  # parts, elsewhere
    third = run_batch(planted.replace(engine="local", runs_uri=str(tmp_path / "b"), keep_runs=2))
    with connect(planted, read_only=True) as con:
        kept = con.execute("SELECT DISTINCT run_id FROM recommendations ORDER BY 1").fetchall()
        outputs = con.execute("SELECT run_id, output, runs_uri FROM batch_runs ORDER BY 1").fetchall()
    assert kept == [(second.run_id,), (third.run_id,)]
    assert outputs == [(2, "run-000002", f"{tmp_path}/a"), (3, "run-000003", f"{tmp_path}/b")]
    assert not (runs_dir(planted.db_path) / "run-000001").exists()  # retention found it beside the db
    _same_lists(_rows(planted, second.run_id), _rows(planted, third.run_id))
    assert first.n_rows == third.n_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_batch_joins_a_ray_cluster_of_a_head_and_a_worker_node_by_address(
    planted: Settings, tmp_path: Path
) -> None:
    """`ray start --head` plus a second node on 127.0.0.1 (1 CPU each), joined with --ray-address from a
    separate driver process; parts go to a directory both nodes reach. Every Ray process we start is in
    its own process group, killed at the end (never `ray stop`: other clusters may share this machine)."""
    pytest.importorskip("ray", reason=NO_RAY)
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"]
    nodes = [
        subprocess.Popen([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                          *common], start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ]  # fmt: skip
    try:
        _wait_for(lambda: _listening(port), seconds=120, what="the head node's GCS port")
        nodes.append(
            subprocess.Popen([ray_bin, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                              *common[:3]], start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        )  # fmt: skip
        time.sleep(5)  # the worker node registers with the head
        env = {
            **os.environ,
            "MOVIEREC_HOME": str(planted.home),
            "MOVIEREC_RUNS_URI": str(tmp_path / "shared"),
            # `ray start` turns on token authentication (token in ~/.ray/auth_token); a driver joining by
            # address must say it uses it, as the README tells operators.
            "RAY_AUTH_MODE": "token",
        }
        command = ["batch", "run", "--engine", "ray", "--ray-address", address, "--quiet"]
        proc = subprocess.run([sys.executable, "-m", "movierec.cli", *command], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "run 1:" in proc.stdout
    finally:
        for node in reversed(nodes):
            with_group = os.getpgid(node.pid) if node.poll() is None else None
            if with_group:
                os.killpg(with_group, signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    assert _strays(port) == []
    local = run_batch(planted.replace(engine="local", runs_uri=str(tmp_path / "shared")))
    _same_lists(_rows(planted, 1), _rows(planted, local.run_id))


def _strays(port: int) -> list[str]:
    """Processes of the cluster on `port` still alive (its GCS server and raylets name the port)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(port) in cmd and "ray" in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmd[:200])
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
