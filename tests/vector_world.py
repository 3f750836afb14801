"""A small catalogue written straight into DuckDB for the embedding and search tests: distinct genres so
a query's right answers are known (zombie horror, romantic comedy, space sci-fi), one movie without
genres, one without a year, awkward titles, and user tags."""

from __future__ import annotations

from movierec.config import Settings
from movierec.db import connect

MOVIES = [
    (1, "Night of the Living Dead (1968)", 1968, ["Horror"]),
    (2, "Dawn of the Dead (1978)", 1978, ["Action", "Drama", "Horror"]),
    (3, "Zombieland (2009)", 2009, ["Action", "Comedy", "Horror"]),
    (4, "Shaun of the Dead (2004)", 2004, ["Comedy", "Horror"]),
    (5, "When Harry Met Sally... (1989)", 1989, ["Comedy", "Romance"]),
    (6, "Notting Hill (1999)", 1999, ["Comedy", "Romance"]),
    (7, "Pretty Woman (1990)", 1990, ["Comedy", "Romance"]),
    (8, "2001: A Space Odyssey (1968)", 1968, ["Adventure", "Drama", "Sci-Fi"]),
    (9, "Star Wars: Episode IV - A New Hope (1977)", 1977, ["Action", "Adventure", "Sci-Fi"]),
    (10, "Interstellar (2014)", 2014, ["Sci-Fi", "IMAX"]),
    (11, "Saving Private Ryan (1998)", 1998, ["Action", "Drama", "War"]),
    (12, "Unforgiven (1992)", 1992, ["Drama", "Western"]),
    (13, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", 2001, ["Comedy", "Romance"]),
    (14, "Godfather, The (1972)", 1972, ["Crime", "Drama"]),
    (15, "Untitled Home Video", None, []),
]
TAGS = [
    (1, 1, "zombies"), (2, 1, "Zombies"), (3, 1, "classic"), (1, 14, "mafia"), (2, 14, "Mafia"),
    (3, 14, "Al Pacino"), (1, 14, "classic"), (4, 14, "mafia"), (1, 10, "space"), (2, 10, "  "),
]  # fmt: skip


def add_movies(settings: Settings, movies: list[tuple] = MOVIES, tags: list[tuple] = TAGS) -> None:
    with connect(settings) as con:
        con.executemany("INSERT OR REPLACE INTO movies VALUES (?, ?, ?, ?)", movies)
        con.executemany("INSERT INTO tags (user_id, movie_id, tag) VALUES (?, ?, ?)", tags)


def set_title(settings: Settings, movie_id: int, title: str) -> None:
    with connect(settings) as con:
        con.execute("UPDATE movies SET title = ? WHERE movie_id = ?", [title, movie_id])
