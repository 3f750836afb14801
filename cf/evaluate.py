"""Offline evaluation: the Keras model against popularity and bias-only baselines on the same splits.

- Rating accuracy (RMSE, MAE): random 90/10 split of all ratings. Pairs a model cannot score (user or
  movie absent from training) get the training mean, the same for every model.
- Ranking (precision, recall, nDCG, MAP, hit rate @10, coverage): per-user 75/25 split (latest quarter of
  each user's ratings, or a random quarter). Every movie the model knows is scored, the user's training
  movies are excluded, and every held-out movie counts as relevant (whatever its rating).
"""

from __future__ import annotations

import numpy as np

from cf.data import Ratings, Seen, index_of, per_user_split, random_split
from cf.recommender import BiasOnly, Popularity, Recommender
from movierec.progress import say

K = 10
METRICS = ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10", "hit@10", "coverage")


def ranking_metrics(top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, n_movies: int) -> dict:
    """Mean top-K metrics from recommendations `top` [U, K] (movie rows, -1 = none), a boolean hit matrix
    `relevant` [U, K] (recommended movie is held out for that user), and held-out counts per user."""
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
    return {
        "precision@10": float(np.mean(n_hits / k)),
        "recall@10": float(np.mean(n_hits / np.maximum(n_relevant, 1))),
        "ndcg@10": float(np.mean(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), 0.0))),
        "map@10": float(np.mean(ap)),
        "hit@10": float(np.mean(n_hits > 0)),
        "coverage": float(len(shown) / n_movies) if n_movies else 0.0,
    }


def rank_eval(model: Recommender, test: Ratings, block: int = 1024) -> dict:
    """Ranking metrics of a fitted model for every test user the model knows."""
    users = np.unique(test.user_ids)
    user_rows = index_of(model.user_ids, users)
    known = user_rows >= 0
    users, user_rows = users[known], user_rows[known]
    # Held-out movies per test user, as movie rows of the model (-1 for movies it never saw).
    t_users = index_of(users, test.user_ids)
    keep = t_users >= 0
    t_users, t_movies = t_users[keep], index_of(model.movie_ids, test.movie_ids[keep])
    n_relevant = np.bincount(t_users, minlength=len(users))
    in_catalogue = t_movies >= 0
    held = Seen.build(t_users[in_catalogue], t_movies[in_catalogue], len(users))
    tops, rels = [], []
    for start in range(0, len(users), block):
        idx = np.arange(start, min(start + block, len(users)))
        top, _ = model.top_n_rows(user_rows[idx], K, exclude_seen=True)
        mask = held.mask(idx, len(model.movie_ids))
        rel = np.take_along_axis(mask, np.maximum(top, 0), axis=1) & (top >= 0)
        tops.append(top)
        rels.append(rel)
    out = ranking_metrics(np.concatenate(tops), np.concatenate(rels), n_relevant, len(model.movie_ids))
    out["users"] = int(len(users))
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
