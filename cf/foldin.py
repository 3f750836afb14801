"""Fresh users without a retrain: users who rated movies after the current model was trained get a vector
folded in from their ratings (`Factors.fold_in`, the ALS user solve against the trained movie factors).

The batch and `movierec recommend` call `with_fresh_users` after loading the model; the users it folds in
are ranked like everyone else, and the returned model's `recommend` marks their rows `source = 'fold_in'`
(it carries them in `Recommender.folded`; `mark_folded` does the same for callers that still call it).
Users with no ratings (or only movies the model does not know) stay cold-start users.
"""

from __future__ import annotations

import numpy as np

from movierec.cf.ranking import Ranked
from movierec.cf.recommender import Recommender
from movierec.config import Settings
from movierec.db import connect


def with_fresh_users(
    settings: Settings, model: Recommender, user_ids: np.ndarray, last_ingest: int | None = None
) -> tuple[Recommender, np.ndarray]:
    """`model` plus folded-in vectors for those of `user_ids` it lacks but who have ratings in DuckDB, and
    the ids folded in (sorted). A model that cannot fold in (not ALS) comes back unchanged. `last_ingest`:
    only ratings of pairs first written by that ingest or before (the batch's snapshot), so a run's
    lists never learn from ratings that judge them later."""
    from movierec.cf.keras_cf import KerasCF

    none = np.zeros(0, dtype=np.int64)
    factors = getattr(model, "factors", None)
    if not isinstance(model, KerasCF) or factors is None or not factors.can_fold_in:
        return model, none
    user_ids = np.asarray(user_ids, dtype=np.int64)
    fresh = np.unique(user_ids[factors.user_index(user_ids) < 0])
    if len(fresh) == 0:
        return model, none
    with connect(settings, read_only=True) as con:
        snapshot = "" if last_ingest is None else f" AND coalesce(first_ingest, 0) <= {int(last_ingest)}"
        cols = con.execute(
            "SELECT user_id, movie_id, rating, coalesce(epoch(rated_at), 0)::BIGINT AS t "
            f"FROM ratings WHERE user_id IN (SELECT unnest(?)){snapshot}",
            [fresh.tolist()],
        ).fetchnumpy()
    ids, vecs, bias = factors.fold_in(cols["user_id"], cols["movie_id"], cols["rating"], cols["t"])
    if len(ids) == 0:
        return model, none
    fresh_model = KerasCF.from_factors(factors.with_users(ids, vecs, bias), model.seen)
    fresh_model.folded = ids  # its `recommend` marks these users' rows 'fold_in'
    return fresh_model, ids


def mark_folded(ranked: Ranked, folded: np.ndarray | None) -> Ranked:
    """Mark the CF rows of folded-in users (their `source` becomes 'fold_in'); returns `ranked`."""
    if folded is not None and len(folded):
        ranked.folded = np.isin(ranked.user_id, folded) & ~ranked.cold
    return ranked
