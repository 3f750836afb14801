"""Ad hoc lookups: `movierec recommend` (computed live with the batch's own code path) and `movierec show`
(what the last successful batch published)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batch.candidates import SeenIndex, encode_texts, fetch_candidates
from batch.queries import DEFAULT_CANDIDATES, DEFAULT_TOP_N, SavedQuery, validate
from batch.scoring import SOURCE_CF, SOURCE_COLD, SOURCE_FOLD, Candidates, rank_users
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import NotFoundError

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
    alpha: float = 0.0,
) -> AdHoc:
    """One user's personalised list for a text, ranked exactly as the nightly batch would rank it."""
    from batch.run import check_alpha
    from cf import load_current_factors

    check_alpha(alpha)
    q = SavedQuery(
        "ad hoc", text, tuple(genres), tuple(exclude_genres), year_min, year_max, candidates, top_n
    )
    with connect(settings, read_only=True) as con:
        q = validate(con, q)
        history = _history(con, user_id)
    record, factors = load_current_factors(settings)
    from cf.foldin import with_fresh_users

    factors, folded = with_fresh_users(settings, factors, np.array([user_id]))
    cands = fetch_candidates(settings, encode_texts(settings, [q.text]), [q])[0]
    with connect(settings, read_only=True) as con:
        seen = SeenIndex.load(con, cands.movie_ids)
        user_seen = SeenIndex.load(con, cands.movie_ids, np.array([user_id]))
    cands = Candidates(cands.movie_ids, cands.similarity, seen.counts(cands.movie_ids))
    su, sm = user_seen.pairs(cands.movie_ids)
    ranked = rank_users(factors, np.array([user_id]), cands, su, sm, q.top_n, alpha, folded_users=folded)

    notice = None
    if len(folded):
        notice = (
            f"user {user_id} rated movies after the current CF model was trained: their vector is folded in "
            "from those ratings (no retrain)"
        )
    if factors.user_index(np.array([user_id]))[0] < 0:
        why = "has no ratings" if not history else "rated only movies the current CF model does not know"
        notice = (
            f"user {user_id} {why}: showing the cold-start list (query similarity with a popularity prior)"
        )
    movies = _movie_meta(settings, ranked.movie_id)
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


def show(settings: Settings, user_id: int, query: str | None = None) -> list[dict[str, Any]]:
    """The lists the last successful batch run published for a user (all queries, or one)."""
    sql = (
        "SELECT query_name, rank, movie_id, title, year, genres, score, similarity, predicted_rating, "
        "source, run_id FROM latest_recommendations WHERE user_id = ?"
    )
    params: list[Any] = [user_id]
    if query is not None:
        sql += " AND query_name = ?"
        params.append(query)
    with connect(settings, read_only=True) as con:
        rows = con.execute(sql + " ORDER BY query_name, rank", params).fetchall()
        if not rows:
            runs = con.execute("SELECT count(*) FROM batch_runs WHERE status = 'succeeded'").fetchone()[0]
            if not runs:
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
    keys = ("query", "rank", "movie_id", "title", "year", "genres", "score", "similarity", "predicted_rating",
            "source", "run_id")  # fmt: skip
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _history(con: Any, user_id: int) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT r.movie_id, m.title, m.genres, r.rating FROM ratings r JOIN movies m USING (movie_id) "
        "WHERE r.user_id = ? ORDER BY r.rating DESC, r.rated_at DESC NULLS LAST, r.movie_id LIMIT ?",
        [user_id, HISTORY_SIZE],
    ).fetchall()
    return [{"movie_id": m, "title": t, "genres": list(g), "rating": float(r)} for m, t, g, r in rows]


def _movie_meta(settings: Settings, movie_ids: np.ndarray) -> dict[int, tuple[str, int | None, list[str]]]:
    ids = [int(m) for m in np.unique(movie_ids)]
    if not ids:
        return {}
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT movie_id, title, year, genres FROM movies WHERE list_contains(?, movie_id)", [ids]
        ).fetchall()
    return {m: (t, y, list(g)) for m, t, y, g in rows}
