"""The one scoring engine behind the model contract (`Recommender.recommend`): candidate movies ranked for
many users at once, seen movies removed, top-N kept. The nightly batch, `movierec recommend` and the
offline evaluation all rank through it, whatever the model (the Keras CF model or a baseline).

Why it is fast: the model scores a block of users x candidates at once (for the CF model one BLAS matrix
product, `Recommender._block`); seen movies are masked from a list of (user, candidate) pairs built once
per call (only ratings of the candidates matter: it is small); top-N comes from N passes of a row-wise
argmax, and the model's score map (the sigmoid) is applied only to the N survivors when the ranking is by
the model alone (it is monotonic, so ranking on raw scores gives the same order).

Score formulas (stored with each run):
- Users the model knows: `score = (1 - alpha - |beta|) * minmax_user(cf_logit) + alpha * minmax(similarity)
  + |beta| * pop`, pop = log_popularity for beta >= 0 and 1 - log_popularity for beta < 0 (a discount),
  every side scaled to [0, 1] over the query's candidates (the CF side per
  user), so the weights mix ranks of comparable spread (the sigmoid of an implicit model's logits spans
  a few hundredths, so blending it raw let any alpha >= 0.1 drown the CF signal: BENCHMARKS.md, list
  evaluation); with alpha = beta = 0 the score is the model's prediction (the min-max scaled rating for
  the rating objective). beta (`pop_weight`) weighs the candidates' popularity, the baseline a list
  judged by what users watch next must beat.
- Users the model does not know (cold start): `score = (1 - w) * minmax(similarity) + w * log_popularity`,
  w = `cold_weight` (`Settings.cold_start_weight`).
- log_popularity = log(1 + ratings) / log(1 + max ratings) over the candidates (`popularity_prior`).
- Candidates the model does not know (movies newer than it) get a neutral score from the model
  (`Recommender._items`): for the CF model interaction 0 and the median movie bias.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from movierec.errors import BadInputError

if TYPE_CHECKING:
    from movierec.cf.recommender import Recommender

COLD_POPULARITY_WEIGHT = 0.25  # default of Settings.cold_start_weight
CF_FORMULA = (
    "score = (1 - alpha - |beta|) * minmax_user(cf_logit) + alpha * minmax(similarity) + |beta| * pop, "
    "pop = log_popularity (beta >= 0) or 1 - log_popularity (beta < 0)"
)
BLOCK_USERS = 4096  # default of Settings.block_users
ARGMAX_TOP_N = 32

SOURCE_CF, SOURCE_COLD, SOURCE_FOLD = "cf", "cold_start", "fold_in"


@dataclass(frozen=True)
class Candidates:
    """A query's candidate movies from the vector store, best first."""

    movie_ids: np.ndarray  # int64 [K]
    similarity: np.ndarray  # float32 [K], cosine similarity to the query text
    n_ratings: np.ndarray | None = None  # int64 [K], popularity for the cold-start prior

    def __len__(self) -> int:
        return len(self.movie_ids)


@dataclass
class Ranked:
    """Top-N lists for many users, as flat columns (one row per user and rank)."""

    user_id: np.ndarray
    rank: np.ndarray
    movie_id: np.ndarray
    score: np.ndarray
    similarity: np.ndarray
    predicted_rating: np.ndarray  # NaN where the model does not predict ratings
    cold: np.ndarray  # bool: row comes from the cold-start ranking
    folded: np.ndarray | None = None  # bool: a CF row for a user folded in after training (cf.foldin)
    because: np.ndarray | None = None  # int64: liked film nearest in CF space (cf.explore), -1: none
    flops: float = field(default=0.0)  # floating-point operations of the model's block products
    matmul_seconds: float = field(default=0.0)  # time spent scoring blocks (the products, biases added)

    def __len__(self) -> int:
        return len(self.user_id)

    def to_arrow(self, run_id: int, query_name: str) -> pa.Table:
        n = len(self)
        code = self.cold.astype(np.int8)
        if self.folded is not None:
            code[self.folded & ~self.cold] = 2
        source = pa.DictionaryArray.from_arrays(
            pa.array(code), pa.array([SOURCE_CF, SOURCE_COLD, SOURCE_FOLD])
        )
        return pa.table(
            {
                "run_id": pa.array(np.full(n, run_id, dtype=np.int32)),
                "query_name": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int8)), pa.array([query_name])
                ),
                "user_id": pa.array(self.user_id.astype(np.int32)),
                "rank": pa.array(self.rank.astype(np.int16)),
                "movie_id": pa.array(self.movie_id.astype(np.int32)),
                "score": pa.array(self.score.astype(np.float32)),
                "similarity": pa.array(self.similarity.astype(np.float32)),
                "predicted_rating": pa.array(
                    self.predicted_rating.astype(np.float32), mask=np.isnan(self.predicted_rating)
                ),
                "source": source,
                "because_movie_id": pa.array(
                    np.zeros(n, np.int32) if self.because is None else self.because.astype(np.int32),
                    mask=np.ones(n, bool) if self.because is None else self.because < 0,
                ),
            }
        )


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant vector maps to 1 (every candidate equally similar)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)


def cold_formula(weight: float = COLD_POPULARITY_WEIGHT) -> str:
    return f"cold start: score = {1 - weight:g} * minmax(similarity) + {weight:g} * log_popularity"


def popularity_prior(cands: Candidates) -> np.ndarray | None:
    """log(1 + ratings) / log(1 + the most-rated candidate's), in [0, 1]; None without counts."""
    if cands.n_ratings is None or len(cands) == 0 or cands.n_ratings.max() <= 0:
        return None
    return (np.log1p(cands.n_ratings) / np.log1p(cands.n_ratings.max())).astype(np.float32)


def cold_start_scores(cands: Candidates, weight: float = COLD_POPULARITY_WEIGHT) -> np.ndarray:
    """Similarity ranking with a popularity prior, for users the model has never seen."""
    sim = minmax(cands.similarity)
    pop = popularity_prior(cands)
    return sim if pop is None else ((1 - weight) * sim + weight * pop).astype(np.float32)


def rank(
    model: Recommender,
    user_ids: np.ndarray,
    cands: Candidates,
    seen_users: np.ndarray,
    seen_movies: np.ndarray,
    top_n: int,
    alpha: float = 0.0,
    cold_weight: float = COLD_POPULARITY_WEIGHT,
    block: int = BLOCK_USERS,
    progress: object | None = None,
    workers: int | None = None,
    pop_weight: float = 0.0,
) -> Ranked:
    """Top-`top_n` candidates for each of `user_ids` (sorted, unique), never a movie the user rated.

    `seen_users`/`seen_movies` are (user, movie) rating pairs; only pairs whose movie is a candidate matter,
    so callers may pass just those. `progress` is a tqdm bar advanced by the number of users done.
    Blocks of users run on `workers` threads (default: one per core, at most 4). `alpha` and
    `pop_weight` weigh similarity and the popularity prior against the CF side (module docstring).
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    predicts_ratings = model.predicts_ratings
    k = len(cands)
    if k == 0 or len(user_ids) == 0:
        return _empty()
    sim = np.asarray(cands.similarity, dtype=np.float32)
    sim_norm = minmax(sim)
    check_weights(alpha, pop_weight)
    prior = popularity_prior(cands) if pop_weight else None
    mix = [(alpha, sim_norm)] if alpha > 0 else []
    if prior is not None:  # a discount (beta < 0) weighs how unpopular a film is
        mix.append((abs(pop_weight), prior if pop_weight > 0 else 1 - prior))
    items = model._items(cands.movie_ids)  # candidate side, once per call

    # Seen pairs as (position in user_ids, candidate position), sorted by user position.
    seen_t, seen_j = _seen_pairs(user_ids, cands.movie_ids, seen_users, seen_movies)

    urows = model.user_rows(user_ids)
    known_pos = np.flatnonzero(urows >= 0)
    cold_pos = np.flatnonzero(urows < 0)
    cold = cold_start_scores(cands, cold_weight) if len(cold_pos) else None

    def known_block(start: int) -> tuple[Ranked, float]:
        pos = known_pos[start : start + block]
        t0 = time.perf_counter()
        raw = model._block(urows[pos], items)
        seconds = time.perf_counter() - t0
        rank_by = _blend(raw, mix) if mix else raw
        _mask_seen(rank_by, pos, seen_t, seen_j)
        out = _top_n(
            rank_by, raw, pos, user_ids, cands.movie_ids, sim, top_n, bool(mix), predicts_ratings, model
        )
        if progress is not None:
            progress.update(len(pos))
        return out, seconds

    def cold_block(start: int) -> tuple[Ranked, float]:
        pos = cold_pos[start : start + block]
        rank_by = np.repeat(cold[None, :], len(pos), axis=0)
        _mask_seen(rank_by, pos, seen_t, seen_j)
        out = _top_n(rank_by, None, pos, user_ids, cands.movie_ids, sim, top_n, True, False, model)
        if progress is not None:
            progress.update(len(pos))
        return out, 0.0

    jobs = [(known_block, s) for s in range(0, len(known_pos), block)]
    jobs += [(cold_block, s) for s in range(0, len(cold_pos), block)]
    workers = max(1, min(workers or default_workers(), len(jobs)))
    if workers == 1:
        done = [fn(s) for fn, s in jobs]
    else:
        # numpy releases the GIL in the heavy loops (argmax, masking, products), so blocks run in parallel
        # threads; BLAS gets one thread each instead of competing for the same cores.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(lambda job: job[0](job[1]), jobs))
    out = _concat([r for r, _ in done])
    out.flops = 2.0 * len(known_pos) * k * model.flops_per_pair
    out.matmul_seconds = sum(m for _, m in done)
    return out


def _blend(raw: np.ndarray, mix: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """The calibrated blend: each user's CF scores min-max scaled over the candidates (a user whose scores
    are all equal gets 1 on the CF side), then mixed with per-candidate sides in [0, 1] at their weights
    (`mix`: similarity, popularity prior); the CF side takes the rest."""
    lo = raw.min(axis=1, keepdims=True)
    span = raw.max(axis=1, keepdims=True) - lo
    cf = np.divide(raw - lo, span, out=np.ones_like(raw), where=span > 1e-12)
    cf *= 1 - sum(w for w, _ in mix)
    for w, side in mix:
        cf += w * side[None, :]
    return cf


def check_weights(alpha: float, pop_weight: float = 0.0) -> None:
    """alpha in [0, 1], beta in [-1, 1], and the CF side keeps 1 - alpha - |beta| >= 0."""
    if not 0.0 <= alpha <= 1.0:
        raise BadInputError(f"--alpha must be between 0 and 1, got {alpha}")
    if not -1.0 <= pop_weight <= 1.0:
        raise BadInputError(f"the popularity weight must be between -1 and 1, got {pop_weight}")
    if alpha + abs(pop_weight) > 1.0 + 1e-9:
        raise BadInputError(
            f"alpha {alpha:g} (--alpha or MOVIEREC_ALPHA) plus the popularity weight's size "
            f"{abs(pop_weight):g} exceeds 1: lower one (MOVIEREC_POPULARITY_WEIGHT)"
        )


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _seen_pairs(
    user_ids: np.ndarray, cand_movies: np.ndarray, seen_users: np.ndarray, seen_movies: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    seen_users = np.asarray(seen_users, dtype=np.int64)
    seen_movies = np.asarray(seen_movies, dtype=np.int64)
    order = np.argsort(cand_movies, kind="stable")
    sorted_c = np.asarray(cand_movies, dtype=np.int64)[order]
    j = np.searchsorted(sorted_c, seen_movies).clip(0, max(len(sorted_c) - 1, 0))
    keep = sorted_c[j] == seen_movies
    t = np.searchsorted(user_ids, seen_users).clip(0, len(user_ids) - 1)
    keep &= user_ids[t] == seen_users
    t, j = t[keep], order[j[keep]]
    by_user = np.argsort(t, kind="stable")
    return t[by_user], j[by_user]


def _mask_seen(scores: np.ndarray, pos: np.ndarray, seen_t: np.ndarray, seen_j: np.ndarray) -> None:
    """Set -inf where a user in this block rated the candidate. `pos` is sorted ascending."""
    if len(seen_t) == 0:
        return
    lo, hi = np.searchsorted(seen_t, [pos[0], pos[-1] + 1])
    t, j = seen_t[lo:hi], seen_j[lo:hi]
    if len(t) == 0:
        return
    row = np.searchsorted(pos, t)
    hit = pos[row.clip(0, len(pos) - 1)] == t
    scores[row[hit], j[hit]] = -np.inf


def best_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `n` highest entries, best first: (columns [B, n], values [B, n]; -inf where a row has
    fewer finite entries). `scores` is the caller's scratch array: NaN becomes -inf, and for small n each
    winner is knocked out of it in place (set to -inf).

    n passes of a row-wise argmax (SIMD) beat argpartition + sort ~2x for n=10 of 250 candidates, and
    ~10x for n=10 of a 54k-movie catalogue (argpartition is scalar; 110 ms against 1.2 s for 500 rows)."""
    b, k = scores.shape
    n = min(n, k)
    scores[np.isnan(scores)] = -np.inf  # NaN ranks nothing (argmax would take it first, argpartition last)
    if n <= ARGMAX_TOP_N:
        idx = np.empty((b, n), dtype=np.int64)
        vals = np.empty((b, n), dtype=scores.dtype)
        every = np.arange(b)
        for r in range(n):
            j = scores.argmax(axis=1)
            idx[:, r] = j
            vals[:, r] = scores[every, j]
            scores[every, j] = -np.inf
        return idx, vals
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(scores, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _top_n(
    rank_by: np.ndarray,
    logits: np.ndarray | None,
    pos: np.ndarray,
    user_ids: np.ndarray,
    cand_movies: np.ndarray,
    sim: np.ndarray,
    top_n: int,
    blended: bool,
    predicts_ratings: bool,
    model: Recommender,
) -> Ranked:
    b, k = rank_by.shape
    n = min(top_n, k)
    idx, vals = best_n(rank_by, n)
    valid = np.isfinite(vals)  # seen candidates are -inf: users with few unseen get shorter lists
    rows = np.broadcast_to(np.arange(b)[:, None], (b, n))[valid]
    ranks = np.broadcast_to(np.arange(1, n + 1)[None, :], (b, n))[valid]
    cols, vals = idx[valid], vals[valid]

    if logits is not None:
        lg = vals if logits is rank_by else logits[rows, cols]
        score = vals if blended else model._to_score(lg)
        pred = model._to_rating(lg) if predicts_ratings else np.full(len(lg), np.nan, dtype=np.float32)
        cold = np.zeros(len(cols), dtype=bool)
    else:
        score = vals
        pred = np.full(len(cols), np.nan, dtype=np.float32)
        cold = np.ones(len(cols), dtype=bool)
    return Ranked(
        user_id=user_ids[pos][rows],
        rank=ranks,
        movie_id=np.asarray(cand_movies)[cols],
        score=np.asarray(score, dtype=np.float32),
        similarity=sim[cols],
        predicted_rating=np.asarray(pred, dtype=np.float32),
        cold=cold,
    )


def _empty() -> Ranked:
    z = np.zeros(0)
    return Ranked(z.astype(np.int64), z.astype(np.int16), z.astype(np.int64), z.astype(np.float32),
                  z.astype(np.float32), z.astype(np.float32), z.astype(bool))  # fmt: skip


def _concat(parts: list[Ranked]) -> Ranked:
    if not parts:
        return _empty()
    return Ranked(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
        "user_id", "rank", "movie_id", "score", "similarity", "predicted_rating", "cold")))  # fmt: skip
