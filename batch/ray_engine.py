"""The batch's Ray engine (`--engine ray`): joining the cluster, and mapping the one unit of batch work
(`engine.run_shard`: rank a shard of users for a query, write its part) over the run's shards in tasks.

Everything else is the driver's, as for the local engine (batch/run.py). Parts land under the run's
location (`Settings.runs_uri`: a directory every worker can reach, or an object-store URI); their names are
fixed by (query, shard), so a task Ray re-runs after its worker died rewrites the same part; a run whose
task fails for good raises `EngineError`, its parts are deleted and nothing is published.

Ray is an optional extra (`movierec[ray]`) and is imported only here, only when the engine is used.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from movierec import runs
from movierec.batch.engine import QueryData, RunParams, Shard, ShardStats, run_shard
from movierec.catalog import Seen
from movierec.config import Settings
from movierec.errors import BadInputError, EngineError
from movierec.progress import bar

INSTALL = "pip install 'movierec[ray]' (or `make install`)"
CONNECT_TIMEOUT_S = 5.0  # probing the cluster's address; ray.init itself may wait minutes for a dead one
MAX_RETRIES = 3  # Ray re-runs a task whose worker or node died this often before the run fails


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


def map_shards(
    ray: Any,
    model: Any,
    queries: list[QueryData],
    targets: list[np.ndarray],
    plan: list[Shard],
    params: RunParams,
    folded: np.ndarray | None,
    explain: Any = None,
    progress: bool = False,
) -> list[ShardStats]:
    """Map `engine.run_shard` over the shards in Ray tasks. The model is put once (read zero-copy by every
    task on a node), each query's data and each distinct users array once. On failure, tasks still queued
    are cancelled, the run's parts deleted, and EngineError says which task failed and why."""
    run = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(_task)
    pending: dict[Any, Shard] = {}
    try:
        # The training ratings the model carries are not needed (each query brings its candidates' own).
        lean = copy.copy(model)
        lean.seen = Seen(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
        model_ref = ray.put(lean)
        folded_ref = ray.put(np.zeros(0, np.int64) if folded is None else np.asarray(folded, np.int64))
        explain_ref = ray.put(explain)
        query_refs = [ray.put(q) for q in queries]
        user_refs: dict[int, Any] = {}
        for users in targets:  # every all-users query shares one array
            user_refs.setdefault(id(users), ray.put(np.asarray(users, dtype=np.int64)))
        for shard in plan:
            users = user_refs[id(targets[shard.query_index])]
            task = run.remote(
                model_ref, query_refs[shard.query_index], users, shard, params, folded_ref, explain_ref
            )
            pending[task] = shard
        done_stats = _collect(ray, pending, progress)
        _check_parts(params.run_dir, len(plan))
    except BaseException:
        for task in pending:  # what is still running or queued
            ray.cancel(task, force=True)
        runs.discard(params.run_dir)
        raise
    return done_stats


def _check_parts(run_dir: str, n_tasks: int) -> None:
    """Every task's part must be where the driver (and DuckDB) will read it: a worker on another machine
    writing to a path only it can see would otherwise publish a run with lists missing."""
    n_parts = runs.count_parts(run_dir)
    if n_parts != n_tasks:
        raise EngineError(
            f"{n_tasks - n_parts} of {n_tasks} Ray tasks' Parquet parts are missing from {run_dir}: workers "
            "on other machines cannot write there; set runs_uri (MOVIEREC_RUNS_URI) to a directory every "
            "node shares or to an object-store URI"
        )


def _collect(ray: Any, pending: dict[Any, Shard], progress: bool) -> list[ShardStats]:
    """Each task's stats, in submission order (the plan's), whatever order they finish in."""
    order = {task: i for i, task in enumerate(pending)}
    out: list[ShardStats] = [ShardStats() for _ in pending]
    with bar(total=sum(s.hi - s.lo for s in pending.values()), unit="user", desc="ray tasks",
             enabled=progress) as pbar:  # fmt: skip
        while pending:
            # Whatever finished in the last moment: one wait per batch, not per task.
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
            for task in done:
                shard = pending[task]
                try:
                    out[order[task]] = ray.get(task)
                except Exception as exc:
                    raise EngineError(
                        f"Ray task for query {shard.query_name!r} (users shard {shard.shard_index}) failed "
                        f"(a dead worker is retried {MAX_RETRIES} times): {_first_line(exc)}"
                    ) from exc
                del pending[task]
                pbar.update(shard.hi - shard.lo)
    return out


def _task(model: Any, query: QueryData, users: np.ndarray, shard: Shard, params: RunParams,
          folded: np.ndarray, explain: Any) -> ShardStats:  # fmt: skip
    """One Ray task: `run_shard` on one CPU."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # one task per CPU Ray gave us
        return run_shard(model, query, users, shard, params, folded, explain, workers=1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # RayTaskError's text starts with the task's name and ends with the worker's exception: keep that.
    return (lines[-1] if lines else type(exc).__name__)[:500]
