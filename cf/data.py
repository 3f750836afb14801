"""Ratings as numpy arrays: reading them from DuckDB, indexing ids, and the evaluation splits.

Everything here is vectorised: at ml-25m size (25M ratings) a Python loop over users or ratings
would dominate training time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np

from movierec.catalog import dense_range, unique_sorted
from movierec.config import Settings
from movierec.db import connect, has_table
from movierec.errors import BadInputError, NotFoundError


@dataclass(frozen=True)
class Ratings:
    """Explicit ratings, one row per (user, movie); rated_at in epoch seconds (0 when unknown).

    Read from the database they also say which ingest wrote each row (`ingest_id`; 0: stored before
    ingests were numbered, or written otherwise), which ingests the database recorded (`ingests`: number
    -> token) and a digest of the unnumbered rows (count and sum of row hashes): a CF update asks them what
    changed since its model."""

    user_ids: np.ndarray  # int64
    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32
    rated_at: np.ndarray  # int64
    ingest_id: np.ndarray | None = None  # int32
    ingests: dict[int, str] | None = None
    unnumbered: str | None = None  # "count:sum of hash(user_id, movie_id, rating, rated_at)"
    digests: UserDigests | None = None  # per user: what every one of their rows holds, however written

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, mask_or_index: np.ndarray) -> Ratings:
        return Ratings(
            self.user_ids[mask_or_index],
            self.movie_ids[mask_or_index],
            self.ratings[mask_or_index],
            self.rated_at[mask_or_index],
            None if self.ingest_id is None else self.ingest_id[mask_or_index],
            None,  # a subset: no longer what the database holds
            None,
            None,
        )

    def changed_since(self, snapshot: dict) -> np.ndarray | None:
        """Rows written by ingests after the one `snapshot` (a model's `snapshot()`) had seen, as a mask.
        None when the database cannot say: the model's ingest is not this database's (another database,
        or a copy that ingested on its own since: the tokens differ), the unnumbered rows changed (written
        outside an ingest: their digest moved), or the model is older than the numbers."""
        mark = snapshot.get("ingest_id")
        if self.ingest_id is None or self.ingests is None or mark is None:
            return None
        if mark and self.ingests.get(mark) != snapshot.get("ingest_token"):
            return None
        if self.unnumbered is None or self.unnumbered != snapshot.get("unnumbered"):
            return None
        return self.ingest_id > mark

    @classmethod
    def from_arrays(cls, user_ids, movie_ids, ratings, rated_at=None) -> Ratings:
        n = len(user_ids)
        return cls(
            np.asarray(user_ids, dtype=np.int64),
            np.asarray(movie_ids, dtype=np.int64),
            np.asarray(ratings, dtype=np.float32),
            np.zeros(n, dtype=np.int64) if rated_at is None else np.asarray(rated_at, dtype=np.int64),
        )

    def snapshot(self) -> dict:
        """What a model was trained on: counts and the newest rating (to tell stale models apart)."""
        return {
            "n_ratings": int(len(self)),
            "n_users": int(len(unique_sorted(self.user_ids))),
            "n_movies": int(len(unique_sorted(self.movie_ids))),
            "max_rated_at": int(self.rated_at.max()) if len(self) else None,
            "rating_min": float(self.ratings.min()) if len(self) else None,
            "rating_max": float(self.ratings.max()) if len(self) else None,
            **self._ingest_mark(),
        }

    def _ingest_mark(self) -> dict:
        """The database's latest ingest (number and token) and the digest of its unnumbered rows."""
        if self.ingest_id is None or self.ingests is None:
            return {}
        mark = max(self.ingests, default=0)
        return {"ingest_id": mark, "ingest_token": self.ingests.get(mark), "unnumbered": self.unnumbered}


def load_ratings(settings: Settings) -> Ratings:
    """All ratings from the project's DuckDB (read-only, so analysts and the batch may read meanwhile),
    with the ingest that wrote each and the ingests recorded (one connection: writers wait for it)."""
    with connect(settings, read_only=True) as con:
        try:
            numbered = has_table(con, "ingests")  # else a database from before migration 3
            ingest = "coalesce(ingest_id, 0)" if numbered else "0"
            cols = con.execute(
                "SELECT user_id, movie_id, rating, coalesce(epoch(rated_at), 0)::BIGINT AS ts, "
                f"{ingest}::INTEGER AS ingest FROM ratings"
            ).fetchnumpy()
            ingests = unnumbered = None
            digests = user_digests(con)
            if numbered:
                ingests = dict(con.execute("SELECT ingest_id, token FROM ingests").fetchall())
                n, total = con.execute(
                    "SELECT count(*), sum(hash(user_id, movie_id, rating, rated_at)) FROM ratings "
                    "WHERE ingest_id IS NULL"
                ).fetchone()
                unnumbered = f"{n}:{total or 0}"
        except Exception as exc:  # duckdb.CatalogException when the schema was never created
            raise NotFoundError(
                f"no ratings table in {settings.db_path}: run `movierec ingest` first"
            ) from exc
    if len(cols["user_id"]) == 0:
        raise NotFoundError(f"no ratings in {settings.db_path}: run `movierec ingest` first")
    r = Ratings.from_arrays(cols["user_id"], cols["movie_id"], cols["rating"], cols["ts"])
    ingest_id = np.asarray(cols["ingest"], dtype=np.int32)
    return replace(r, ingest_id=ingest_id, ingests=ingests, unnumbered=unnumbered, digests=digests)


# Per user, the sum (mod 2**64) of a hash of each of their rows: any change to a user's ratings (a value or
# time edited by hand in an ingested row, a row deleted or added, however written) moves it, which the
# ingest numbers and the unnumbered rows' digest cannot see. One GROUP BY: 0.4 s at ml-25m size.
_USER_DIGEST_SQL = (
    "SELECT user_id::BIGINT AS user_id, "
    "(sum(hash(movie_id, rating, rated_at)) % 18446744073709551616)::UBIGINT AS digest "
    "FROM ratings GROUP BY user_id ORDER BY user_id"
)


@dataclass(frozen=True)
class UserDigests:
    """Sorted user ids and a digest of each one's ratings (`_USER_DIGEST_SQL`)."""

    user_ids: np.ndarray  # int64, sorted
    digest: np.ndarray  # uint64

    def changed(self, before: UserDigests) -> np.ndarray:
        """Ids of the users whose ratings differ from `before`'s: another digest, or on one side only."""
        both = np.intersect1d(self.user_ids, before.user_ids, assume_unique=True)
        now, then = self.digest[index_of(self.user_ids, both)], before.digest[index_of(before.user_ids, both)]
        one_side = np.setxor1d(self.user_ids, before.user_ids, assume_unique=True)
        return np.union1d(both[now != then], one_side)

    def save(self, path: Path) -> None:
        np.savez(path, user_ids=self.user_ids, digest=self.digest)

    @classmethod
    def load(cls, path: Path) -> UserDigests | None:
        """The digests saved at `path`, or None when there are none (a model from before them) or the file
        is damaged (empty, truncated, not what `save` wrote): the update then finds changes as it did
        before the digests, and `movierec train` writes a good file."""
        try:
            with np.load(path) as z:
                ids, digest = np.asarray(z["user_ids"], np.int64), np.asarray(z["digest"], np.uint64)
        except Exception:  # noqa: BLE001 - any unreadable file is "no digests" (EOFError, TypeError, ...)
            return None
        if ids.ndim != 1 or ids.shape != digest.shape or np.any(ids[1:] <= ids[:-1]):
            return None
        return cls(ids, digest)


def user_digests(con: duckdb.DuckDBPyConnection) -> UserDigests:
    """Every user's ratings digest, read on `con`."""
    cols = con.execute(_USER_DIGEST_SQL).fetchnumpy()
    ids, digest = np.asarray(cols["user_id"], dtype=np.int64), np.asarray(cols["digest"], dtype=np.uint64)
    return UserDigests(ids, digest)


def index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each id in `sorted_ids`, -1 when absent."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    span = dense_range(np.asarray(sorted_ids), len(ids))
    if span is not None:  # a table over the known ids' range: one gather instead of a binary search each
        lo, hi = span
        table = np.full(hi - lo + 1, -1, dtype=np.int64)
        table[np.asarray(sorted_ids, dtype=np.int64) - lo] = np.arange(len(sorted_ids))
        if len(ids) and lo <= int(ids.min()) and int(ids.max()) <= hi:  # the usual case: one gather
            return table[ids - lo] if lo else table[ids]
        inside = (ids >= lo) & (ids <= hi)
        return np.where(inside, table[np.where(inside, ids - lo, 0)], -1)
    pos = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


# --- splits -----------------------------------------------------------------------------------------


def random_split(data: Ratings, test_frac: float = 0.1, seed: int = 0) -> tuple[Ratings, Ratings]:
    """Random holdout over all ratings (the reference design's 90/10, used for RMSE/MAE)."""
    _check_frac(test_frac)
    rng = np.random.default_rng(seed)
    test = rng.random(len(data)) < test_frac
    return data.take(~test), data.take(test)


def per_user_split(
    data: Ratings, test_frac: float = 0.25, by: str = "time", seed: int = 0
) -> tuple[Ratings, Ratings]:
    """Each user's ratings split train/test (stratified by user): the latest `test_frac` of them by time,
    or a random `test_frac`. Every user keeps at least one training rating."""
    _check_frac(test_frac)
    if by not in ("time", "random"):
        raise BadInputError(f"unknown split {by!r}: use 'time' or 'random'")
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(data))
    key = data.rated_at if by == "time" else np.zeros(len(data), dtype=np.int64)
    order = np.lexsort((tiebreak, key, data.user_ids))
    users_sorted = data.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    pos_in_user = np.arange(len(order)) - np.repeat(starts, counts)
    n_test = np.minimum(np.floor(counts * test_frac).astype(np.int64), counts - 1)
    is_test_sorted = pos_in_user >= np.repeat(counts - n_test, counts)
    is_test = np.zeros(len(data), dtype=bool)
    is_test[order] = is_test_sorted
    return data.take(~is_test), data.take(is_test)


def _check_frac(frac: float) -> None:
    if not 0.0 < frac < 1.0:
        raise BadInputError(f"test fraction must be between 0 and 1, got {frac}")
