"""Ad hoc lookups: `movierec recommend` (computed live with the batch's own code path) and `movierec show`
(what the last successful batch published)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from movierec import catalog, runs
from movierec.batch.candidates import encode_texts, fetch_candidates
from movierec.batch.queries import DEFAULT_CANDIDATES, DEFAULT_TOP_N, SavedQuery, validate
from movierec.batch.run import resolve_alpha
from movierec.cf import (
    SOURCE_CF,
    SOURCE_COLD,
    SOURCE_FOLD,
    load_current_model,
    mark_folded,
    with_fresh_users,
)
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import NotFoundError
from movierec.limits import check_user_id

HISTORY_SIZE = 5


@dataclass
class AdHoc:
    user_id: int
    history: list[dict[str, Any]]  # the user's highest-rated movies
    items: list[dict[str, Any]]  # rank, movie_id, title, genres, score, similarity, source
    notice: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def recommend(
    settings: Settings,
    user_id: int,
    text: str,
    top_n: int = DEFAULT_TOP_N,
    candidates: int = DEFAULT_CANDIDATES,
    genres: tuple[str, ...] = (),
    exclude_genres: tuple[str, ...] = (),
    year_min: int | None = None,
    year_max: int | None = None,
    alpha: float | None = None,
) -> AdHoc:
    """One user's personalised list for a text, ranked exactly as the nightly batch would rank it
    (`alpha` None: the setting's)."""
    alpha = resolve_alpha(settings, alpha)
    check_user_id(user_id)
    q = SavedQuery(
        "ad hoc", text, tuple(genres), tuple(exclude_genres), year_min, year_max, candidates, top_n
    )
    with connect(settings, read_only=True) as con:
        q = validate(con, q)
        history = catalog.history(con, user_id, HISTORY_SIZE)
    record, model = load_current_model(settings)
    model, folded = with_fresh_users(settings, model, np.array([user_id]))
    cands = fetch_candidates(settings, encode_texts(settings, [q.text]), [q])[0]
    with connect(settings, read_only=True) as con:
        popularity = catalog.Seen.load(con, cands.movie_ids).counts(cands.movie_ids)
        user_seen = catalog.Seen.load(con, cands.movie_ids, np.array([user_id]))
        movies = catalog.movie_meta(con, cands.movie_ids)
    ranked = model.recommend(
        np.array([user_id]),
        q.top_n,
        items=cands.movie_ids,
        similarity=cands.similarity,
        popularity=popularity,
        seen=user_seen,
        alpha=alpha,
        pop_weight=settings.popularity_weight,
        cold_weight=settings.cold_start_weight,
        workers=1,
    )
    mark_folded(ranked, folded)

    notice = None
    if len(folded):
        notice = (
            f"user {user_id} rated movies after the current CF model was trained: their vector is folded in "
            "from those ratings (no retrain)"
        )
    if model.user_rows(np.array([user_id]))[0] < 0:
        why = "has no ratings" if not history else "rated only movies the current CF model does not know"
        notice = (
            f"user {user_id} {why}: showing the cold-start list (query similarity with a popularity prior)"
        )
    items = [
        {
            "rank": int(r),
            "movie_id": int(m),
            "title": movies.get(int(m), ("?", None, []))[0],
            "year": movies.get(int(m), ("?", None, []))[1],
            "genres": movies.get(int(m), ("?", None, []))[2],
            "score": round(float(s), 6),
            "similarity": round(float(sim), 6),
            "predicted_rating": None if np.isnan(p) else round(float(p), 3),
            "source": SOURCE_COLD if c else SOURCE_FOLD if len(folded) else SOURCE_CF,
        }
        for r, m, s, sim, p, c in zip(
            ranked.rank,
            ranked.movie_id,
            ranked.score,
            ranked.similarity,
            ranked.predicted_rating,
            ranked.cold,
            strict=True,
        )
    ]
    items.sort(key=lambda d: d["rank"])
    return AdHoc(user_id, history, items, notice, {"cf_model_version": str(record.version)})


PUBLISHED_COLUMNS = ("query", "rank", "movie_id", "title", "year", "genres", "score", "similarity",
                     "predicted_rating", "source", "because_movie_id", "because_title", "run_id")  # fmt: skip


def published(
    con: Any, user_id: int | None = None, query: str | None = None, run_id: int | None = None
) -> tuple[list[str], list[tuple]]:
    """Published rows (columns, rows) of one run (default: the latest successful), optionally one user's
    or one query's, ordered by query, user and rank."""
    runs.require_readable(con, run_id)
    where, params = ["r.run_id = ?"], [run_id if run_id is not None else runs.latest_run_id(con)]
    if user_id is not None:
        where.append("r.user_id = ?")
        params.append(user_id)
    if query is not None:
        where.append("r.query_name = ?")
        params.append(query)
    sql = (
        "SELECT r.query_name AS query, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.similarity, "
        "r.predicted_rating, r.source, r.because_movie_id, b.title AS because_title, r.run_id, r.user_id "
        "FROM recommendations r JOIN movies m USING (movie_id) "
        "LEFT JOIN movies b ON b.movie_id = r.because_movie_id "
        f"WHERE {' AND '.join(where)} ORDER BY r.query_name, r.user_id, r.rank"
    )
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description], cur.fetchall()


def show(settings: Settings, user_id: int, query: str | None = None) -> list[dict[str, Any]]:
    """The lists the last successful batch run published for a user (all queries, or one)."""
    check_user_id(user_id)
    with connect(settings, read_only=True) as con:
        columns, rows = published(con, user_id, query)
        if not rows:
            if not runs.succeeded_runs(con):
                raise NotFoundError(
                    "no successful batch run yet: run `movierec batch run` (or `movierec nightly`)"
                )
            if query is not None:
                known = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT query_name FROM latest_recommendations ORDER BY 1"
                    ).fetchall()
                ]
                if query not in known:
                    raise NotFoundError(f"the latest run has no query {query!r}; it has: {', '.join(known)}")
            raise NotFoundError(f"the latest run has no recommendations for user {user_id}")
    return [{k: v for k, v in zip(columns, r, strict=True) if k in PUBLISHED_COLUMNS} for r in rows]
