"""Looking inside a trained model: similar movies in embedding space, movies with extreme learned bias.
(Finding a movie by title is `movierec.catalog.find_movie`.)"""

from __future__ import annotations

import numpy as np

from movierec.cf.factors import Factors
from movierec.cf.recommender import Recommender
from movierec.errors import BadInputError, NotFoundError


def _factors(model: Recommender) -> Factors:
    factors = getattr(model, "factors", None)
    if factors is None:
        raise BadInputError(f"the current model is a {model.kind} model, which has no learned movie vectors")
    return factors


def similar_movies(model: Recommender, movie_id: int, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The `limit` movies whose CF vectors are closest (cosine) to `movie_id`'s, itself left out."""
    if limit < 1:
        raise BadInputError("--limit must be at least 1")
    factors = _factors(model)
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
    model: Recommender, counts: np.ndarray, min_ratings: int = 20, n: int = 10
) -> tuple[list[tuple[int, float, int]], list[tuple[int, float, int]]]:
    """(highest, lowest) learned movie biases as (movie_id, bias, n_ratings), among movies with at least
    `min_ratings` training ratings (`counts` aligned with the model's movie_ids)."""
    factors = _factors(model)
    eligible = np.flatnonzero(counts >= min_ratings)
    order = eligible[np.argsort(-factors.movie_bias[eligible], kind="stable")]

    def rows(idx: np.ndarray) -> list[tuple[int, float, int]]:
        return [(int(factors.movie_ids[i]), float(factors.movie_bias[i]), int(counts[i])) for i in idx]

    return rows(order[:n]), rows(order[::-1][:n])
