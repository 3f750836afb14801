"""Fresh users without a retrain: users who rated movies after the current model was trained get a vector
folded in from their ratings (`Factors.fold_in`, the ALS user solve against the trained movie factors).

The batch and `movierec recommend` call `with_fresh_users` after loading the factors; users it folds in are
scored like everyone else and marked `source = 'fold_in'`. Users with no ratings stay cold-start users.
"""

from __future__ import annotations

import numpy as np

from cf.factors import Factors
from movierec.config import Settings
from movierec.db import connect


def with_fresh_users(
    settings: Settings, factors: Factors, user_ids: np.ndarray
) -> tuple[Factors, np.ndarray]:
    """`factors` plus folded-in vectors for those of `user_ids` the model lacks but who have ratings in
    DuckDB; and the ids folded in (sorted). A model that cannot fold in (rating objective) comes back
    unchanged."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    fresh = np.unique(user_ids[factors.user_index(user_ids) < 0])
    if not factors.can_fold_in or len(fresh) == 0:
        return factors, np.zeros(0, dtype=np.int64)
    with connect(settings, read_only=True) as con:
        cols = con.execute(
            "SELECT user_id, movie_id, rating FROM ratings WHERE user_id IN (SELECT unnest(?))",
            [fresh.tolist()],
        ).fetchnumpy()
    if len(cols["user_id"]) == 0:
        return factors, np.zeros(0, dtype=np.int64)
    ids, vecs, bias = factors.fold_in(cols["user_id"], cols["movie_id"], cols["rating"])
    if len(ids) == 0:
        return factors, ids
    return factors.with_users(ids, vecs, bias), ids
