"""Looking inside a trained model: similar movies in embedding space, movies with extreme learned bias.
(Finding a movie by title is `movierec.catalog.find_movie`.)"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from movierec.cf.data import index_of
from movierec.cf.factors import Factors
from movierec.cf.ranking import default_workers
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
) -> tuple[list[tuple[int, float, int]], list[tuple[int, float, int]]] | None:
    """(highest, lowest) learned movie biases as (movie_id, bias, n_ratings), among movies with at least
    `min_ratings` training ratings (`counts` aligned with the model's movie_ids). None for a model that
    learns no biases (implicit ALS: every bias 0, so any order would be the ids' order)."""
    factors = _factors(model)
    if not factors.movie_bias.any():
        return None
    eligible = np.flatnonzero(counts >= min_ratings)
    order = eligible[np.argsort(-factors.movie_bias[eligible], kind="stable")]

    def rows(idx: np.ndarray) -> list[tuple[int, float, int]]:
        return [(int(factors.movie_ids[i]), float(factors.movie_bias[i]), int(counts[i])) for i in idx]

    return rows(order[:n]), rows(order[::-1][:n])


BECAUSE_LIKED = 8  # liked films per user compared (their best-rated, newest first): bounds the batch's cost
MAX_ROWS = 200_000  # recommended rows compared at once: bounds memory (rows x BECAUSE_LIKED scores)


def cap_liked(users: np.ndarray, movies: np.ndarray, n: int = BECAUSE_LIKED) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` liked films of each user from pairs sorted by user (most telling first)."""
    users = np.asarray(users, dtype=np.int64)
    new = np.r_[True, users[1:] != users[:-1]] if len(users) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(new, np.arange(len(users)), 0))
    keep = np.arange(len(users)) - first < n
    return users[keep], np.asarray(movies, dtype=np.int64)[keep]


@dataclass(frozen=True)
class Because:
    """Liked films indexed once per batch for `nearest`: the query-independent half of `because`."""

    factors: Factors
    liked_users: np.ndarray  # int64, sorted; at most BECAUSE_LIKED per user
    liked_row: np.ndarray  # int32 row of each liked pair's film in `cols` (len(cols): the model lacks it)
    most: int  # the most liked films any user has here (<= BECAUSE_LIKED)
    cols: np.ndarray  # model movie rows of every film someone liked, sorted
    unit_cols: np.ndarray  # their unit vectors [len(cols), dim]
    unit: np.ndarray  # every movie's unit vector
    # Names this index in the per-thread table cache; random, as an index may be pickled to a Ray worker
    # that holds another driver's (and new on `dataclasses.replace`, which may swap the model).
    token: int = field(default_factory=lambda: secrets.randbits(63), init=False, repr=False, compare=False)

    @classmethod
    def prepare(cls, model: Recommender, liked_users: np.ndarray, liked_movies: np.ndarray) -> Because | None:
        """None when nothing can be explained (a model without movie vectors, nobody liked a film)."""
        factors = getattr(model, "factors", None)
        if factors is None or not len(liked_users):
            return None
        vecs = factors.movie_vecs
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        rows = factors.movie_index(np.asarray(liked_movies, dtype=np.int64))
        cols = np.unique(rows[rows >= 0])
        if not len(cols):
            return None
        liked_row = np.where(rows >= 0, np.searchsorted(cols, rows), len(cols)).astype(np.int32)
        lu = np.asarray(liked_users, dtype=np.int64)
        most = int(np.diff(np.r_[0, np.flatnonzero(np.diff(lu)) + 1, len(lu)]).max())
        return cls(factors, lu, liked_row, most, cols, unit[cols], unit)

    def nearest(
        self, user_ids: np.ndarray, movie_ids: np.ndarray, among: np.ndarray | None = None
    ) -> np.ndarray:
        """For each recommended (user, movie) row, the user's liked film nearest to it in the CF space
        (cosine; never the film itself), -1 when the user has no liked film the model knows.

        Rows of one user should be adjacent (as `Recommender.recommend` returns them). One product of the
        liked films' unit vectors with the recommended movies' (`among`: the candidates the rows were
        ranked from, else the rows' own films), into a table with a row per liked film (plus a row of -inf
        that stands for padding and films the model lacks; the film itself is -inf in its own column). Per
        row there is then only a gather of its user's few liked films and an argmax (no masks), over chunks
        on the ranking's worker threads. Why this shape (measured at ml-25m size, 41,747 liked films x 250
        candidates): a user's gathers fall in a few short table rows rather than across 250 long ones, and
        the table's memory is reused from call to call (a fresh 42 MB table cost more in page faults than
        its product). With `among`, a call with the same candidates as this thread's last one (the next
        shard of a query on the local engine) reuses its table: the product and its set-up were a third of
        a call. A row outside `among` makes the call build a table of its own rows' films, kept for none."""
        out = np.full(len(user_ids), -1, dtype=np.int64)
        if not len(user_ids):
            return out
        f, lu, cols = self.factors, self.liked_users, self.cols
        movie_ids = np.asarray(movie_ids, dtype=np.int64)
        rec_movies = None if among is None else np.unique(np.asarray(among, dtype=np.int64))
        if rec_movies is not None and len(rec_movies):
            rec_at = index_of(rec_movies, movie_ids)  # a table over the ids' range: searchsorted took 30 ms
            if (rec_at < 0).any():  # a row outside `among`
                rec_movies = None
        if rec_movies is None or not len(rec_movies):
            # A hash, not a sort: np.unique took half of this call at 1.6M rows. (pandas imported here, not
            # at the top, so that importing movierec.cf stays light for the CLI.)
            import pandas as pd

            rec_at, rec_movies = pd.factorize(movie_ids)
            key = None
        else:
            key = (self.token, rec_movies.tobytes())
        n_cols, n_rec = len(cols), len(rec_movies)
        flat = self._table(rec_movies, key)
        # int32 positions when the table allows: half the memory traffic of the gathers.
        pos = np.int32 if (n_cols + 1) * n_rec < 2**31 else np.int64
        liked = self.liked_row.astype(pos) * pos(n_rec)
        pad = pos(n_cols * n_rec)
        offsets = np.arange(self.most)
        users = np.asarray(user_ids, dtype=np.int64)
        rec_at = rec_at.astype(pos)

        # Equal chunks, a multiple of the workers in number (4 x 164k rows, not 200k, 200k, 200k, 55k).
        workers = default_workers()
        per = -(-len(users) // (workers * -(-len(users) // (workers * MAX_ROWS))))

        def chunk(s: int) -> None:
            sl = slice(s, s + per)
            u = users[sl]
            # Per user, not per row: rows of one user are adjacent.
            brk = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
            reps = np.diff(np.r_[brk, len(u)])
            lo = np.searchsorted(lu, u[brk], side="left")
            n = np.searchsorted(lu, u[brk], side="right") - lo
            cand = liked[np.minimum(lo[:, None] + offsets[None, :], len(lu) - 1)]
            cand[offsets[None, :] >= n[:, None]] = pad
            # [rows, most]: positions in `flat`. Row gathers and fancy indexing: measured 2-3x faster here
            # than np.repeat(axis=0) and flat.take (which converts int32 positions first).
            at = cand.take(np.repeat(np.arange(len(brk)), reps), axis=0)
            at += rec_at[sl, None]
            scores = flat[at]
            pick = scores.argmax(axis=1) + np.arange(0, at.size, at.shape[1])  # flat: cheaper than along-axis
            found = np.flatnonzero(np.isfinite(scores.ravel()[pick]))
            out[s + found] = f.movie_ids[cols[at.ravel()[pick[found]] // n_rec]]

        starts = range(0, len(users), per)
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            list(pool.map(chunk, starts))
        return out

    def _table(self, rec_movies: np.ndarray, key: tuple[int, bytes] | None) -> np.ndarray:
        """The flat [len(cols) + 1, len(rec_movies)] table of cosines (see `nearest`), from this thread's
        scratch buffer; kept for the next call with the same `key` (None: not kept)."""
        n_cols, n_rec = len(self.cols), len(rec_movies)
        size = (n_cols + 1) * n_rec
        if key is not None and getattr(_SCRATCH, "key", None) == key:
            return _SCRATCH.table[:size]
        rec_rows = self.factors.movie_index(rec_movies)
        table = _scratch(size).reshape(n_cols + 1, n_rec)
        np.matmul(self.unit_cols, self.unit[rec_rows.clip(0)].T, out=table[:n_cols])
        table[n_cols] = -np.inf  # the last row: no film
        if (rec_rows < 0).any():
            table[:, rec_rows < 0] = -np.inf
        at_col = np.searchsorted(self.cols, rec_rows).clip(max=n_cols - 1)
        itself = np.flatnonzero((rec_rows >= 0) & (self.cols[at_col] == rec_rows))
        table[at_col[itself], itself] = -np.inf
        if size <= SCRATCH_KEPT:
            _SCRATCH.key = key
        return table.ravel()


_SCRATCH = threading.local()
SCRATCH_KEPT = 1 << 26  # floats (256 MB): larger tables (queries with thousands of candidates) are not kept


def _scratch(size: int) -> np.ndarray:
    """A float32 buffer of `size` reused by this thread's calls (grown when too small), so that a table of
    the usual size (42 MB at ml-25m size with 250 candidates) is not faulted in afresh per call."""
    if size > SCRATCH_KEPT:
        return np.empty(size, dtype=np.float32)
    _SCRATCH.key = None  # the caller is about to overwrite whatever table the buffer holds
    buf = getattr(_SCRATCH, "table", None)
    if buf is None or buf.size < size:
        buf = _SCRATCH.table = np.empty(size, dtype=np.float32)
    return buf[:size]


def because(
    model: Recommender,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    liked_users: np.ndarray,
    liked_movies: np.ndarray,
) -> np.ndarray:
    """`Because.prepare(...).nearest(...)` in one call: -1 everywhere when nothing can be explained.
    `liked_users`/`liked_movies`: liked pairs sorted by user, at most `BECAUSE_LIKED` per user."""
    index = Because.prepare(model, liked_users, liked_movies)
    if index is None:
        return np.full(len(user_ids), -1, dtype=np.int64)
    return index.nearest(user_ids, movie_ids)
