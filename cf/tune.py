"""Choosing the implicit model's hyper-parameters on the user's own ratings, before the full fit.

Defaults chosen on one data set do not transfer to another (issue 17: on ml-100k the ml-latest-small
defaults ranked 0.470 nDCG@10 where `implicit` ALS with three knobs chosen on an inner split reached 0.490).
So a full fit first runs a small search:

- **Split**: a hash-chosen sample of users (all of them when the data is small; at most `SAMPLE_RATINGS`
  ratings otherwise, so the search costs about one full fit at any size), each eligible user's ratings
  split 75/25 by a hash of (user id, movie id): the shape of the per-user holdout a recommender is judged
  on, never the evaluation's own test part (the caller passes its training ratings only).
- **Search**: coordinate descent from the defaults over `GRID` (the like threshold, the confidence, the
  regularisation's growth with a row's ratings, its size, the dimension, the rating weight), then reg
  once more, finer; each trial a real ALS fit on the sample's 75% scored by nDCG@10 of the 25% (every
  movie scored, training movies left out); then the number of sweeps, measured inside one longer fit of
  the winner; then, when the ratings have times, the recency decay (`_recency`: scored on each sample
  user's *latest* quarter as well, since a nightly is judged by what users do next); then the profile
  weight. A value the caller fixed (an explicit flag) is never searched.
- **Budget**: one fit per grid value not yet tried (12 after the start, 2 more for the second reg pass),
  one fit of twice the sweeps and 2-5 for the recency decay: about 20 fits of a sample of at most
  `SAMPLE_RATINGS` ratings. On larger data the chosen dim x iterations may cost at most `COST_CAP` times
  the start's, and dims that rank alike are a tie won by the smaller (`_better`), so search plus fit stay
  near 2x a single fit (1.98-2.05x at 25M ratings, BENCHMARKS.md); smaller data (seconds per fit) may
  choose any grid value. A trial's scoring ranks 3,000 users over every movie by argmax passes, not
  argpartition (`cf.ranking.best_n`: 0.35 s of a 3 s trial at 25M ratings, 1.5 s before).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from movierec.cf.als import decayed_weights, reg_scale
from movierec.cf.data import index_of
from movierec.cf.train import MIN_KEPT, HyperParams, UserRows, _hash, fit_als, val_ndcg, val_ndcgs
from movierec.progress import say

# Searched in this order. On ml-latest-small's validation split (random 75/25 inside the training part):
# like and confidence moved nDCG@10 by ~0.01, dim little, reg most, and reg only together with the
# confidence (reg 100 collapses to popularity level at confidence 1 but is among the best at 10: what
# counts is reg against the weight of the ratings). So a confidence trial carries reg along in proportion
# to the mean rating confidence (`_mean_conf`), and reg is searched as multiples of its current value. The
# test part of that split chose nothing here; it only confirmed the ordering.
#
# Frequency-scaled regularisation (`reg_exp`, cf.als.reg_scale) shrinks heavy users and popular movies
# more: on ml-latest-small's inner split 0.5 ranked +0.004-0.008 above 0 with reg about halved (and on
# the outer test part of two random-split seeds +0.008-0.009; the time split tied). A reg_exp trial
# carries reg along by the rating-weighted mean of the users' multipliers (`_carry`: the reg an average
# rating sees stays put), then the reg pass refines it.
#
# The linear weight (`implicit`'s: confidence = alpha x rating) ranked the inner holdout of the time
# split higher than the log weight (0.348 vs 0.343) and its test part too (0.161 vs 0.157), but only
# once reg_exp, reg and dim had moved: tried first, at the start's reg_exp 0 and dim 64, it lost. So it
# is tried last (reg carried along like a confidence trial), and reg once more after it: nDCG@10 peaks
# sharply in reg (x0.67 or x1.5 of the best cost 0.01-0.06 on that split).
GRID: dict[str, tuple[float | str, ...]] = {
    "like": (0.0, 3.0),
    "confidence": (1.0, 3.0, 10.0),
    "reg_exp": (0.0, 0.5, 1.0),
    "reg": (0.33, 0.67, 1.5, 3.0),  # multiples of the current reg
    "dim": (32, 64, 128),
    "weight": ("log", "linear"),
}
REG_AGAIN = (0.75, 1.33)  # multiples of reg tried again at the end
DIM_TIE = 0.001  # a smaller dim within this share of the best's nDCG@10 is a tie, and wins it
ITERATIONS = (10, 15, 20)  # sweeps checked inside one fit of the winner
HOLDOUT = 0.25  # share of each sample user's ratings scored (the per-user 75/25 shape)
SAMPLE_RATINGS = 2_000_000  # larger data is tuned on a user sample of about this many ratings
COST_CAP = 1.5  # above SAMPLE_RATINGS, the chosen dim x iterations costs at most this times the start's
SCORED_USERS = 3000  # users whose holdout is scored per trial (hash-chosen; all when fewer)
TUNABLE = (*GRID, "iterations", "recency", "profile_weight")
RECENCY = (0.5, 1.0)  # decays of a rating's weight with its age in the user's history (cf.als), tried last
RECENCY_GAIN = 1.005  # taken when the mean of its two holdouts' ratios to no decay is at least this
PROFILE_GAIN = 1.002  # a profile weight is taken only when it beats CF alone by this factor on the split


@dataclass
class Search:
    """What the search tried and chose: recorded in model.json (`tuning`) and cf_models.metrics."""

    chosen: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    sample: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    best_ndcg: float | None = None  # the chosen setting's validation nDCG@10 (not the highest trial's:
    # a longer fit that scored a little higher without clearing the bar for more sweeps is not chosen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "fixed": self.fixed,
            "val_ndcg@10": self.best_ndcg,
            "sample": self.sample,
            "seconds": round(self.seconds, 2),
            "trials": self.trials,
        }

    def summary(self) -> dict[str, Any]:
        """The short form for cf_models.metrics (what `model show` and SQL see)."""
        return {
            "chosen": self.chosen,
            "val_ndcg@10": self.best_ndcg,
            "trials": len(self.trials),
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class Split:
    """The search's training ratings (rows of the sample) and the held-out pairs it scores."""

    user_rows: np.ndarray
    movie_rows: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    movie_ids: np.ndarray
    seen: UserRows
    held_users: np.ndarray
    held_movies: np.ndarray
    scored: np.ndarray
    rated_at: np.ndarray | None = None  # of the training ratings (the recency decay's ages)


def make_split(
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    ratings: np.ndarray,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    sample_ratings: int = SAMPLE_RATINGS,
    rated_at: np.ndarray | None = None,
    by: str = "random",
) -> Split:
    """A per-user 75/25 split of a hash-chosen user sample (every user when the data is small): a random
    quarter of each user's ratings held out (by a hash), or with `by="time"` their latest quarter."""
    if by not in ("random", "time") or (by == "time" and rated_at is None):
        raise ValueError(f"make_split: by={by!r} needs 'random', or 'time' with rated_at")
    n_users = len(user_ids)
    counts = np.bincount(user_rows, minlength=n_users)
    if len(user_rows) > sample_ratings:
        order = np.argsort(_hash(user_ids, np.full(n_users, 7, dtype=np.int64)), kind="stable")
        keep = order[: max(1, int(np.searchsorted(np.cumsum(counts[order]), sample_ratings)))]
        sel = np.zeros(n_users, dtype=bool)
        sel[keep] = True
        pick = sel[user_rows]
        user_rows, movie_rows, ratings = user_rows[pick], movie_rows[pick], ratings[pick]
        rated_at = None if rated_at is None else rated_at[pick]
        # Re-index the sample densely: the fit's cost then follows the sample, not the whole catalogue.
        users, user_rows = np.unique(user_rows, return_inverse=True)
        movies, movie_rows = np.unique(movie_rows, return_inverse=True)
        user_ids, movie_ids, counts = user_ids[users], movie_ids[movies], counts[users]
    # Salted so the search's holdout is not the final fit's 2% validation share plus more.
    h = _hash(user_ids[user_rows], movie_ids[movie_rows] + (1 << 40))
    if by == "time":  # each user's latest quarter (ties in hash order)
        order = np.lexsort((h, rated_at, user_rows))
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order)) - (np.cumsum(counts) - counts)[user_rows[order]]
        held = pos >= counts[user_rows] - np.floor(counts[user_rows] * HOLDOUT)
    else:
        held = h < HOLDOUT
    held &= counts[user_rows] >= MIN_KEPT
    train = ~held
    seen = UserRows.build(user_rows[train], movie_rows[train], len(user_ids))
    scored = np.unique(user_rows[held])
    if len(scored) > SCORED_USERS:
        h = _hash(user_ids[scored], np.zeros(len(scored), dtype=np.int64))
        scored = np.sort(scored[np.argsort(h, kind="stable")[:SCORED_USERS]])
    return Split(
        user_rows[train], movie_rows[train], ratings[train], user_ids, movie_ids, seen,
        user_rows[held], movie_rows[held], scored, None if rated_at is None else rated_at[train],
    )  # fmt: skip


def _carry(split: Split, exp: float) -> float:
    """The mean reg multiplier a rating sees at `exp` (users' side, weighted by their ratings): dividing
    reg by it moves to a new exponent at about the same overall shrinkage."""
    n = np.bincount(split.user_rows, minlength=len(split.user_ids))
    scale, _ = reg_scale(n, exp)
    return 1.0 if scale is None else float((n * scale.astype(np.float64)).sum() / max(n.sum(), 1))


def _score(split: Split, X: np.ndarray, Y: np.ndarray) -> float:
    return val_ndcg(X, Y, split.seen, split.held_users, split.held_movies, split.scored)


Factors = tuple[np.ndarray, np.ndarray]


@dataclass
class Fit:
    """One configuration fitted on a split: its nDCG@10 on the holdout, at each checkpoint too, and the
    factors (the profile weight's step and a longer fit of the winner start from them, not a refit)."""

    score: float
    at: dict[int, float]
    factors: Factors
    at_factors: dict[int, Factors]


def _fit(
    split: Split,
    hp: HyperParams,
    checkpoints: tuple[int, ...] = (),
    resume: tuple[Factors, int] | None = None,
) -> Fit:
    """`hp` fitted on the split's training part and scored on its holdout (and at each of `checkpoints`
    sweeps). `resume`: (factors, sweeps) of a fit of `hp` with fewer sweeps, continued from there: ALS
    sweeps are deterministic, so the result equals a fit from scratch, for the cost of the extra sweeps."""
    done = 0 if resume is None else resume[1]
    at: dict[int, float] = {}
    kept: dict[int, Factors] = {}

    def check(sweep: int, X: np.ndarray, Y: np.ndarray) -> None:
        if done + sweep in checkpoints:
            at[done + sweep] = _score(split, X, Y)
            kept[done + sweep] = (X.copy(), Y.copy())

    X, Y, _ = fit_als(
        split.user_rows, split.movie_rows, split.ratings, split.user_ids, split.movie_ids,
        replace(hp, val_frac=0.0, iterations=hp.iterations - done),
        on_sweep=check if checkpoints else None, rated_at=split.rated_at,
        resume=None if resume is None else resume[0],
    )  # fmt: skip
    score = at[hp.iterations] if hp.iterations in at else _score(split, X, Y)
    return Fit(score, at, (X, Y), kept)


def _better(cand: HyperParams, s: float, best: HyperParams, score: float) -> bool:
    """Whether the search moves to `cand` (nDCG@10 `s`) from `best` (`score`). Dims that rank alike
    (within DIM_TIE) are a tie, won by the smaller: the full fit and every list cost less with it (at
    25M ratings dim 32 and 64 ranked the sample's holdout 0.15700 and 0.15700, and which won turned on
    the last digit)."""
    if cand.dim < best.dim:
        return s >= score * (1 - DIM_TIE)
    if cand.dim > best.dim:
        return s > score * (1 + DIM_TIE)
    return s > score + 1e-9


def _profile_weight(
    split: Split, hp: HyperParams, vecs: np.ndarray, rec: Search, progress: bool, factors: Factors | None
) -> tuple[HyperParams, float]:
    """(`hp` with the profile weight (cf.content) that ranks the split's holdout best: `hp`'s factors on
    the split (`factors`, else one fit), then each weight scored on them (no refit: the content side is
    added after ALS). 0 unless a weight beats CF alone by PROFILE_GAIN, its nDCG@10 on the split)."""
    from movierec.cf.content import PROFILE_WEIGHTS, profiles, user_side

    t = time.perf_counter()
    X, Y = factors if factors is not None else _fit(split, hp).factors
    # Only the scored users' rows are ranked: their profiles and spreads are all that is computed (a
    # quarter of the sample's users at 25M ratings), and the rows are linear in the weight, so once.
    scored = split.scored
    mine = np.isin(split.user_rows, scored)
    urows, mrows = np.searchsorted(scored, split.user_rows[mine]), split.movie_rows[mine]
    prof = profiles(urows, mrows, split.ratings[mine], len(scored), vecs)
    unit = np.zeros((len(X), vecs.shape[1]), dtype=np.float32)
    unit[scored] = user_side(1.0, X[scored], Y, prof, vecs, urows, mrows)
    # Every weight scored in one pass: each block's CF and content products once.
    held = (split.held_users, split.held_movies)
    ndcgs = val_ndcgs(X, Y, split.seen, *held, scored, side=(unit, vecs), weights=PROFILE_WEIGHTS)
    scores = dict(zip(PROFILE_WEIGHTS, ndcgs, strict=True))
    seconds = round(time.perf_counter() - t, 2)
    for w in PROFILE_WEIGHTS:
        row = {**{k: getattr(hp, k) for k in (*GRID, "iterations", "recency")}, "profile_weight": w}
        rec.trials.append({**row, "ndcg@10": round(scores[w], 5), "seconds": seconds})
    w = max(scores, key=lambda k: scores[k])
    w = w if scores[w] > scores[0.0] * PROFILE_GAIN else 0.0
    say(f"  profile weight {w:g}: nDCG@10 {scores[w]:.4f} (CF alone {scores[0.0]:.4f})", enabled=progress)
    return replace(hp, profile_weight=float(w)), scores[w]


def _mean_conf(split: Split, h: HyperParams) -> float:
    """A training rating's mean confidence under `h` (its decay included): reg moves in proportion."""
    w = decayed_weights(
        split.ratings, h.confidence, h.weight, h.recency, split.user_rows, split.rated_at, len(split.user_ids)
    )
    return 1.0 + float(np.mean(w, dtype=np.float64))


def _recency(
    split: Split, timed: Split, hp: HyperParams, score: float, rec: Search, progress: bool, carry: bool
) -> tuple[HyperParams, float, Factors | None]:
    """(`hp` with the recency decay, its nDCG@10 on `split`, its factors there when a decay is taken). Each
    decay is scored on the sample users'
    latest quarter (`timed`) and on the random quarter (`split`, what every other value was chosen on),
    each as a ratio to no decay; the decay with the best mean of the two ratios is taken when that mean
    reaches RECENCY_GAIN. Why both, weighed alike: a nightly is judged by what users do next, but an old
    rating still says something about their taste (with ages by the second, on ml-latest-small's inner
    split a decay of 1 ranked the latest quarter 6% higher and a random one 2.5% lower; by the day, which
    ships, 0.5 ranks the latest 0.3% higher: no drift from day to day there). Weakest first: a decay
    that ranks the latest quarter less than 2 x (RECENCY_GAIN - 1) higher is taken not to reach the bar
    (a decay is not expected to rank a random quarter higher, nor a stronger one to gain more where a
    weaker one gained so little) and ends the step, so data without drift costs two fits, not five. With
    `carry`, reg moves with the decayed weights' mean (as a confidence trial's does)."""
    t0 = time.perf_counter()

    def log(h: HyperParams, holdout: str, s: float) -> None:
        row = {**{k: getattr(h, k) for k in TUNABLE}, "holdout": holdout, "ndcg@10": round(s, 5)}
        rec.trials.append({**row, "seconds": round(time.perf_counter() - t0, 2)})

    base = _fit(timed, hp).score
    log(hp, "latest", base)
    if base <= 0 or score <= 0:  # nothing of either quarter found (e.g. the latest are all new films)
        say("  recency 0: no holdout film ranked without a decay", enabled=progress)
        return hp, score, None
    chosen, chosen_score, best_mean, factors = hp, score, RECENCY_GAIN, None
    said = f"latest ratings nDCG@10 {base:.4f}"
    for d in sorted(RECENCY):
        cand = replace(hp, recency=d)
        if carry:
            cand = replace(cand, reg=round(hp.reg * _mean_conf(split, cand) / _mean_conf(split, hp), 3))
        latest = _fit(timed, cand).score
        log(cand, "latest", latest)
        if latest < base * (2 * RECENCY_GAIN - 1):
            break
        fit = _fit(split, cand)
        s = fit.score
        log(cand, "random", s)
        mean = (latest / base + s / score) / 2
        if mean >= best_mean:
            chosen, chosen_score, best_mean, factors = cand, s, mean, fit.factors
            said = f"latest ratings nDCG@10 {latest:.4f} (none {base:.4f}), random {s:.4f} (none {score:.4f})"
    say(f"  recency {chosen.recency:g}: {said}", enabled=progress)
    return chosen, chosen_score, factors


def search(
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    ratings: np.ndarray,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    hp: HyperParams,
    fixed: set[str] | frozenset[str] = frozenset(),
    progress: bool = False,
    content: np.ndarray | None = None,
    rated_at: np.ndarray | None = None,
) -> tuple[HyperParams, Search]:
    """The hyper-parameters that rank the sample's holdout best (`hp` with the winners), and the record.
    `content`: the films' text vectors aligned to `movie_ids` (cf.content); with them, the profile weight
    is chosen last, on one more fit of the winner. `rated_at` (aligned to the ratings): with more than one
    moment, the recency decay is chosen before it (`_recency`)."""
    t0 = time.perf_counter()
    split = make_split(user_rows, movie_rows, ratings, user_ids, movie_ids, rated_at=rated_at)
    rec = Search(fixed=sorted(set(fixed) & set(TUNABLE)))
    rec.sample = {
        "users": len(split.user_ids),
        "movies": len(split.movie_ids),
        "train_ratings": len(split.user_rows),
        "held_out": len(split.held_users),
        "scored_users": len(split.scored),
    }
    if len(split.scored) == 0:  # too few ratings per user to hold any out: keep the given values
        rec.chosen = {k: getattr(hp, k) for k in TUNABLE}
        rec.seconds = time.perf_counter() - t0
        return hp, rec
    say(
        f"tuning on {rec.sample['users']:,} users ({rec.sample['train_ratings']:,} ratings, "
        f"{rec.sample['held_out']:,} held out)",
        enabled=progress,
    )
    tried: dict[tuple, float] = {}
    last: dict[tuple, Factors] = {}  # the latest trial's factors, by its key
    best = hp

    def key_of(h: HyperParams) -> tuple:
        return tuple(getattr(h, k) for k in GRID) + (h.iterations,)

    # On large data the full fit after the search is what costs: keep it within COST_CAP of the start.
    cap = COST_CAP * hp.dim * hp.iterations if len(user_rows) > SAMPLE_RATINGS else float("inf")

    def trial(cand: HyperParams) -> float:
        if cand.dim * cand.iterations > cap:
            return -1.0
        key = key_of(cand)
        if key not in tried:
            t = time.perf_counter()
            fit = _fit(split, cand)
            tried[key] = fit.score
            last.clear()
            last[key] = fit.factors
            row = {k: getattr(cand, k) for k in TUNABLE}
            seconds = round(time.perf_counter() - t, 2)
            rec.trials.append({**row, "ndcg@10": round(tried[key], 5), "seconds": seconds})
            say(f"  trial {len(rec.trials)}: {row} -> nDCG@10 {tried[key]:.4f}", enabled=progress)
        return tried[key]

    score = trial(best)
    factors = last.get(key_of(best))  # the best's factors on the split (None: fit again when needed)

    # One pass over GRID, then reg once more, finer, around its value (dim and the weight move the best
    # reg: it is the coordinate that interacts most).
    passes = [*GRID.items(), ("reg", REG_AGAIN)]
    for name, values in passes:
        if name in fixed:
            continue
        base = best
        for v in values:
            if name == "reg":
                cand = replace(base, reg=round(base.reg * v, 3))
            elif name in ("confidence", "weight") and "reg" not in fixed:
                cand = replace(base, **{name: type(getattr(hp, name))(v)})
                ratio = _mean_conf(split, cand) / _mean_conf(split, base)
                cand = replace(cand, reg=round(base.reg * ratio, 3))
            elif name == "reg_exp" and "reg" not in fixed:
                ratio = _carry(split, base.reg_exp) / _carry(split, v)
                cand = replace(base, reg_exp=float(v), reg=round(base.reg * ratio, 3))
            else:
                cand = replace(base, **{name: type(getattr(hp, name))(v)})
            s = trial(cand)
            if _better(cand, s, best, score):
                best, score, factors = cand, s, last.get(key_of(cand))
    if "iterations" not in fixed:
        checks = tuple(sorted(it for it in {best.iterations, *ITERATIONS} if best.dim * it <= cap))
        t = time.perf_counter()
        # The winner's sweeps continue from its trial's factors when it has the fewest sweeps checked.
        resume = (factors, best.iterations) if factors is not None and checks[0] == best.iterations else None
        longer = _fit(split, replace(best, iterations=checks[-1]), checkpoints=checks, resume=resume)
        at = {best.iterations: score, **longer.at} if resume else longer.at
        for it, s in sorted(at.items()):
            rec.trials.append(
                {**{k: getattr(best, k) for k in GRID}, "iterations": it, "ndcg@10": round(s, 5),
                 "seconds": round(time.perf_counter() - t, 2)}
            )  # fmt: skip
        # More sweeps only when they clearly help (each costs a sweep of the full fit).
        for it, s in sorted(at.items()):
            if s > score * 1.005:
                best, score = replace(best, iterations=it), s
                factors = longer.at_factors.get(it)
    timed = rated_at is not None and len(rated_at) > 0 and bool(np.any(rated_at != rated_at[0]))
    if timed and "recency" not in fixed:
        late = make_split(user_rows, movie_rows, ratings, user_ids, movie_ids, rated_at=rated_at, by="time")
        if len(late.scored):
            best, score, decayed = _recency(split, late, best, score, rec, progress, carry="reg" not in fixed)
            factors = decayed if decayed is not None else factors
    if content is not None and "profile_weight" not in fixed:
        vecs = content[index_of(movie_ids, split.movie_ids)]
        best, score = _profile_weight(split, best, vecs, rec, progress, factors)
    rec.chosen, rec.best_ndcg = {k: getattr(best, k) for k in TUNABLE}, round(score, 5)
    rec.seconds = time.perf_counter() - t0
    say(f"tuned in {rec.seconds:.1f}s: {rec.chosen} (nDCG@10 {score:.4f} on the sample)", enabled=progress)
    return best, rec
