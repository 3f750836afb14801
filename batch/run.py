"""`movierec batch run`: every enabled saved query, every target user, top-N published to DuckDB at once.

Lifecycle, designed so analysts can read the database while the job works:
1. take the batch lock (one run at a time), then in one short write: mark runs left 'running' by a dead
   process as 'abandoned', record this run as 'running', read the saved queries;
2. encode the queries, fetch candidates from the store, read users and the candidates' ratings through a
   read-only connection that is closed again before scoring (other processes can read and write meanwhile);
3. cut every query's users into shards and map the one unit of work (batch/engine.py: rank a shard
   through the model contract, write it as one Parquet part of the run) over them: in this process, or with
   `Settings.engine == "ray"` in Ray tasks (batch/ray_engine.py: the cluster is joined before the run is
   recorded, so a dead address records nothing);
4. publish in one short write transaction (movierec/runs.py): the run marked 'succeeded', the
   `recommendations` view pointed at the kept runs' files, runs beyond `keep_runs` dropped. This is the
   only time other processes are locked out; its length is measured and printed.
A failure marks the run 'failed'; a kill leaves it 'running' until the next run marks it 'abandoned'. Either
way the previous run stays what `latest_recommendations` shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from movierec import catalog, runs
from movierec.batch import engine
from movierec.batch.candidates import encode_texts, fetch_candidates
from movierec.batch.lock import batch_lock
from movierec.batch.queries import SavedQuery, list_queries
from movierec.cf import (
    BECAUSE_LIKED,
    CF_FORMULA,
    Because,
    check_weights,
    cold_formula,
    load_current_model,
    with_fresh_users,
)
from movierec.config import Settings
from movierec.db import connect, transaction
from movierec.errors import BadInputError, DamagedError, NotFoundError
from movierec.progress import bar, say


@dataclass
class QueryStats:
    query_name: str
    candidates_found: int
    users_served: int
    n_rows: int
    seconds: float = 0.0  # scoring time
    flops: float = 0.0  # of the CF matrix products
    matmul_seconds: float = 0.0  # time in those products
    write_seconds: float = 0.0  # converting and writing the lists to Parquet


@dataclass
class RunSummary:
    run_id: int
    n_queries: int
    n_users: int
    n_rows: int
    seconds: float
    lock_seconds: float
    scoring_seconds: float
    scoring_gflops: float
    matmul_gflops: float
    cf_model_version: str
    alpha: float
    queries: list[QueryStats] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per step, where the time went
    warnings: list[str] = field(default_factory=list)  # also said on stderr as the run found them

    def line(self) -> str:
        return (
            f"run {self.run_id}: {self.n_rows:,} rows for {self.n_users:,} users x {self.n_queries} queries "
            f"in {self.seconds:.1f} s; database locked for writing {self.lock_seconds:.2f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_batch(settings: Settings, alpha: float | None = None, progress: bool = False) -> RunSummary:
    """Compute and publish one run. Raises our errors on bad state; the previous run stays visible."""
    alpha = resolve_alpha(settings, alpha)  # before any work
    t_start = time.perf_counter()
    with batch_lock(settings), _engine(settings) as ray:
        stages = {} if ray is None else {"start or join Ray": round(time.perf_counter() - t_start, 3)}
        run_id, queries = _start(settings, alpha)
        try:
            summary = _compute_and_publish(settings, run_id, queries, alpha, progress, t_start, ray, stages)
        except BaseException as exc:
            _mark_failed(settings, run_id, exc)
            raise
    return summary


@contextmanager
def _engine(settings: Settings) -> Iterator[object | None]:
    """The Ray module, connected, for `engine = "ray"` (None for the local engine)."""
    if settings.engine != "ray":
        yield None
        return
    from movierec.batch import ray_engine  # ray only when asked for

    with ray_engine.cluster(settings) as ray:
        yield ray


def formula(settings: Settings) -> str:
    """The score formulas a run records (beta and the cold-start weight are settings; alpha has its own
    column)."""
    return f"{CF_FORMULA}, beta = {settings.popularity_weight:g}; {cold_formula(settings.cold_start_weight)}"


def resolve_alpha(settings: Settings, alpha: float | None) -> float:
    """The similarity weight a ranking uses: `alpha`, or the setting's when None (`--alpha` not given),
    checked with the popularity weight (`cf.check_weights`) so bad weights fail before any work."""
    alpha = settings.alpha if alpha is None else alpha
    check_weights(alpha, settings.popularity_weight)
    return alpha


def _start(settings: Settings, alpha: float) -> tuple[int, list[SavedQuery]]:
    with connect(settings) as con, transaction(con):
        queries = list_queries(con, enabled_only=True)
        if not queries:
            raise NotFoundError(
                "no enabled saved queries: add one, e.g. "
                "`movierec queries add zombies 'zombie films' --genre Horror`"
            )
        run_id, leftovers = runs.begin(con, settings, embedding_model=settings.model, alpha=alpha,
                                       formula=formula(settings), n_queries=len(queries))  # fmt: skip
    runs.remove_leftovers(settings, leftovers)  # safe: we hold the batch lock
    return run_id, queries


def _compute_and_publish(
    settings: Settings,
    run_id: int,
    queries: list[SavedQuery],
    alpha: float,
    progress: bool,
    t_start: float,
    ray: object | None = None,
    stages: dict[str, float] | None = None,
) -> RunSummary:
    stages = {} if stages is None else stages
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = round(now - mark, 3)
        mark = now

    record, model = load_current_model(settings)
    lap("load CF model")
    vectors = encode_texts(settings, [q.text for q in queries])
    lap("load text model, encode queries")
    cands = fetch_candidates(settings, vectors, queries)
    lap("fetch candidates")

    all_movies = np.unique(np.concatenate([c.movie_ids for c in cands] + [np.zeros(0, np.int64)]))
    # One snapshot: the ratings the lists leave out and the last ingest they came from (later ingests'
    # ratings are what users did next: `movierec batch report`).
    with connect(settings, read_only=True) as con, transaction(con):
        last_ingest = con.execute("SELECT coalesce(max(ingest_id), 0) FROM ingests").fetchone()[0]
        everyone = catalog.user_ids(con)
        seen = catalog.Seen.load(con, all_movies)
        lap("read users and candidates' ratings")
        liked = catalog.liked(con, BECAUSE_LIKED) if settings.because else None
    if liked is not None:
        lap("because you liked: read liked films")
    model, folded = with_fresh_users(settings, model, everyone, last_ingest)
    lap(f"fold in {len(folded):,} users newer than the model")
    explain = Because.prepare(model, *liked) if liked is not None else None
    if liked is not None:
        lap("because you liked: index liked films")

    targets = [everyone if q.users is None else np.array(q.users, dtype=np.int64) for q in queries]
    plan = list(engine.shards([q.name for q in queries], [q.top_n for q in queries], targets,
                              settings.ray_shard_users))  # fmt: skip
    params = engine.RunParams(run_id, alpha, settings.popularity_weight, settings.cold_start_weight,
                              settings.block_users, runs.run_dir(settings, run_id))  # fmt: skip
    # Locally every query reads the one ratings table; Ray ships each query only its candidates' ratings.
    data = engine.query_data(cands, seen, subset=ray is not None)
    lap("plan shards")
    try:
        if ray is None:
            with bar(total=int(sum(len(t) for t in targets)), unit="user", enabled=progress) as pbar:
                done = engine.map_local(model, data, targets, plan, params, folded, explain, pbar)
        else:
            from movierec.batch.ray_engine import map_shards

            done = map_shards(ray, model, data, targets, plan, params, folded, explain, progress)
    except BaseException:
        runs.discard(params.run_dir)
        raise
    lap("score and write Parquet" if ray is None else "ray: tasks (score, write parts)")
    if explain is not None:
        stages["because you liked: nearest liked film (part of scoring)"] = round(
            sum(d.explain_seconds for d in done), 3
        )
    per_query = [engine.ShardStats() for _ in queries]
    for shard, st in zip(plan, done, strict=True):
        per_query[shard.query_index].add(st)
    stats = [
        QueryStats(
            q.name, len(c), s.users_served, s.n_rows, s.seconds, s.flops, s.matmul_seconds, s.write_seconds
        )
        for q, c, s in zip(queries, cands, per_query, strict=True)
    ]
    if not sum(st.n_rows for st in stats):
        runs.discard(params.run_dir)
        empty = [q.name for q, c in zip(queries, cands, strict=True) if not len(c)]
        filtered = all(q.genres or q.exclude_genres or q.year_min or q.year_max for q in queries)
        if len(empty) == len(queries) and filtered:  # the user's filters, not damage: say which queries
            raise BadInputError(
                f"the run produced no rows: no film matches saved quer{'y' if len(empty) == 1 else 'ies'} "
                f"{', '.join(map(repr, empty))} (its genre and year filters exclude every film); nothing was "
                "published; change it with `movierec queries update NAME` or disable it"
            )
        raise DamagedError(runs.NO_ROWS)
    warnings = _warnings(queries, cands, everyone)
    for w in warnings:
        say(f"batch: warning: {w}")
    scoring_s = sum(st.seconds for st in stats)
    flops = sum(st.flops for st in stats)
    matmul_s = sum(st.matmul_seconds for st in stats)
    n_rows = sum(s.n_rows for s in stats)
    n_users = int(len(np.unique(np.concatenate(targets)))) if targets else 0
    lock_s = _publish(settings, run_id, queries, stats, record, n_users, n_rows, last_ingest)
    lap("publish (incl. waiting for readers)")
    return RunSummary(
        run_id=run_id,
        n_queries=len(queries),
        n_users=n_users,
        n_rows=n_rows,
        seconds=time.perf_counter() - t_start,
        lock_seconds=lock_s,
        scoring_seconds=scoring_s,
        scoring_gflops=flops / scoring_s / 1e9 if scoring_s else 0.0,
        matmul_gflops=flops / matmul_s / 1e9 if matmul_s else 0.0,
        cf_model_version=str(record.version),
        alpha=alpha,
        queries=stats,
        stages=stages,
        warnings=warnings,
    )


def _warnings(queries: list[SavedQuery], cands: list[Any], everyone: np.ndarray) -> list[str]:
    """What an operator should hear about a run that still publishes: a saved query whose filters match
    no film (no lists for it), or one naming users who have no ratings (they get the cold-start list)."""
    out = []
    for q, c in zip(queries, cands, strict=True):
        if not len(c):
            out.append(
                f"saved query {q.name!r} found no film (its genre and year filters exclude every film): "
                "no lists for it; change it with `movierec queries update NAME` or disable it"
            )
        if q.users is not None:
            unknown = np.setdiff1d(np.array(q.users, dtype=np.int64), everyone)
            if len(unknown):
                shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
                out.append(
                    f"saved query {q.name!r} names {len(unknown):,} user id(s) with no ratings ({shown}): "
                    "they get the cold-start list"
                )
    return out


def _publish(
    settings: Settings,
    run_id: int,
    queries: list[SavedQuery],
    stats: list[QueryStats],
    record: Any,
    n_users: int,
    n_rows: int,
    last_ingest: int | None,
) -> float:
    """The one write of the results: the run file named by the view and the 'succeeded' mark commit
    together or not at all. Returns how long other processes were locked out of the database."""
    query_rows = pa.table(
        {
            "run_id": [run_id] * len(queries),
            "query_name": [q.name for q in queries],
            "text": [q.text for q in queries],
            "genres": [list(q.genres) for q in queries],
            "exclude_genres": [list(q.exclude_genres) for q in queries],
            "year_min": pa.array([q.year_min for q in queries], pa.int32()),
            "year_max": pa.array([q.year_max for q in queries], pa.int32()),
            "candidates": [q.candidates for q in queries],
            "top_n": [q.top_n for q in queries],
            "candidates_found": [s.candidates_found for s in stats],
            "users_served": [s.users_served for s in stats],
            "n_rows": [s.n_rows for s in stats],
        }
    )
    return runs.publish(settings, run_id, query_rows, str(record.version), n_users, n_rows, last_ingest)


def _mark_failed(settings: Settings, run_id: int, exc: BaseException) -> None:
    runs.mark_failed(settings, run_id, f"{type(exc).__name__}: {exc}")
