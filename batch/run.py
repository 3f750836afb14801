"""`movierec batch run`: every enabled saved query, every target user, top-N published to DuckDB at once.

Lifecycle, designed so analysts can read the database while the job works:
1. take the batch lock (one run at a time), then in one short write: mark runs left 'running' by a dead
   process as 'abandoned', record this run as 'running', read the saved queries;
2. encode the queries, fetch candidates from the store, read users and the candidates' ratings through a
   read-only connection that is closed again before scoring (other processes can read and write meanwhile);
3. rank through the model contract (`Recommender.recommend`, cf/ranking.py), streaming each query's lists
   into the run's Parquet file; or, with `Settings.engine == "ray"`, in Ray tasks that write the run's
   Parquet parts (batch/ray_engine.py: the cluster is joined before the run is recorded, so a dead address
   records nothing);
4. publish in one short write transaction (batch/publish.py): the run marked 'succeeded', the
   `recommendations` view pointed at the kept runs' files, runs beyond `keep_runs` dropped. This is the
   only time other processes are locked out; its length is measured and printed.
A failure marks the run 'failed'; a kill leaves it 'running' until the next run marks it 'abandoned'. Either
way the previous run stays what `latest_recommendations` shows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from movierec import catalog
from movierec.batch.candidates import encode_texts, fetch_candidates
from movierec.batch.lock import batch_lock
from movierec.batch.publish import (
    NO_ROWS,
    RunWriter,
    delete_output,
    point_views,
    remove_orphans,
    runs_location,
)
from movierec.batch.queries import SavedQuery, list_queries
from movierec.cf import (
    BECAUSE_LIKED,
    CF_FORMULA,
    Because,
    Candidates,
    Recommender,
    cold_formula,
    load_current_model,
    mark_folded,
    with_fresh_users,
)
from movierec.config import Settings
from movierec.db import connect, transaction
from movierec.errors import BadInputError, DamagedError, NotFoundError
from movierec.progress import bar


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

    def line(self) -> str:
        return (
            f"run {self.run_id}: {self.n_rows:,} rows for {self.n_users:,} users x {self.n_queries} queries "
            f"in {self.seconds:.1f} s; database locked for writing {self.lock_seconds:.2f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_batch(settings: Settings, alpha: float = 0.0, progress: bool = False) -> RunSummary:
    """Compute and publish one run. Raises our errors on bad state; the previous run stays visible."""
    check_alpha(alpha)
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
    """The score formulas a run records (the cold-start weight is a setting)."""
    return f"{CF_FORMULA}; {cold_formula(settings.cold_start_weight)}"


def check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise BadInputError(f"--alpha must be between 0 and 1, got {alpha}")


def _start(settings: Settings, alpha: float) -> tuple[int, list[SavedQuery]]:
    with connect(settings) as con, transaction(con):
        running = "SELECT output FROM batch_runs WHERE status = 'running' AND output IS NOT NULL"
        leftovers = [r[0] for r in con.execute(running).fetchall()]
        con.execute(
            "UPDATE batch_runs SET status = 'abandoned', finished_at = current_timestamp, "
            "error = 'the process stopped before publishing (killed or crashed)' WHERE status = 'running'"
        )
        queries = list_queries(con, enabled_only=True)
        if not queries:
            raise NotFoundError(
                "no enabled saved queries: add one, e.g. "
                "`movierec queries add zombies 'zombie films' --genre Horror`"
            )
        run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM batch_runs").fetchone()[0]
        output = runs_location(settings).output(run_id, parts=settings.engine == "ray")
        con.execute(
            "INSERT INTO batch_runs (run_id, started_at, status, embedding_model, alpha, formula, n_queries, "
            "output) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
            [run_id, datetime.now(), settings.model, alpha, formula(settings), len(queries), output],
        )
        succeeded = {
            r[0] for r in con.execute("SELECT run_id FROM batch_runs WHERE status = 'succeeded'").fetchall()
        }
    # Files of killed runs, where they were written and where runs go now; safe, we hold the batch lock.
    for output in leftovers:
        with contextlib.suppress(OSError, BadInputError):  # best effort: a location gone stays gone
            delete_output(output)
    remove_orphans(settings, succeeded)
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
    with connect(settings, read_only=True) as con:
        everyone = catalog.user_ids(con)
        seen = catalog.Seen.load(con, all_movies)
        lap("read users and candidates' ratings")
        liked = catalog.liked(con, BECAUSE_LIKED)
    lap("because you liked: read liked films")
    model, folded = with_fresh_users(settings, model, everyone)
    lap(f"fold in {len(folded):,} users newer than the model")
    explain = Because.prepare(model, *liked)
    lap("because you liked: index liked films")

    targets = [everyone if q.users is None else np.array(q.users, dtype=np.int64) for q in queries]
    stats: list[QueryStats] = []
    scoring_s, flops = 0.0, 0.0
    if ray is None:
        out = RunWriter(settings, run_id)
        try:
            explain_s = _score_all(
                settings,
                queries,
                cands,
                targets,
                model,
                seen,
                alpha,
                run_id,
                out,
                stats,
                progress,
                folded,
                explain,
            )
            out.finish()
        except BaseException:
            out.abort()
            raise
        lap("score and write Parquet")
        stages["because you liked: nearest liked film (part of scoring)"] = round(explain_s, 3)
    else:
        from movierec.batch.ray_engine import score_and_write

        location = runs_location(settings)
        per_query = score_and_write(
            ray,
            settings,
            run_id,
            queries,
            cands,
            targets,
            model,
            seen,
            alpha,
            location,
            progress,
            lap,
            folded,
        )
        stats += [
            QueryStats(q.name, len(c), int(d["users_served"]), int(d["n_rows"]), d["seconds"], d["flops"],
                       d["matmul_seconds"], d["write_seconds"])
            for q, c, d in zip(queries, cands, per_query, strict=True)
        ]  # fmt: skip
        if not sum(st.n_rows for st in stats):
            raise DamagedError(NO_ROWS)
    scoring_s = sum(st.seconds for st in stats)
    flops = sum(st.flops for st in stats)
    matmul_s = sum(st.matmul_seconds for st in stats)
    n_rows = sum(s.n_rows for s in stats)
    n_users = int(len(np.unique(np.concatenate(targets)))) if targets else 0
    lock_s = _publish(settings, run_id, queries, stats, record, n_users, n_rows)
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
    )


def _score_all(
    settings: Settings,
    queries: list[SavedQuery],
    cands: list[Candidates],
    targets: list[np.ndarray],
    model: Recommender,
    seen: catalog.Seen,
    alpha: float,
    run_id: int,
    out: RunWriter,
    stats: list[QueryStats],
    progress: bool,
    folded: np.ndarray | None = None,
    explain: Because | None = None,
) -> float:
    """Rank, explain and write every query's lists; returns the seconds spent explaining (`because`)."""
    explain_s = 0.0
    with bar(total=int(sum(len(t) for t in targets)), unit="user", enabled=progress) as pbar:
        for i, (q, c, users) in enumerate(zip(queries, cands, targets, strict=True)):
            pbar.set_description(f"query {i + 1}/{len(queries)} {q.name}")
            t0 = time.perf_counter()
            ranked = model.recommend(
                users,
                q.top_n,
                items=c.movie_ids,
                similarity=c.similarity,
                popularity=seen.counts(c.movie_ids),
                seen=seen,
                alpha=alpha,
                cold_weight=settings.cold_start_weight,
                block=settings.block_users,
                progress=pbar,
            )
            mark_folded(ranked, folded)
            if explain is not None:
                t1 = time.perf_counter()
                ranked.because = explain.nearest(ranked.user_id, ranked.movie_id)
                ranked.because[ranked.cold] = -1  # a cold-start row comes from the query, not from taste
                explain_s += time.perf_counter() - t1
            seconds = time.perf_counter() - t0
            out.write(ranked.to_arrow(run_id, q.name))
            write_seconds = time.perf_counter() - t0 - seconds
            stats.append(
                QueryStats(
                    q.name,
                    len(c),
                    len(np.unique(ranked.user_id)),
                    len(ranked),
                    seconds,
                    ranked.flops,
                    ranked.matmul_seconds,
                    write_seconds,
                )
            )
    return explain_s


def _publish(
    settings: Settings,
    run_id: int,
    queries: list[SavedQuery],
    stats: list[QueryStats],
    record: Any,
    n_users: int,
    n_rows: int,
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
    with connect(settings) as con, transaction(con):
        t0 = time.perf_counter()  # the lock is taken: waiting for readers to let go is not part of the window
        con.register("_new_queries", query_rows)
        con.execute("INSERT INTO batch_run_queries BY NAME SELECT * FROM _new_queries")
        con.unregister("_new_queries")
        con.execute(
            "UPDATE batch_runs SET status = 'succeeded', finished_at = ?, cf_model_version = ?, "
            "n_users = ?, n_rows = ? WHERE run_id = ?",
            [datetime.now(), str(record.version), n_users, n_rows, run_id],
        )
        dropped = point_views(con, settings, settings.keep_runs)
    lock_s = time.perf_counter() - t0  # closing (checkpoint) still excludes readers, so it counts
    for output in dropped:  # no view names them any more
        delete_output(output)
    return lock_s


def _mark_failed(settings: Settings, run_id: int, exc: BaseException) -> None:
    """Best effort: record why the run failed. If even that fails, the next run marks it abandoned."""
    message = f"{type(exc).__name__}: {exc}"[:1000]
    try:
        with connect(settings) as con:
            con.execute(
                "UPDATE batch_runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ?",
                [datetime.now(), message, run_id],
            )
    except Exception:  # noqa: BLE001 - the original error matters more than this one
        pass
