"""`movierec nightly`: ingest -> embed (incremental) -> train (when ratings changed) -> batch run.

Each stage is all-or-nothing on its own (ingest in one transaction, a model made current only when
complete, the batch published in one transaction), so stopping at the first failure leaves yesterday's
lists in `latest_recommendations`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from movierec.config import Settings
from movierec.db import connect
from movierec.errors import MovierecError, NotFoundError
from movierec.progress import say


def ratings_changed(settings: Settings) -> str | None:
    """Why the current CF model is out of date (no model, other rating count or newest rating), or None."""
    from cf import current_model

    record = current_model(settings)
    if record is None:
        return "no CF model yet"
    with connect(settings, read_only=True) as con:
        n, newest = con.execute("SELECT count(*), max(rated_at) FROM ratings").fetchone()
    if record.n_ratings != n:
        return f"{n:,} ratings now, model {record.version} saw {record.n_ratings or 0:,}"
    if newest is not None and record.max_rated_at is not None and newest > record.max_rated_at:
        return f"ratings newer than model {record.version} ({newest} > {record.max_rated_at})"
    return None


def nightly(
    settings: Settings,
    data_dir: Path | str | None = None,
    *,
    retrain: bool = False,
    alpha: float = 0.0,
    train_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> str:
    """Run every stage in order; raise the first stage's error, prefixed with the stage name.

    `train_options` go to `cf.train_model` (epochs, dim, ...); the model's defaults otherwise.
    """
    from batch.run import check_alpha

    check_alpha(alpha)
    done: list[str] = []
    started = time.perf_counter()

    def stage(name: str) -> _Stage:
        return _Stage(name, done, progress)

    if data_dir is not None:
        with stage("ingest") as st:
            from ingest import ingest_dir

            rep = ingest_dir(settings, data_dir, progress=progress)
            st.note = f"{rep.movies:,} movies, {rep.ratings:,} ratings"
    with stage("embed") as st:
        from ingest.embed import embed_movies

        emb = embed_movies(settings, progress=progress)
        st.note = f"{emb.upserted:,} movies (re)embedded"
    with stage("train") as st:
        why = "--retrain" if retrain else ratings_changed(settings)
        if why is None:
            st.note = "skipped, ratings unchanged since the current model"
        else:
            from cf import train_model

            say(f"nightly: training ({why})", enabled=progress)
            rec = train_model(settings, progress=progress, **(train_options or {}))
            st.note = f"model {rec.version} ({why})"
    with stage("batch") as st:
        from batch.queries import list_queries

        with connect(settings, read_only=True) as con:
            if not list_queries(con, enabled_only=True):
                raise NotFoundError(
                    "there are no enabled saved queries, so nothing was published; add one with "
                    "`movierec queries add NAME TEXT [--genre G]...` and run again"
                )
        from batch.run import run_batch

        summary = run_batch(settings, alpha=alpha, progress=progress)
        st.note = summary.line()
    return f"nightly done in {time.perf_counter() - started:.1f} s: " + "; ".join(done)


class _Stage:
    """Times a stage, reports it on stderr, and names it in any error it raises."""

    def __init__(self, name: str, done: list[str], progress: bool) -> None:
        self.name, self.done, self.progress, self.note = name, done, progress, ""

    def __enter__(self) -> _Stage:
        say(f"nightly: {self.name}...", enabled=self.progress)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            line = f"{self.name} {time.perf_counter() - self.t0:.1f} s ({self.note})"
            self.done.append(line)
            say(f"nightly: {line}", enabled=self.progress)
            return False
        if isinstance(exc, MovierecError):
            kept = "; the previous recommendations stay published"
            raise type(exc)(f"nightly stopped at {self.name}: {exc}{kept}") from exc
        return False
