"""Implicit-feedback ALS (Hu, Koren and Volinsky 2008) in numpy: how the default CF model is fitted.

Every rating is a positive with confidence `1 + w` (a higher rating counts more): `w = alpha *
log1p(rating)` ("log" weight) or `1 + w = alpha * rating` ("linear", Hu et al.'s and the `implicit`
library's: a half-star rating may count less than an unrated movie), every unrated movie a zero with
confidence 1. Alternating least squares solves the users
given the movies, then the movies given the users; each row's solve is

    (F'F + reg_r * I + F_r' diag(w_r) F_r) x = F_r' (1 + w_r)

over the other side's factors F (F_r: the rows this row rated). The regularisation may grow with the
row's number of ratings, `reg_r = reg * n_r^nu / mean(n^nu)` (`reg_scale`; nu = `reg_exp`, 0: the same
for every row): frequency-scaled regularisation as in ALS-WR (Zhou et al. 2008) and Rendle et al.'s
"Revisiting the performance of iALS" (2022), which shrinks heavy users and popular movies more than
the long tail. Normalised by the mean, `reg` keeps its meaning at any data size.

A rating's weight may also decay with its age in the user's own history (`recency`, `recency_age`):
`w * exp(-recency * a)`, a = the share of the user's ratings made on a later day (0 the latest day, 1
the oldest; a day's ratings share their age, so a user who rated everything in one sitting is not
decayed, and the order within a sitting, which follows what the site showed, counts for nothing). What
users watch next follows their recent taste more than their oldest (issue 17: on ml-latest-small's
per-user time split the peer was ahead); the search weighs what a decay does to a user's latest ratings
and to a random share of them alike (`cf.tune`). Unknown times (stored as 0) are a user's oldest.

`F'F` is one dense product per half-sweep, so unrated movies cost nothing per rating. The solve is
conjugate gradient warm-started from the previous vector (`cg_steps`, as the `implicit` library's CPU
ALS does): O(ratings x dim) per step, where a direct solve would cost O(ratings x dim^2).

Rows are processed in blocks of similar length, padded into dense `[rows, length, dim]` stacks, so each CG
step is a few batched matrix products (BLAS) instead of a Python loop over users. Two threads share the
blocks (numpy releases the GIL in BLAS and in the gathers).

The same solve computed exactly (`fold_in`) gives a vector to a user who rated movies after the model was
trained, against the trained movie factors, without retraining. The sweeps themselves are driven by
`cf.train.fit_als`. No TensorFlow here: the factors are the model (`cf.factors.Factors`), and
`cf.keras_file` writes them as the Keras model's embedding weights.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

BLOCK_ENTRIES = 1 << 15  # padded (row, rated) slots per block: 32k x dim 64 x 4 B = 8 MB, in the L3 cache


@dataclass(frozen=True)
class CSR:
    """One side of the rating matrix: for row r, columns idx[indptr[r]:indptr[r+1]] with weights w."""

    indptr: np.ndarray  # int64 [n_rows + 1]
    idx: np.ndarray  # int32
    w: np.ndarray  # float32, the confidence minus one
    p: np.ndarray | None = None  # float32 preference (1 liked, 0 disliked); None: every rating liked

    @classmethod
    def build(
        cls, rows: np.ndarray, cols: np.ndarray, w: np.ndarray, n_rows: int, p: np.ndarray | None = None
    ) -> CSR:
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        pref = None if p is None else p[order].astype(np.float32)
        return cls(indptr, cols[order].astype(np.int32), w[order].astype(np.float32), pref)

    @classmethod
    def from_codes(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        codes: np.ndarray,
        n_rows: int,
        n_cols: int,
        w_of: np.ndarray,
        p_of: np.ndarray | None = None,
    ) -> CSR:
        """Like `build`, for ratings given as small codes (indexes into the per-code weights `w_of` and
        preferences `p_of`): one sort of packed int64 keys (row | col | code) instead of an argsort,
        several times faster at 25M ratings (numpy sorts int64 with SIMD; argsort is scalar)."""
        col_bits = max(int(n_cols - 1).bit_length(), 1)
        if len(w_of) > 256 or int(n_rows).bit_length() + col_bits + 8 > 63:
            p = None if p_of is None else p_of[codes]
            return cls.build(rows, cols, w_of[codes], n_rows, p)
        keys = rows.astype(np.int64) << (col_bits + 8)
        keys |= cols.astype(np.int64) << 8
        keys |= codes.astype(np.int64)
        keys.sort()
        code = (keys & 0xFF).astype(np.intp)
        idx = ((keys >> 8) & ((1 << col_bits) - 1)).astype(np.int32)
        del keys
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        pref = None if p_of is None else p_of[code].astype(np.float32)
        return cls(indptr, idx, w_of[code].astype(np.float32), pref)

    def target(self, pos: np.ndarray) -> np.ndarray:
        """confidence x preference of the entries at `pos`: the right-hand side weights."""
        c = 1.0 + self.w[pos]
        return c if self.p is None else c * self.p[pos]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


MIN_CONFIDENCE = 1e-3  # a linear weight of a 0 rating would make the row's system singular at reg 0
AGE_STEPS = 16  # a rating's age is rounded to one of these levels: weights stay a small per-code table
# Ratings of one day (UTC, from epoch seconds) share an age: a sitting is one moment of taste, and the
# order within it follows what the site showed (MovieLens asks a new user about popular films first).
AGE_MOMENT = 86_400


def recency_age(user_rows: np.ndarray, rated_at: np.ndarray, n_users: int) -> np.ndarray:
    """Each rating's age level in its user's history, uint8 in [0, AGE_STEPS - 1]: the share of the user's
    ratings made on a later day (`AGE_MOMENT`; a day's ratings share one age, the latest day's 0), rounded."""
    rows = np.asarray(user_rows, dtype=np.int64)
    times = np.asarray(rated_at, dtype=np.int64) // AGE_MOMENT
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    lo = int(times.min())
    bits = max((int(times.max()) - lo).bit_length(), 1)
    if int(n_users).bit_length() + bits <= 62:  # one int64 key (user, moment): a sort several times faster
        key = (rows << bits) | (times - lo)
        order = np.argsort(key)
        key = key[order]
        new = np.r_[True, key[1:] != key[:-1]]  # a new (user, moment) in sorted order
        del key
    else:
        order = np.lexsort((times, rows))
        u, t = rows[order], times[order]
        new = np.r_[True, (u[1:] != u[:-1]) | (t[1:] != t[:-1])]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, n])
    last = np.repeat(starts + sizes - 1, sizes)  # sorted position of the last rating at that moment
    counts = np.bincount(rows, minlength=n_users)
    later = np.repeat(np.cumsum(counts), counts) - 1 - last  # rows sorted by user: each user's run ends there
    span = np.maximum(np.repeat(counts, counts) - 1, 1)
    age = np.empty(n, dtype=np.uint8)
    age[order] = np.rint(later / span * (AGE_STEPS - 1)).astype(np.uint8)
    return age


def decayed_weights(
    ratings: np.ndarray, alpha: float, weight: str, recency: float,
    user_rows: np.ndarray | None = None, rated_at: np.ndarray | None = None, n_users: int = 0,
) -> np.ndarray:  # fmt: skip
    """`confidence` of each rating times its age's decay (`recency` 0, or no times: not decayed), as a
    fit with these values weighs it; `user_rows` index users in [0, n_users)."""
    w = confidence(ratings, alpha, weight)
    if recency > 0 and rated_at is not None and user_rows is not None:
        w = w * age_decay(recency)[recency_age(user_rows, rated_at, n_users)]
    return w


def age_decay(recency: float) -> np.ndarray:
    """The weight multiplier of each age level: exp(-recency * age), age in [0, 1]."""
    return np.exp(-recency * np.linspace(0.0, 1.0, AGE_STEPS)).astype(np.float32)


def confidence(ratings: np.ndarray, alpha: float, weight: str = "log") -> np.ndarray:
    """`w` of each rating (its confidence minus one): alpha * log(1 + rating) ("log"), or alpha * rating
    - 1 ("linear", at least MIN_CONFIDENCE - 1)."""
    r = np.asarray(ratings, dtype=np.float32)
    if weight == "linear":
        return (np.maximum(alpha * r, MIN_CONFIDENCE) - 1.0).astype(np.float32)
    return (alpha * np.log1p(r)).astype(np.float32)


@dataclass(frozen=True)
class Block:
    """Rows of similar length padded into one dense stack: cols [B, L] (the pad column is the zero row
    appended to the other side's factors) and weights w [B, L] (0 on the padding)."""

    rows: np.ndarray
    cols: np.ndarray
    w: np.ndarray
    cp: np.ndarray  # confidence x preference, 0 on the padding


def blocks(csr: CSR, rows: np.ndarray, pad: int, entries: int = BLOCK_ENTRIES) -> list[Block]:
    """`rows` grouped into padded blocks of similar length, each at most `entries` slots (a longer row
    is a block of its own). Built once per fit: the layout does not change between sweeps."""
    rows = rows[np.argsort(csr.lengths[rows], kind="stable")]
    lengths = csr.lengths[rows]
    out, start, n = [], 0, len(rows)
    while start < n:
        # Sorted by length, so a block's longest row is its last: shrink until the padded block fits.
        stop = min(n, start + max(1, entries // max(int(lengths[start]), 1)))
        while stop > start + 1 and int(lengths[stop - 1]) * (stop - start) > entries:
            stop = start + max(1, entries // max(int(lengths[stop - 1]), 1))
        block, lens = rows[start:stop], lengths[start:stop]
        width = max(int(lens.max()), 1)
        valid = np.arange(width)[None, :] < lens[:, None]
        pos = np.where(valid, csr.indptr[block][:, None] + np.arange(width)[None, :], 0)
        cols = np.where(valid, csr.idx[pos], pad).astype(np.int32)
        w = np.where(valid, csr.w[pos], 0.0).astype(np.float32)
        out.append(Block(block, cols, w, np.where(valid, csr.target(pos), 0.0).astype(np.float32)))
        start = stop
    return out


def reg_scale(counts: np.ndarray, exp: float) -> tuple[np.ndarray | None, float]:
    """Per-row regularisation multipliers `n^exp / mean(n^exp)` (mean over rows with ratings) and that
    mean; (None, 1.0) when `exp` is 0 (every row `reg`)."""
    if exp == 0:
        return None, 1.0
    powered = np.asarray(counts, dtype=np.float64) ** exp
    rated = np.asarray(counts) > 0
    norm = float(powered[rated].mean()) if rated.any() else 1.0
    return (powered / norm).astype(np.float32), norm


def _solve_block(
    block: Block,
    F: np.ndarray,
    G: np.ndarray,
    X: np.ndarray,
    cg_steps: int | None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """New vectors for the block's rows: CG from X[rows] (`cg_steps`), or exact (`None`). `extra` [B]:
    each row's regularisation beyond the `reg` inside G (frequency scaling), None for none."""
    Fg = np.take(F, block.cols, axis=0)  # [B, L, d]; np.take is ~3x faster than fancy indexing here
    w = block.w
    if cg_steps is None:
        b = np.matmul(block.cp[:, None, :], Fg)[:, 0, :]
        A = np.matmul(Fg.transpose(0, 2, 1) * w[:, None, :], Fg) + G
        if extra is not None:
            A += extra[:, None, None] * np.eye(G.shape[0], dtype=np.float32)
        return np.linalg.solve(A, b[..., None])[..., 0].astype(np.float32)

    def apply(p: np.ndarray) -> np.ndarray:  # A p = G p + extra p + F_r' (w * (F_r p))
        t = np.matmul(Fg, p[..., None])[..., 0] * w
        out = p @ G + np.matmul(t[:, None, :], Fg)[:, 0, :]
        if extra is not None:
            out += extra[:, None] * p
        return out

    x = X[block.rows]
    # r = b - A x in one pass: F_r' (c p - w * (F_r x)) - G x - extra x
    t = block.cp - w * np.matmul(Fg, x[..., None])[..., 0]
    r = np.matmul(t[:, None, :], Fg)[:, 0, :] - x @ G
    if extra is not None:
        r -= extra[:, None] * x
    p = r.copy()
    rs = np.einsum("ij,ij->i", r, r)
    for _ in range(cg_steps):
        Ap = apply(p)
        denom = np.einsum("ij,ij->i", p, Ap)
        step = np.where(denom > 0, rs / np.where(denom > 0, denom, 1.0), 0.0).astype(np.float32)
        x += step[:, None] * p
        r -= step[:, None] * Ap
        rs_new = np.einsum("ij,ij->i", r, r)
        p = r + (rs_new / np.where(rs > 0, rs, 1.0))[:, None].astype(np.float32) * p
        rs = rs_new
    return x


class Side:
    """One side of the matrix ready to solve: its CSR, the padded blocks of the rows to solve and each
    row's regularisation multiplier (`reg_scale`; None: all 1)."""

    def __init__(
        self,
        csr: CSR,
        n_other: int,
        rows: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        n = len(csr.indptr) - 1
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        rows = rows[csr.lengths[rows] > 0]  # a row without ratings keeps its vector
        self.csr, self.rows, self.scale = csr, rows, scale
        self.blocks = blocks(csr, rows, pad=n_other)

    def solve(
        self, F: np.ndarray, X: np.ndarray, reg: float, cg_steps: int | None, threads: int | None = None
    ) -> None:
        """Re-solve this side's rows of X in place, the other side's factors F fixed."""
        if not self.blocks:
            return
        G = (F.T @ F + reg * np.eye(F.shape[1], dtype=np.float32)).astype(np.float32)
        Fp = np.vstack([F, np.zeros((1, F.shape[1]), dtype=np.float32)])

        def work(block: Block) -> None:
            extra = None if self.scale is None else (reg * (self.scale[block.rows] - 1)).astype(np.float32)
            X[block.rows] = _solve_block(block, Fp, G, X, cg_steps, extra)

        n_threads = threads or min(2, os.cpu_count() or 1)
        # One BLAS thread per worker: OpenBLAS threads inside our threads oversubscribe the cores (measured
        # 7x slower on ml-latest-small).
        with threadpool_limits(1, user_api="blas"):
            if n_threads == 1:
                for block in self.blocks:
                    work(block)
            else:
                with ThreadPoolExecutor(n_threads) as pool:
                    list(pool.map(work, self.blocks))


def solve_side(
    csr: CSR,
    F: np.ndarray,
    X: np.ndarray,
    reg: float,
    cg_steps: int | None,
    rows: np.ndarray | None = None,
    threads: int | None = None,
    scale: np.ndarray | None = None,
) -> None:
    """Re-solve X[rows] (all rows by default) in place, the other side's factors F fixed."""
    Side(csr, len(F), rows, scale).solve(F, X, reg, cg_steps, threads)


def init_factors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((n, dim)) * 0.01).astype(np.float32)


def fold_in(
    movie_vecs: np.ndarray,
    reg: float,
    indptr: np.ndarray,
    movie_rows: np.ndarray,
    w: np.ndarray,
    reg_exp: float = 0.0,
    reg_norm: float = 1.0,
    p: np.ndarray | None = None,
) -> np.ndarray:
    """User vectors for users the model has not trained on, from what they rated: the exact ALS user
    solve against fixed movie factors. User k rated movie_rows[indptr[k]:indptr[k+1]] with confidence
    weights w (see `confidence`); returns float32 [n_users, dim] (zeros for a user with no ratings).
    With `reg_exp`, each user's reg is scaled as in the fit (`reg_norm`: the fit's mean of n^reg_exp);
    `p` (1 prefers, 0 does not; None: all prefer) is the fit's preference of each rating."""
    n = len(indptr) - 1
    pref = None if p is None else np.asarray(p, np.float32)
    csr = CSR(np.asarray(indptr, np.int64), np.asarray(movie_rows, np.int32), np.asarray(w, np.float32), pref)
    X = np.zeros((n, movie_vecs.shape[1]), dtype=np.float32)
    scale = None
    if reg_exp:
        scale = (csr.lengths.astype(np.float64) ** reg_exp / reg_norm).astype(np.float32)
    solve_side(csr, movie_vecs.astype(np.float32), X, reg, None, threads=1, scale=scale)
    return X
