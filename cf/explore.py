"""Looking inside a trained model: similar movies in embedding space, movies with extreme learned bias."""

from __future__ import annotations

import numpy as np

from cf.factors import Factors
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError, NotFoundError


def find_movie(settings: Settings, query: str) -> tuple[int, str]:
    """A movie by id ("1") or by title search ("toy story"): exact title first, then the most-rated match."""
    query = query.strip()
    if not query:
        raise BadInputError("empty movie: give a movie id or part of a title")
    with connect(settings, read_only=True) as con:
        if query.isdigit():
            row = con.execute(
                "SELECT movie_id, title FROM movies WHERE movie_id = ?", [int(query)]
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no movie with id {query}")
            return int(row[0]), row[1]
        row = con.execute(
            """
            SELECT m.movie_id, m.title
            FROM movies m LEFT JOIN (SELECT movie_id, count(*) AS n FROM ratings GROUP BY movie_id) r
                 USING (movie_id)
            WHERE m.title ILIKE '%' || ? || '%'
            ORDER BY lower(m.title) = lower(?) DESC,
                     regexp_replace(lower(m.title), ' \\(\\d{4}\\)$', '') = lower(?) DESC,
                     coalesce(r.n, 0) DESC, m.movie_id
            LIMIT 1
            """,
            [query, query, query],
        ).fetchone()
    if row is None:
        raise NotFoundError(f"no movie title contains {query!r}")
    return int(row[0]), row[1]


def similar_movies(factors: Factors, movie_id: int, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The `limit` movies whose CF vectors are closest (cosine) to `movie_id`'s, itself left out."""
    if limit < 1:
        raise BadInputError("--limit must be at least 1")
    row = int(factors.movie_index(np.array([movie_id]))[0])
    if row < 0:
        raise NotFoundError(
            f"movie {movie_id} is not in the CF model (it had no ratings when the model was trained)"
        )
    vecs = factors.movie_vecs
    norms = np.linalg.norm(vecs, axis=1)
    sims = vecs @ vecs[row] / np.maximum(norms * norms[row], 1e-12)
    sims[row] = -np.inf
    k = min(limit, len(sims) - 1)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    return factors.movie_ids[top], sims[top]


def bias_extremes(
    factors: Factors, counts: np.ndarray, min_ratings: int = 20, n: int = 10
) -> tuple[list[tuple[int, float, int]], list[tuple[int, float, int]]]:
    """(highest, lowest) learned movie biases as (movie_id, bias, n_ratings), among movies with at least
    `min_ratings` training ratings (`counts` aligned with factors.movie_ids)."""
    eligible = np.flatnonzero(counts >= min_ratings)
    order = eligible[np.argsort(-factors.movie_bias[eligible], kind="stable")]

    def rows(idx: np.ndarray) -> list[tuple[int, float, int]]:
        return [(int(factors.movie_ids[i]), float(factors.movie_bias[i]), int(counts[i])) for i in idx]

    return rows(order[:n]), rows(order[::-1][:n])
