"""A tiny planted world for the batch tests: movies embedded with the real offline model into real Qdrant
Edge, ratings in DuckDB, and hand-built CF factors registered as the current model, so the right answer of
every list is known in advance.

Tastes (2-d factors, zero biases): users 1-3 love movie 101 then 102; users 4-6 love 103 then 104.
User 1 already rated 101 and user 4 rated 104, so those must never be recommended to them.
User 7 has ratings but is unknown to the model (new since training): cold start.
"""

from __future__ import annotations

import numpy as np

from movierec.batch.queries import SavedQuery, add_query
from movierec.catalog import Seen
from movierec.cf import KerasCF, save_model
from movierec.cf.factors import Factors
from movierec.config import Settings
from movierec.db import connect

MOVIES = [
    (101, "Zombie Apocalypse (2004)", 2004, ["Horror"]),
    (102, "Dawn of the Undead (1978)", 1978, ["Horror"]),
    (103, "Zombie Island Massacre (1984)", 1984, ["Horror"]),
    (104, "The Zombie Mansion (1999)", 1999, ["Horror", "Thriller"]),
    (201, "Love in Paris (2001)", 2001, ["Comedy", "Romance"]),
    (202, "Wedding Season (2005)", 2005, ["Comedy", "Romance"]),
    (301, "Star Voyage (1990)", 1990, ["Sci-Fi"]),
    (302, "Galaxy Frontier (1999)", 1999, ["Sci-Fi"]),
]
RATINGS = [
    (1, 101, 5.0),
    (1, 201, 3.0),
    (2, 201, 4.0),
    (3, 301, 2.5),
    (4, 104, 4.5),
    (4, 302, 3.0),
    (5, 202, 4.0),
    (6, 301, 3.5),
    (7, 101, 4.0),
    (7, 202, 2.0),
]
TASTE_A, TASTE_B, COLD = (1, 2, 3), (4, 5, 6), 7
ZOMBIES = SavedQuery("zombies", "zombie horror films", genres=("Horror",), candidates=4, top_n=2)
EVERYTHING = SavedQuery("everything", "movies", candidates=8, top_n=3)


def planted_factors() -> Factors:
    movie_ids = np.array([m[0] for m in MOVIES])
    mv = np.full((len(movie_ids), 2), 0.1, dtype=np.float32)
    for mid, vec in {101: [2.0, 0], 102: [1.0, 0], 103: [0, 2.0], 104: [0, 1.0]}.items():
        mv[list(movie_ids).index(mid)] = vec
    users = np.arange(1, 7)
    uv = np.array([[2.0, 0]] * 3 + [[0, 2.0]] * 3, dtype=np.float32)
    return Factors(users, movie_ids, uv, mv, np.zeros(6, np.float32), np.zeros(len(movie_ids), np.float32))


def register_model(settings: Settings, factors: Factors) -> str:
    """Make a CF model with these factors current, through the registry like `movierec train` does."""
    with connect(settings, read_only=True) as con:
        users, movies = con.execute("SELECT user_id, movie_id FROM ratings").fetchnumpy().values()
    model = KerasCF.from_factors(factors, Seen.from_pairs(users, movies))
    snapshot = {"n_ratings": len(RATINGS), "max_rated_at": None}
    return save_model(settings, model, snapshot=snapshot).version


def build(settings: Settings, queries: tuple[SavedQuery, ...] = (ZOMBIES,)) -> Settings:
    """Catalogue + ratings in DuckDB, vectors in Qdrant Edge, planted model current, queries saved."""
    from movierec.ingest.embed import embed_movies

    with connect(settings) as con:
        con.executemany("INSERT INTO movies VALUES (?, ?, ?, ?)", MOVIES)
        con.executemany(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (?, ?, ?, TIMESTAMP '2020-01-01')",
            [list(r) for r in RATINGS],
        )
    embed_movies(settings)
    register_model(settings, planted_factors())
    with connect(settings) as con:
        for q in queries:
            add_query(con, q)
    return settings


def lists(settings: Settings, query: str = "zombies") -> dict[int, list[tuple[int, str]]]:
    """{user: [(movie, source), ...]} from latest_recommendations."""
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT user_id, movie_id, source FROM latest_recommendations WHERE query_name = ? "
            "ORDER BY user_id, rank",
            [query],
        ).fetchall()
    out: dict[int, list[tuple[int, str]]] = {}
    for u, m, s in rows:
        out.setdefault(u, []).append((m, s))
    return out
