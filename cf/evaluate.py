"""Offline evaluation: the Keras model against popularity and bias-only baselines on the same splits.

- Rating accuracy (RMSE, MAE): random 90/10 split of all ratings. Pairs a model cannot score (user or
  movie absent from training) get the training mean, the same for every model.
- Ranking (precision, recall, nDCG, MAP, hit rate @10, coverage): per-user 75/25 split (latest quarter of
  each user's ratings, or a random quarter). Every movie the model knows is scored, the user's training
  movies are excluded, and every held-out movie counts as relevant (whatever its rating).
"""

from __future__ import annotations

import numpy as np

from movierec.cf.data import Ratings, index_of, per_user_split, random_split
from movierec.cf.recommender import BiasOnly, Popularity, Recommender
from movierec.progress import say

K = 10
METRICS = ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10", "hit@10", "coverage")


def ranking_metrics(
    top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, n_movies: int, *, per_user: bool = False
) -> dict:
    """Mean top-K metrics from recommendations `top` [U, K] (movie rows, -1 = none), a boolean hit matrix
    `relevant` [U, K] (recommended movie is held out for that user), and held-out counts per user. With
    `per_user`, also each user's nDCG@10 (`ndcg_per_user`), so two models can be compared pair by pair."""
    k = top.shape[1]
    hits = relevant & (top >= 0)
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_len = np.minimum(n_relevant, k)
    idcg = np.concatenate(([0.0], np.cumsum(discounts)))[ideal_len]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at_i * hits).sum(axis=1) / np.maximum(ideal_len, 1)
    shown = np.unique(top[top >= 0])
    ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), 0.0)
    out = {
        "precision@10": float(np.mean(n_hits / k)),
        "recall@10": float(np.mean(n_hits / np.maximum(n_relevant, 1))),
        "ndcg@10": float(np.mean(ndcg)),
        "map@10": float(np.mean(ap)),
        "hit@10": float(np.mean(n_hits > 0)),
        "coverage": float(len(shown) / n_movies) if n_movies else 0.0,
    }
    if per_user:
        out["ndcg_per_user"] = ndcg
    return out


def rank_eval(model: Recommender, test: Ratings, *, per_user: bool = False) -> dict:
    """Ranking metrics of a fitted model for every test user the model knows, ranked by the contract's
    engine over the whole catalogue with the training ratings left out. With `per_user`, also the users
    (`user_ids`) and each one's nDCG@10 (`ndcg_per_user`), for paired comparisons between models."""
    users = np.unique(test.user_ids)
    users = users[model.user_rows(users) >= 0]
    ranked = model.recommend(users, K)
    pos = np.searchsorted(users, ranked.user_id)
    top = np.full((len(users), K), -1, dtype=np.int64)
    top[pos, ranked.rank - 1] = index_of(model.movie_ids, ranked.movie_id)
    # Held-out (user, movie) pairs as keys, to look the recommended pairs up in.
    t_pos = np.searchsorted(users, test.user_ids).clip(0, max(len(users) - 1, 0))
    known = (users[t_pos] == test.user_ids) if len(users) else np.zeros(len(test), bool)
    n_relevant = np.bincount(t_pos[known], minlength=len(users))
    n_movies = len(model.movie_ids)
    t_rows = index_of(model.movie_ids, test.movie_ids[known])
    held = np.unique(t_pos[known][t_rows >= 0] * n_movies + t_rows[t_rows >= 0])
    rel = np.isin(np.arange(len(users))[:, None] * n_movies + top, held) & (top >= 0)
    out = ranking_metrics(top, rel, n_relevant, n_movies, per_user=per_user)
    out["users"] = int(len(users))
    if per_user:
        out["user_ids"] = users
    return out


def rating_eval(model: Recommender, test: Ratings, fallback: float) -> dict:
    if not model.predicts_ratings:
        return {"rmse": None, "mae": None}
    pred = model.predict(test.user_ids, test.movie_ids)
    pred = np.where(np.isnan(pred), fallback, pred)
    err = pred.astype(np.float64) - test.ratings
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def evaluate(
    data: Ratings,
    make_model,
    *,
    split: str = "random",
    ranking_test_frac: float = 0.25,
    rating_test_frac: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Evaluate `make_model()` (a fresh unfitted Recommender) and both baselines; the `--json` document."""
    results: dict[str, dict] = {"model": {}, "popularity": {}, "bias": {}}
    makers = {"model": make_model, "popularity": Popularity, "bias": BiasOnly}

    train, test = random_split(data, rating_test_frac, seed)
    fallback = float(train.ratings.mean())
    for name, make in makers.items():
        m = make()
        if m.predicts_ratings:
            say(f"rating split: fitting {name} on {len(train):,} ratings", enabled=progress)
            m.fit(train, progress=progress)
        results[name].update(rating_eval(m, test, fallback))

    rtrain, rtest = per_user_split(data, ranking_test_frac, by=split, seed=seed)
    for name, make in makers.items():
        say(f"ranking split: fitting {name} on {len(rtrain):,} ratings", enabled=progress)
        m = make().fit(rtrain, progress=progress)
        results[name].update(rank_eval(m, rtest))
        if name == "model":
            results["model"]["objective"] = m.hp.objective
            if getattr(m, "tuning", None) is not None:  # chosen on the training part only (cf.tune)
                results["model"]["tuning"] = m.tuning.summary()

    return {
        "model": results["model"],
        "baselines": {"popularity": results["popularity"], "bias": results["bias"]},
        "split": {
            "ranking": split,
            "ranking_test_frac": ranking_test_frac,
            "ranking_train": len(rtrain),
            "ranking_test": len(rtest),
            "rating": "random",
            "rating_test_frac": rating_test_frac,
            "rating_train": len(train),
            "rating_test": len(test),
            "seed": seed,
            "relevant": "every held-out rating",
        },
    }
