"""The batch's Ray engine (`--engine ray`): scoring and Parquet writing run as tasks on a Ray cluster.

The driver (the `movierec batch run` process) does what is done once per run, exactly as the local engine:
encode the queries, fetch the candidates, read users and the candidates' ratings, and at the end publish in
one short transaction. In between it puts into Ray's object store the current model (numpy factors, put
once, read zero-copy by every task on a node), the user ids, and per query its candidates, similarity,
popularity and the ratings of its candidates (`Seen.subset`). Each task ranks one shard of users for one
query with the same engine as the local run (`Recommender.recommend`) and writes its lists as one Parquet
part, `run-000042/part-q0003-s000012.parquet`, under the run's location (`Settings.runs_uri`: a directory
every worker can reach, or an object-store URI). Part names are fixed by (query, shard), so a task Ray
re-runs after its worker died rewrites the same part; a run whose task fails for good raises
`EngineError`, its parts are deleted and nothing is published.

Ray is an optional extra (`movierec[ray]`) and is imported only here, only when the engine is used.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from movierec.batch.publish import ARROW_SCHEMA, RunsLocation, runs_location_at, write_table
from movierec.catalog import Seen
from movierec.cf import mark_folded
from movierec.config import Settings
from movierec.errors import BadInputError, EngineError
from movierec.progress import bar

INSTALL = "pip install 'movierec[ray]' (or `make install`)"
CONNECT_TIMEOUT_S = 5.0  # probing the cluster's address; ray.init itself may wait minutes for a dead one
MAX_RETRIES = 3  # Ray re-runs a task whose worker or node died this often before the run fails
# Test hook, never set in production: the first task waits for a file named "go" in this directory after
# writing its PID there, so a test can kill its worker (or the driver) mid-run deterministically.
PAUSE_ENV = "MOVIEREC_TEST_PAUSE_FIRST_TASK"


def import_ray() -> Any:
    """The `ray` module, or one line saying what to install."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError(f"--engine ray needs the optional extra `ray` ({exc}): {INSTALL}") from None
    return ray


def preflight(settings: Settings) -> None:
    """Fail in seconds, before any work, when Ray is missing or the configured cluster is unreachable."""
    import_ray()
    if settings.ray_address:
        _probe(settings.ray_address)


def _probe(address: str) -> None:
    """A TCP connect to the cluster's address ("auto" is left to Ray): a dead address fails here in seconds
    instead of in Ray's minutes of retries."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise BadInputError(
            f"--ray-address {address!r}: expected HOST:PORT of the head node's GCS (e.g. 10.0.0.5:6379) "
            "or ray://HOST:10001 (Ray Client)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise EngineError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check that the head node "
            f"runs (`ray status --address {host}:{port}` there), the port (GCS 6379 by default, Ray Client "
            "10001) and firewalls"
        ) from None


@contextmanager
def cluster(settings: Settings) -> Iterator[Any]:
    """Connected to the configured Ray cluster (or a new local one) for the duration of a run.

    A process already connected (a test, a notebook) keeps its connection; otherwise this one connects,
    and disconnects at the end (a local cluster it started stops with it)."""
    address = settings.ray_address
    if address:
        _probe(address)
        # A port that answers but is no Ray head would keep ray.init retrying for ~10 minutes; bound it to
        # about half a minute (read when ray is first imported; an operator's own values win).
        os.environ.setdefault("RAY_py_gcs_connect_timeout_s", "5")
        os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "3")
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        # "local": never join another cluster someone started on this machine by accident.
        ray.init(
            address=address or "local",
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when its node times out starting
        with suppress(Exception):  # a half-started local cluster: stop what did start
            ray.shutdown()
        raise join_error(exc, address, ray.__version__) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def join_error(exc: BaseException, address: str | None, version: str) -> EngineError:
    """Ray's error on connecting, as one line that says what to do."""
    text = " ".join(str(exc).split()) or type(exc).__name__  # Ray's version message spans lines
    if "version mismatch" in text.lower():
        return EngineError(
            f"Ray version mismatch with the cluster at {address}: install the cluster's Ray and Python here "
            f"(this process: ray {version}); Ray says: {text}"
        )
    hint = (
        "; if the cluster uses token authentication (the default of `ray start`), set RAY_AUTH_MODE=token "
        "and give this machine its token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        if address and os.environ.get("RAY_AUTH_MODE", "").lower() != "token"
        else ""
    )
    return EngineError(f"cannot join the Ray cluster at {address or 'local'}: {text}{hint}")


@dataclass(frozen=True)
class QueryData:
    """What a task needs of one query, put once in the object store."""

    items: np.ndarray  # candidate movie ids
    similarity: np.ndarray
    popularity: np.ndarray
    seen: Seen  # only the ratings of the candidates


@dataclass(frozen=True)
class TaskSpec:
    run_id: int
    query_name: str
    top_n: int
    alpha: float
    cold_weight: float
    block: int
    location: str  # RunsLocation.uri: every worker reopens it with its own credentials
    part: str  # the part's path inside the location's filesystem


def score_and_write(
    ray: Any,
    settings: Settings,
    run_id: int,
    queries: list[Any],
    cands: list[Any],
    targets: list[np.ndarray],
    model: Any,
    seen: Seen,
    alpha: float,
    location: RunsLocation,
    progress: bool = False,
    lap: Callable[[str], None] | None = None,
    folded: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Rank every query's users in Ray tasks, one Parquet part per (query, shard of users). Returns per query
    users_served, n_rows, seconds (ranking time in tasks), flops, matmul_seconds, write_seconds; `lap(step)`
    marks where the driver's time went (object store, tasks). On failure the run's parts are deleted
    and EngineError says which task failed and why."""
    run_dir = location.parts_dir(run_id)
    location.fs.create_dir(run_dir, recursive=True)
    score = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(_score_shard)
    pending: dict[Any, tuple[int, int, int]] = {}  # task -> (query index, shard index, users)
    try:
        per_query = _submit_and_collect(ray, score, settings, run_id, queries, cands, targets, model, seen,
                                        alpha, location, run_dir, pending, progress, lap, folded)  # fmt: skip
    except BaseException:
        for task in pending:  # what is still running or queued
            ray.cancel(task, force=True)
        _delete_quietly(location, run_dir)
        raise
    return per_query


def _submit_and_collect(
    ray: Any,
    score: Any,
    settings: Settings,
    run_id: int,
    queries: list[Any],
    cands: list[Any],
    targets: list[np.ndarray],
    model: Any,
    seen: Seen,
    alpha: float,
    location: RunsLocation,
    run_dir: str,
    pending: dict[Any, tuple[int, int, int]],
    progress: bool,
    lap: Callable[[str], None] | None,
    folded: np.ndarray | None,
) -> list[dict[str, float]]:
    pause = os.environ.get(PAUSE_ENV)
    # The model is put once; the training ratings it carries are not needed (each query brings its own).
    lean = copy.copy(model)
    lean.seen = Seen(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    model_ref = ray.put(lean)
    folded_ref = ray.put(np.zeros(0, np.int64) if folded is None else np.asarray(folded, dtype=np.int64))
    user_refs: dict[int, Any] = {}
    shard = settings.ray_shard_users
    for qi, (q, c, users) in enumerate(zip(queries, cands, targets, strict=True)):
        if id(users) not in user_refs:  # every all-users query shares one array
            user_refs[id(users)] = ray.put(np.asarray(users, dtype=np.int64))
        data = QueryData(c.movie_ids, c.similarity, seen.counts(c.movie_ids), seen.subset(c.movie_ids))
        query_ref = ray.put(data)
        for si, lo in enumerate(range(0, len(users), shard)):
            hi = min(lo + shard, len(users))
            spec = TaskSpec(
                run_id, q.name, q.top_n, alpha, settings.cold_start_weight, settings.block_users,
                location.uri, f"{run_dir}/part-q{qi:04d}-s{si:06d}.parquet",
            )  # fmt: skip
            first = pause if (qi == 0 and si == 0) else None
            task = score.remote(model_ref, query_ref, user_refs[id(users)], lo, hi, spec, first, folded_ref)
            pending[task] = (qi, si, hi - lo)
    n_tasks = len(pending)
    if lap:
        lap("ray: put model, users, queries' candidates and ratings; submit tasks")

    keys = ("users_served", "n_rows", "seconds", "flops", "matmul_seconds", "write_seconds")
    per_query = [dict.fromkeys(keys, 0.0) for _ in queries]
    total = int(sum(len(t) for t in targets))
    with bar(total=total, unit="user", desc="ray tasks", enabled=progress) as pbar:
        while pending:
            # Whatever finished in the last moment: one wait per batch, not per task.
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
            for task in done:
                qi, si, n = pending[task]
                try:
                    result = ray.get(task)
                except Exception as exc:
                    raise EngineError(
                        f"Ray task for query {queries[qi].name!r} (users shard {si}) failed "
                        f"(a dead worker is retried {MAX_RETRIES} times): {_first_line(exc)}"
                    ) from exc
                del pending[task]
                for key, value in result.items():
                    per_query[qi][key] += value
                pbar.update(n)
    _check_parts(location, run_dir, n_tasks)
    if lap:
        lap("ray: tasks (score, write parts)")
    return per_query


def _check_parts(location: RunsLocation, run_dir: str, n_tasks: int) -> None:
    """Every task's part must be where the driver (and DuckDB) will read it: a worker on another machine
    writing to a path only it can see would otherwise publish a run with lists missing."""
    found = location.fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    n_parts = sum(1 for f in found if f.base_name.endswith(".parquet"))
    if n_parts != n_tasks:
        raise EngineError(
            f"{n_tasks - n_parts} of {n_tasks} Ray tasks' Parquet parts are missing from {location.uri}: "
            "workers on other machines cannot write there; set runs_uri (MOVIEREC_RUNS_URI) to a directory "
            "every node shares or to an object-store URI"
        )
    if n_tasks == 0:  # no users at all: one empty part, so the run's directory is something the view reads
        write_table(location, f"{run_dir}/part-empty.parquet", ARROW_SCHEMA.empty_table())


def _score_shard(
    model: Any,
    query: QueryData,
    users: np.ndarray,
    lo: int,
    hi: int,
    spec: TaskSpec,
    pause: str | None,
    folded: np.ndarray,
) -> dict[str, float]:
    """One Ray task: rank users[lo:hi] for one query with the model contract, write the part."""
    from threadpoolctl import threadpool_limits

    if pause:
        _wait_for_test(Path(pause))
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # one task per CPU Ray gave us
        ranked = model.recommend(
            users[lo:hi],
            spec.top_n,
            items=query.items,
            similarity=query.similarity,
            popularity=query.popularity,
            seen=query.seen,
            alpha=spec.alpha,
            cold_weight=spec.cold_weight,
            block=spec.block,
            workers=1,
        )
    mark_folded(ranked, folded)  # users folded in on the driver after training score as 'fold_in'
    seconds = time.perf_counter() - t0
    write_table(runs_location_at(spec.location), spec.part, ranked.to_arrow(spec.run_id, spec.query_name))
    return {
        "write_seconds": time.perf_counter() - t0 - seconds,
        "users_served": int(len(np.unique(ranked.user_id))),
        "n_rows": len(ranked),
        "seconds": seconds,
        "flops": ranked.flops,
        "matmul_seconds": ranked.matmul_seconds,
    }


def _wait_for_test(directory: Path) -> None:
    go = directory / "go"
    if go.exists():
        return
    (directory / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _delete_quietly(location: RunsLocation, directory: str) -> None:
    with contextlib.suppress(OSError):  # the next run's clean-up removes what is left (remove_orphans)
        location.fs.delete_dir(directory)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # RayTaskError's text starts with the task's name and ends with the worker's exception: keep that.
    return (lines[-1] if lines else type(exc).__name__)[:500]
