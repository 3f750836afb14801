"""Shared reads of the catalogue and of who rated what: one place for the SQL every stage asks.

- movies (`movie_meta`, `titles`, `find_movie`), genres (`known_genres`, `validate_genres`),
  users (`user_ids`), a user's history (`history`);
- `Seen`: who rated which movie, the one encoding of "seen" that the model contract, the batch and the
  evaluation share (rating pairs grouped by movie, so a query's candidates select their raters by slicing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from movierec.errors import BadInputError, NotFoundError

# --------------------------------------------------------------------------- movies and genres


def known_genres(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every genre that occurs in the `movies` table, sorted."""
    rows = con.execute("SELECT DISTINCT unnest(genres) AS g FROM movies ORDER BY g").fetchall()
    return [g for (g,) in rows if g]


def validate_genres(con: duckdb.DuckDBPyConnection, genres: Iterable[str]) -> list[str]:
    """The genres spelled as in the catalogue (matching ignores case); BadInputError names unknown ones."""
    known = known_genres(con)
    by_lower = {g.lower(): g for g in known}
    out, unknown = [], []
    for genre in genres:
        match = by_lower.get(genre.strip().lower())
        if match is None:
            unknown.append(genre)
        elif match not in out:
            out.append(match)
    if unknown:
        listing = ", ".join(known) if known else "none: the movies table is empty, run `movierec ingest DIR`"
        names = ", ".join(repr(g) for g in unknown)
        raise BadInputError(f"unknown genre {names}; known genres: {listing}")
    return out


def movie_meta(
    con: duckdb.DuckDBPyConnection, movie_ids: Iterable[int]
) -> dict[int, tuple[str, int | None, list[str]]]:
    """{movie_id: (title, year, genres)} for the given movies (missing ones are left out)."""
    ids = sorted({int(m) for m in movie_ids})
    if not ids:
        return {}
    rows = con.execute(
        "SELECT movie_id, title, year, genres FROM movies WHERE list_contains(?, movie_id)", [ids]
    ).fetchall()
    return {m: (t, y, list(g)) for m, t, y, g in rows}


def titles(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Every movie's title by id."""
    return {int(m): str(t) for m, t in con.execute("SELECT movie_id, title FROM movies").fetchall()}


def titles_containing(con: duckdb.DuckDBPyConnection, word: str) -> list[tuple[int, str]]:
    """(movie_id, title) of the movies whose title contains `word` (lower case, accents ignored): the few
    rows an exact title lookup then checks, instead of every title."""
    return con.execute(
        "SELECT movie_id, title FROM movies WHERE contains(strip_accents(lower(title)), ?) ORDER BY movie_id",
        [word],
    ).fetchall()


def find_movie(con: duckdb.DuckDBPyConnection, query: str) -> tuple[int, str]:
    """A movie by id ("1") or by title search ("toy story"): exact title first, then the most-rated match."""
    query = query.strip()
    if not query:
        raise BadInputError("empty movie: give a movie id or part of a title")
    if query.isdigit():
        row = con.execute("SELECT movie_id, title FROM movies WHERE movie_id = ?", [int(query)]).fetchone()
        if row is None:
            raise NotFoundError(f"no movie with id {query}")
        return int(row[0]), row[1]
    row = con.execute(
        """
        SELECT m.movie_id, m.title
        FROM movies m LEFT JOIN (SELECT movie_id, count(*) AS n FROM ratings GROUP BY movie_id) r
             USING (movie_id)
        WHERE m.title ILIKE '%' || ? || '%'
        ORDER BY lower(m.title) = lower(?) DESC,
                 regexp_replace(lower(m.title), ' \\(\\d{4}\\)$', '') = lower(?) DESC,
                 coalesce(r.n, 0) DESC, m.movie_id
        LIMIT 1
        """,
        [query, query, query],
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no movie title contains {query!r}")
    return int(row[0]), row[1]


# --------------------------------------------------------------------------- users and ratings


DENSE_IDS = 1 << 25  # id ranges up to this many values are looked up in a table, not sorted/searched


def dense_range(a: np.ndarray, n: int) -> tuple[int, int] | None:
    """(lo, hi) of integer `a` when a lookup table over that range is cheap next to `n` values (MovieLens
    ids are small and dense), else None."""
    if len(a) == 0 or not np.issubdtype(a.dtype, np.integer):
        return None
    lo, hi = int(a.min()), int(a.max())
    return (lo, hi) if hi - lo < min(DENSE_IDS, 4 * max(n, 1)) else None


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """np.unique by a table of the range (dense ids) or by sorting: numpy 2's hash-based np.unique is
    several times slower on 25M int64, and the table is 40x faster than the sort."""
    a = np.asarray(a)
    span = dense_range(a, len(a))
    if span is not None:  # one counting pass over the range (shifted: ids need not start near 0)
        lo = span[0]
        return (np.flatnonzero(np.bincount(a - lo if lo else a)) + lo).astype(a.dtype)
    a = np.sort(a)
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def user_ids(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    """Every user with at least one rating, sorted (int64)."""
    rows = con.execute("SELECT DISTINCT user_id FROM ratings ORDER BY user_id").fetchnumpy()["user_id"]
    return np.asarray(rows, dtype=np.int64)


# A rating at or above it is a liked film: the "because you liked" explanations, and the later-liked films
# that judge lists (`movierec evaluate --lists`, `movierec batch report`).
LIKED_RATING = 4.0


def liked(con: duckdb.DuckDBPyConnection, per_user: int) -> tuple[np.ndarray, np.ndarray]:
    """(users, movies) of each user's `per_user` best-rated liked films (newest first among equal ratings,
    then the lower id), sorted by user. A top-n aggregate per user, not a sort of every liked rating (at
    ml-25m size 3-7 s instead of 18 s under load)."""
    cols = con.execute(
        "SELECT user_id, unnest(max_by(movie_id, (rating, coalesce(rated_at, TIMESTAMP '1970-01-01'), "
        "-movie_id), ?)) AS movie_id FROM ratings WHERE rating >= ? GROUP BY user_id ORDER BY user_id",
        [per_user, LIKED_RATING],
    ).fetchnumpy()
    return np.asarray(cols["user_id"], dtype=np.int64), np.asarray(cols["movie_id"], dtype=np.int64)


def history(con: duckdb.DuckDBPyConnection, user_id: int, n: int = 5) -> list[dict[str, Any]]:
    """A user's `n` highest-rated movies (newest first among equal ratings)."""
    rows = con.execute(
        "SELECT r.movie_id, m.title, m.genres, r.rating FROM ratings r JOIN movies m USING (movie_id) "
        "WHERE r.user_id = ? ORDER BY r.rating DESC, r.rated_at DESC NULLS LAST, r.movie_id LIMIT ?",
        [user_id, n],
    ).fetchall()
    return [{"movie_id": m, "title": t, "genres": list(g), "rating": float(r)} for m, t, g, r in rows]


@dataclass(frozen=True)
class Seen:
    """Who rated which movie: (user, movie) pairs grouped by movie (CSR over sorted movie ids)."""

    movie_ids: np.ndarray  # int64, sorted unique movies that have ratings
    indptr: np.ndarray  # int64 [len(movie_ids) + 1]
    user_ids: np.ndarray  # the users who rated each movie, grouped by movie (int64, or int32 as saved)

    @classmethod
    def from_pairs(cls, users: np.ndarray, movies: np.ndarray) -> Seen:
        users, movies = np.asarray(users, dtype=np.int64), np.asarray(movies, dtype=np.int64)
        if len(users) and users.min() >= 0 and movies.min() >= 0 and int(users.max()) < 1 << 31 \
                and int(movies.max()) < 1 << 31:  # fmt: skip
            # One int64 sort of packed (movie, user) keys: np.lexsort is ~10x slower at 25M ratings.
            keys = np.sort((movies << 31) | users)
            movies, users = keys >> 31, keys & ((1 << 31) - 1)
        else:
            order = np.lexsort((users, movies))
            movies, users = movies[order], users[order]
        # Sorted already: each movie starts where the id changes (np.unique would sort all of it again).
        starts = np.flatnonzero(np.r_[True, movies[1:] != movies[:-1]]) if len(movies) else np.zeros(0, int)
        return cls(movies[starts], np.append(starts, len(movies)).astype(np.int64), users)

    @classmethod
    def load(
        cls, con: duckdb.DuckDBPyConnection, movie_ids: np.ndarray, users: np.ndarray | None = None
    ) -> Seen:
        """Ratings of `movie_ids` (optionally only by `users`) from the database: small next to the table."""
        con.register("_seen_movies", pa.table({"movie_id": pa.array(np.unique(movie_ids).astype(np.int32))}))
        sql = "SELECT r.movie_id, r.user_id FROM ratings r SEMI JOIN _seen_movies c USING (movie_id)"
        try:
            if users is not None:
                wanted = pa.table({"user_id": pa.array(np.asarray(users, dtype=np.int32))})
                con.register("_seen_users", wanted)
                sql += " SEMI JOIN _seen_users u USING (user_id)"
            res = con.execute(sql + " ORDER BY r.movie_id").fetchnumpy()
        finally:
            con.unregister("_seen_movies")
            if users is not None:
                con.unregister("_seen_users")
        movies = np.asarray(res["movie_id"], dtype=np.int64)
        uniq, starts = np.unique(movies, return_index=True)
        raters = np.asarray(res["user_id"], dtype=np.int32)  # MovieLens ids are int32; half the memory
        return cls(uniq, np.append(starts, len(movies)).astype(np.int64), raters)

    def __len__(self) -> int:
        return len(self.user_ids)

    def _slices(self, movies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        movies = np.asarray(movies, dtype=np.int64)
        if not len(self.movie_ids):
            return np.zeros(len(movies), bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
        pos = np.searchsorted(self.movie_ids, movies).clip(0, len(self.movie_ids) - 1)
        found = self.movie_ids[pos] == movies
        return found, self.indptr[pos[found]], self.indptr[pos[found] + 1]

    def pairs(self, movies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(users, movies) of every rating of these movies (all ratings when None)."""
        if movies is None:
            return self.user_ids, np.repeat(self.movie_ids, np.diff(self.indptr))
        found, starts, ends = self._slices(movies)
        lengths = ends - starts
        idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return self.user_ids[idx], np.repeat(np.asarray(movies, dtype=np.int64)[found], lengths)

    def subset(self, movies: np.ndarray) -> Seen:
        """Only the ratings of `movies` (e.g. a query's candidates): what a Ray task needs to filter them."""
        movies = np.unique(np.asarray(movies, dtype=np.int64))
        found, starts, ends = self._slices(movies)
        lengths = ends - starts
        idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Seen(movies[found], indptr, self.user_ids[idx])

    def counts(self, movies: np.ndarray) -> np.ndarray:
        """Number of ratings of each movie (0 for movies nobody rated)."""
        found, starts, ends = self._slices(movies)
        out = np.zeros(len(movies), dtype=np.int64)
        out[found] = ends - starts
        return out
