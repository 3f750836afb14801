"""Tiny planted rating sets for the cf tests, where the right answer is known in advance.

Two taste groups: users 1..20 like movies 101..110, users 21..40 like movies 201..210. Each user rated
every movie of their own group but one (5 stars) and one movie of the other group (1 star); 80 filler
movies (301..380) have one 3-star rating each, so sampled negatives rarely hit the planted answer. The
movie a user has not rated from their own group is the right first recommendation for a personal model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.cf.data import Ratings
from movierec.config import Settings
from movierec.db import connect

GROUP_USERS = {0: np.arange(1, 21), 1: np.arange(21, 41)}
GROUP_MOVIES = {0: np.arange(101, 111), 1: np.arange(201, 211)}
FILLER = np.arange(301, 381)


def missing_movie(user: int) -> int:
    """The own-group movie `user` has not rated: the planted answer."""
    group = 0 if user <= 20 else 1
    return int(GROUP_MOVIES[group][user % 10])


def checkerboard() -> Ratings:
    users, movies, ratings, times = [], [], [], []
    t = 1_000_000_000
    for group, members in GROUP_USERS.items():
        own, other = GROUP_MOVIES[group], GROUP_MOVIES[1 - group]
        for u in members:
            for m in own:
                if m != missing_movie(int(u)):
                    users.append(u), movies.append(m), ratings.append(5.0), times.append(t)
                    t += 60
            for m in other[[int(u) % 10]]:
                users.append(u), movies.append(m), ratings.append(1.0), times.append(t)
                t += 60
    for m in FILLER:
        users.append(int(m) % 40 + 1), movies.append(int(m)), ratings.append(3.0), times.append(t)
        t += 60
    return Ratings.from_arrays(users, movies, ratings, times)


def write_ratings(settings: Settings, data: Ratings, titles: dict[int, str] | None = None) -> None:
    """Put ratings (and a title for every movie) into the project DuckDB, as ingest would: epoch seconds to
    a UTC TIMESTAMP with make_timestamp (to_timestamp gives a TIMESTAMPTZ, whose cast to the TIMESTAMP
    column shifts it by the machine's time zone, TZ)."""
    movie_ids = np.unique(data.movie_ids)
    titles = titles or {int(m): f"Movie {int(m)} (2000)" for m in movie_ids}
    with connect(settings) as con:
        con.executemany(
            "INSERT INTO movies VALUES (?, ?, 2000, ['Drama'])", [[int(m), titles[int(m)]] for m in movie_ids]
        )
        con.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "SELECT u, m, r, make_timestamp(t::BIGINT * 1000000) FROM "
            "(SELECT unnest(?) AS u, unnest(?) AS m, unnest(?) AS r, unnest(?) AS t)",
            [data.user_ids.tolist(), data.movie_ids.tolist(), data.ratings.tolist(), data.rated_at.tolist()],
        )


def load_movielens_csv(settings: Settings, directory: Path) -> None:
    """ml-latest-small straight into DuckDB with read_csv, independent of the ingest stage."""
    with connect(settings) as con:
        con.execute(
            "INSERT INTO movies SELECT movieId, title, NULL, string_split(genres, '|') FROM read_csv(?)",
            [str(directory / "movies.csv")],
        )
        con.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) SELECT userId, movieId, rating, "
            "make_timestamp(timestamp::BIGINT * 1000000) FROM read_csv(?)",
            [str(directory / "ratings.csv")],
        )
