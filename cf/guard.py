"""What a CF model must show before it becomes current: finite loss and weights, and a ranking (or rating
fit) not clearly worse than the popularity baseline (or the global mean) on the ratings it was fitted on.

A diverged training run (`--lr 1e30` gives NaN, `--lr 1e6` a loss of 3e12 and every score 1.000) would
otherwise be made current and the next batch would publish nothing, or the same list for everyone. The
check is in-sample and cheap (a few hundred users): it catches a broken model, not a mediocre one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from movierec.cf.data import index_of
from movierec.errors import ModelError

MIN_RATINGS = 200  # below this, a metric is noise: only the finiteness checks apply
SAMPLE_USERS = 300
NEGATIVES = 100
AUC_MARGIN = 0.15  # model AUC may trail popularity's by this much (an under-trained but sane model)
# Binary cross-entropy of a constant 0.5 prediction is ln 2 = 0.693 whatever the data: a validation loss
# many times that is a model worse than guessing (a diverged one reaches 1e12).
LOSS_CEILING = 5.0
# The held-out loss must beat that constant itself (a model trained with --lr 1e-30 sits at 0.697): a
# model that does not has learnt nothing the nightly should publish.
CONSTANT_LOSS = math.log(2)
SATURATED_SHARE = 0.9  # rating models: share of predictions pinned at the ends of the rating scale


def check_model(model: Any, metrics: dict[str, Any] | None = None, ranking: bool = True) -> None:
    """Raise ModelError (one line: what is wrong, what to do) unless `model` is fit to become current.
    `ranking=False`: only the cheap finiteness checks (every load)."""
    for key, value in (metrics or {}).items():
        if key.endswith("loss") and value is not None:
            if not math.isfinite(float(value)):
                _fail(f"its {key} is {value}")
            if float(value) > LOSS_CEILING:
                _fail(f"its {key} is {float(value):.3g}, far above a constant guess's 0.693")
            if key == "val_loss" and float(value) >= CONSTANT_LOSS:
                _fail(
                    f"its {key} is {float(value):.4g}, no better than the constant guess 0.5 "
                    f"({CONSTANT_LOSS:.4g})"
                )
    for name, arr in _arrays(model):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            _fail(f"its {name} hold non-finite values")
    seen = getattr(model, "seen", None)
    if not ranking or seen is None or len(seen) < MIN_RATINGS or not len(model.user_ids):
        return
    rng = np.random.default_rng(0)
    sample = rng.choice(model.user_ids, size=min(SAMPLE_USERS, len(model.user_ids)), replace=False)
    # Only the sample's ratings are judged: one pass over all of them, then everything else on a few
    # thousand pairs (at 25M ratings judging the whole set took 11 s of the model's save).
    users, movies = seen.pairs()
    pick = _members(users, sample)
    users, movies = users[pick], movies[pick]
    # Ratings of users or movies newer than the model (a model built elsewhere, or fitted on less) are not
    # the model's to answer for: they score NaN by contract.
    known = (model.user_rows(users) >= 0) & np.isin(movies, model.movie_ids)
    users, movies = users[known], movies[known]
    if len(users) < MIN_RATINGS:
        return
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged model overflows the sigmoid
        if model.predicts_ratings:
            _check_rating_spread(model, users, movies, sample)
        else:
            _check_ranking(model, seen, users, movies, sample, rng)


def _fail(why: str) -> None:
    raise ModelError(
        f"the model is unusable ({why}): a new one is not made current (the previous model stays), a "
        "stored one is not used; retrain with `movierec train` (a smaller --lr or other settings)"
    )


def _arrays(model: Any) -> list[tuple[str, np.ndarray]]:
    out = []
    for owner, prefix in ((model, ""), (getattr(model, "factors", None), "factors.")):
        if owner is None:
            continue
        for name, value in vars(owner).items():
            if isinstance(value, np.ndarray):
                out.append((prefix + name, value))
            elif isinstance(value, float):
                out.append((prefix + name, np.array([value])))
    return out


def _members(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """np.isin(values, ids) for a few ids among many values, by the id lookup the models use (`index_of`:
    a table over dense ids, else a binary search); np.isin compared each value with each id."""
    return index_of(np.unique(np.asarray(ids, dtype=np.int64)), values) >= 0


def _check_rating_spread(model: Any, users: np.ndarray, movies: np.ndarray, sample: np.ndarray) -> None:
    """A rating model whose predictions sit at the ends of the scale (or are all equal) has diverged."""
    pred = model.predict(users, movies)  # the sample's ratings
    if not np.isfinite(pred).all():
        _fail("it predicts non-finite ratings")
    lo, hi = model.rating_range
    pinned = float(np.mean((pred <= lo + 1e-3) | (pred >= hi - 1e-3))) if len(pred) else 0.0
    if len(pred) and (pinned >= SATURATED_SHARE or float(np.std(pred)) < 1e-4):
        _fail(f"{pinned:.0%} of its predicted ratings sit at the ends of the scale {lo}-{hi}")


def _check_ranking(
    model: Any, seen: Any, users: np.ndarray, movies: np.ndarray, sample: np.ndarray, rng: np.random.Generator
) -> None:
    popularity = dict(zip(seen.movie_ids.tolist(), np.diff(seen.indptr).tolist(), strict=True))
    aucs_model, aucs_pop = [], []
    for u in sample:
        pos = movies[users == u]
        neg = np.setdiff1d(rng.choice(model.movie_ids, size=min(NEGATIVES, len(model.movie_ids))), pos)
        if not len(pos) or not len(neg):
            continue
        scores = model.score(np.array([u]), np.concatenate([pos, neg]))[0]
        if not np.isfinite(scores).all():
            _fail("it scores non-finite values")
        pop = np.array([popularity.get(int(m), 0) for m in np.concatenate([pos, neg])], dtype=np.float64)
        aucs_model.append(_auc(scores[: len(pos)], scores[len(pos) :]))
        aucs_pop.append(_auc(pop[: len(pos)], pop[len(pos) :]))
    if not aucs_model:
        return
    auc, base = float(np.mean(aucs_model)), float(np.mean(aucs_pop))
    if auc < base - AUC_MARGIN:
        _fail(f"it ranks the movies users rated with AUC {auc:.3f}, popularity gets {base:.3f}")


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(positive scores above a negative), ties counting half."""
    diff = pos[:, None].astype(np.float64) - neg[None, :].astype(np.float64)
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)
