"""Fitting the Keras CF model: both objectives, and the incremental update of the implicit one.

`implicit` (default): implicit-feedback ALS (`cf.als`): every rating an observation weighted by its value
(below `like`: "does not prefer"), every unrated movie a weak zero, alternating least-squares sweeps. The
factors are the model (biases zero; `cf.keras_file` writes them as a Keras model). It replaced an SGD fit
of sampled non-rated movies, which ranked worse and trained ~100x slower (BENCHMARKS.md, cf section). A
full fit first chooses its hyper-parameters (`cf.tune`) unless told not to.
`rating`: each observed rating, min-max scaled to [0, 1], is the BCE target (the reference design), fitted
with mini-batch LazyAdam and early stopping.

Validation: a fixed share of ratings (chosen by a hash of user and movie id, so every fit and every update
holds out the same ones; never a user's last few) is left out of the fit and scored: nDCG@10 for the
implicit model (the quality gate of updates compares it), BCE for the rating model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from movierec.catalog import unique_sorted
from movierec.errors import BadInputError
from movierec.progress import say

OBJECTIVES = ("implicit", "rating")
WEIGHTS = ("log", "linear")  # how a rating's confidence grows with it (cf.als.confidence)
DEFAULT_OBJECTIVE = "implicit"  # ranks better on the holdout: see BENCHMARKS.md (cf section)
VAL_USERS = 2000  # users scored for the validation nDCG (a hash-chosen sample: same users every time)
MIN_KEPT = 5  # a user with fewer ratings has none held out for validation


@dataclass
class HyperParams:
    """Defaults chosen on ml-latest-small (BENCHMARKS.md); `None` batch size means about 100 steps/epoch.

    implicit (ALS): dim, iterations, reg, reg_exp, confidence, weight, like, cg_steps, update_iterations,
    update_share, recency, profile_weight. rating (SGD): dim, epochs, batch_size, lr, l2, patience.
    Both: val_frac, seed.
    With `tune` (implicit), a full fit first searches like, confidence, reg_exp, reg, dim, weight,
    iterations, recency and the profile weight on the training ratings (`cf.tune`); the values a caller
    passes are kept."""

    objective: str = DEFAULT_OBJECTIVE
    dim: int = 64
    iterations: int = 10
    reg: float = 30.0
    reg_exp: float = 0.0  # regularisation grows as (ratings of the row)^reg_exp (cf.als.reg_scale)
    confidence: float = 1.0
    weight: str = "log"  # a rating's confidence: 1 + confidence * log(1 + r), or confidence * r (linear)
    like: float = 3.0
    cg_steps: int = 3
    update_iterations: int = 2
    update_share: float = 0.02  # an update re-solves a known movie when this share of its ratings changed
    epochs: int = 30
    batch_size: int | None = None
    lr: float = 2e-3
    l2: float = 1e-2
    patience: int = 2
    val_frac: float = 0.02
    seed: int = 42
    tune: bool = True  # a full implicit fit first chooses the values not given (cf.tune)
    # beta of the content side (cf.content): the liked films' text profile, in units of each user's CF
    # spread; chosen by the search when the fit has the films' vectors, else kept (0: CF alone).
    profile_weight: float = 0.0
    # A rating's weight decays as exp(-recency * its age in the user's history) (cf.als.recency_age): 0
    # weighs every rating alike; chosen by the search on the users' latest and a random share of their
    # ratings (cf.tune).
    recency: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise BadInputError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        for name in ("dim", "epochs", "iterations", "cg_steps", "update_iterations"):
            if getattr(self, name) < 1:
                raise BadInputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise BadInputError("--batch-size must be at least 1")
        if not self.lr > 0:
            raise BadInputError("--lr must be positive")
        if self.reg < 0 or not self.confidence > 0:
            raise BadInputError("--reg must not be negative and --confidence must be positive")
        if self.weight not in WEIGHTS:
            raise BadInputError(f"unknown weight {self.weight!r}: use one of {', '.join(WEIGHTS)}")
        if not 0 <= self.reg_exp <= 2:
            raise BadInputError("--reg-exp must be between 0 and 2")
        if not 0 <= self.val_frac < 1:
            raise BadInputError("val_frac must be in [0, 1)")
        if not 0 <= self.profile_weight <= 10:
            raise BadInputError("--profile-weight must be between 0 and 10")
        if not 0 <= self.recency <= 10:
            raise BadInputError("--recency must be between 0 and 10")

    @property
    def uses_content(self) -> bool:
        """Whether a fit with these values can use the films' text vectors: an implicit fit that searches
        the profile weight, or is given one above 0 (cf.content)."""
        return self.objective == "implicit" and (self.tune or self.profile_weight > 0)

    def resolved_batch_size(self, n_samples: int) -> int:
        if self.batch_size:
            return self.batch_size
        return int(np.clip(n_samples // 100, 512, 32768))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """Per epoch (rating) or per ALS sweep (implicit): training loss (rating only), validation loss (BCE,
    rating) or validation nDCG@10 (implicit), seconds."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_ndcg: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    base_ndcg: float | None = None  # an update: the starting model's validation nDCG on the same users
    reg_norm: float = 1.0  # implicit: mean of (ratings per user)^reg_exp, what fold-in scales reg by
    best_epoch: int = 0
    samples_per_epoch: int = 0
    batch_size: int = 0


@dataclass(frozen=True)
class UserRows:
    """Which movie rows each user row rated (CSR by user): what validation leaves out of the ranking."""

    indptr: np.ndarray  # int64 [n_users + 1]
    movie_rows: np.ndarray  # int64

    @classmethod
    def build(cls, user_rows: np.ndarray, movie_rows: np.ndarray, n_users: int) -> UserRows:
        width = int(movie_rows.max()) + 1 if len(movie_rows) else 1
        keys = np.sort(user_rows.astype(np.int64) * width + movie_rows)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(user_rows, minlength=n_users), out=indptr[1:])
        return cls(indptr, keys % width)

    def mask(self, user_rows: np.ndarray, n_movies: int) -> np.ndarray:
        """Dense boolean [len(user_rows), n_movies]: True where the user rated the movie."""
        out = np.zeros((len(user_rows), n_movies), dtype=bool)
        starts, lengths = self.indptr[user_rows], self.indptr[user_rows + 1] - self.indptr[user_rows]
        total = int(lengths.sum())
        if total:
            offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
            rows = np.repeat(np.arange(len(user_rows)), lengths)
            out[rows, self.movie_rows[np.arange(total) + offsets]] = True
        return out


HASH_CHUNK = 1 << 22  # pairs per chunk: long inputs (25M ratings) are hashed in chunks on two threads


def _hash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per (a, b) pair (splitmix64 of the packed pair)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape or len(a) <= HASH_CHUNK:
        return _splitmix(a, b)
    out = np.empty(len(a), dtype=np.float64)

    def chunk(start: int) -> None:
        sl = slice(start, start + HASH_CHUNK)
        out[sl] = _splitmix(a[sl], b[sl])

    with ThreadPoolExecutor(2) as pool:  # numpy's integer ops release the GIL
        list(pool.map(chunk, range(0, len(a), HASH_CHUNK)))
    return out


def _splitmix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.asarray(a).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x += np.asarray(b).astype(np.uint64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def validation_mask(
    user_ids: np.ndarray, movie_ids: np.ndarray, frac: float, counts: np.ndarray | None = None
) -> np.ndarray:
    """Ratings held out for validation: a `frac` share chosen by a hash of (user id, movie id), so a full
    fit and every later update hold out the same ratings; users with few ratings keep them all.
    `counts` (each rating's user's number of ratings) lets a caller pass a subset of the ratings."""
    if frac <= 0 or len(user_ids) < 20:
        return np.zeros(len(user_ids), dtype=bool)
    if counts is None:
        _, inverse, per_user = np.unique(user_ids, return_inverse=True, return_counts=True)
        counts = per_user[inverse]
    return (_hash(user_ids, movie_ids) < frac) & (counts >= MIN_KEPT)


def val_sample(user_rows: np.ndarray, user_ids: np.ndarray, limit: int = VAL_USERS) -> np.ndarray:
    """The validation users scored: at most `limit` of `user_rows`, chosen by a hash of their ids."""
    rows = np.unique(user_rows)
    if len(rows) <= limit:
        return rows
    h = _hash(user_ids[rows], np.zeros(len(rows), dtype=np.int64))
    return np.sort(rows[np.argsort(h, kind="stable")[:limit]])


def val_ndcg(
    user_vecs: np.ndarray,
    movie_vecs: np.ndarray,
    seen: UserRows,
    val_users: np.ndarray,
    val_movies: np.ndarray,
    users: np.ndarray,
    block: int = 100,
) -> float:
    """Mean nDCG@10 over `users` (rows) of held-out (val_users, val_movies) pairs, scoring every movie and
    leaving out what the user trained on (`seen`); row-aligned factor tables."""
    return val_ndcgs(user_vecs, movie_vecs, seen, val_users, val_movies, users, block=block)[0]


def val_ndcgs(
    user_vecs: np.ndarray,
    movie_vecs: np.ndarray,
    seen: UserRows,
    val_users: np.ndarray,
    val_movies: np.ndarray,
    users: np.ndarray,
    side: tuple[np.ndarray, np.ndarray] | None = None,
    weights: tuple[float, ...] = (0.0,),
    block: int = 100,  # users per product: 100 x 54k scores (22 MB) stay near the cache; 500 took 2-4x longer
) -> list[float]:
    """`val_ndcg` of the scores `user_vecs @ movie_vecs.T + w * side[0] @ side[1].T` for each w in
    `weights` (the profile weight's trials, cf.tune): each block's products are computed once."""
    from threadpoolctl import threadpool_limits

    from movierec.cf.evaluate import K, ranking_metrics
    from movierec.cf.ranking import best_n

    if len(users) == 0:
        return [float("nan")] * len(weights)
    pos = np.searchsorted(users, val_users).clip(0, len(users) - 1)
    keep = users[pos] == val_users
    held = UserRows.build(pos[keep], val_movies[keep], len(users))
    n_relevant = np.diff(held.indptr)
    n = len(movie_vecs)

    def ranked(start: int) -> list[tuple[np.ndarray, np.ndarray]]:
        idx = np.arange(start, min(start + block, len(users)))
        base = user_vecs[users[idx]] @ movie_vecs.T
        base[seen.mask(users[idx], n)] = -np.inf
        extra = None if side is None else side[0][users[idx]] @ side[1].T
        is_held = held.mask(idx, n)
        out = []
        for w in weights:
            s = base.copy() if extra is None or w == 0 else base + np.float32(w) * extra
            top, vals = best_n(s, K)  # NaN (a diverged fit) ranks nothing
            top[np.isneginf(vals)] = -1  # none: a user with fewer than K rankable movies
            out.append((top, np.take_along_axis(is_held, top, axis=1) & (top >= 0)))
        return out

    # Two threads, one BLAS thread each: the products and the selection release the GIL, so a tuning
    # trial's scoring halves on 2 cores.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(ranked, range(0, len(users), block)))
    scores = []
    for i in range(len(weights)):
        tops, rels = [p[i][0] for p in parts], [p[i][1] for p in parts]
        scores.append(ranking_metrics(np.concatenate(tops), np.concatenate(rels), n_relevant, n)["ndcg@10"])
    return scores


def fit_als(
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    ratings: np.ndarray,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    hp: HyperParams,
    progress: bool = False,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    solve_users: np.ndarray | None = None,
    solve_movies: np.ndarray | None = None,
    gate_users: np.ndarray | None = None,
    on_sweep: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    rated_at: np.ndarray | None = None,
    resume: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, History]:
    """Implicit ALS on indexed ratings: (user factors, movie factors, History).

    From scratch by default. An update passes `start` (factors already aligned to these rows: known
    users and movies keep theirs, new ones zero) and the rows to re-solve: it then runs `hp.iterations`
    sweeps over those rows only (users first, so new users get vectors before the movies move), and
    measures the validation nDCG of the starting factors and the result on the `gate_users` it holds (the
    users the starting model knew) in `History.base_ndcg` and `val_ndcg[-1]`. `on_sweep(n, X, Y)` sees the
    factors after each sweep (the tuning search scores sweep counts inside one fit). `rated_at` (aligned
    to `ratings`): with `hp.recency`, each rating's weight decays with its age in its user's history.
    `resume`: the factors of an earlier full fit of the same data and `hp`, whose sweeps continue from
    them (sweeps are deterministic, so 10 then 5 more equal a fit of 15)."""
    from movierec.cf import als

    n_users, n_movies = len(user_ids), len(movie_ids)
    t_prep = time.perf_counter()
    counts = np.bincount(user_rows, minlength=n_users)
    # Ratings take few distinct values (half stars): code them, so each side's CSR is one int64 sort.
    levels = unique_sorted(ratings[: 1 << 20])
    codes = np.searchsorted(levels, ratings).clip(0, len(levels) - 1)
    if not np.array_equal(levels[codes], ratings):  # a value the first million did not show
        levels = unique_sorted(ratings)
        codes = np.searchsorted(levels, ratings)
    codes = codes.astype(np.uint8 if len(levels) <= 256 else np.int64)
    w_of = als.confidence(levels, hp.confidence, hp.weight)
    p_of = (levels >= hp.like).astype(np.float32) if hp.like > 0 else None
    if hp.recency > 0 and rated_at is None:  # a fit without decay would be saved as decayed (fold-in)
        raise ValueError("a fit with recency > 0 needs the ratings' times (rated_at)")
    if hp.recency > 0:
        # Each code becomes (rating level, age level): the CSRs stay one sort of small codes.
        age = als.recency_age(user_rows, rated_at, n_users)
        codes = codes.astype(np.int64) * als.AGE_STEPS + age
        w_of = (w_of[:, None] * als.age_decay(hp.recency)[None, :]).ravel()
        p_of = None if p_of is None else np.repeat(p_of, als.AGE_STEPS)
        codes = codes.astype(np.uint8 if len(w_of) <= 256 else np.int64)

    def part(sel: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(users, movies, codes, is_val) of the ratings in `sel` (all when None)."""
        if sel is None:
            u, m, c = user_rows, movie_rows, codes
        else:
            u, m, c = user_rows[sel], movie_rows[sel], codes[sel]
        # Hash the ids, not the rows: rows shift when new movies arrive, ids do not.
        return u, m, c, validation_mask(user_ids[u], movie_ids[m], hp.val_frac, counts=counts[u])

    if start is None:
        u_part = m_part = part(None)
    else:
        # An update reads only the ratings of the rows it re-solves (and of the validation candidates:
        # the users with the lowest id hashes, as `val_sample` picks them), not all 25M.
        eligible = np.flatnonzero(counts >= MIN_KEPT)
        h = _hash(user_ids[eligible], np.zeros(len(eligible), dtype=np.int64))
        candidates = eligible[np.argsort(h, kind="stable")[: 10 * VAL_USERS]]
        need_u = np.zeros(n_users, dtype=bool)
        need_u[np.r_[solve_users, candidates].astype(np.int64)] = True
        need_m = np.zeros(n_movies, dtype=bool)
        need_m[solve_movies] = True
        u_part = part(np.flatnonzero(need_u[user_rows]))
        m_part = part(np.flatnonzero(need_m[movie_rows]))
    pu, pm, pc, pv = u_part
    qu, qm, qc, qv = m_part
    # The two sides' CSRs on two threads (their sorts and casts release the GIL): at 25M ratings each
    # is a few seconds of the prep.
    with ThreadPoolExecutor(2) as pool:
        fu = pool.submit(als.CSR.from_codes, pu[~pv], pm[~pv], pc[~pv], n_users, n_movies, w_of, p_of)
        fm = pool.submit(als.CSR.from_codes, qm[~qv], qu[~qv], qc[~qv], n_movies, n_users, w_of, p_of)
        by_user, by_movie = fu.result(), fm.result()
    seen = UserRows(by_user.indptr, by_user.idx.astype(np.int64))  # training movies per user, val excluded
    vu, vm = pu[pv], pm[pv]
    check = val_sample(vu, user_ids)
    if gate_users is not None:
        check = np.intersect1d(check, gate_users)
    if start is None:
        if resume is not None:
            X, Y = (a.astype(np.float32, copy=True) for a in resume)
        else:
            rng = np.random.default_rng(hp.seed)
            X, Y = als.init_factors(n_users, hp.dim, rng), als.init_factors(n_movies, hp.dim, rng)
        # A row no sweep solves (every rating of it held out for validation) would keep its random start
        # and rank at random for everyone: zero is the neutral score of a row the model lacks.
        X[by_user.lengths == 0], Y[by_movie.lengths == 0] = 0.0, 0.0
    else:
        X, Y = (a.astype(np.float32, copy=True) for a in start)
    hist = History(samples_per_epoch=int((~pv).sum()) if start is None else len(ratings))
    if start is not None:
        hist.base_ndcg = val_ndcg(X, Y, seen, vu, vm, check)
    # Frequency-scaled reg from the counts of all the ratings, so an update sees about the scale of the
    # full fit it starts from (the counts have moved by the update's new ratings: a small drift).
    u_scale, hist.reg_norm = als.reg_scale(counts, hp.reg_exp)
    m_scale, _ = als.reg_scale(np.bincount(movie_rows, minlength=n_movies), hp.reg_exp)
    with ThreadPoolExecutor(2) as pool:  # the padded blocks of both sides, likewise
        fu = pool.submit(als.Side, by_user, n_movies, solve_users, u_scale)
        fm = pool.submit(als.Side, by_movie, n_users, solve_movies, m_scale)
        users, movies = fu.result(), fm.result()
    what = "full" if start is None else f"{len(users.rows):,} users, {len(movies.rows):,} movies"
    say(f"ALS ready in {time.perf_counter() - t_prep:.1f}s", enabled=progress)
    for it in range(hp.iterations):
        t0 = time.perf_counter()
        if start is None:
            movies.solve(X, Y, hp.reg, hp.cg_steps)
            users.solve(Y, X, hp.reg, hp.cg_steps)
        else:
            users.solve(Y, X, hp.reg, hp.cg_steps)
            movies.solve(X, Y, hp.reg, hp.cg_steps)
        if start is not None and it == hp.iterations - 1:  # end on the users: they match the movies
            users.solve(Y, X, hp.reg, hp.cg_steps)
        hist.seconds.append(time.perf_counter() - t0)
        if on_sweep is not None:
            on_sweep(it + 1, X, Y)
        say(f"ALS sweep {it + 1}/{hp.iterations} ({what}): {hist.seconds[-1]:.1f}s", enabled=progress)
    # Validation once, at the end (scoring 2,000 users x every movie per sweep would cost more than a sweep).
    hist.val_ndcg.append(val_ndcg(X, Y, seen, vu, vm, check))
    say(f"validation nDCG@10 {hist.val_ndcg[-1]:.4f} ({len(check):,} users)", enabled=progress)
    hist.best_epoch = len(hist.seconds)
    return X, Y, hist


def fit_rating(
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_movies: int,
    hp: HyperParams,
    rating_range: tuple[float, float],
    progress: bool = False,
):
    """The rating objective: a `CFModel` fitted by LazyAdam on BCE against min-max scaled ratings; return
    (model, History). Keeps the best epoch's weights (early stopping on the validation BCE).

    One `model.fit` call over a `keras.utils.PyDataset` that reshuffles at every epoch end: one traced
    train function, Keras' own EarlyStopping."""
    import keras

    from movierec.cf import keras_model  # TensorFlow loads here, not at CLI start

    rng = np.random.default_rng(hp.seed)
    n = len(user_rows)
    is_val = rng.random(n) < max(hp.val_frac, 0.05) if n >= 20 else np.zeros(n, dtype=bool)
    lo, hi = rating_range
    scale = (hi - lo) or 1.0
    tu, tm = user_rows[~is_val], movie_rows[~is_val]
    train_y = ((ratings[~is_val] - lo) / scale).astype(np.float32)
    val_x = _pairs(user_rows[is_val], movie_rows[is_val])
    val_y = ((ratings[is_val] - lo) / scale).astype(np.float32)

    samples = len(tu)
    batch = hp.resolved_batch_size(samples)
    model = keras_model.build(n_users, n_movies, hp.dim, hp.l2, hp.lr, hp.seed)
    hist = History(samples_per_epoch=samples, batch_size=batch)
    train_x = _pairs(tu, tm)

    class Epochs(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.on_epoch_end()

        def __len__(self) -> int:
            return max(1, -(-len(self.x) // batch))

        def __getitem__(self, i: int):
            return self.x[i * batch : (i + 1) * batch], self.y[i * batch : (i + 1) * batch]

        def on_epoch_end(self) -> None:
            order = rng.permutation(len(train_x))
            self.x, self.y = train_x[order], train_y[order]

    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            logs = logs or {}
            hist.loss.append(float(logs["loss"]))
            hist.val_loss.append(float(logs.get("val_loss", logs["loss"])))
            hist.seconds.append(time.perf_counter() - self.t0)
            say(
                f"epoch {epoch + 1}/{hp.epochs}: loss {hist.loss[-1]:.4f}  val_loss {hist.val_loss[-1]:.4f}  "
                f"{hist.seconds[-1]:.1f}s ({samples / hist.seconds[-1]:,.0f} samples/s)",
                enabled=progress,
            )

    monitor = "val_loss" if len(val_x) else "loss"
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=hp.patience, restore_best_weights=True)
    model.fit(
        Epochs(),
        validation_data=(val_x, val_y) if len(val_x) else None,
        validation_batch_size=65536,
        epochs=hp.epochs,
        callbacks=[Report(), stop],
        verbose=0,
    )
    hist.best_epoch = int(np.argmin(hist.val_loss)) + 1
    if stop.stopped_epoch:
        say(f"early stop: val_loss has not improved for {hp.patience} epochs", enabled=progress)
    return model, hist


def _pairs(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.stack([u, m], axis=1).astype(np.int32)
